//! Blob uploads: cross-repository mount, monolithic (POST then PUT), and
//! chunked uploads whose session (location, confirmed offset) is recorded so
//! that a rerun after a crash continues from the last confirmed chunk when the
//! registry still has the session, and restarts the blob cleanly when not.

use std::io::Read;

use ferry_store::{Descriptor, Digest};

use crate::client::{Access, Client, OwnedBody};
use crate::error::RegistryError;
use crate::meter::{BlobMeter, TransferMeter};
use crate::transport::redact;

/// Where upload sessions are remembered between runs (the store's journal).
pub trait SessionLog: Sync {
    /// The last confirmed session for this blob in this repository.
    fn load(&self, repository: &str, digest: &Digest) -> Option<(String, u64)>;
    /// Records a confirmed (location, offset).
    fn save(&self, repository: &str, digest: &Digest, location: &str, offset: u64);
    /// Forgets the session (blob complete, or session dead).
    fn clear(&self, repository: &str, digest: &Digest);
}

/// A session log that remembers nothing.
pub struct NoSessionLog;

impl SessionLog for NoSessionLog {
    fn load(&self, _: &str, _: &Digest) -> Option<(String, u64)> {
        None
    }
    fn save(&self, _: &str, _: &Digest, _: &str, _: u64) {}
    fn clear(&self, _: &str, _: &Digest) {}
}

/// Opens the blob's bytes starting at an offset.
pub type BlobOpener<'a> = &'a (dyn Fn(u64) -> std::io::Result<Box<dyn Read + Send>> + Sync);

/// Upload tuning.
#[derive(Debug, Clone, Copy)]
pub struct UploadOptions {
    /// Blobs up to this size go in one PUT.
    pub monolithic_max: u64,
    /// Chunk size for larger blobs.
    pub chunk_size: u64,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            monolithic_max: 128 << 20,
            chunk_size: 64 << 20,
        }
    }
}

/// How a blob got into the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadOutcome {
    /// Mounted from another repository of the registry (no bytes sent).
    Mounted,
    /// Uploaded; `resumed_from` > 0 when a previous session was continued.
    Uploaded {
        /// Offset the upload continued from.
        resumed_from: u64,
    },
}

/// Advances a blob's meter as the body is read (live per-blob progress);
/// `position` is the blob offset of the next byte.
struct CountingReader<'m, R> {
    inner: R,
    position: u64,
    meter: &'m BlobMeter<'m>,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.position += n as u64;
        self.meter.reached(self.position);
        Ok(n)
    }
}

/// The label of a blob in flight: repository and a short digest.
fn blob_label(repo: &str, digest: &Digest) -> String {
    let hex = digest.hex();
    format!(
        "{repo}@{}:{}",
        digest.algorithm().name(),
        &hex[..hex.len().min(12)]
    )
}

fn with_digest(location: &str, digest: &Digest) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!(
        "{location}{sep}digest={}",
        crate::auth::urlencode(&digest.to_string())
    )
}

/// Parses `Range: 0-<end>` (also `bytes=0-<end>`) into the next offset.
fn next_offset(range: Option<&str>, known_nonzero: bool) -> Option<u64> {
    let r = range?.trim().trim_start_matches("bytes=");
    let (_, end) = r.split_once('-')?;
    let end: u64 = end.trim().parse().ok()?;
    // distribution answers "0-0" both for 0 and 1 byte stored: treat it as 0 unless we know better.
    if end == 0 && !known_nonzero {
        return Some(0);
    }
    Some(end + 1)
}

impl Client {
    /// Makes `desc` present in `repo`: mounts it from `mount_from` when given,
    /// else uploads it (resuming a recorded session when possible). Retried as
    /// a whole by the retry layer; `meter` shows the blob in flight and counts
    /// its bytes monotonically.
    pub fn upload_blob(
        &self,
        repo: &str,
        desc: &Descriptor,
        open: BlobOpener<'_>,
        mount_from: Option<&str>,
        log: &dyn SessionLog,
        opts: &UploadOptions,
        meter: &TransferMeter,
    ) -> Result<UploadOutcome, RegistryError> {
        let progress = meter.begin(blob_label(repo, &desc.digest), desc.size);
        let mut try_mount = mount_from;
        self.retrying(|_| {
            let r = self.upload_once(repo, desc, open, try_mount, log, opts, &progress);
            if r.is_err() {
                try_mount = None;
            }
            r
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn upload_once(
        &self,
        repo: &str,
        desc: &Descriptor,
        open: BlobOpener<'_>,
        mount_from: Option<&str>,
        log: &dyn SessionLog,
        opts: &UploadOptions,
        progress: &BlobMeter<'_>,
    ) -> Result<UploadOutcome, RegistryError> {
        let scopes = Client::scopes(repo, Access::Push, None);
        let base = format!("{}/v2/{repo}/blobs/uploads/", self.target().base_url());
        let what = format!("upload of {} to {repo}", desc.digest);

        // 1. Continue a recorded session if the registry still has it.
        let mut session: Option<(String, u64)> = None;
        if let Some((location, offset)) = log.load(repo, &desc.digest) {
            let url = self.transport.resolve(&location);
            let resp = self.attempt("GET", &url, &[], &scopes, &mut || Ok(OwnedBody::Empty))?;
            if resp.status == 204 {
                let loc = resp
                    .header("location")
                    .map(|l| self.transport.resolve(l))
                    .unwrap_or(url);
                if let Some(confirmed) = next_offset(resp.header("range"), offset > 0) {
                    if confirmed <= desc.size {
                        session = Some((loc, confirmed));
                    }
                }
            }
            if session.is_none() {
                log.clear(repo, &desc.digest);
            }
        }
        let resumed_from = session.as_ref().map_or(0, |s| s.1);

        // 2. Mount from another repository, falling back to a plain upload.
        if session.is_none() {
            if let Some(from) = mount_from {
                let url = format!(
                    "{base}?mount={}&from={}",
                    crate::auth::urlencode(&desc.digest.to_string()),
                    crate::auth::urlencode(from)
                );
                let mount_scopes = Client::scopes(repo, Access::Push, Some(from));
                match self.attempt("POST", &url, &[], &mount_scopes, &mut || {
                    Ok(OwnedBody::Empty)
                }) {
                    Ok(resp) if resp.status == 201 => {
                        progress.reached(desc.size);
                        return Ok(UploadOutcome::Mounted);
                    }
                    Ok(resp) if resp.status == 202 => {
                        let loc = resp.header("location").map(|l| self.transport.resolve(l));
                        session = loc.map(|l| (l, 0));
                    }
                    // 401/403/404: the mount is refused (e.g. no pull on the source); upload instead.
                    Ok(_) | Err(RegistryError::Auth { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }

        // 3. Open a new session.
        let (mut location, mut offset) = match session {
            Some(s) => s,
            None => {
                let resp =
                    self.attempt("POST", &base, &[], &scopes, &mut || Ok(OwnedBody::Empty))?;
                if resp.status != 202 {
                    return Err(namespace_hint(
                        resp.into_error("POST", &format!("/v2/{repo}/blobs/uploads/")),
                        repo,
                    ));
                }
                let loc = resp
                    .header("location")
                    .ok_or_else(|| RegistryError::Protocol {
                        what: what.clone(),
                        detail: "202 without Location".into(),
                    })?;
                (self.transport.resolve(loc), 0)
            }
        };

        // 4. Send the bytes: one PUT for small blobs, else chunks recorded as they are confirmed.
        let body_from = |start: u64, len: u64| -> Result<OwnedBody, RegistryError> {
            let reader = open(start).map_err(|source| RegistryError::Local {
                what: format!("reading blob {}", desc.digest),
                source,
            })?;
            Ok(OwnedBody::Reader(
                Box::new(CountingReader {
                    inner: reader.take(len),
                    position: start,
                    meter: progress,
                }),
                len,
            ))
        };
        let octet = ("Content-Type", "application/octet-stream".to_owned());
        if offset == 0 && desc.size <= opts.monolithic_max {
            let url = with_digest(&location, &desc.digest);
            let resp = self.attempt(
                "PUT",
                &url,
                std::slice::from_ref(&octet),
                &scopes,
                &mut || body_from(0, desc.size),
            );
            let resp = resp?;
            if resp.status != 201 {
                return Err(resp.into_error("PUT", &redact(&url)));
            }
            check_digest(&resp, desc, &what)?;
            progress.reached(desc.size);
            log.clear(repo, &desc.digest);
            return Ok(UploadOutcome::Uploaded { resumed_from });
        }
        while offset < desc.size {
            let len = opts.chunk_size.min(desc.size - offset);
            let range = ("Content-Range", format!("{offset}-{}", offset + len - 1));
            let url = location.clone();
            let resp = self.attempt("PATCH", &url, &[octet.clone(), range], &scopes, &mut || {
                body_from(offset, len)
            });
            let resp = resp?;
            if resp.status != 202 {
                log.clear(repo, &desc.digest);
                let err = resp.into_error("PATCH", &redact(&url));
                // A dead or stale session: start the blob over (retryable).
                if matches!(err.status(), Some(404 | 416)) {
                    return Err(RegistryError::Transport {
                        what: what.clone(),
                        detail: err.to_string(),
                        retryable: true,
                    });
                }
                return Err(err);
            }
            let confirmed = next_offset(resp.header("range"), true).unwrap_or(offset + len);
            if confirmed != offset + len {
                log.clear(repo, &desc.digest);
                return Err(RegistryError::Transport {
                    what: what.clone(),
                    detail: format!(
                        "registry confirmed offset {confirmed}, expected {}",
                        offset + len
                    ),
                    retryable: true,
                });
            }
            location = resp
                .header("location")
                .map(|l| self.transport.resolve(l))
                .unwrap_or(location);
            offset = confirmed;
            log.save(repo, &desc.digest, &location, offset);
            test_pause_between_chunks();
        }
        let url = with_digest(&location, &desc.digest);
        let resp = self.attempt("PUT", &url, &[], &scopes, &mut || Ok(OwnedBody::Empty))?;
        log.clear(repo, &desc.digest);
        if resp.status != 201 {
            return Err(resp.into_error("PUT", &redact(&url)));
        }
        check_digest(&resp, desc, &what)?;
        Ok(UploadOutcome::Uploaded { resumed_from })
    }
}

/// Fault-injection point for the crash tests: `FERRY_TEST_CHUNK_PAUSE_MS`
/// makes the uploader wait after each confirmed chunk, so a test can kill the
/// process between chunks. Unset (always, outside tests) it does nothing.
fn test_pause_between_chunks() {
    if let Some(ms) = std::env::var("FERRY_TEST_CHUNK_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms.min(10_000)));
    }
}

impl Client {
    /// Uploads a blob from a stream that can be read only once (a package being
    /// decompressed): the session is opened under the retry layer, the bytes go
    /// in one PUT that is not retried (a rerun resumes: the blob is then found
    /// by HEAD or sent again). The registry verifies the digest.
    pub fn upload_stream(
        &self,
        repo: &str,
        desc: &Descriptor,
        reader: &mut dyn Read,
        meter: &TransferMeter,
    ) -> Result<(), RegistryError> {
        let scopes = Client::scopes(repo, Access::Push, None);
        let base = format!("{}/v2/{repo}/blobs/uploads/", self.target().base_url());
        let location = self.retrying(|_| {
            let resp = self.attempt("POST", &base, &[], &scopes, &mut || Ok(OwnedBody::Empty))?;
            if resp.status != 202 {
                return Err(namespace_hint(
                    resp.into_error("POST", &format!("/v2/{repo}/blobs/uploads/")),
                    repo,
                ));
            }
            resp.header("location")
                .map(|l| self.transport.resolve(l))
                .ok_or_else(|| RegistryError::Protocol {
                    what: format!("upload of {}", desc.digest),
                    detail: "202 without Location".into(),
                })
        })?;
        let url = with_digest(&location, &desc.digest);
        let progress = meter.begin(blob_label(repo, &desc.digest), desc.size);
        let mut body = Some(OwnedBody::Reader(
            Box::new(CountingReader {
                inner: reader,
                position: 0,
                meter: &progress,
            }),
            desc.size,
        ));
        let resp = self.attempt(
            "PUT",
            &url,
            &[("Content-Type", "application/octet-stream".to_owned())],
            &scopes,
            &mut || {
                body.take().ok_or_else(|| RegistryError::Protocol {
                    what: format!("upload of {}", desc.digest),
                    detail: "the registry asked to resend a streamed blob; rerun to resume".into(),
                })
            },
        );
        let resp = resp?;
        if resp.status != 201 {
            return Err(resp.into_error("PUT", &redact(&url)));
        }
        check_digest(&resp, desc, &format!("upload of {} to {repo}", desc.digest))
    }
}

fn check_digest(
    resp: &crate::transport::Response,
    desc: &Descriptor,
    what: &str,
) -> Result<(), RegistryError> {
    match resp.header("docker-content-digest") {
        Some(d) if d != desc.digest.to_string() => Err(RegistryError::DigestMismatch {
            what: what.to_owned(),
            expected: desc.digest.clone(),
            actual: d.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Adds what to do when a registry refuses to start an upload in a
/// repository: create the namespace (named refusals, 403), or use fewer path
/// levels (a bare 404 on a nested path: registries that limit nesting answer
/// so, without an error code).
pub fn namespace_hint(err: RegistryError, repo: &str) -> RegistryError {
    let refused = err.has_code("NAME_UNKNOWN")
        || err.has_code("NAME_INVALID")
        || err.has_code("DENIED")
        || err.status() == Some(403);
    let depth = repo.split('/').count();
    if !refused && err.status() == Some(404) && depth > 1 {
        return RegistryError::Usage(format!(
            "{err}\n  the registry has no upload endpoint for the repository {repo:?}, {depth} levels deep: \
             it may not accept repositories that deep (Quay, GHCR and GitLab limit nesting); \
             choose a --private-registry namespace with fewer levels"
        ));
    }
    if !refused {
        return err;
    }
    let first = repo.split('/').next().unwrap_or(repo);
    RegistryError::Usage(format!(
        "{err}\n  the registry refused the repository {repo:?}: create the project or namespace {first:?} first \
         (Harbor: a project; GitLab/Quay/GHCR: check that nested paths are allowed), or choose another --private-registry namespace"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_digest_query() {
        assert_eq!(next_offset(Some("0-1023"), true), Some(1024));
        assert_eq!(next_offset(Some("bytes=0-9"), true), Some(10));
        assert_eq!(next_offset(Some("0-0"), false), Some(0));
        assert_eq!(next_offset(Some("0-0"), true), Some(1));
        assert_eq!(next_offset(Some("garbage"), true), None);
        let d = Digest::sha256_of(b"x");
        assert!(with_digest("http://h/v2/a/blobs/uploads/u?_state=abc", &d)
            .contains("?_state=abc&digest=sha256%3A"));
        assert!(with_digest("/v2/a/blobs/uploads/u", &d).contains("/u?digest="));
    }

    #[test]
    fn counting_reader_moves_the_blob_meter_from_its_start_offset() {
        let meter = TransferMeter::new();
        let blob = meter.begin(blob_label("a/b", &Digest::sha256_of(b"x")), 10);
        assert!(meter.active()[0].label.starts_with("a/b@sha256:"));
        let mut r = CountingReader {
            inner: &b"12345"[..],
            position: 5,
            meter: &blob,
        };
        std::io::copy(&mut r, &mut std::io::sink()).unwrap();
        assert_eq!((blob.position(), meter.total()), (10, 10));
    }
}
