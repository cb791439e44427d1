//! ferry-registry: the distribution (OCI registry) API client.
//!
//! Owns references and mirror path mapping, credentials (flags, Docker
//! `config.json`, credential helpers, containers `auth.json`), auth (Basic,
//! Bearer tokens), TLS with a private CA, proxies, the one retry layer, and
//! uploads (monolithic, chunked, resumed, cross-repository mount).
//!
//! Invariants:
//! 1. Secrets never appear in `Debug`/`Display` output, errors, logs or journals.
//! 2. `Authorization` is never sent to a host other than the registry's.
//! 3. Retries happen only in the retry layer.

pub mod credentials;
