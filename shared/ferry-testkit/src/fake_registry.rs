//! An in-process OCI distribution registry over plain HTTP/1.1 on
//! `127.0.0.1:0`, for fast unit tests of the registry client.
//!
//! It records every request in order (so tests can assert the **exact request
//! sequence** a client sends, as go-containerregistry's `write_test.go` does),
//! and it can be told to behave like registries that are not distribution:
//! [`Quirks`] (refused mounts, no `Docker-Content-Digest`, 401s without a
//! challenge, path depth limits, lying about manifest bytes, no referrers API, blob transfers cut
//! midway, `Range` ignored)
//! and one-off scripted answers ([`Rule`]).
//!
//! By default it is a correct registry: blob HEAD/GET, uploads (mount,
//! monolithic POST and PUT, chunked PATCH with `Content-Range`, upload status),
//! manifests by tag or digest (it computes the digest of what is PUT and
//! checks that the blobs and child manifests it names are present), tags,
//! deletes, and the OCI referrers API. Errors carry distribution's JSON error
//! body. One thread accepts connections (stopped on drop), one thread serves
//! each connection (keep-alive).
//!
//! Recorded requests are `"METHOD /path?query"` with the query percent-decoded
//! (`POST /v2/b/blobs/uploads/?mount=sha256:…&from=a`). Upload sessions are
//! named `u1`, `u2`, … in order of creation, so their locations are stable.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use ferry_store::Digest;

/// Behaviours of registries that are not distribution (all off by default).
#[derive(Debug, Default, Clone)]
pub struct Quirks {
    /// `POST ?mount=` answers 202 and a new upload session (as distribution
    /// does when it cannot mount), even when the source repository has the blob.
    pub refuse_mounts: bool,
    /// No `Docker-Content-Digest` on manifest HEAD/GET/PUT answers (the header
    /// is optional in the OCI distribution spec).
    pub omit_manifest_digest: bool,
    /// Require Basic auth with these credentials; `GET /v2/` answers 401 with
    /// `WWW-Authenticate: Basic realm=…`.
    pub basic_auth: Option<(String, String)>,
    /// Require Bearer tokens issued by the fake's own realm (`GET /token`) to
    /// these Basic credentials; `GET /v2/` answers 401 with
    /// `WWW-Authenticate: Bearer realm="http://ADDR/token",service="fake"`.
    pub token_auth: Option<(String, String)>,
    /// With `basic_auth` or `token_auth`: every endpoint but `/v2/` answers 401
    /// WITHOUT a `WWW-Authenticate` header.
    pub challenge_only_on_ping: bool,
    /// Upload start (POST) on a repository with more path components answers
    /// a bare 404 (Go's `404 page not found`), like registries that limit
    /// nesting (Quay, GHCR, GitLab).
    pub max_repo_depth: Option<usize>,
    /// GET of a manifest by digest serves other bytes but keeps
    /// `Docker-Content-Digest` = the requested digest (a lying registry).
    pub serve_wrong_manifest_bytes: bool,
    /// `/v2/<name>/referrers/<digest>` answers 404.
    pub no_referrers_api: bool,
    /// A blob `GET` without `Range` announces the whole blob but sends only
    /// this many bytes, then closes the connection (a transfer cut midway).
    pub cut_blob_after: Option<usize>,
    /// Blob `GET`s ignore `Range` (answer 200 with the whole blob); by
    /// default `Range: bytes=N-` is answered 206 with the rest, as
    /// distribution does.
    pub ignore_range: bool,
}

/// A scripted answer: the next `times` requests whose method is `method` and
/// whose recorded text contains `path_contains` get this answer instead of
/// the registry's own (they are still recorded).
#[derive(Debug, Clone)]
pub struct Rule {
    /// Request method (`GET`, `HEAD`, `POST`, `PATCH`, `PUT`, `DELETE`).
    pub method: String,
    /// A substring of the recorded request path and query.
    pub path_contains: String,
    /// HTTP status to answer.
    pub status: u16,
    /// How many matching requests get this answer.
    pub times: usize,
    /// Response body (not sent for HEAD).
    pub body: String,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
}

/// The body of a manifest served under `serve_wrong_manifest_bytes`.
pub const WRONG_MANIFEST_BYTES: &[u8] =
    br#"{"schemaVersion":2,"note":"not the bytes you asked for"}"#;

#[derive(Default)]
struct State {
    quirks: Quirks,
    /// repository → digest → bytes.
    blobs: HashMap<String, HashMap<String, Arc<Vec<u8>>>>,
    /// repository → digest → (media type, bytes).
    manifests: HashMap<String, HashMap<String, (String, Vec<u8>)>>,
    /// repository → tag → digest.
    tags: HashMap<String, BTreeMap<String, String>>,
    /// upload id → (repository, bytes so far).
    uploads: HashMap<String, (String, Vec<u8>)>,
    uploads_created: usize,
    requests: Vec<String>,
    rules: Vec<Rule>,
}

/// An in-process registry on `127.0.0.1:0`; on drop it stops accepting and
/// closes every connection.
pub struct FakeRegistry {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    /// Every accepted connection, shut down on drop (a dropped registry is gone,
    /// keep-alive connections included).
    connections: Arc<Mutex<Vec<TcpStream>>>,
}

impl FakeRegistry {
    /// A correct registry.
    pub fn start() -> FakeRegistry {
        FakeRegistry::with_quirks(Quirks::default())
    }

    /// A registry with `quirks`.
    pub fn with_quirks(quirks: Quirks) -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State {
            quirks,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let accept = {
            let state = Arc::clone(&state);
            let stop = Arc::clone(&stop);
            let connections = Arc::clone(&connections);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    if let Ok(clone) = stream.try_clone() {
                        connections
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(clone);
                    }
                    let state = Arc::clone(&state);
                    std::thread::spawn(move || serve_connection(stream, &state, addr));
                }
            })
        };
        FakeRegistry {
            addr,
            state,
            stop,
            accept: Some(accept),
            connections,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Every request so far, in order (see the module docs for the format).
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// TCP connections accepted so far (a client that reuses kept-alive
    /// connections opens few).
    pub fn connections_accepted(&self) -> usize {
        self.connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Forgets the requests recorded so far.
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    /// Stores a blob in `repo`; returns its digest.
    pub fn add_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = Digest::sha256_of(bytes).to_string();
        self.lock()
            .blobs
            .entry(repo.to_owned())
            .or_default()
            .insert(digest.clone(), Arc::new(bytes.to_vec()));
        digest
    }

    /// Stores a manifest in `repo` under its digest, and tags it when
    /// `reference` is a tag.
    pub fn add_manifest(&self, repo: &str, reference: &str, media_type: &str, bytes: &[u8]) {
        put_manifest(&mut self.lock(), repo, reference, media_type, bytes);
    }

    /// A blob's bytes in `repo`.
    pub fn blob(&self, repo: &str, digest: &str) -> Option<Vec<u8>> {
        self.lock()
            .blobs
            .get(repo)
            .and_then(|b| b.get(digest))
            .map(|b| b.to_vec())
    }

    /// A manifest by tag or digest: (media type, bytes).
    pub fn manifest(&self, repo: &str, reference: &str) -> Option<(String, Vec<u8>)> {
        find_manifest(&self.lock(), repo, reference).map(|(_, m)| m)
    }

    /// The tags of `repo`, sorted.
    pub fn tags(&self, repo: &str) -> Vec<String> {
        self.lock()
            .tags
            .get(repo)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Adds a scripted answer (rules are tried in the order they were added).
    pub fn script(&self, rule: Rule) {
        self.lock().rules.push(rule);
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        for c in self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// One parsed request.
struct Request {
    method: String,
    path: String,
    /// Decoded query parameters, in order.
    query: Vec<(String, String)>,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `METHOD /path?decoded-query`.
    fn recorded(&self) -> String {
        let mut s = format!("{} {}", self.method, self.path);
        for (i, (k, v)) in self.query.iter().enumerate() {
            s.push(if i == 0 { '?' } else { '&' });
            s.push_str(k);
            s.push('=');
            s.push_str(v);
        }
        s
    }
}

/// An answer.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Send only this many bytes of the body, then close the connection.
    cut_after: Option<usize>,
}

impl Reply {
    fn new(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            cut_after: None,
        }
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    /// distribution's JSON error body.
    fn error(status: u16, code: &str, message: &str) -> Reply {
        let body =
            serde_json::json!({"errors": [{"code": code, "message": message, "detail": null}]});
        Reply::new(status)
            .header("Content-Type", "application/json")
            .body(body.to_string())
    }
}

fn serve_connection(stream: TcpStream, state: &Mutex<State>, addr: SocketAddr) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    while let Some(req) = read_request(&mut reader) {
        let close = req
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let head = req.method == "HEAD";
        let reply = handle(state, req, addr);
        if write_reply(&mut writer, &reply, head).is_err() || close {
            break;
        }
    }
    // The registry keeps a clone of every stream (to close them on drop):
    // dropping this one alone would not close the connection.
    let _ = writer.shutdown(std::net::Shutdown::Both);
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0u8; n + 2];
            reader.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = headers
        .get("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        body.resize(n, 0);
        reader.read_exact(&mut body).ok()?;
    }
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let query = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    Some(Request {
        method,
        path: path.to_owned(),
        query,
        headers,
        body,
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn write_reply(w: &mut TcpStream, reply: &Reply, head: bool) -> std::io::Result<()> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", reply.status, reason(reply.status));
    let mut has_length = false;
    for (k, v) in &reply.headers {
        has_length |= k.eq_ignore_ascii_case("content-length");
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_length {
        out.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
    }
    out.push_str("Docker-Distribution-API-Version: registry/2.0\r\n\r\n");
    w.write_all(out.as_bytes())?;
    if !head {
        if let Some(n) = reply.cut_after.filter(|n| *n < reply.body.len()) {
            w.write_all(&reply.body[..n])?;
            w.flush()?;
            return Err(std::io::Error::other("transfer cut (quirk)"));
        }
        w.write_all(&reply.body)?;
    }
    w.flush()
}

/// The endpoint a path names.
enum Route<'p> {
    Ping,
    Token,
    Upload { repo: &'p str, id: Option<&'p str> },
    Blob { repo: &'p str, digest: &'p str },
    Manifest { repo: &'p str, reference: &'p str },
    Tags { repo: &'p str },
    Referrers { repo: &'p str, digest: &'p str },
    Unknown,
}

fn route(path: &str) -> Route<'_> {
    if path == "/v2/" || path == "/v2" {
        return Route::Ping;
    }
    if path == "/token" {
        return Route::Token;
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return Route::Unknown;
    };
    if let Some(repo) = rest.strip_suffix("/tags/list") {
        return Route::Tags { repo };
    }
    if let Some(i) = rest.rfind("/blobs/uploads") {
        let id = rest[i + "/blobs/uploads".len()..].trim_start_matches('/');
        return Route::Upload {
            repo: &rest[..i],
            id: (!id.is_empty()).then_some(id),
        };
    }
    for (marker, kind) in [("/manifests/", 0), ("/blobs/", 1), ("/referrers/", 2)] {
        if let Some(i) = rest.rfind(marker) {
            let (repo, arg) = (&rest[..i], &rest[i + marker.len()..]);
            return match kind {
                0 => Route::Manifest {
                    repo,
                    reference: arg,
                },
                1 => Route::Blob { repo, digest: arg },
                _ => Route::Referrers { repo, digest: arg },
            };
        }
    }
    Route::Unknown
}

/// The token the fake's realm issues.
const TOKEN: &str = "fake-registry-token";

fn handle(state: &Mutex<State>, req: Request, addr: SocketAddr) -> Reply {
    let mut s = lock(state);
    let recorded = req.recorded();
    s.requests.push(recorded.clone());
    if let Some(rule) = s
        .rules
        .iter_mut()
        .find(|r| r.times > 0 && r.method == req.method && recorded.contains(&r.path_contains))
    {
        rule.times -= 1;
        let mut reply = Reply::new(rule.status).body(rule.body.clone());
        reply.headers = rule.headers.clone();
        return reply;
    }
    let route = route(&req.path);
    if let Some(denied) = check_auth(&s.quirks, &req, &route, addr) {
        return denied;
    }
    match route {
        Route::Ping => Reply::new(200)
            .header("Content-Type", "application/json")
            .body("{}"),
        Route::Token => Reply::new(200)
            .header("Content-Type", "application/json")
            .body(serde_json::json!({"token": TOKEN, "expires_in": 300}).to_string()),
        Route::Upload { repo, id } => upload(&mut s, &req, repo, id),
        Route::Blob { repo, digest } => blob(&mut s, &req, repo, digest),
        Route::Manifest { repo, reference } => manifest(&mut s, &req, repo, reference),
        Route::Tags { repo } => match s.tags.get(repo) {
            Some(tags) if req.method == "GET" => Reply::new(200)
                .header("Content-Type", "application/json")
                .body(
                    serde_json::json!({"name": repo, "tags": tags.keys().collect::<Vec<_>>()})
                        .to_string(),
                ),
            _ if req.method == "GET" => {
                Reply::error(404, "NAME_UNKNOWN", "repository name not known to registry")
            }
            _ => unsupported(),
        },
        Route::Referrers { repo, digest } => referrers(&s, &req, repo, digest),
        Route::Unknown => Reply::new(404).body("404 page not found\n"),
    }
}

fn unsupported() -> Reply {
    Reply::error(405, "UNSUPPORTED", "the operation is unsupported")
}

/// `Some(401)` when the request lacks the credentials the quirks require.
fn check_auth(q: &Quirks, req: &Request, route: &Route<'_>, addr: SocketAddr) -> Option<Reply> {
    let basic = |(user, pass): &(String, String)| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    };
    let given = req.header("authorization");
    let (accepted, challenge) = match (&q.basic_auth, &q.token_auth) {
        (_, Some(creds)) => {
            if matches!(route, Route::Token) {
                // The realm itself wants the Basic credentials.
                return (given != Some(basic(creds).as_str()))
                    .then(|| Reply::error(401, "UNAUTHORIZED", "authentication required"));
            }
            (
                format!("Bearer {TOKEN}"),
                format!(r#"Bearer realm="http://{addr}/token",service="fake""#),
            )
        }
        (Some(creds), None) => (basic(creds), r#"Basic realm="fake""#.to_owned()),
        (None, None) => return None,
    };
    if given == Some(accepted.as_str()) {
        return None;
    }
    let reply = Reply::error(401, "UNAUTHORIZED", "authentication required");
    if q.challenge_only_on_ping && !matches!(route, Route::Ping) {
        return Some(reply);
    }
    Some(reply.header("WWW-Authenticate", challenge))
}

fn blob_present(s: &State, repo: &str, digest: &str) -> Option<Arc<Vec<u8>>> {
    s.blobs.get(repo).and_then(|b| b.get(digest)).cloned()
}

fn blob(s: &mut State, req: &Request, repo: &str, digest: &str) -> Reply {
    match req.method.as_str() {
        "GET" if req.header("range").is_some() && !s.quirks.ignore_range => {
            let Some(bytes) = blob_present(s, repo, digest) else {
                return Reply::error(404, "BLOB_UNKNOWN", "blob unknown to registry");
            };
            let start = req
                .header("range")
                .and_then(|r| r.strip_prefix("bytes="))
                .and_then(|r| r.trim_end_matches('-').parse::<usize>().ok());
            match start {
                Some(start) if start < bytes.len() => Reply::new(206)
                    .header("Content-Type", "application/octet-stream")
                    .header("Docker-Content-Digest", digest)
                    .header(
                        "Content-Range",
                        format!("bytes {start}-{}/{}", bytes.len() - 1, bytes.len()),
                    )
                    .body(bytes[start..].to_vec()),
                _ => Reply::error(416, "BLOB_UNKNOWN", "requested range not satisfiable"),
            }
        }
        "HEAD" | "GET" => match blob_present(s, repo, digest) {
            Some(bytes) => Reply {
                cut_after: s
                    .quirks
                    .cut_blob_after
                    .filter(|_| req.method == "GET" && req.header("range").is_none()),
                ..Reply::new(200)
            }
            .header("Content-Type", "application/octet-stream")
            .header("Docker-Content-Digest", digest)
            .header("Content-Length", bytes.len().to_string())
            .body(bytes.to_vec()),
            None => Reply::error(404, "BLOB_UNKNOWN", "blob unknown to registry"),
        },
        "DELETE" => match s.blobs.get_mut(repo).and_then(|b| b.remove(digest)) {
            Some(_) => Reply::new(202),
            None => Reply::error(404, "BLOB_UNKNOWN", "blob unknown to registry"),
        },
        _ => unsupported(),
    }
}

fn upload_reply(status: u16, repo: &str, id: &str, len: usize) -> Reply {
    Reply::new(status)
        .header("Location", format!("/v2/{repo}/blobs/uploads/{id}"))
        .header("Docker-Upload-UUID", id)
        .header("Range", format!("0-{}", len.saturating_sub(1)))
}

fn upload(s: &mut State, req: &Request, repo: &str, id: Option<&str>) -> Reply {
    match (req.method.as_str(), id) {
        ("POST", None) => {
            if let Some(max) = s.quirks.max_repo_depth {
                if repo.split('/').count() > max {
                    return Reply::new(404)
                        .header("Content-Type", "text/plain; charset=utf-8")
                        .body("404 page not found\n");
                }
            }
            if let (Some(digest), Some(from)) = (req.param("mount"), req.param("from")) {
                if !s.quirks.refuse_mounts {
                    if let Some(bytes) = blob_present(s, from, digest) {
                        s.blobs
                            .entry(repo.to_owned())
                            .or_default()
                            .insert(digest.to_owned(), bytes);
                        return blob_created(repo, digest);
                    }
                }
            }
            if let Some(digest) = req.param("digest") {
                return complete(s, repo, digest, req.body.clone());
            }
            s.uploads_created += 1;
            let id = format!("u{}", s.uploads_created);
            s.uploads
                .insert(id.clone(), (repo.to_owned(), req.body.clone()));
            upload_reply(202, repo, &id, req.body.len())
        }
        (method, Some(id)) => {
            let Some((owner, bytes)) = s.uploads.get_mut(id) else {
                return Reply::error(
                    404,
                    "BLOB_UPLOAD_UNKNOWN",
                    "blob upload unknown to registry",
                );
            };
            if owner != repo {
                return Reply::error(
                    404,
                    "BLOB_UPLOAD_UNKNOWN",
                    "blob upload unknown to registry",
                );
            }
            match method {
                "GET" => upload_reply(204, repo, id, bytes.len()),
                "PATCH" => {
                    if let Some(range) = req.header("content-range") {
                        let start = range
                            .trim_start_matches("bytes ")
                            .split('-')
                            .next()
                            .and_then(|v| v.trim().parse::<usize>().ok());
                        if start != Some(bytes.len()) {
                            return Reply::error(
                                416,
                                "BLOB_UPLOAD_INVALID",
                                "blob upload invalid: range does not continue the upload",
                            );
                        }
                    }
                    bytes.extend_from_slice(&req.body);
                    let len = bytes.len();
                    upload_reply(202, repo, id, len)
                }
                "PUT" => {
                    let Some(digest) = req.param("digest") else {
                        return Reply::error(400, "DIGEST_INVALID", "digest parameter missing");
                    };
                    let (_, mut bytes) = s.uploads.remove(id).unwrap_or_default();
                    bytes.extend_from_slice(&req.body);
                    complete(s, repo, digest, bytes)
                }
                "DELETE" => {
                    s.uploads.remove(id);
                    Reply::new(204)
                }
                _ => unsupported(),
            }
        }
        _ => unsupported(),
    }
}

fn blob_created(repo: &str, digest: &str) -> Reply {
    Reply::new(201)
        .header("Location", format!("/v2/{repo}/blobs/{digest}"))
        .header("Docker-Content-Digest", digest)
}

/// Stores an upload's assembled bytes if they hash to `digest`.
fn complete(s: &mut State, repo: &str, digest: &str, bytes: Vec<u8>) -> Reply {
    let matches = digest
        .parse::<Digest>()
        .is_ok_and(|d| d.of_same_algorithm(&bytes) == d);
    if !matches {
        return Reply::error(
            400,
            "DIGEST_INVALID",
            "provided digest did not match uploaded content",
        );
    }
    s.blobs
        .entry(repo.to_owned())
        .or_default()
        .insert(digest.to_owned(), Arc::new(bytes));
    blob_created(repo, digest)
}

/// (digest, (media type, bytes)) of a manifest by tag or digest.
fn find_manifest(s: &State, repo: &str, reference: &str) -> Option<(String, (String, Vec<u8>))> {
    let digest = if reference.contains(':') {
        reference.to_owned()
    } else {
        s.tags.get(repo)?.get(reference)?.clone()
    };
    let m = s.manifests.get(repo)?.get(&digest)?.clone();
    Some((digest, m))
}

fn put_manifest(
    s: &mut State,
    repo: &str,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) -> String {
    let digest = Digest::sha256_of(bytes).to_string();
    s.manifests
        .entry(repo.to_owned())
        .or_default()
        .insert(digest.clone(), (media_type.to_owned(), bytes.to_vec()));
    if !reference.contains(':') {
        s.tags
            .entry(repo.to_owned())
            .or_default()
            .insert(reference.to_owned(), digest.clone());
    }
    digest
}

/// What a manifest refers to that must already be in the repository.
fn missing_reference(s: &State, repo: &str, bytes: &[u8]) -> Option<Reply> {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Some(Reply::error(400, "MANIFEST_INVALID", "manifest invalid"));
    };
    let digest_of = |d: &serde_json::Value| d["digest"].as_str().map(str::to_owned);
    let blobs = json["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(json.get("config"))
        .filter_map(digest_of);
    for d in blobs {
        if blob_present(s, repo, &d).is_none() {
            return Some(Reply::error(
                400,
                "MANIFEST_BLOB_UNKNOWN",
                &format!("blob unknown to registry: {d}"),
            ));
        }
    }
    for d in json["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(digest_of)
    {
        if find_manifest(s, repo, &d).is_none() {
            return Some(Reply::error(
                400,
                "MANIFEST_UNKNOWN",
                &format!("manifest unknown: {d}"),
            ));
        }
    }
    None
}

fn manifest(s: &mut State, req: &Request, repo: &str, reference: &str) -> Reply {
    let omit = s.quirks.omit_manifest_digest;
    let with_digest = |reply: Reply, digest: &str| {
        if omit {
            reply
        } else {
            reply.header("Docker-Content-Digest", digest)
        }
    };
    match req.method.as_str() {
        "HEAD" | "GET" => {
            let Some((digest, (media_type, mut bytes))) = find_manifest(s, repo, reference) else {
                return Reply::error(404, "MANIFEST_UNKNOWN", "manifest unknown");
            };
            if s.quirks.serve_wrong_manifest_bytes && reference.contains(':') {
                bytes = WRONG_MANIFEST_BYTES.to_vec();
            }
            let reply = Reply::new(200)
                .header("Content-Type", media_type)
                .header("Content-Length", bytes.len().to_string())
                .body(bytes);
            with_digest(reply, &digest)
        }
        "PUT" => {
            if let Some(refused) = missing_reference(s, repo, &req.body) {
                return refused;
            }
            let computed = Digest::sha256_of(&req.body).to_string();
            if reference.contains(':') && reference != computed {
                return Reply::error(
                    400,
                    "DIGEST_INVALID",
                    "provided digest did not match uploaded content",
                );
            }
            let media_type = req.header("content-type").unwrap_or_default().to_owned();
            let digest = put_manifest(s, repo, reference, &media_type, &req.body);
            let reply =
                Reply::new(201).header("Location", format!("/v2/{repo}/manifests/{digest}"));
            with_digest(reply, &digest)
        }
        "DELETE" => {
            let removed = s
                .manifests
                .get_mut(repo)
                .and_then(|m| m.remove(reference))
                .is_some();
            if !removed {
                return Reply::error(404, "MANIFEST_UNKNOWN", "manifest unknown");
            }
            if let Some(tags) = s.tags.get_mut(repo) {
                tags.retain(|_, d| d != reference);
            }
            Reply::new(202)
        }
        _ => unsupported(),
    }
}

fn referrers(s: &State, req: &Request, repo: &str, subject: &str) -> Reply {
    if s.quirks.no_referrers_api {
        return Reply::new(404).body("404 page not found\n");
    }
    if req.method != "GET" {
        return unsupported();
    }
    let wanted = req.param("artifactType");
    let mut descriptors = Vec::new();
    let mut all: Vec<_> = s.manifests.get(repo).into_iter().flatten().collect();
    all.sort_by(|a, b| a.0.cmp(b.0));
    for (digest, (media_type, bytes)) in all {
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes) else {
            continue;
        };
        if json["subject"]["digest"].as_str() != Some(subject) {
            continue;
        }
        let artifact_type = json["artifactType"]
            .as_str()
            .or_else(|| json["config"]["mediaType"].as_str())
            .unwrap_or_default();
        if wanted.is_some_and(|w| w != artifact_type) {
            continue;
        }
        let mut d = serde_json::json!({
            "mediaType": media_type,
            "digest": digest,
            "size": bytes.len(),
            "artifactType": artifact_type,
        });
        if let Some(a) = json.get("annotations") {
            d["annotations"] = a.clone();
        }
        descriptors.push(d);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": descriptors,
    });
    let mut reply = Reply::new(200)
        .header("Content-Type", "application/vnd.oci.image.index.v1+json")
        .body(index.to_string());
    if wanted.is_some() {
        reply = reply.header("OCI-Filters-Applied", "artifactType");
    }
    reply
}

#[cfg(test)]
mod tests;
