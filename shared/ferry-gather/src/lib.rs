//! ferry-gather: `ferry-pack`'s gathering. One job: bring the images asked
//! for from their sources into a cache store (a plain ferry store,
//! `$XDG_CACHE_HOME/ferry/pack` by default), verified, and hand them to the
//! package writer (`ferry_package::pack`) as [`Gathered::pack_inputs`].
//!
//! Sources: registries (references by tag or by digest, several hosts, one
//! client each: [`ferry_registry::source::RegistrySource`]) and local ones
//! (`--from`: a store or OCI layout directory, copied on the engine; any
//! archive or package `ferry-export` reads, through the importer).
//!
//! Invariants (each tested here, in `tests/`, or end to end in
//! `tests/e2e/pack.rs`):
//! 1. A tag is resolved to a digest once per run (one `GET` of the manifest
//!    by tag); the image records both what was asked and the digest.
//! 2. Every byte pulled is hashed as it arrives and checked against the
//!    digest asked for before it reaches a final path in the cache; a
//!    mismatch is an error naming the repository and the digest.
//! 3. The cache is the resume: what it holds (a file at a final path) is
//!    never fetched again, so a rerun after kill -9 fetches only what is
//!    missing; manifests are fetched into it before any blob, and images are
//!    named in its `index.json` only once complete (the engine's names-last).
//! 4. `--platform` never rewrites a manifest: an index keeps its other
//!    fields and only the chosen children, as a new document whose digest is
//!    reported beside the source's; single manifests are kept as they are.
//! 5. References name their registry: a reference without a host is an
//!    error, never a silent `docker.io`.
//! 6. Bounded memory: blobs are streamed (a few MiB of buffers per job),
//!    manifests are at most 4 MiB.

pub mod error;
pub mod gather;
pub mod local;
pub mod platform;
pub mod request;

pub use error::PackError;
pub use gather::{
    gather_registries, gather_registries_alongside, Arrivals, Gathered, GatheredImage, PackEvent,
    PackOptions,
};
pub use local::gather_local;
pub use platform::PlatformSpec;
pub use request::{parse_reference, read_list, Request};
