//! Deterministic tar headers and hashing/counting writers shared by layers and packages.

use std::io::{self, Write};

use ferry_store::{Algorithm, Digest, Hasher};
use tar::{EntryType, Header};

/// Fixed modification time of every generated tar entry (2021-06-01T00:00:00Z).
pub const FIXED_MTIME: u64 = 1_622_505_600;

/// A ustar header for a regular file with fixed owner, time and the given mode.
pub(crate) fn file_header(size: u64, mode: u32) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::Regular);
    h.set_size(size);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(FIXED_MTIME);
    h
}

/// A ustar header for a directory (mode 0755).
pub(crate) fn dir_header() -> Header {
    let mut h = file_header(0, 0o755);
    h.set_entry_type(EntryType::Directory);
    h
}

/// A header whose name field is set to raw bytes, bypassing the `tar` crate's
/// path checks (which refuse `..` and absolute paths). The checksum is valid.
pub(crate) fn raw_header(name: &[u8], kind: EntryType, size: u64, link: Option<&[u8]>) -> Header {
    let mut h = file_header(size, 0o644);
    h.set_entry_type(kind);
    let old = h.as_old_mut();
    let n = name.len().min(old.name.len());
    old.name[..n].copy_from_slice(&name[..n]);
    if let Some(link) = link {
        let n = link.len().min(old.linkname.len());
        old.linkname[..n].copy_from_slice(&link[..n]);
    }
    h.set_cksum();
    h
}

/// A writer that hashes and counts everything passing through it.
pub(crate) struct HashWriter<W> {
    pub(crate) inner: W,
    hasher: Hasher,
    pub(crate) count: u64,
}

impl<W: Write> HashWriter<W> {
    pub(crate) fn new(inner: W) -> HashWriter<W> {
        HashWriter {
            inner,
            hasher: Hasher::new(Algorithm::Sha256),
            count: 0,
        }
    }

    /// Returns the inner writer, the digest and the byte count.
    pub(crate) fn finish(self) -> (W, Digest, u64) {
        (self.inner, self.hasher.finish(), self.count)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
