//! ferry-registry: the distribution (OCI registry) API client.
//!
//! Owns the push target and mirror path mapping, credentials (flags, Docker
//! `config.json`, credential helpers, containers `auth.json`), authentication
//! (Basic, Bearer tokens), TLS with a private CA, curl-style proxies, the one
//! retry layer, uploads (monolithic, chunked, resumed, cross-repository mount),
//! live transfer meters (total and per blob in flight) for progress displays,
//! the registry as a copy-engine sink ([`sink::RegistrySink`]) and registries
//! as a random-access source ([`source::RegistrySource`], what `ferry-pack`
//! pulls from). What to copy and in which order is not decided here: that
//! is `ferry-copy`.
//!
//! Invariants:
//! 1. Secrets never appear in `Debug`/`Display` output, errors, logs or journals.
//! 2. `Authorization` is never sent to another origin (redirects, offloaded uploads).
//! 3. Retries happen only in [`retry::RetryPolicy::run`], at public operations.
//! 4. Manifests are pushed as their exact bytes; anything read by digest is
//!    checked against that digest.

pub mod auth;
pub mod challenge;
pub mod client;
pub mod credentials;
pub mod error;
pub use ferry_copy::meter;
pub mod proxy;
pub mod retry;
pub mod sink;
pub mod source;
pub mod target;
pub mod transport;
pub mod upload;

pub use client::{Access, BlobReader, Client, ManifestInfo};
pub use error::RegistryError;
pub use target::Target;
