//! ferry-store: the content store every ferry tool stands on.
//!
//! Owns [`Digest`] (validated sha256/sha512), [`Descriptor`], media types, the
//! parsed view of manifests (whose original bytes are always what is stored,
//! hashed and pushed), and the on-disk [`Store`]: a plain OCI image layout that
//! skopeo, umoci and containerd read, plus ferry's hidden `.ferry/` state.
//!
//! Invariants:
//! 1. Digests are always of exact bytes, never of a re-serialisation.
//! 2. A file at a final blob path is complete and verified: blobs are written to a
//!    temp file in the store, verified (digest and size), fsynced, renamed into
//!    `blobs/<alg>/<hex>`, then the directory is fsynced ([`BlobWriter`]).
//! 3. Names last: `index.json` is rewritten atomically, after the blobs it names.
//! 4. The journal is a hint: replay skips torn lines and every record is re-checked.
//! 5. One writer per store: [`Store::open_for_write`] takes an advisory lock.
//! 6. Bounded memory: blobs are streamed (or, for `--fast` audits, mapped one
//!    16 MiB window at a time per hashing thread, one huge blob included);
//!    only manifests (≤ 4 MiB) are read whole.
//!
//! This crate knows nothing of HTTP or command-line flags.

pub mod audit;
mod blake3_leaves;
pub mod blob_writer;
pub mod descriptor;
pub mod digest;
pub mod error;
pub mod file_hash;
pub mod hash_pool;
pub mod journal;
pub mod layout;
pub mod lock;
pub mod media;
pub mod prefetch;
pub mod read_ahead;
pub mod reference;
pub mod space;
pub mod verify_reader;
pub mod walk;

pub use blob_writer::{BlobWriter, StoredBlob};
pub use descriptor::{Descriptor, Platform};
pub use digest::{Algorithm, Digest, Hasher};
pub use error::StoreError;
pub use layout::Store;
pub use reference::Reference;
