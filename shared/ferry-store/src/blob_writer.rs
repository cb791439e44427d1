//! Atomic, durable blob writes: temp file → verify → fsync → rename → fsync dir.
//!
//! The digest is checked by the writer itself, or — for a writer made with
//! [`Store::new_blob_writer_after_reader_check`] — by the verifying reader
//! that feeds it (the caller's promise: it commits only after that reader's
//! last read returned end-of-data, which it does only for the right bytes).
//! The size is always checked here.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Algorithm, Digest, Hasher};
use crate::error::StoreError;
use crate::journal::JournalEntry;
use crate::layout::Store;

/// A blob being written into a store. Bytes go to a temp file inside the store
/// and through the digest and blake3 hashers; nothing reaches the final path
/// until [`BlobWriter::commit`] has verified digest and size and fsynced.
/// Dropping an uncommitted writer removes its temp file.
pub struct BlobWriter<'s> {
    store: &'s Store,
    tmp_path: PathBuf,
    file: Option<BufWriter<File>>,
    /// `None`: the feeding reader checks the digest (see the module doc).
    hasher: Option<Hasher>,
    blake3: blake3::Hasher,
    written: u64,
}

/// A blob durably stored at its final path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

impl<'s> BlobWriter<'s> {
    pub(crate) fn new(
        store: &'s Store,
        algorithm: Option<Algorithm>,
        tmp_path: PathBuf,
    ) -> Result<Self, StoreError> {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
            .map_err(|e| StoreError::io("create temp blob", &tmp_path, e))?;
        Ok(BlobWriter {
            store,
            tmp_path,
            file: Some(BufWriter::with_capacity(1 << 20, file)),
            hasher: algorithm.map(Hasher::new),
            blake3: blake3::Hasher::new(),
            written: 0,
        })
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes a chunk, hashing it on the way.
    pub fn write_chunk(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        if let Some(h) = &mut self.hasher {
            h.update(bytes);
        }
        self.blake3.update(bytes);
        self.written += bytes.len() as u64;
        let file = self.file.as_mut().expect("file present until commit");
        file.write_all(bytes)
            .map_err(|e| StoreError::io("write temp blob", &self.tmp_path, e))
    }

    /// Verifies the content against `expected` (and `expected_size` when given),
    /// then makes it durable at its final path. `what` names the content in errors.
    pub fn commit(
        self,
        what: &str,
        expected: &Digest,
        expected_size: Option<u64>,
    ) -> Result<StoredBlob, StoreError> {
        let actual = match &self.hasher {
            Some(h) => h.clone().finish(),
            None => expected.clone(), // checked by the feeding reader
        };
        if &actual != expected {
            return Err(StoreError::DigestMismatch {
                what: what.to_owned(),
                expected: expected.clone(),
                actual,
            });
        }
        if let Some(size) = expected_size {
            if size != self.written {
                return Err(StoreError::SizeMismatch {
                    what: what.to_owned(),
                    digest: expected.clone(),
                    expected: size,
                    actual: self.written,
                });
            }
        }
        self.finish_durably(actual)
    }

    /// Stores the content under whatever digest it has (for content whose digest
    /// is not known in advance, such as docker-archive files).
    pub fn commit_computed(self) -> Result<StoredBlob, StoreError> {
        let actual = self
            .hasher
            .clone()
            .expect("commit_computed needs a writer that hashes")
            .finish();
        self.finish_durably(actual)
    }

    fn finish_durably(mut self, digest: Digest) -> Result<StoredBlob, StoreError> {
        let file = self.file.take().expect("file present until commit");
        let file = file
            .into_inner()
            .map_err(|e| StoreError::io("flush temp blob", &self.tmp_path, e.into_error()))?;
        file.sync_all()
            .map_err(|e| StoreError::io("fsync temp blob", &self.tmp_path, e))?;
        drop(file);
        let final_path = self.store.blob_path(&digest);
        let dir = final_path.parent().expect("blob paths have a parent");
        std::fs::rename(&self.tmp_path, &final_path)
            .map_err(|e| StoreError::io("rename blob into place", &final_path, e))?;
        fsync_dir(dir)?;
        let size = self.written;
        let blake3 = self.blake3.finalize().to_hex().to_string();
        self.store.journal().append(&JournalEntry::BlobStored {
            digest: digest.clone(),
            size,
            blake3,
        })?;
        Ok(StoredBlob { digest, size })
    }
}

impl Drop for BlobWriter<'_> {
    fn drop(&mut self) {
        if self.file.is_some() {
            self.file = None;
            let _ = std::fs::remove_file(&self.tmp_path);
        }
    }
}

impl Write for BlobWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_chunk(buf).map_err(|e| match e {
            StoreError::Io { source, .. } => source,
            other => io::Error::other(other.to_string()),
        })?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// fsyncs a directory so a rename inside it is durable.
pub fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("fsync directory", dir, e))
}
