//! What a copy tells while it runs (events) and when it ends (the report),
//! and how it fails.

use ferry_store::{Digest, StoreError};
use serde::Serialize;

use crate::plan::PlanError;
use crate::sink::SinkError;

/// Something that happened, for progress output (`--json` prints them as JSON lines).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum CopyEvent {
    /// A blob was already in the repository.
    BlobSkipped {
        /// Repository.
        repository: String,
        /// Blob.
        digest: Digest,
        /// Its size.
        size: u64,
    },
    /// A blob was mounted from another repository.
    BlobMounted {
        /// Repository.
        repository: String,
        /// Blob.
        digest: Digest,
        /// Source repository.
        from: String,
        /// Its size.
        size: u64,
    },
    /// A blob was uploaded.
    BlobUploaded {
        /// Repository.
        repository: String,
        /// Blob.
        digest: Digest,
        /// Its size.
        size: u64,
        /// Offset a previous session was resumed from.
        resumed_from: u64,
    },
    /// An image's tag already points at the source's digest: nothing to do.
    ImageUpToDate {
        /// Source reference.
        source: String,
        /// Destination reference.
        target: String,
        /// Manifest digest.
        digest: Digest,
    },
    /// An image is complete and tagged.
    ImagePushed {
        /// Source reference.
        source: String,
        /// Destination reference.
        target: String,
        /// Manifest digest.
        digest: Digest,
    },
    /// An unnamed artifact whose subject is not an image being copied (or
    /// that has no subject): nothing says where it belongs.
    ReferrerSkipped {
        /// The artifact's manifest.
        digest: Digest,
        /// Why.
        reason: String,
    },
    /// How a single-pass source is being read, and why (streamed; blobs held
    /// until `index.json` arrives; a second read).
    ReadPath {
        /// `stream`, `holding` or `second-read`.
        path: String,
        /// Why this path.
        reason: String,
    },
    /// The holding repository was cleaned after a complete copy (`--clean-holding`).
    HoldingCleaned {
        /// The holding repository.
        repository: String,
        /// Blobs removed from it.
        removed: u64,
        /// Blobs the sink would not delete (deletes disabled).
        kept: u64,
    },
    /// A request or a read is being retried.
    Retry {
        /// What happened (redacted).
        message: String,
    },
}

/// One image's result.
#[derive(Debug, Clone, Serialize)]
pub struct CopiedImage {
    /// Source reference.
    pub source: String,
    /// Destination reference.
    pub target: String,
    /// Manifest digest (unchanged from the source).
    pub digest: Digest,
}

/// What a copy did (or, for a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyReport {
    /// Images.
    pub images: Vec<CopiedImage>,
    /// Blobs uploaded.
    pub blobs_uploaded: u64,
    /// Blobs already present.
    pub blobs_skipped: u64,
    /// Blobs mounted from another repository.
    pub blobs_mounted: u64,
    /// Bytes of blobs uploaded (or to upload, in a dry run).
    pub bytes_uploaded: u64,
    /// Manifests and indexes pushed (by digest).
    pub manifests_pushed: u64,
    /// Tags set (image tags and referrers' fallback tags `sha256-<hex>`).
    pub tags_set: u64,
    /// Referrers (signatures, SBOMs, attestations) carried with their images,
    /// counted once per repository.
    pub referrers: u64,
    /// Images whose tag already pointed at the right digest (not re-checked without --force).
    pub images_up_to_date: u64,
    /// Tokens fetched from the token service.
    pub tokens_fetched: u64,
    /// Wall time.
    pub seconds: f64,
    /// The blob phase: from the start of the first blob upload to the end of
    /// the last one (0 when nothing was uploaded). `bytes_uploaded` over this
    /// is the transfer rate while blobs were moving, without the presence
    /// checks before and the manifests after.
    pub blob_seconds: f64,
    /// True for a dry run.
    pub dry_run: bool,
}

/// A copy failure, with the image and blob it concerns.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The source's images are incomplete.
    #[error("the source is incomplete; run ferry-export again or ferry-verify it: {0}")]
    Incomplete(String),
    /// No plan could be made.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The sink failed for one image or blob.
    #[error("{context}: {source}")]
    Sink {
        /// Image and blob concerned.
        context: String,
        /// What the sink said.
        #[source]
        source: SinkError,
    },
    /// A single-pass source failed (corrupt, truncated or hostile input).
    #[error(transparent)]
    Source(Box<dyn std::error::Error + Send + Sync>),
}

impl CopyError {
    /// A network failure worth another attempt (not a refusal).
    pub fn is_transient(&self) -> bool {
        matches!(self, CopyError::Sink { source, .. } if source.is_transient())
    }

    /// Wraps a sink failure with what it concerns.
    pub fn sink(context: impl Into<String>) -> impl FnOnce(SinkError) -> CopyError {
        let context = context.into();
        move |source| CopyError::Sink { context, source }
    }
}
