//! Typed errors of the content store.

use std::io;
use std::path::PathBuf;

use crate::descriptor::ManifestError;
use crate::digest::Digest;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O operation on a path failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("create", "rename", "fsync", …).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The device is full.
    #[error("no space left on the device holding {path} ({what} failed); free space and rerun the same command to resume")]
    DiskFull {
        /// The path being written.
        path: PathBuf,
        /// What was being written.
        what: String,
    },
    /// Content hashed to a different digest than expected.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was being checked (entry name or blob).
        what: String,
        /// The digest it should have.
        expected: Digest,
        /// The digest it has.
        actual: Digest,
    },
    /// Content has a different size than its descriptor says.
    #[error("size mismatch for {what} ({digest}): expected {expected} bytes, got {actual}")]
    SizeMismatch {
        /// What was being checked.
        what: String,
        /// Its digest.
        digest: Digest,
        /// Size in the descriptor.
        expected: u64,
        /// Size found.
        actual: u64,
    },
    /// A blob referenced by the graph is not in the store.
    #[error("blob {digest} ({media_type}, {size} bytes) referenced by {parent} is missing")]
    MissingBlob {
        /// The missing blob.
        digest: Digest,
        /// Its media type.
        media_type: String,
        /// Its size.
        size: u64,
        /// Who references it (a reference name or a manifest digest).
        parent: String,
    },
    /// Another process holds the store's lock.
    #[error("store {path} is locked by another ferry process ({holder}); wait for it or stop it")]
    Locked {
        /// The store root.
        path: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
    },
    /// The directory is not an OCI image layout.
    #[error("{path} is not an OCI image layout: {why}")]
    NotALayout {
        /// The directory.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A manifest or index could not be walked.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// `index.json` could not be parsed.
    #[error("{path}: malformed index.json: {source}")]
    BadIndex {
        /// Path of index.json.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}

impl StoreError {
    /// Wraps an I/O error, turning ENOSPC/EDQUOT into [`StoreError::DiskFull`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> StoreError {
        let path = path.into();
        if is_disk_full(&source) {
            return StoreError::DiskFull {
                what: op.to_owned(),
                path,
            };
        }
        StoreError::Io { op, path, source }
    }
}

/// True when an I/O error means the device or quota is full.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == libc::ENOSPC || code == libc::EDQUOT)
        || e.kind() == io::ErrorKind::StorageFull
}
