//! Typed errors of the package reader. Every one is "bad input" (exit code 2).

use std::path::PathBuf;

use ferry_store::StoreError;

/// Everything that makes a package unreadable or unsafe.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    /// The package path could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The input is not a package ferry understands.
    #[error("{path} is not an image package: {why}")]
    NotAPackage {
        /// The path.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The compressed stream or the tar framing is truncated or corrupt.
    #[error("{path}: truncated or corrupt {format} data (after {offset} bytes of input): {cause}")]
    Corrupt {
        /// The package.
        path: PathBuf,
        /// tar, tar.gz, tar.xz, tar.zst.
        format: &'static str,
        /// Bytes of the package consumed when it failed.
        offset: u64,
        /// Decoder's message.
        cause: String,
    },
    /// An entry is refused by the safety rules (traversal, absolute, link, device, …).
    #[error("unsafe entry {entry:?}: {why}; refusing the whole package")]
    UnsafeEntry {
        /// The entry name as it appears in the archive.
        entry: String,
        /// Which rule it breaks.
        why: String,
    },
    /// A `blobs/` entry whose name is not a valid digest.
    #[error("entry {entry:?}: blob name is not a valid digest: {why}")]
    BadBlobName {
        /// The entry.
        entry: String,
        /// Why.
        why: String,
    },
    /// The same path appears twice.
    #[error("entry {entry:?} appears twice in the package; refusing an ambiguous package")]
    DuplicateEntry {
        /// The entry.
        entry: String,
    },
    /// A metadata file is larger than any real one.
    #[error("entry {entry:?} is {size} bytes, over the {limit}-byte limit for {what}")]
    TooLarge {
        /// The entry.
        entry: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
        /// What kind of file it is.
        what: &'static str,
    },
    /// Malformed JSON or structure in a metadata file.
    #[error("{entry}: {why}")]
    Malformed {
        /// The entry or file.
        entry: String,
        /// What is wrong.
        why: String,
    },
    /// An image has no usable name.
    #[error("image {digest} in {entry} has no name: expected io.containerd.image.name, a full reference in org.opencontainers.image.ref.name, or RepoTags in manifest.json")]
    Unnamed {
        /// The image's digest.
        digest: String,
        /// Where it was listed.
        entry: String,
    },
    /// An image archive inside the package is unreadable or unsafe.
    #[error("in image archive {entry:?} of the package: {inner}")]
    Nested {
        /// The archive's entry in the package.
        entry: String,
        /// What is wrong inside it (naming the inner entry).
        inner: Box<PackageError>,
    },
    /// Problems in the image graphs (missing blobs, size mismatches, bad manifests).
    #[error("{}", format_problems(.0))]
    Graph(Vec<StoreError>),
    /// Writing to the store failed (or content failed verification on the way).
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn format_problems(problems: &[StoreError]) -> String {
    let mut s = format!("{} problem(s) in the package's images:", problems.len());
    for p in problems {
        s.push_str("\n  - ");
        s.push_str(&p.to_string());
    }
    s
}

impl PackageError {
    /// True when the failure is a full disk (rerun after freeing space resumes).
    pub fn is_disk_full(&self) -> bool {
        match self {
            PackageError::Nested { inner, .. } => inner.is_disk_full(),
            other => matches!(other, PackageError::Store(StoreError::DiskFull { .. })),
        }
    }
}

/// The destination cannot hold the package.
#[derive(Debug, thiserror::Error)]
#[error("not enough space on {dest}: the package unpacks to about {unpacked} bytes, {present} of them already in the store, so about {needed} more are needed but only {available} are available; free space (or choose another --to) and rerun")]
pub struct NotEnoughSpace {
    /// The destination directory.
    pub dest: PathBuf,
    /// Estimated unpacked size.
    pub unpacked: u64,
    /// Bytes already in the store.
    pub present: u64,
    /// Bytes still to write.
    pub needed: u64,
    /// Bytes available.
    pub available: u64,
}
