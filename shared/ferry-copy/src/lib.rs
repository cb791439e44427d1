//! ferry-copy: the copy engine every ferry tool runs on. Copying images is
//! one job, written once: **plan** (which images, their manifests
//! children-first, every blob once with the repositories that need it, the
//! referrers attached to their subjects), then **copy** from a [`Source`]
//! (random access: a store) or a [`SinglePassSource`] (a package read in its
//! own order, with bounded read-ahead) into a [`Sink`] (a registry, a store:
//! [`StoreSink`], `ferry-pack`'s cache),
//! or **compare** a plan with a sink by reads only (`ferry-diff`). A dry run
//! is the [`DryRun`] decorator over any sink, not a flag.
//!
//! Invariants (each tested here or end to end):
//! 1. Children before parents, names last: blobs, then manifests
//!    children-first, then the tag, then the referrers' fallback tags; a
//!    half-finished copy never names an image it does not fully hold.
//! 2. Each blob is sent at most once per run and mounted into the other
//!    repositories that need it; what the sink has is never sent again.
//! 3. Every byte from a single-pass source is verified against its digest
//!    before (spooled) or while (streamed) it is delivered.
//! 4. Bounded memory: manifests (≤ 4 MiB each, 256 MiB in all before the plan
//!    is known) and the read-ahead's 64 MiB, whatever the blob sizes.
//! 5. A failure or panic of any thread stops the others; no thread waits for
//!    work that cannot come.
//! 6. The report counts what the sink was asked to do: a [`DryRun`] of a copy
//!    counts what the real copy then does.
//!
//! This crate knows no transport: no HTTP, no tar, no flags.

pub mod compare;
pub mod dry_run;
pub mod executor;
pub mod meter;
pub mod plan;
pub mod pool;
pub mod referrer;
pub mod report;
pub mod sink;
pub mod source;
pub mod store_sink;
pub mod stream;

mod chunk_pool;
mod spool;

pub use compare::{compare, DiffOptions, DiffReport};
pub use dry_run::DryRun;
pub use executor::{copy, CopyOptions, Executor};
pub use plan::{plan, Destination, ImagePlan, Plan};
pub use report::{CopiedImage, CopyError, CopyEvent, CopyReport};
pub use sink::{BlobPut, Body, Sink, SinkError, SinkErrorKind};
pub use source::{Source, StoreSource};
pub use store_sink::StoreSink;
pub use stream::{copy_stream, SinglePassSource, StreamOutcome};

#[cfg(test)]
mod engine_tests;
#[cfg(test)]
mod testing;
