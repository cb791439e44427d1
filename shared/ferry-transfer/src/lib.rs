//! ferry-transfer: copies that need both a package reader (ferry-package) and
//! a registry client (ferry-registry), kept out of both so that neither
//! depends on the other.
//!
//! Owns the streaming push: a `.tar.xz`/`.tar.zst` package whose `index.json`
//! and manifests come before its layers is pushed in one decompression pass,
//! with no scratch copy; every blob is hashed as it streams and verified by the
//! registry. The package is decompressed on the walking thread (xz with one
//! decoder thread: its memory no longer grows with the package's block size).
//! Blobs up to 24 MiB are read into memory (64 MiB at most at once, in chunks
//! reused from a capped pool), verified, and uploaded by two background workers
//! while the package is read on; larger ones, and any that find the spool
//! full, stream straight from the decompressor on the walking thread. A
//! straight-through upload that breaks off is sent again from a further read of
//! the package (3 reads at most).
//!
//! Invariants: children before parents and tags last, as in
//! `ferry_registry::push`; a package in another order is reported as not
//! streamable before anything is uploaded, so the caller can stage it instead.

pub mod stream_push;

mod chunk_pool;
mod present;
mod spool;
