//! One sequential reader ahead of many hashers: the blobs of an audit read
//! from the disk in one stream, in the order the hashers take them, so that
//! hashing (on every core) finds its bytes in the page cache.
//!
//! Why: on a cold cache, one hashing thread per core each reading its own blob
//! puts several interleaved streams on the disk, and each thread waits for its
//! reads between hashing them; measured at about 70% of `cat`'s throughput
//! over the same files (BENCHMARKS.md). One reader reading the blobs in turn,
//! as `cat` does, keeps the disk on one sequential stream while the hashers
//! only hash.
//!
//! The same reader serves one big blob hashed in parts on every thread
//! ([`Prefetch::run_file`], `crate::blake3_leaves`): each part's ticket is
//! the part's offset and length on the file's line.
//!
//! The blobs are laid end to end on one line of bytes (a blob's `base` is the
//! sum of the sizes before it). The reader advances `read_to` window by
//! window; a hasher waits (through its [`Ticket`], a [`Pace`]) until the
//! window it wants is read, and reports each window it has hashed.
//!
//! Invariants:
//! - Bounded: the reader is never more than `budget` bytes of page cache ahead
//!   of what the hashers have consumed, so an audit cannot evict its own
//!   bytes before they are hashed on a small machine. The budget is at least
//!   two windows per hasher plus one, so a reader waiting for the budget and
//!   hashers waiting for the reader cannot wait for each other.
//! - Advisory only: the reader's reads are thrown away; the hashers read the
//!   bytes they hash themselves (mapped or with `pread`) and every check
//!   stands on those. A reader that fails (a file missing, an I/O error) skips
//!   that blob; its hasher reads (and reports) it itself.
//! - The reader runs at a higher priority than the hashers where the process
//!   may raise it (root): it needs little CPU but must get it at once.
//! - Never stuck: a ticket dropped before its end consumes the rest of its
//!   blob, and [`Prefetch::stop`] (or the end of the line) releases every
//!   waiter and ends the reader.

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};

use crate::file_hash::{
    advise_sequential, feed_file_resident_mapped, feed_range, is_resident, Pace, MMAP_WINDOW,
};

/// Bytes the reader copies out at once (and throws away). Small on purpose, as
/// `cat`'s: the copy stays in the CPU's cache. Measured cold, 1 GiB in 16
/// blobs: `--fast` 0.39–0.44 s against 0.43–0.46 s with 1 MiB reads (`cat`
/// 0.36–0.41 s in the same runs).
const PREFETCH_READ: usize = 128 << 10;

/// How many windows ahead of its reads the reader asks whether a window is
/// in the page cache: past the kernel's read-ahead of those reads (twice the
/// device's `read_ahead_kb` with `POSIX_FADV_SEQUENTIAL`; 16 MiB here).
const CHECK_AHEAD: u64 = 3;

/// How far (bytes of page cache) a reader may run ahead of its hashers by
/// default (raised for many hashers: [`Prefetch::new`]).
pub const PREFETCH_BUDGET: u64 = 128 << 20;

#[derive(Debug, Default)]
struct State {
    /// Bytes of the line read (or found resident) so far.
    read_to: u64,
    /// Bytes of the line the hashers are done with.
    consumed: u64,
    /// The reader ended or was stopped: nobody waits for it any more.
    stopped: bool,
    /// Line offsets of the blobs the reader gave up on (open or read failed):
    /// their windows count as passed, not as read.
    skipped: HashSet<u64>,
    /// Bytes read from files (windows found resident are not read).
    read_bytes: u64,
}

/// A reader ahead of the hashers; see the module doc.
#[derive(Debug)]
pub struct Prefetch {
    state: Mutex<State>,
    moved: Condvar,
    budget: u64,
}

impl Prefetch {
    /// A reader for `hashers` threads, at most `budget` bytes ahead of them
    /// (raised to the least budget that cannot deadlock).
    pub fn new(hashers: usize, budget: u64) -> Prefetch {
        let least = (2 * hashers.max(1) as u64 + 1) * MMAP_WINDOW as u64;
        Prefetch {
            state: Mutex::new(State::default()),
            moved: Condvar::new(),
            budget: budget.max(least),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking hasher cannot leave the counters half-updated (plain integers).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads `blobs` (path and size, laid end to end in this order) into the
    /// page cache on the calling thread, window by window, skipping windows
    /// already resident; returns when all are read or [`Prefetch::stop`] was called.
    pub fn run(&self, blobs: &[(PathBuf, u64)]) {
        raise_own_priority();
        let mut buffer = vec![0u8; PREFETCH_READ];
        let mut base = 0u64;
        for (path, len) in blobs {
            let end = base + len;
            if self.read_blob(path, base, *len, &mut buffer).is_err() {
                // The hasher reads this blob itself and reports what is wrong.
                self.state().skipped.insert(base);
                self.advance(end);
            }
            if self.state().stopped {
                return;
            }
            base = end;
        }
        self.stop();
    }

    /// Reads the first `len` bytes of one open file, as [`Prefetch::run`] does
    /// a line of one blob (for hashers taking parts of it: [`Prefetch::ticket`]
    /// with the part's offset and length).
    pub fn run_file(&self, file: &File, len: u64) {
        raise_own_priority();
        let mut buffer = vec![0u8; PREFETCH_READ];
        // On a failure, `read_to` stays at the last window read: the hashers of
        // the parts after it, released by `stop`, read (and report) them themselves.
        let _ = self.read_file(file, 0, len, &mut buffer);
        self.stop();
    }

    fn read_blob(&self, path: &PathBuf, base: u64, len: u64, buffer: &mut [u8]) -> io::Result<()> {
        self.read_file(&File::open(path)?, base, len, buffer)
    }

    /// Reads one file's windows in order, skipping those already in the page
    /// cache. A window's residency is asked [`CHECK_AHEAD`] windows before the
    /// reader gets to it, beyond the kernel's read-ahead of the reader's own
    /// reads: `cachestat` counts pages still being read as cached, so asking
    /// about the window being read ahead made the reader skip it and the
    /// hashers fault its rest in with small reads (measured on one 4 GiB blob
    /// read cold: 2.7x the disk requests of `cat` for the same bytes, 1 MiB
    /// pieces against `cat`'s 4 MiB, and 75–80% of its throughput). Asking
    /// ahead, the reader reads only the windows that were not resident (a
    /// file partly evicted is not read again whole).
    fn read_file(&self, file: &File, base: u64, len: u64, buffer: &mut [u8]) -> io::Result<()> {
        advise_sequential(file);
        let window = MMAP_WINDOW as u64;
        let windows = len.div_ceil(window);
        let resident = |w: u64| is_resident(file, w * window, (len - w * window).min(window));
        let mut verdicts = std::collections::VecDeque::new();
        for w in 0..CHECK_AHEAD.min(windows) {
            verdicts.push_back(resident(w)?);
        }
        for w in 0..windows {
            let (at, end) = (w * window, ((w + 1) * window).min(len));
            if !self.wait_for_budget(base + end) {
                return Ok(());
            }
            if w + CHECK_AHEAD < windows {
                verdicts.push_back(resident(w + CHECK_AHEAD)?);
            }
            let resident_now = verdicts.pop_front().unwrap_or(false);
            if !resident_now {
                if feed_range(file, at, end, buffer, &mut |_| {})? < end {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                self.state().read_bytes += end - at;
            }
            self.advance(base + end);
        }
        Ok(())
    }

    /// Waits until reading up to `to` keeps the reader within its budget;
    /// false if stopped meanwhile.
    fn wait_for_budget(&self, to: u64) -> bool {
        let mut s = self.state();
        while !s.stopped && to.saturating_sub(s.consumed) > self.budget {
            s = self.moved.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        !s.stopped
    }

    fn advance(&self, to: u64) {
        let mut s = self.state();
        if to > s.read_to {
            s.read_to = to;
            self.moved.notify_all();
        }
    }

    /// Ends the reader (at its next window) and releases every waiting hasher.
    pub fn stop(&self) {
        self.state().stopped = true;
        self.moved.notify_all();
    }

    /// The pace for hashing the blob at `base` on the line, `len` bytes long.
    pub fn ticket(&self, base: u64, len: u64) -> Ticket<'_> {
        Ticket {
            prefetch: self,
            base,
            len,
            consumed: 0,
        }
    }
}

/// Feeds the whole of `file` (`len` bytes by its metadata) to `f` on the
/// calling thread, one window at a time hashed where it lies (mapped), with a
/// reader thread of its own reading it from the disk one sequential stream
/// ahead (the way [`crate::audit`] reads a blob above its fair share when it
/// is not in the page cache). Fails if the file's size is not `len` before
/// or after, or on a read error (from the hasher's own reads: the reader's
/// are advisory).
pub fn feed_file_behind_reader(file: &File, len: u64, f: impl FnMut(&[u8])) -> io::Result<()> {
    let prefetch = Prefetch::new(1, PREFETCH_BUDGET);
    std::thread::scope(|threads| {
        threads.spawn(|| prefetch.run_file(file, len));
        let _stop = StopOnDrop(&prefetch);
        feed_file_resident_mapped(file, len, &mut prefetch.ticket(0, len), f)
    })
}

/// Stops a [`Prefetch`] when dropped (the hashers are done, or one panicked),
/// so that its reader never waits for hashers that are gone.
pub struct StopOnDrop<'a>(pub &'a Prefetch);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// Asks for the calling thread to run before the hashers when both are
/// runnable (nice -5; needs `CAP_SYS_NICE`, e.g. root, else nothing changes).
/// The reader uses little CPU, but each time it waits for the CPU the disk
/// idles: measured on 2 cores with two hashers busy, the disk was 70–77% busy
/// during a cold audit and 80–88% with this (1 GiB: 0.46–0.51 s → 0.42–0.46 s,
/// `cat` 0.37–0.43 s). Lowering the hashers' priority instead measured the
/// same, but would make an audit yield to every other process on the machine.
#[allow(unsafe_code)]
fn raise_own_priority() {
    // SAFETY: setpriority only reads its integer arguments; on Linux a thread id
    // with PRIO_PROCESS names that one thread. Failure (no privilege) is harmless.
    let _ = unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            libc::gettid() as libc::id_t,
            READER_NICE,
        )
    };
}

/// The reader thread's nice value where it may have one ([`raise_own_priority`]).
const READER_NICE: libc::c_int = -5;

/// One hasher's view of the reader for one blob: waits for windows, reports them hashed.
#[derive(Debug)]
pub struct Ticket<'a> {
    prefetch: &'a Prefetch,
    base: u64,
    len: u64,
    consumed: u64,
}

impl Pace for Ticket<'_> {
    fn before(&mut self, end: u64) -> bool {
        let to = self.base + end.min(self.len);
        let p = self.prefetch;
        let mut s = p.state();
        while !s.stopped && s.read_to < to {
            s = p.moved.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.read_to >= to && !s.skipped.contains(&self.base)
    }

    fn after(&mut self, end: u64) {
        let end = end.min(self.len);
        if end > self.consumed {
            let p = self.prefetch;
            let mut s = p.state();
            s.consumed += end - self.consumed;
            self.consumed = end;
            p.moved.notify_all();
        }
    }

    fn reads_ahead(&self) -> bool {
        true
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let len = self.len;
        self.after(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file_hash::evict_from_page_cache;
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn blobs(dir: &std::path::Path, sizes: &[usize]) -> Vec<(PathBuf, u64)> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| {
                let p = dir.join(format!("b{i}"));
                let mut f = File::create(&p).unwrap();
                f.write_all(&vec![i as u8; n]).unwrap();
                (p, n as u64)
            })
            .collect()
    }

    /// Hashers taking blobs in line order, each waiting for its windows, all
    /// finish and see every window read before they hash it; with a budget of
    /// the least size, a slow reader, and a missing file among them.
    #[test]
    fn hashers_wait_for_each_window_and_nobody_waits_forever() {
        let dir = tempfile::tempdir().unwrap();
        let w = MMAP_WINDOW;
        let mut line = blobs(dir.path(), &[3 * w + 5, w, 2 * w, 7, 2 * w + 1]);
        line.insert(2, (dir.path().join("missing"), 5 * w as u64));
        let p = Prefetch::new(2, 0);
        let next = AtomicUsize::new(0);
        let bases: Vec<u64> = line
            .iter()
            .scan(0u64, |b, (_, n)| {
                let at = *b;
                *b += n;
                Some(at)
            })
            .collect();
        let missing_len = line[2].1;
        let hashers = std::thread::scope(|s| {
            s.spawn(|| p.run(&line));
            let hashers: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some((_, len)) = line.get(i) else { break };
                        let mut t = p.ticket(bases[i], *len);
                        let mut at = 0;
                        while at < *len {
                            let end = (at + w as u64).min(*len);
                            let read = t.before(end);
                            assert_eq!(read, i != 2, "blob {i}: read by the reader unless missing");
                            let s = p.state();
                            assert!(s.stopped || s.read_to >= bases[i] + end);
                            // Within the budget, but for the missing blob, skipped unread.
                            assert!(s.read_to.saturating_sub(s.consumed) <= p.budget + missing_len);
                            drop(s);
                            if i == 0 && at == 0 {
                                break; // a hasher that gives up early: its ticket consumes the rest
                            }
                            t.after(end);
                            at = end;
                        }
                    })
                })
                .collect();
            let joined: Vec<_> = hashers.into_iter().map(|h| h.join()).collect();
            p.stop(); // a failed hasher must not leave the reader waiting
            joined
        });
        for h in hashers {
            if let Err(e) = h {
                std::panic::resume_unwind(e);
            }
        }
        let s = p.state();
        let total: u64 = line.iter().map(|(_, n)| n).sum();
        assert_eq!(s.consumed, total);
        assert_eq!(s.read_to, total);
        assert!(s.stopped);
    }

    #[allow(unsafe_code)]
    /// Windows in the page cache are not read again; every other one is,
    /// whole: a file evicted but for two windows in its middle reads the
    /// other four (not everything after the first evicted one), a wholly
    /// resident one nothing, a wholly evicted one everything.
    #[test]
    fn a_reader_reads_the_windows_not_in_the_page_cache_and_only_those() {
        use std::os::fd::AsRawFd;
        let dir = tempfile::tempdir().unwrap();
        let w = MMAP_WINDOW;
        let line = blobs(dir.path(), &[6 * w]);
        let f = File::open(&line[0].0).unwrap();
        let len = line[0].1;
        let read_by_a_reader = || {
            let p = Prefetch::new(1, 16 * w as u64);
            p.run_file(&f, len);
            let s = p.state();
            assert_eq!(s.read_to, len);
            s.read_bytes
        };
        evict_from_page_cache(&f);
        if is_resident(&f, 0, len).unwrap() {
            eprintln!("skipped: this file system keeps evicted pages (tmpfs?)");
            return;
        }
        // SAFETY: advice on an open descriptor: no read-ahead past what the test reads.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_RANDOM) };
        let mut window = vec![0u8; w];
        for i in [1, 4] {
            f.read_exact_at(&mut window, (i * w) as u64).unwrap();
        }
        assert_eq!(read_by_a_reader(), 4 * w as u64, "windows 0, 2, 3 and 5");
        assert_eq!(read_by_a_reader(), 0, "all resident now");
        evict_from_page_cache(&f);
        assert_eq!(read_by_a_reader(), len, "all evicted");
    }

    /// Behind its own reader, every byte is fed once, in order, from the disk
    /// or the page cache; a file of another size is an error, not a digest.
    #[test]
    fn behind_a_reader_every_byte_is_fed_once_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let len = 3 * MMAP_WINDOW + 12_345;
        let path = dir.path().join("blob");
        let bytes: Vec<u8> = (0..len)
            .map(|i| (i % 253) as u8 ^ (i >> 16) as u8)
            .collect();
        std::fs::write(&path, &bytes).unwrap();
        let f = File::open(&path).unwrap();
        for cold in [true, false] {
            if cold {
                evict_from_page_cache(&f);
            }
            let mut fed = Vec::with_capacity(len);
            feed_file_behind_reader(&f, len as u64, |c| fed.extend_from_slice(c)).unwrap();
            assert!(fed == bytes, "cold {cold}: the bytes fed are the file's");
        }
        assert!(feed_file_behind_reader(&f, len as u64 + 1, |_| {}).is_err());
    }

    #[test]
    fn stop_releases_a_waiting_hasher_and_the_reader() {
        let dir = tempfile::tempdir().unwrap();
        let line = blobs(dir.path(), &[8 * MMAP_WINDOW]);
        let p = Prefetch::new(1, 0);
        std::thread::scope(|s| {
            // Nobody consumes: the reader stops at its budget until stopped.
            let reader = s.spawn(|| p.run(&line));
            let mut t = p.ticket(0, line[0].1);
            assert!(t.before(3 * MMAP_WINDOW as u64));
            std::mem::forget(t);
            let waiter = s.spawn(|| {
                let mut t = p.ticket(0, line[0].1);
                // Released by `stop`, its window never read.
                assert!(!t.before(8 * MMAP_WINDOW as u64));
                std::mem::forget(t);
            });
            while p.state().read_to < p.budget {
                std::thread::yield_now();
            }
            p.stop();
            waiter.join().unwrap();
            reader.join().unwrap();
        });
        assert!(p.state().read_to <= p.budget);
    }
}
