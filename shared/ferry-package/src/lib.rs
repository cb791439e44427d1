//! ferry-package: reads image packages safely into a ferry store.
//!
//! Owns format detection by content (tar, tar.gz, tar.xz single- and
//! multi-block with threaded decoding, tar.zst, OCI layout directories,
//! docker-archive legacy and Docker 25+ layouts, packages holding one image
//! archive per image: [`nested`]), the tar safety rules, image naming, the
//! free-space estimate, and compressing a staging store's plain-tar layers
//! ([`compress_layers`]).
//!
//! Invariants:
//! 1. One streaming pass over the package; memory does not grow with its size.
//! 2. Every blob is hashed as it streams and is refused (typed error with the
//!    entry name, expected and actual digest) on any digest or size mismatch.
//! 3. Nothing is written outside the destination store: entry names are never
//!    used as output paths, and traversal, absolute names, links, devices and
//!    FIFOs make the whole package refused.
//! 4. Names last: images are named in the store's `index.json` only after every
//!    blob of their graph is verified in the store.

mod assemble;
pub mod audit;
pub mod collect;
pub mod compress_layers;
pub mod decompress;
pub mod detect;
pub mod entries;
pub mod entry_rules;
pub mod error;
pub mod estimate;
pub mod header_guard;
pub mod import;
pub mod nested;
pub mod pack;
pub mod package_source;
pub mod stage;
pub mod volume;

pub use collect::{PresentCheck, ReplacedBlob};
pub use detect::{detect, Compression, PackageFormat};
pub use error::PackageError;
pub use import::{import_package, import_volume_set, ImportOptions, ImportReport, ImportedImage};
