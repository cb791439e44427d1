//! Reading a whole blob file for hashing, three ways, each the fastest measured
//! for its case (BENCHMARKS.md, "ferry-verify"):
//!
//! - [`feed_file`]: `pread` into one 1 MiB buffer on the hashing thread.
//! - [`feed_file_resident_mapped`]: for many blobs, one per core: a window
//!   already in the page cache (just read by the reader ahead, [`Pace`], or
//!   found there by `cachestat`) is hashed where it lies (mapped, no copy: the
//!   copy was 11% of a warm audit's CPU), any other is read with `pread`
//!   (faulting pages in from the disk measured slower than reading them).
//! - [`feed_file_read_ahead`]: a reader thread copies the file into recycled
//!   buffers ([`ReadAhead`]) while the calling thread hashes. Best for a blob
//!   bigger than its share of the work (one huge layer): the copy moves to an
//!   otherwise idle core and the hashing core only hashes.
//! - [`blake3_file`]: the file memory-mapped, one 16 MiB window at a time with
//!   the next one's read-ahead requested (`POSIX_FADV_WILLNEED`), and hashed
//!   with blake3 on the calling thread; or, for a blob above its fair share,
//!   cut into 16 MiB leaves of the blake3 tree hashed on every thread of the
//!   current rayon pool and merged ([`crate::blake3_leaves`]); no copy at all,
//!   which matters at blake3's speed.
//!
//! Invariants: every byte of the file from offset 0 to its end is fed exactly
//! once, in order, whatever the file position; a read error is returned, never
//! a shortened hash; memory is bounded (one 1 MiB buffer, 4 read-ahead
//! buffers, or one 16 MiB mapped window of page cache per hashing thread). A mapped file that another process
//! truncates while it is hashed raises SIGBUS (as with `b3sum`); ferry itself
//! never changes a blob in place (blobs are written to a temp file and renamed),
//! and audits refuse a store while a ferry writer holds its lock.

use std::fs::File;
use std::io::{self, BufRead, Read};
use std::os::unix::fs::FileExt;

use crate::blake3_leaves::{blake3_by_leaves, LEAF};
use crate::read_ahead::ReadAhead;

/// Bytes read at once per blob being hashed.
pub const READ_BUFFER: usize = 1 << 20;
/// Read-ahead buffers per blob read on a reader thread.
/// Shallow on purpose: with 4 x 1 MiB in flight the hasher reads bytes the
/// reader just wrote (still in cache); 16 x 1 MiB or 4 x 4 MiB measured about
/// 1.5x the hashing CPU (bytes fetched from DRAM again).
const READ_AHEAD_DEPTH: usize = 4;
/// Smaller files are read, not mapped, by [`blake3_file`] (a mapping costs more than it saves).
pub(crate) const MMAP_MIN: u64 = 1 << 20;
/// Bytes of a file mapped (and hashed on all threads) at once; a multiple of
/// the page size, so every window's offset is page-aligned.
pub(crate) const MMAP_WINDOW: usize = 16 << 20;

/// Told, window by window, where a reader of one file is: lets another thread
/// read ahead of it ([`crate::prefetch`]). Offsets are from the file's start.
pub trait Pace {
    /// Called before the bytes up to `end` are read or mapped; true when the
    /// window ending there is known to have just been read into the page cache.
    fn before(&mut self, _end: u64) -> bool {
        false
    }
    /// Called once the bytes up to `end` have been fed.
    fn after(&mut self, _end: u64) {}
    /// True when someone else reads ahead (no read-ahead hints of our own).
    fn reads_ahead(&self) -> bool {
        false
    }
}

/// No one reads ahead: every window is read when wanted.
pub struct Unpaced;
impl Pace for Unpaced {}

/// Feeds a whole file to `f` from its first byte (whatever the file position),
/// in reads of at most [`READ_BUFFER`] bytes, on the calling thread.
pub fn feed_file(file: &File, mut f: impl FnMut(&[u8])) -> io::Result<()> {
    advise_sequential(file);
    let mut buffer = vec![0u8; READ_BUFFER];
    feed_range(file, 0, u64::MAX, &mut buffer, &mut f).map(drop)
}

/// Feeds the bytes of `file` from `at` up to `end` (or its end, if sooner)
/// to `f`, read with `pread` through `buffer`; the offset reached.
pub(crate) fn feed_range(
    file: &File,
    mut at: u64,
    end: u64,
    buffer: &mut [u8],
    f: &mut impl FnMut(&[u8]),
) -> io::Result<u64> {
    while at < end {
        let want = (end - at).min(buffer.len() as u64) as usize;
        match file.read_at(&mut buffer[..want], at) {
            Ok(0) => break,
            Ok(n) => {
                f(&buffer[..n]);
                at += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(at)
}

/// The digest (with `algorithm`) of the whole file at `path`.
pub fn digest_file(
    path: &std::path::Path,
    algorithm: crate::Algorithm,
) -> io::Result<crate::Digest> {
    let file = File::open(path)?;
    let mut h = crate::Hasher::new(algorithm);
    feed_file(&file, |chunk| h.update(chunk))?;
    Ok(h.finish())
}

/// Reads `file` from offset 0 with `pread`, leaving the descriptor's position alone.
struct PositionalReader {
    file: File,
    offset: u64,
}

impl Read for PositionalReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// Like [`feed_file`], but a reader thread copies the file into
/// [`READ_BUFFER`]-sized buffers a few ahead while `f` runs on the calling thread.
pub fn feed_file_read_ahead(file: &File, mut f: impl FnMut(&[u8])) -> io::Result<()> {
    advise_sequential(file);
    let reader = PositionalReader {
        file: file.try_clone()?,
        offset: 0,
    };
    let mut ahead = ReadAhead::new(reader, READ_BUFFER, READ_AHEAD_DEPTH)?;
    loop {
        let chunk = ahead.fill_buf()?;
        if chunk.is_empty() {
            break;
        }
        let n = chunk.len();
        f(chunk);
        ahead.consume(n);
    }
    ahead.into_inner().map(drop)
}

/// The blake3 of the whole of `file` (`len` bytes by its metadata), hashed on
/// every thread of the current rayon pool when `parallel` (one huge blob),
/// else on the calling thread (many blobs, one per thread: measured faster
/// warm and cold, as the disk then sees one sequential stream per blob).
/// Fails if the file's size is not `len` before or after hashing.
pub fn blake3_file(
    file: &File,
    len: u64,
    parallel: bool,
    pace: &mut impl Pace,
) -> io::Result<blake3::Hash> {
    of_its_size(file, len, || blake3_of(file, len, parallel, pace))
}

/// Runs `read` (which reads the first `len` bytes of `file`), failing if the
/// file's size is not `len` before or after: mapping past the end of a file
/// that shrank would fault (SIGBUS), and a longer one must not pass as whole.
fn of_its_size<T>(file: &File, len: u64, read: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let changed = |now: u64| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the file changed size while it was hashed ({len} then {now} bytes)"),
        )
    };
    let before = file.metadata()?.len();
    if before != len {
        return Err(changed(before));
    }
    let out = read()?;
    let now = file.metadata()?.len();
    if now != len {
        return Err(changed(now));
    }
    Ok(out)
}

fn blake3_of(
    file: &File,
    len: u64,
    parallel: bool,
    pace: &mut impl Pace,
) -> io::Result<blake3::Hash> {
    let mut hasher = blake3::Hasher::new();
    if len < MMAP_MIN {
        feed_file(file, |chunk| {
            hasher.update(chunk);
        })?;
    } else {
        if parallel && len > LEAF {
            return blake3_by_leaves(file, len);
        }
        // One window mapped at a time (resident memory stays bounded), the next
        // one's read-ahead requested before this one is hashed.
        let mut offset = 0u64;
        while offset < len {
            let window = (len - offset).min(MMAP_WINDOW as u64);
            let _ = pace.before(offset + window);
            let map = Mapping::new(file, offset, window)?;
            if offset + window < len && !pace.reads_ahead() {
                advise_will_need(file, offset + window, window);
            }
            hasher.update(map.bytes());
            offset += window;
            pace.after(offset);
        }
    }
    Ok(hasher.finalize())
}

/// Feeds a whole file of `len` bytes (by its metadata) to `f` from its first
/// byte, one [`MMAP_WINDOW`] at a time: a window whose pages are all in the
/// page cache (`pace` says it was just read, or `cachestat` finds it) is hashed
/// where it lies (mapped: no copy, which is 11% of a
/// warm sha256 audit's CPU), any other is read with `pread` (measured faster
/// than faulting pages in from the disk). Fails if the file's size is not
/// `len` before or after.
pub fn feed_file_resident_mapped(
    file: &File,
    len: u64,
    pace: &mut impl Pace,
    f: impl FnMut(&[u8]),
) -> io::Result<()> {
    of_its_size(file, len, || resident_mapped(file, len, pace, f))
}

fn resident_mapped(
    file: &File,
    len: u64,
    pace: &mut impl Pace,
    mut f: impl FnMut(&[u8]),
) -> io::Result<()> {
    if len < MMAP_MIN {
        return feed_file(file, f);
    }
    if !pace.reads_ahead() {
        advise_sequential(file);
    }
    let mut buffer = Vec::new();
    let mut offset = 0u64;
    while offset < len {
        let window = (len - offset).min(MMAP_WINDOW as u64);
        // Just read by the reader ahead, or found in the page cache (asked
        // without mapping: `mincore` on a mapping was 2-3% of a warm audit).
        let resident = pace.before(offset + window) || is_resident(file, offset, window)?;
        if resident {
            f(Mapping::new(file, offset, window)?.bytes());
        } else {
            if buffer.is_empty() {
                buffer = vec![0u8; READ_BUFFER];
            }
            let end = offset + window;
            if feed_range(file, offset, end, &mut buffer, &mut f)? < end {
                return Ok(()); // shorter than its size: the size check after says how
            }
        }
        offset += window;
        pace.after(offset);
    }
    Ok(())
}

/// True when every page of `[offset, offset + len)` of `file` (offset
/// page-aligned) is in the page cache: asked with `cachestat(2)` (Linux 6.5+;
/// no mapping, so no TLB shootdown on the other cores' hashing threads: measured
/// a few percent of a cold audit), else with `mincore` on a mapping.
pub(crate) fn is_resident(file: &File, offset: u64, len: u64) -> io::Result<bool> {
    if len == 0 {
        return Ok(true);
    }
    if let Some(resident) = cached_by_cachestat(file, offset, len) {
        return Ok(resident);
    }
    Ok(Mapping::new(file, offset, len)?.resident())
}

/// `cachestat(2)`'s answer for the range, or None where the kernel (or this
/// architecture's syscall table, as far as ferry knows it) has no such call.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[allow(unsafe_code)]
fn cached_by_cachestat(file: &File, offset: u64, len: u64) -> Option<bool> {
    use std::os::fd::AsRawFd;
    /// The same number in the generic and the x86_64 tables.
    const SYS_CACHESTAT: libc::c_long = 451;
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    let range = Range { off: offset, len };
    let mut stat = Stat::default();
    // SAFETY: the kernel reads `range` and writes `stat`, both live, properly
    // laid out (`struct cachestat_range`, `struct cachestat`) for the call;
    // the descriptor is borrowed and valid. An old kernel answers ENOSYS.
    let r = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const Range,
            &mut stat as *mut Stat,
            0 as libc::c_uint,
        )
    };
    if r != 0 {
        return None;
    }
    // SAFETY: sysconf only reads its integer argument.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
        .ok()
        .filter(|p| *p > 0)?;
    let pages = (offset + len - 1) / page - offset / page + 1;
    Some(stat.nr_cache >= pages)
}

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
fn cached_by_cachestat(_file: &File, _offset: u64, _len: u64) -> Option<bool> {
    None
}

/// A read-only shared mapping of `len` bytes of a file from a page-aligned
/// offset, unmapped on drop.
pub(crate) struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    #[allow(unsafe_code)]
    pub(crate) fn new(file: &File, offset: u64, len: u64) -> io::Result<Mapping> {
        use std::os::fd::AsRawFd;
        let offset = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large to map"))?;
        let len = usize::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large to map"))?;
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map an empty file",
            ));
        }
        // SAFETY: a fresh read-only mapping chosen by the kernel (null hint) of an
        // open descriptor (the kernel checks the offset's alignment); nothing else
        // aliases it. The result is checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: advice on the mapping just made, within its length; a hint only.
        let _ = unsafe { libc::madvise(ptr, len, libc::MADV_SEQUENTIAL) };
        Ok(Mapping { ptr, len })
    }

    /// True when every page of the mapping is in the page cache (`mincore`;
    /// false when the kernel will not say).
    #[allow(unsafe_code)]
    fn resident(&self) -> bool {
        let pages = self.len.div_ceil(4096);
        let mut vec = vec![0u8; pages];
        // SAFETY: `ptr` is a live mapping of `len` bytes; `vec` has one byte per
        // page of it (4096 is the smallest page size Linux uses on x86_64/aarch64).
        let r = unsafe { libc::mincore(self.ptr, self.len, vec.as_mut_ptr()) };
        r == 0 && vec.iter().all(|b| b & 1 == 1)
    }

    #[allow(unsafe_code)]
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is a live PROT_READ mapping of `len` bytes until `self`
        // is dropped, and the slice borrows `self`. Its contents can change only
        // if another process writes the file (see the module doc).
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.len) }
    }
}

// SAFETY: the mapping is read-only and owned; sharing `&[u8]` views across
// threads (update_rayon) is as safe as sharing any immutable byte slice.
#[allow(unsafe_code)]
unsafe impl Sync for Mapping {}
#[allow(unsafe_code)]
unsafe impl Send for Mapping {}

impl Drop for Mapping {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no slice of it
        // outlives `self` (they borrow it).
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

/// Asks the kernel to start reading `[offset, offset + len)` of `file` now; a hint only.
#[allow(unsafe_code)]
fn advise_will_need(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return;
    };
    // SAFETY: as in `advise_sequential`: integer arguments and a borrowed, valid descriptor.
    let _ =
        unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_WILLNEED) };
}

/// Asks the kernel for a larger read-ahead (cold media read faster); a hint only.
#[allow(unsafe_code)]
pub(crate) fn advise_sequential(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is
    // valid for the duration of the call because `file` is borrowed.
    let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
}

/// Drops `f`'s pages from the page cache (tests of cold reads; a hint, so a
/// test checks residency before relying on it).
#[cfg(test)]
#[allow(unsafe_code)]
pub(crate) fn evict_from_page_cache(f: &File) {
    use std::os::fd::AsRawFd;
    f.sync_all().unwrap();
    // SAFETY: advice on an open descriptor; a hint only.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut t = tempfile::NamedTempFile::new().unwrap();
        t.write_all(bytes).unwrap();
        t.flush().unwrap();
        let f = File::open(t.path()).unwrap();
        (t, f)
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 253) as u8).collect()
    }

    /// Sizes around every boundary: empty, below and above one buffer, the
    /// mapping threshold and a window.
    const SIZES: [usize; 7] = [
        0,
        1,
        READ_BUFFER - 1,
        READ_BUFFER + 1,
        MMAP_MIN as usize + 4097,
        MMAP_WINDOW + 12_345,
        3 * READ_BUFFER,
    ];

    #[test]
    fn every_way_feeds_every_byte_once_in_order() {
        for len in SIZES {
            let bytes = data(len);
            let (_t, f) = file_with(&bytes);
            let mut plain = Vec::new();
            feed_file(&f, |c| plain.extend_from_slice(c)).unwrap();
            assert!(plain == bytes, "plain, {len} bytes");
            let mut ahead = Vec::new();
            feed_file_read_ahead(&f, |c| ahead.extend_from_slice(c)).unwrap();
            assert!(ahead == bytes, "read-ahead, {len} bytes");
            // In the page cache (just written) and evicted (read with pread).
            for evicted in [false, true] {
                if evicted {
                    evict_from_page_cache(&f);
                }
                let mut mapped = Vec::new();
                feed_file_resident_mapped(&f, len as u64, &mut Unpaced, |c| {
                    mapped.extend_from_slice(c)
                })
                .unwrap();
                assert!(
                    mapped == bytes,
                    "resident-mapped, {len} bytes, evicted {evicted}"
                );
            }
            for parallel in [false, true] {
                assert_eq!(
                    blake3_file(&f, len as u64, parallel, &mut Unpaced).unwrap(),
                    blake3::hash(&bytes),
                    "blake3, {len} bytes, parallel {parallel}"
                );
            }
        }
    }

    #[test]
    fn a_flipped_byte_changes_every_hash() {
        let len = MMAP_WINDOW + 12_345;
        let bytes = data(len);
        for at in [0, len / 2, len - 1] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 1;
            let (_t, f) = file_with(&flipped);
            let mut sha = crate::Hasher::new(crate::Algorithm::Sha256);
            feed_file_read_ahead(&f, |c| sha.update(c)).unwrap();
            assert_ne!(sha.finish(), crate::Digest::sha256_of(&bytes), "at {at}");
            let mut sha = crate::Hasher::new(crate::Algorithm::Sha256);
            feed_file_resident_mapped(&f, len as u64, &mut Unpaced, |c| sha.update(c)).unwrap();
            assert_ne!(sha.finish(), crate::Digest::sha256_of(&bytes), "at {at}");
            for parallel in [false, true] {
                assert_ne!(
                    blake3_file(&f, len as u64, parallel, &mut Unpaced).unwrap(),
                    blake3::hash(&bytes),
                    "at {at}, parallel {parallel}"
                );
            }
        }
    }

    /// A blob over two blake3 leaves: hashed on one thread and leaf by leaf on
    /// every thread, both give blake3's hash; a byte flipped in the last leaf
    /// changes it.
    #[test]
    fn blake3_over_several_parallel_windows_is_the_whole_files() {
        let len = 2 * LEAF as usize + 4097;
        let mut bytes: Vec<u8> = (0..len).map(|i| (i >> 12) as u8 ^ i as u8).collect();
        let (_t, f) = file_with(&bytes);
        for parallel in [false, true] {
            assert_eq!(
                blake3_file(&f, len as u64, parallel, &mut Unpaced).unwrap(),
                blake3::hash(&bytes),
                "parallel {parallel}"
            );
        }
        bytes[len - 3] ^= 1;
        let (_t, f) = file_with(&bytes);
        assert_eq!(
            blake3_file(&f, len as u64, true, &mut Unpaced).unwrap(),
            blake3::hash(&bytes)
        );
    }

    /// The choice between hashing in place and reading: a window just read is
    /// resident, the same window after eviction is not.
    #[test]
    fn residency_is_seen_per_window() {
        let bytes = data(MMAP_WINDOW);
        let (_t, f) = file_with(&bytes);
        feed_file(&f, |_| {}).unwrap();
        assert!(Mapping::new(&f, 0, MMAP_WINDOW as u64).unwrap().resident());
        assert!(is_resident(&f, 0, MMAP_WINDOW as u64).unwrap());
        assert_ne!(cached_by_cachestat(&f, 0, MMAP_WINDOW as u64), Some(false));
        evict_from_page_cache(&f);
        assert!(!Mapping::new(&f, 0, MMAP_WINDOW as u64).unwrap().resident());
        assert!(!is_resident(&f, 0, MMAP_WINDOW as u64).unwrap());
        assert_ne!(cached_by_cachestat(&f, 0, MMAP_WINDOW as u64), Some(true));
        // One page read back: that page is resident, the window is not.
        let mut page = [0u8; 4096];
        f.read_at(&mut page, 8192).unwrap();
        assert!(is_resident(&f, 8192, 4096).unwrap());
        assert!(!is_resident(&f, 0, MMAP_WINDOW as u64).unwrap());
    }

    #[test]
    fn resident_mapped_refuses_a_file_whose_size_is_not_the_one_given() {
        let bytes = data(MMAP_MIN as usize * 2);
        let (_t, f) = file_with(&bytes);
        let e = feed_file_resident_mapped(&f, MMAP_MIN + 5, &mut Unpaced, |_| {}).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn blake3_refuses_a_file_whose_size_is_not_the_one_given() {
        let bytes = data(MMAP_MIN as usize * 2);
        let (_t, f) = file_with(&bytes);
        // Hashing the first `len` bytes of a longer file must not pass as the whole.
        for parallel in [false, true] {
            let e = blake3_file(&f, MMAP_MIN + 5, parallel, &mut Unpaced).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
            let e = blake3_file(&f, 10, parallel, &mut Unpaced).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        }
    }
}
