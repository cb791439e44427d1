//! Registries as a random-access copy [`Source`]: what `ferry-pack` pulls
//! from. One [`Client`] per source host; the source learns where each digest
//! can be read ([`RegistrySource::locate`]) as the images are resolved and
//! walked, since the engine asks for content by descriptor only.
//!
//! Invariants (tested in `tests/source.rs`):
//! 1. A tag is resolved to a digest once: one `GET` of the manifest by tag,
//!    whose bytes are kept (the digest is of those exact bytes).
//! 2. Anything fetched by digest is checked against that digest: manifests
//!    by [`Client`]'s own check, blobs by the store's one
//!    [`VerifyingReader`] over every byte from offset 0; a mismatch is a
//!    typed error naming the repository and the digest, and is never retried
//!    into success.
//! 3. Manifests over [`MAX_MANIFEST_BYTES`] are refused before their body is
//!    read whole (by `Content-Length`, else by a read limit).
//! 4. A blob transfer cut in the middle is resumed where it stopped with an
//!    HTTP `Range` request (a registry that ignores `Range` answers 200: the
//!    bytes before the offset are read again and dropped), at most as many
//!    times as the retry policy's attempts; a registry that never answers
//!    `206` is still read correctly.
//! 5. Memory: a blob is streamed, never held; a manifest is at most 4 MiB.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use ferry_copy::report::CopyError;
use ferry_copy::source::Source;
use ferry_store::descriptor::MAX_MANIFEST_BYTES;
use ferry_store::verify_reader::{Mismatch, VerifyingReader};
use ferry_store::{media, Descriptor, Digest, Reference};

use crate::client::{Access, Client, OwnedBody};
use crate::error::RegistryError;
use crate::transport::Response;

/// The host that serves the registry API for the host a reference names:
/// Docker Hub's names (`docker.io`, `index.docker.io`) are served by
/// `registry-1.docker.io`; every other host serves itself.
pub fn api_host(host: &str) -> &str {
    match host {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// Where a digest can be read: a repository of a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// `HOST[:PORT]`, as in the reference.
    pub host: String,
    /// Repository path on that host.
    pub repository: String,
}

/// A manifest or index as the registry served it.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// Its media type (`Content-Type`, else the body's `mediaType`), digest
    /// (of the exact bytes) and size.
    pub descriptor: Descriptor,
    /// The exact bytes.
    pub bytes: Vec<u8>,
}

/// Registries (one client per host) as a copy source.
pub struct RegistrySource {
    clients: BTreeMap<String, Arc<Client>>,
    places: RwLock<HashMap<Digest, Place>>,
    pulled: Arc<AtomicU64>,
}

impl RegistrySource {
    /// A source over `clients` (each keyed by its target's host, the
    /// [`api_host`] of the references it serves).
    pub fn new(clients: impl IntoIterator<Item = Arc<Client>>) -> RegistrySource {
        RegistrySource {
            clients: clients
                .into_iter()
                .map(|c| (c.target().host.clone(), c))
                .collect(),
            places: RwLock::new(HashMap::new()),
            pulled: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Counts every blob byte received (for a progress bar).
    pub fn with_counter(mut self, pulled: Arc<AtomicU64>) -> RegistrySource {
        self.pulled = pulled;
        self
    }

    /// The client for `host` (a reference's host: see [`api_host`]).
    pub fn client(&self, host: &str) -> Result<&Arc<Client>, RegistryError> {
        self.clients.get(api_host(host)).ok_or_else(|| {
            RegistryError::Usage(format!("no connection was set up for registry {host}"))
        })
    }

    /// Records that `digest` can be read from `place` (the first place wins).
    pub fn locate(&self, digest: &Digest, place: &Place) {
        let mut places = self.places.write().unwrap_or_else(|p| p.into_inner());
        places
            .entry(digest.clone())
            .or_insert_with(|| place.clone());
    }

    /// Where `digest` was located.
    pub fn place_of(&self, digest: &Digest) -> Option<Place> {
        self.places
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(digest)
            .cloned()
    }

    /// Resolves `reference` (by tag or by digest) with one `GET` of its
    /// manifest, recording where it is; `Ok(None)` when the registry does not
    /// have it.
    pub fn resolve(&self, reference: &Reference) -> Result<Option<Fetched>, RegistryError> {
        let asked = match (&reference.digest, &reference.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        };
        let place = Place {
            host: reference.host.clone(),
            repository: reference.repository.clone(),
        };
        let fetched = self.fetch_manifest(&place, &asked)?;
        if let Some(f) = &fetched {
            self.locate(&f.descriptor.digest, &place);
        }
        Ok(fetched)
    }

    /// `GET` of a manifest by tag or digest in `place`, refused over
    /// [`MAX_MANIFEST_BYTES`]; by digest, checked against it.
    pub fn fetch_manifest(
        &self,
        place: &Place,
        reference: &str,
    ) -> Result<Option<Fetched>, RegistryError> {
        let client = self.client(&place.host)?;
        let repo = &place.repository;
        let path = format!("/v2/{repo}/manifests/{reference}");
        let what = format!("{}/{repo}:{reference}", place.host);
        let what = if reference.contains(':') {
            what.replacen(&format!(":{reference}"), &format!("@{reference}"), 1)
        } else {
            what
        };
        let requested = reference.parse::<Digest>().ok();
        let scopes = Client::scopes(repo, Access::Pull, None);
        let url = format!("{}{path}", client.target().base_url());
        let accept = ("Accept", media::ALL_MANIFEST_TYPES.join(", "));
        client.retrying(|_| {
            let resp = client.attempt(
                "GET",
                &url,
                std::slice::from_ref(&accept),
                &scopes,
                &mut || Ok(OwnedBody::Empty),
            )?;
            match resp.status {
                200 => {}
                404 => return Ok(None),
                _ => return Err(resp.into_error("GET", &path)),
            }
            let declared = resp
                .header("content-length")
                .and_then(|v| v.parse::<u64>().ok());
            if let Some(size) = declared.filter(|s| *s > MAX_MANIFEST_BYTES) {
                return Err(RegistryError::ManifestTooLarge {
                    what: what.clone(),
                    size,
                });
            }
            let content_type = resp
                .header("content-type")
                .map(|t| t.split(';').next().unwrap_or(t).trim().to_owned());
            if let Some(t) = content_type
                .as_deref()
                .filter(|t| t.starts_with("application/vnd.docker.distribution.manifest.v1+"))
            {
                return Err(RegistryError::Protocol {
                    what: what.clone(),
                    detail: format!(
                        "the registry serves it as a Docker schema 1 manifest ({t}), deprecated and not supported: push it again with a current client (schema 2 or OCI)"
                    ),
                });
            }
            let header_digest = resp
                .header("docker-content-digest")
                .and_then(|d| d.parse::<Digest>().ok());
            let bytes = read_limited(resp, &what)?;
            let expected = requested.clone().or(header_digest);
            let digest = match expected {
                Some(expected) => {
                    let actual = expected.of_same_algorithm(&bytes);
                    if actual != expected {
                        return Err(RegistryError::DigestMismatch {
                            what: format!("the manifest {what} (bytes served by GET {path})"),
                            expected,
                            actual: actual.to_string(),
                        });
                    }
                    actual
                }
                None => Digest::sha256_of(&bytes),
            };
            let media_type = content_type
                .filter(|t| media::is_manifest_like(t))
                .or_else(|| body_media_type(&bytes))
                .unwrap_or_else(|| media::OCI_MANIFEST.to_owned());
            Ok(Some(Fetched {
                descriptor: Descriptor::new(media_type, digest, bytes.len() as u64),
                bytes,
            }))
        })
    }

    /// The referrers of `subject` in `place` by the OCI referrers API
    /// (`GET /v2/<repo>/referrers/<digest>`): `Ok(None)` when the registry has
    /// no such API (404), else the descriptors it lists.
    pub fn referrers(
        &self,
        place: &Place,
        subject: &Digest,
    ) -> Result<Option<Vec<Descriptor>>, RegistryError> {
        let client = self.client(&place.host)?;
        let repo = &place.repository;
        let path = format!("/v2/{repo}/referrers/{subject}");
        let scopes = Client::scopes(repo, Access::Pull, None);
        let url = format!("{}{path}", client.target().base_url());
        client.retrying(|_| {
            let resp = client.attempt(
                "GET",
                &url,
                &[("Accept", media::OCI_INDEX.to_owned())],
                &scopes,
                &mut || Ok(OwnedBody::Empty),
            )?;
            match resp.status {
                200 => {}
                404 => return Ok(None),
                _ => return Err(resp.into_error("GET", &path)),
            }
            let bytes = read_limited(resp, &format!("the referrers of {subject} in {repo}"))?;
            #[derive(serde::Deserialize)]
            struct Listing {
                #[serde(default)]
                manifests: Vec<Descriptor>,
            }
            let listing: Listing =
                serde_json::from_slice(&bytes).map_err(|e| RegistryError::Protocol {
                    what: format!("GET {path}"),
                    detail: format!("not an OCI index: {e}"),
                })?;
            Ok(Some(listing.manifests))
        })
    }
}

/// A manifest-sized body: at most [`MAX_MANIFEST_BYTES`], else refused.
fn read_limited(resp: Response, what: &str) -> Result<Vec<u8>, RegistryError> {
    let mut bytes = Vec::new();
    let mut reader = resp.reader().take(MAX_MANIFEST_BYTES + 1);
    reader
        .read_to_end(&mut bytes)
        .map_err(|e| RegistryError::Transport {
            what: format!("reading {what}"),
            detail: e.to_string(),
            retryable: true,
        })?;
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        return Err(RegistryError::ManifestTooLarge {
            what: what.to_owned(),
            size: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

fn body_media_type(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    v["mediaType"].as_str().map(str::to_owned)
}

impl Source for RegistrySource {
    fn manifest(&self, desc: &Descriptor) -> Result<Vec<u8>, CopyError> {
        let place = self.place_of(&desc.digest).ok_or_else(|| {
            CopyError::Source(format!("no registry is known to hold {}", desc.digest).into())
        })?;
        match self.fetch_manifest(&place, &desc.digest.to_string()) {
            Ok(Some(f)) => Ok(f.bytes),
            Ok(None) => Err(CopyError::Source(
                RegistryError::NotFound {
                    what: format!("{}/{}@{}", place.host, place.repository, desc.digest),
                }
                .into(),
            )),
            Err(e) => Err(CopyError::Source(e.into())),
        }
    }

    fn open_blob(&self, desc: &Descriptor, offset: u64) -> io::Result<Box<dyn Read + Send>> {
        let place = self.place_of(&desc.digest).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no registry is known to hold {}", desc.digest),
            )
        })?;
        let client = Arc::clone(self.client(&place.host).map_err(io::Error::other)?);
        let what = format!(
            "blob {} of {}/{}",
            desc.digest, place.host, place.repository
        );
        let mut resuming = Resuming {
            client,
            place,
            digest: desc.digest.clone(),
            position: offset,
            inner: None,
            failures: 0,
            pulled: Arc::clone(&self.pulled),
        };
        resuming.reopen()?;
        if offset > 0 {
            // The bytes before `offset` are the caller's (already checked by it as
            // part of the whole); what follows is passed through.
            return Ok(Box::new(resuming));
        }
        Ok(Box::new(CheckedBlob {
            what,
            verifying: VerifyingReader::new(resuming, &desc.digest, Some(desc.size)),
            checked: false,
        }))
    }

    /// From offset 0, a blob is a [`CheckedBlob`]: its last read fails unless
    /// the bytes are the ones asked for.
    fn checks_blobs(&self) -> bool {
        true
    }
}

/// A blob's bytes from the registry, resumed at the current position after a
/// transfer failure (see the module's invariant 4).
struct Resuming {
    client: Arc<Client>,
    place: Place,
    digest: Digest,
    position: u64,
    inner: Option<Box<dyn Read + Send>>,
    failures: u32,
    pulled: Arc<AtomicU64>,
}

impl Resuming {
    /// (Re)opens the transfer at `self.position`, under the one retry layer.
    fn reopen(&mut self) -> io::Result<()> {
        self.inner = None;
        let client = Arc::clone(&self.client);
        let reader = client
            .retrying(|_| open_at(&client, &self.place, &self.digest, self.position))
            .map_err(|e| {
                let kind = match &e {
                    RegistryError::NotFound { .. } => io::ErrorKind::NotFound,
                    _ => io::ErrorKind::Other,
                };
                io::Error::new(kind, e)
            })?;
        self.inner = Some(reader);
        Ok(())
    }
}

impl Read for Resuming {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(inner) = self.inner.as_mut() else {
                self.reopen()?;
                continue;
            };
            match inner.read(buf) {
                Ok(n) => {
                    self.position += n as u64;
                    self.pulled.fetch_add(n as u64, Ordering::Relaxed);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.failures += 1;
                    if self.failures >= self.client.retry.attempts {
                        return Err(io::Error::new(
                            e.kind(),
                            format!(
                                "blob {} of {}/{}: the transfer failed {} times, the last at byte {}: {e}",
                                self.digest,
                                self.place.host,
                                self.place.repository,
                                self.failures,
                                self.position
                            ),
                        ));
                    }
                    let wait = self.client.retry.backoff(self.failures, None);
                    std::thread::sleep(wait);
                    self.reopen()?;
                }
            }
        }
    }
}

/// One `GET` of a blob from byte `offset` (`Range` when `offset > 0`).
fn open_at(
    client: &Client,
    place: &Place,
    digest: &Digest,
    offset: u64,
) -> Result<Box<dyn Read + Send>, RegistryError> {
    let repo = &place.repository;
    let path = format!("/v2/{repo}/blobs/{digest}");
    let url = format!("{}{path}", client.target().base_url());
    let scopes = Client::scopes(repo, Access::Pull, None);
    let headers: Vec<(&str, String)> = if offset > 0 {
        vec![("Range", format!("bytes={offset}-"))]
    } else {
        Vec::new()
    };
    let resp = client.attempt("GET", &url, &headers, &scopes, &mut || Ok(OwnedBody::Empty))?;
    match resp.status {
        206 if offset > 0 => {
            let range = resp.header("content-range").unwrap_or_default().to_owned();
            if !range.starts_with(&format!("bytes {offset}-")) {
                return Err(RegistryError::Protocol {
                    what: format!("GET {path} from byte {offset}"),
                    detail: format!("it answered 206 with Content-Range {range:?}"),
                });
            }
            Ok(Box::new(resp.reader()))
        }
        200 => {
            let mut reader: Box<dyn Read + Send> = Box::new(resp.reader());
            if offset > 0 {
                // Range ignored: read the start again and drop it.
                let skipped =
                    io::copy(&mut (&mut reader).take(offset), &mut io::sink()).map_err(|e| {
                        RegistryError::Transport {
                            what: format!("GET {path}"),
                            detail: e.to_string(),
                            retryable: true,
                        }
                    })?;
                if skipped < offset {
                    return Err(RegistryError::Transport {
                        what: format!("GET {path}"),
                        detail: format!("the blob ended at byte {skipped}, before {offset}"),
                        retryable: true,
                    });
                }
            }
            Ok(reader)
        }
        404 => Err(RegistryError::NotFound {
            what: format!("blob {digest} in {}/{repo}", place.host),
        }),
        _ => Err(resp.into_error("GET", &path)),
    }
}

/// A blob checked at its end against the requested digest and size: the
/// last read fails (`InvalidData`, carrying [`RegistryError::DigestMismatch`]
/// or a size error) when the bytes are not the ones asked for.
struct CheckedBlob {
    what: String,
    verifying: VerifyingReader<Resuming>,
    checked: bool,
}

impl Read for CheckedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.verifying.read(buf)?;
        if n == 0 && !std::mem::replace(&mut self.checked, true) {
            let error = match self.verifying.check() {
                Ok(_) => return Ok(0),
                Err(Mismatch::Digest { expected, actual }) => RegistryError::DigestMismatch {
                    what: format!("the bytes the registry served for {}", self.what),
                    expected,
                    actual: actual.to_string(),
                },
                Err(Mismatch::Size { expected, actual }) => RegistryError::Protocol {
                    what: self.what.clone(),
                    detail: format!("it served {actual} bytes, the descriptor says {expected}"),
                },
            };
            return Err(io::Error::new(io::ErrorKind::InvalidData, error));
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn docker_hub_names_are_served_by_registry_1() {
        assert_eq!(super::api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(super::api_host("index.docker.io"), "registry-1.docker.io");
        assert_eq!(super::api_host("10.0.0.5:5000"), "10.0.0.5:5000");
    }
}
