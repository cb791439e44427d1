//! ferry-testkit: test-only support for ferry. Never a dependency of non-test code.
//!
//! Owns:
//! - the seeded fixture generator ([`generate_layout`]): realistic OCI image
//!   layouts with OCI and Docker schema 2 images, multi-arch indexes, gzip and
//!   zstd layers that are real tar archives, shared base layers;
//! - package writers ([`write_package`]): plain/gzip/xz/multi-block xz/zstd tars
//!   of a layout, legacy `docker save` archives, directory copies;
//! - a hostile package corpus ([`write_hostile_corpus`]) of small packages that
//!   each break exactly one rule;
//! - OCI 1.1 referrers and cosign-style `sha256-<hex>.sig` tags attached to
//!   generated images ([`add_referrer`], [`add_cosign_tag`]);
//! - a strict layout verifier ([`verify_layout`]) for tests;
//! - the real-registry harness ([`registry`]), a fault-injecting proxy
//!   ([`faults`]) and a second origin that blob redirects point to
//!   ([`blob_origin`]);
//! - an in-process fake registry with scripted quirks ([`fake_registry`]) for
//!   fast client tests that assert exact request sequences;
//! - the `ferry-fixture` binary, a thin CLI over the above.
//!
//! Invariants:
//! 1. Deterministic: the same [`FixtureSpec`] (seed included) yields byte-identical
//!    blobs, layouts and packages (fixed tar headers, sorted entries, one
//!    `ChaCha8Rng` per blob seeded from `sha256(seed || label)`).
//! 2. Bounded memory: layers and packages are streamed, so GB-sized fixtures
//!    cost disk, not RAM. Only JSON documents are held whole.
//! 3. Digests are of exact written bytes: every blob file's sha256 is its name and
//!    every descriptor's size is its blob's length.

mod image;
mod layer;
mod layout;
mod package;
mod referrer;
mod rng;
mod tario;
mod units;
mod xzstore;

pub mod blob_origin;
pub mod fake_registry;
pub mod faults;
pub mod hostile;
pub mod registry;

pub use hostile::{write_hostile_corpus, HostileCase};
pub use image::{generate_layout, Fixture, FixtureSpec, GeneratedImage};
pub use layout::{blob_path, hash_file, read_index, verify_layout, LayoutSummary};
pub use package::{write_package, DockerArchiveEntry, PackageFormat, PackageOptions};
pub use referrer::{add_cosign_tag, add_referrer, EMPTY_CONFIG_MEDIA_TYPE};
pub use tario::FIXED_MTIME;
pub use units::parse_size;
