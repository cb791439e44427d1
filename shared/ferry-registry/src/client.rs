//! Registry API operations (ping, HEAD/GET/PUT manifests, HEAD/GET blobs,
//! tags, deletes) with authentication and the one retry layer applied at each
//! public operation.

use std::io::Read;

use ferry_store::verify_reader::{Mismatch, VerifyingReader};
use ferry_store::{media, Digest};

use crate::auth::Authenticator;
use crate::credentials::Credential;
use crate::error::RegistryError;
use crate::retry::RetryPolicy;
use crate::target::Target;
use crate::transport::{Body, Response, Transport, TransportOptions};

/// What a manifest HEAD/GET tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestInfo {
    /// `Docker-Content-Digest`.
    pub digest: Digest,
    /// `Content-Type`.
    pub media_type: String,
    /// `Content-Length`.
    pub size: u64,
}

/// Access needed on a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only.
    Pull,
    /// Read and write.
    Push,
}

/// A client for one registry.
pub struct Client {
    pub(crate) transport: Transport,
    pub(crate) auth: Authenticator,
    pub(crate) retry: RetryPolicy,
    on_retry: Box<dyn Fn(&str) + Send + Sync>,
}

/// A body factory: called again for each attempt (bodies are streamed once).
pub type BodyFn<'a, 'r> = &'a mut dyn FnMut() -> Result<OwnedBody<'r>, RegistryError>;

/// A body that owns its reader.
pub enum OwnedBody<'r> {
    /// No body.
    Empty,
    /// In memory.
    Bytes(Vec<u8>),
    /// Streamed, of known length.
    Reader(Box<dyn Read + 'r>, u64),
}

impl Client {
    /// A client for `target` (credential `None` = anonymous).
    pub fn new(
        target: &Target,
        opts: &TransportOptions,
        credential: Option<Credential>,
    ) -> Result<Client, RegistryError> {
        Ok(Client {
            transport: Transport::new(target, opts)?,
            auth: Authenticator::new(&target.host, credential),
            retry: RetryPolicy::default(),
            on_retry: Box::new(|_| {}),
        })
    }

    /// Replaces the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Client {
        self.retry = retry;
        self
    }

    /// Sets a callback told about each retry (already redacted text).
    pub fn with_retry_log(mut self, f: impl Fn(&str) + Send + Sync + 'static) -> Client {
        self.on_retry = Box::new(f);
        self
    }

    /// Tells the retry log something the caller decided about a failed request
    /// (already redacted text).
    pub(crate) fn log(&self, text: &str) {
        (self.on_retry)(text);
    }

    /// The target.
    pub fn target(&self) -> &Target {
        self.transport.target()
    }

    /// Tokens fetched so far (for reports and tests).
    pub fn token_fetches(&self) -> u64 {
        self.auth.token_fetches()
    }

    pub(crate) fn scopes(repo: &str, access: Access, extra_pull: Option<&str>) -> Vec<String> {
        let mut s = vec![match access {
            Access::Pull => format!("repository:{repo}:pull"),
            Access::Push => format!("repository:{repo}:pull,push"),
        }];
        if let Some(from) = extra_pull {
            s.push(format!("repository:{from}:pull"));
        }
        s
    }

    /// Runs `op` under the one retry layer.
    pub fn retrying<T>(
        &self,
        op: impl FnMut(u32) -> Result<T, RegistryError>,
    ) -> Result<T, RegistryError> {
        self.retry.run(op, |e, wait| {
            (self.on_retry)(&format!(
                "retrying in {:.1}s after: {e}",
                wait.as_secs_f64()
            ))
        })
    }

    /// One attempt of a request, with the authentication dance (a 401 teaches
    /// the scheme or refreshes the token, then the request is sent once more).
    pub(crate) fn attempt(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        scopes: &[String],
        body: BodyFn<'_, '_>,
    ) -> Result<Response, RegistryError> {
        for round in 0..2 {
            let authorization = self.auth.authorize(&self.transport, scopes)?;
            let mut owned = body()?;
            let b = match &mut owned {
                OwnedBody::Empty => Body::Empty,
                OwnedBody::Bytes(v) => Body::Bytes(v),
                OwnedBody::Reader(r, len) => Body::Reader(r.as_mut(), *len),
            };
            let resp = self
                .transport
                .send(method, url, headers, authorization.as_deref(), b)?;
            if resp.status != 401 {
                return Ok(resp);
            }
            if round == 1 {
                self.auth.invalidate(scopes);
                return Err(RegistryError::Auth {
                    registry: self.target().host.clone(),
                    detail: format!(
                        "{method} {} was refused (HTTP 401) with the credentials given",
                        crate::transport::redact(url)
                    ),
                });
            }
            let mut challenge = resp.header("www-authenticate").map(str::to_owned);
            if challenge.is_none() && !self.auth.knows_scheme() {
                // Some registries challenge only on /v2/ (containers/image pings first too).
                challenge = self.ping_challenge()?;
            }
            self.auth
                .on_unauthorized(&self.transport, challenge.as_deref(), scopes)?;
        }
        unreachable!("the loop returns")
    }

    /// The `WWW-Authenticate` of an anonymous `GET /v2/`, if it answers 401.
    fn ping_challenge(&self) -> Result<Option<String>, RegistryError> {
        let resp = self
            .transport
            .send("GET", &self.url("/v2/"), &[], None, Body::Empty)?;
        Ok((resp.status == 401)
            .then(|| resp.header("www-authenticate").map(str::to_owned))
            .flatten())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.target().base_url())
    }

    /// `GET /v2/`: checks the registry is reachable, speaks v2, and accepts our credentials.
    pub fn ping(&self) -> Result<(), RegistryError> {
        self.retrying(|_| {
            let resp = self.attempt("GET", &self.url("/v2/"), &[], &[], &mut || {
                Ok(OwnedBody::Empty)
            })?;
            match resp.status {
                200 => Ok(()),
                404 => Err(RegistryError::Protocol {
                    what: format!("GET {}/v2/", self.target().base_url()),
                    detail: "not a registry (no /v2/ API)".into(),
                }),
                _ => Err(resp.into_error("GET", "/v2/")),
            }
        })
    }

    /// Size of a blob in `repo`, or `None` if the repository does not have it.
    pub fn blob_size(
        &self,
        repo: &str,
        digest: &Digest,
        access: Access,
    ) -> Result<Option<u64>, RegistryError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let scopes = Self::scopes(repo, access, None);
        self.retrying(|_| {
            let resp = self.attempt("HEAD", &self.url(&path), &[], &scopes, &mut || {
                Ok(OwnedBody::Empty)
            })?;
            match resp.status {
                200 => Ok(Some(
                    resp.header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                )),
                404 => Ok(None),
                _ => Err(resp.into_error("HEAD", &path)),
            }
        })
    }

    fn accept() -> (&'static str, String) {
        ("Accept", media::ALL_MANIFEST_TYPES.join(", "))
    }

    /// What a tag or digest resolves to in `repo`, or `None` if unknown.
    ///
    /// `Docker-Content-Digest` is optional (OCI distribution spec): by digest,
    /// a 200 means the registry has that digest; by tag, a HEAD without the
    /// header is followed by a GET and the digest is computed from the body.
    pub fn manifest_head(
        &self,
        repo: &str,
        reference: &str,
        access: Access,
    ) -> Result<Option<ManifestInfo>, RegistryError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let scopes = Self::scopes(repo, access, None);
        let requested = reference.parse::<Digest>().ok();
        let head = self.retrying(|_| {
            let resp = self.attempt(
                "HEAD",
                &self.url(&path),
                &[Self::accept()],
                &scopes,
                &mut || Ok(OwnedBody::Empty),
            )?;
            match resp.status {
                200 => Ok(Some(manifest_info(&resp, &path, requested.as_ref())?)),
                404 => Ok(None),
                _ => Err(resp.into_error("HEAD", &path)),
            }
        })?;
        match head {
            Some(Some(info)) => Ok(Some(info)),
            // A tag answered without a digest: the digest of its bytes.
            Some(None) => Ok(self.get_manifest(repo, reference)?.map(|(info, _)| info)),
            None => Ok(None),
        }
    }

    /// True when the mapped image's tag already resolves to `digest` (tags are set
    /// last, so such an image was complete when it was pushed). Untagged: false.
    pub fn tag_points_at(
        &self,
        mapped: &crate::target::Mapped,
        digest: &Digest,
    ) -> Result<bool, RegistryError> {
        match &mapped.tag {
            Some(tag) => Ok(self
                .manifest_head(&mapped.repository, tag, Access::Push)?
                .is_some_and(|c| &c.digest == digest)),
            None => Ok(false),
        }
    }

    /// The exact bytes of a manifest. Asked by digest, the bytes are checked
    /// against the requested digest (whatever `Docker-Content-Digest` says);
    /// by tag, against `Docker-Content-Digest` when the registry sends one
    /// (else the digest is computed from the bytes).
    pub fn get_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<(ManifestInfo, Vec<u8>)>, RegistryError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let scopes = Self::scopes(repo, Access::Pull, None);
        let requested = reference.parse::<Digest>().ok();
        self.retrying(|_| {
            let resp = self.attempt(
                "GET",
                &self.url(&path),
                &[Self::accept()],
                &scopes,
                &mut || Ok(OwnedBody::Empty),
            )?;
            match resp.status {
                200 => {
                    let media_type = resp.header("content-type").unwrap_or_default().to_owned();
                    let expected = requested.clone().or_else(|| header_digest(&resp));
                    let bytes = resp.bytes(ferry_store::descriptor::MAX_MANIFEST_BYTES + 1)?;
                    let digest = match expected {
                        Some(expected) => {
                            let actual = expected.of_same_algorithm(&bytes);
                            if actual != expected {
                                return Err(RegistryError::DigestMismatch {
                                    what: format!("the bytes it served for GET {path}"),
                                    expected,
                                    actual: actual.to_string(),
                                });
                            }
                            actual
                        }
                        None => Digest::sha256_of(&bytes),
                    };
                    Ok(Some((
                        ManifestInfo {
                            digest,
                            media_type,
                            size: bytes.len() as u64,
                        },
                        bytes,
                    )))
                }
                404 => Ok(None),
                _ => Err(resp.into_error("GET", &path)),
            }
        })
    }

    /// Pushes manifest bytes under `reference` (tag or digest), exactly as given.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest, RegistryError> {
        let path = format!("/v2/{repo}/manifests/{reference}");
        let scopes = Self::scopes(repo, Access::Push, None);
        let expected = Digest::sha256_of(bytes);
        self.retrying(|_| {
            let resp = self.attempt(
                "PUT",
                &self.url(&path),
                &[("Content-Type", media_type.to_owned())],
                &scopes,
                &mut || Ok(OwnedBody::Bytes(bytes.to_vec())),
            )?;
            if resp.status != 201 {
                return Err(resp.into_error("PUT", &path));
            }
            if let Some(d) = resp.header("docker-content-digest") {
                if d != expected.to_string() {
                    return Err(RegistryError::DigestMismatch {
                        what: path.clone(),
                        expected: expected.clone(),
                        actual: d.to_owned(),
                    });
                }
            }
            Ok(expected.clone())
        })
    }

    /// Deletes a manifest by digest (registries with deletes enabled).
    pub fn delete_manifest(&self, repo: &str, digest: &Digest) -> Result<(), RegistryError> {
        self.delete(&format!("/v2/{repo}/manifests/{digest}"), repo)
    }

    /// Deletes a blob from a repository (registries with deletes enabled).
    pub fn delete_blob(&self, repo: &str, digest: &Digest) -> Result<(), RegistryError> {
        self.delete(&format!("/v2/{repo}/blobs/{digest}"), repo)
    }

    fn delete(&self, path: &str, repo: &str) -> Result<(), RegistryError> {
        let scopes = vec![format!("repository:{repo}:pull,push,delete")];
        self.retrying(|_| {
            let resp = self.attempt("DELETE", &self.url(path), &[], &scopes, &mut || {
                Ok(OwnedBody::Empty)
            })?;
            match resp.status {
                200 | 202 => Ok(()),
                _ => Err(resp.into_error("DELETE", path)),
            }
        })
    }

    /// Tags of a repository (empty if the repository does not exist).
    pub fn list_tags(&self, repo: &str) -> Result<Vec<String>, RegistryError> {
        let path = format!("/v2/{repo}/tags/list");
        let scopes = Self::scopes(repo, Access::Pull, None);
        self.retrying(|_| {
            let resp = self.attempt("GET", &self.url(&path), &[], &scopes, &mut || {
                Ok(OwnedBody::Empty)
            })?;
            match resp.status {
                200 => {
                    #[derive(serde::Deserialize)]
                    struct Tags {
                        tags: Option<Vec<String>>,
                    }
                    let body = resp.bytes(16 << 20)?;
                    let t: Tags =
                        serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                            what: path.clone(),
                            detail: e.to_string(),
                        })?;
                    Ok(t.tags.unwrap_or_default())
                }
                404 => Ok(Vec::new()),
                _ => Err(resp.into_error("GET", &path)),
            }
        })
    }

    /// Streams a blob (following redirects without sending credentials
    /// off-origin). The caller checks the bytes; [`Client::blob_reader`] does.
    pub fn get_blob(&self, repo: &str, digest: &Digest) -> Result<Response, RegistryError> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let scopes = Self::scopes(repo, Access::Pull, None);
        self.retrying(|_| {
            let resp = self.attempt("GET", &self.url(&path), &[], &scopes, &mut || {
                Ok(OwnedBody::Empty)
            })?;
            match resp.status {
                200 => Ok(resp),
                _ => Err(resp.into_error("GET", &path)),
            }
        })
    }

    /// Streams a blob checked against the requested digest: at the end of the
    /// bytes, the reader fails (`InvalidData`, carrying
    /// [`RegistryError::DigestMismatch`]) if they hash to another digest.
    pub fn blob_reader(&self, repo: &str, digest: &Digest) -> Result<BlobReader, RegistryError> {
        let resp = self.get_blob(repo, digest)?;
        Ok(BlobReader {
            what: format!("the bytes it served for GET /v2/{repo}/blobs/{digest}"),
            verifying: VerifyingReader::new(Box::new(resp.reader()), digest, None),
            checked: false,
        })
    }
}

/// A blob's bytes, checked against the requested digest when they end (the
/// store's one verifying reader, its mismatch reported as the last read's error).
pub struct BlobReader {
    what: String,
    verifying: VerifyingReader<Box<dyn Read + Send>>,
    checked: bool,
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.verifying.read(buf)?;
        if n == 0 && !std::mem::replace(&mut self.checked, true) {
            if let Err(Mismatch::Digest { expected, actual }) = self.verifying.check() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    RegistryError::DigestMismatch {
                        what: self.what.clone(),
                        expected,
                        actual: actual.to_string(),
                    },
                ));
            }
        }
        Ok(n)
    }
}

/// A valid `Docker-Content-Digest`, if the answer carries one.
fn header_digest(resp: &Response) -> Option<Digest> {
    resp.header("docker-content-digest")
        .and_then(|d| d.parse::<Digest>().ok())
}

/// What a 200 to a manifest HEAD tells. By digest, the requested digest is
/// the answer (a header naming another one is a registry error); by tag
/// without the header, `None`: the caller GETs the bytes.
fn manifest_info(
    resp: &Response,
    what: &str,
    requested: Option<&Digest>,
) -> Result<Option<ManifestInfo>, RegistryError> {
    let header = header_digest(resp);
    let digest = match (requested, header) {
        (Some(requested), Some(header)) if header != *requested => {
            return Err(RegistryError::DigestMismatch {
                what: format!("HEAD {what}"),
                expected: requested.clone(),
                actual: header.to_string(),
            })
        }
        (Some(requested), _) => requested.clone(),
        (None, Some(header)) => header,
        (None, None) => return Ok(None),
    };
    Ok(Some(ManifestInfo {
        digest,
        media_type: resp.header("content-type").unwrap_or_default().to_owned(),
        size: resp
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    }))
}
