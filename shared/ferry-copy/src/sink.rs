//! Where bytes go: the operations the executor and the comparison need from
//! a destination (a registry, a store), and nothing about how it is reached.
//!
//! Invariants for implementers: a write is durable when it returns `Ok`;
//! `put_blob` verifies (or has the destination verify) the digest; a manifest
//! is written as its exact bytes; reads never write.

use std::io::Read;

use ferry_store::{Descriptor, Digest};

/// Opens a blob's bytes at an offset (again for each attempt or resume).
pub type BlobOpener<'a> = &'a (dyn Fn(u64) -> std::io::Result<Box<dyn Read + Send>> + Sync);

/// A blob's bytes, as the source can give them.
pub enum Body<'a> {
    /// Re-openable at any offset (a file of a store, bytes in memory): the sink
    /// may retry and resume.
    Reopen(BlobOpener<'a>),
    /// Re-openable like [`Body::Reopen`], and the reader opened at offset 0
    /// checks its own bytes against the descriptor (size and digest): its
    /// last read fails with `InvalidData` when they are not the blob asked
    /// for (a [`crate::source::Source`] whose `checks_blobs` is true). A sink
    /// that reads to the end before committing may rely on that instead of
    /// hashing the bytes a second time.
    ReopenChecked(BlobOpener<'a>),
    /// Readable once, from the start (a package being decompressed).
    Once(&'a mut dyn Read),
    /// Not available (streamed past already): only a mount can make it present.
    Gone,
}

/// What `put_blob` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPut {
    /// Mounted from another repository of the sink: no bytes sent.
    Mounted,
    /// Uploaded (`resumed_from` bytes were already there from an earlier session).
    Uploaded {
        /// Offset a previous session was resumed from.
        resumed_from: u64,
    },
}

/// What kind of failure a sink reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkErrorKind {
    /// A network failure worth another attempt later (a reset, a stall).
    Transient,
    /// A refusal or a fault that another attempt will not fix.
    Permanent,
    /// The blob's bytes were needed (a mount was refused) but the body had
    /// none ([`Body::Gone`]): deliver it again from another read.
    NeedsBytes,
    /// Bytes read back from the sink do not have the digest asked for.
    Mismatch {
        /// What they hash to.
        actual: String,
    },
}

/// A failure of a sink, with its cause.
#[derive(Debug, thiserror::Error)]
#[error("{inner}")]
pub struct SinkError {
    /// What kind of failure.
    pub kind: SinkErrorKind,
    /// The sink's own error (its message is this error's message).
    #[source]
    pub inner: Box<dyn std::error::Error + Send + Sync>,
}

impl SinkError {
    /// Wraps a sink's own error.
    pub fn new(
        kind: SinkErrorKind,
        inner: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> SinkError {
        SinkError {
            kind,
            inner: inner.into(),
        }
    }

    /// True for a failure worth another attempt.
    pub fn is_transient(&self) -> bool {
        self.kind == SinkErrorKind::Transient
    }
}

/// A destination for images.
pub trait Sink: Sync {
    /// Checks that the sink is reachable (and credentials work) before any work.
    fn ping(&self) -> Result<(), SinkError> {
        Ok(())
    }
    /// The digest `reference` (a tag or a digest) resolves to in `repository`, if any.
    fn manifest_digest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Digest>, SinkError>;
    /// The exact bytes of a manifest, if present (by digest: checked against it).
    fn get_manifest(&self, repository: &str, reference: &str)
        -> Result<Option<Vec<u8>>, SinkError>;
    /// Writes a manifest (its exact bytes) under `reference` (a digest or a tag).
    fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), SinkError>;
    /// Whether `repository` holds the blob with its size.
    fn has_blob(&self, repository: &str, desc: &Descriptor) -> Result<bool, SinkError>;
    /// Makes the blob present in `repository`: mounted from `mount_from` where
    /// the sink can, else written from `body`.
    fn put_blob(
        &self,
        repository: &str,
        desc: &Descriptor,
        mount_from: Option<&str>,
        body: Body<'_>,
    ) -> Result<BlobPut, SinkError>;
    /// Reads a blob back, as the sink serves it (not verified: the caller hashes it).
    fn read_blob(
        &self,
        repository: &str,
        desc: &Descriptor,
    ) -> Result<Box<dyn Read + Send + '_>, SinkError>;
    /// The tags of a repository.
    fn list_tags(&self, repository: &str) -> Result<Vec<String>, SinkError>;
    /// What the sink is, for messages ("registry HOST:PORT").
    fn describe(&self) -> String {
        "the destination".to_owned()
    }
    /// A repository where blobs may wait before the images that need them are
    /// known (a package whose `index.json` comes last); they are then mounted
    /// into each image's repository. `None`: the sink has none.
    fn holding_repository(&self) -> Option<String> {
        None
    }
    /// Removes a blob from a repository where the sink allows it: `Ok(false)`
    /// when it does not (deletes disabled), `Ok(true)` when removed.
    fn remove_blob(&self, _repository: &str, _desc: &Descriptor) -> Result<bool, SinkError> {
        Ok(false)
    }
    /// True for a sink that only counts writes ([`crate::DryRun`]): writes
    /// need no bytes (a single-pass source stops reading once the plan is
    /// known) and none is reported as done.
    fn is_dry_run(&self) -> bool {
        false
    }
    /// Tokens fetched from a token service so far (for reports).
    fn tokens_fetched(&self) -> u64 {
        0
    }
}
