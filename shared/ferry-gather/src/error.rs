//! Typed errors of gathering images for a package.

use std::path::PathBuf;

use ferry_copy::CopyError;
use ferry_package::PackageError;
use ferry_registry::RegistryError;
use ferry_store::StoreError;

/// Why images could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// A line of `--images FILE` or an `--image` value is not a usable reference.
    #[error("{at}: {why}")]
    BadReference {
        /// `FILE:LINE`, or `--image`.
        at: String,
        /// What is wrong and how to write it.
        why: String,
    },
    /// `--images FILE` could not be read.
    #[error("cannot read {path}: {source}")]
    List {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A `--platform` value is not `OS/ARCH[/VARIANT]`.
    #[error("--platform {0:?}: expected OS/ARCH[/VARIANT], e.g. linux/amd64 or linux/arm64/v8")]
    BadPlatform(String),
    /// References the registries do not have (every one named).
    #[error("not found in the registry (HTTP 404): {}; check the repository, tag or digest", .0.join(", "))]
    NotFound(Vec<String>),
    /// An index kept none of its platforms.
    #[error("{reference}: index {digest} has no manifest for {wanted} (it has: {available})")]
    NoPlatform {
        /// The reference.
        reference: String,
        /// The index's digest.
        digest: ferry_store::Digest,
        /// The platforms asked for.
        wanted: String,
        /// The platforms it has.
        available: String,
    },
    /// A registry failed for one reference.
    #[error("{reference}: {source}")]
    Registry {
        /// The reference (or referrer) concerned.
        reference: String,
        /// What the registry client said.
        #[source]
        source: Box<RegistryError>,
    },
    /// A manifest is not what its descriptor says.
    #[error("{what}: {why}")]
    Manifest {
        /// The manifest (reference and digest).
        what: String,
        /// What is wrong.
        why: String,
    },
    /// A local source (`--from`) is not usable.
    #[error("--from {path}: {why}")]
    Local {
        /// The source.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A package or archive given with `--from` could not be read.
    #[error("--from {path}: {source}")]
    Import {
        /// The source.
        path: PathBuf,
        /// The reader's error.
        #[source]
        source: Box<PackageError>,
    },
    /// The copy into the cache failed.
    #[error(transparent)]
    Copy(#[from] CopyError),
    /// The cache store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
