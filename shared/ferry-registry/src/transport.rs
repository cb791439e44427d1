//! HTTP transport: one ureq agent (TLS roots = system + `--cacert`, curl-style
//! proxy choice, per-read/per-write stall timeouts and no total-time cap),
//! manual redirects that never carry `Authorization` to another host, and
//! mapping of transport failures to typed, retry-classified errors.

use std::io::Read;
use std::time::Duration;

use crate::error::{RegistryError, RegistryErrorEntry};
use crate::target::Target;

/// Kept-alive connections kept for reuse, in all and per registry: at least
/// the most requests a tool sends at once (`ferry-diff`'s default `--jobs` 64),
/// so that a connection is reused rather than closed and its TLS handshake
/// (CPU on the registry, round trips on a slow link) paid again. ureq's own
/// default keeps 10 in all.
const IDLE_CONNECTIONS: usize = 64;

/// Transport settings.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// Extra CA certificates (PEM), added to the system roots.
    pub cacert: Option<std::path::PathBuf>,
    /// Skip certificate verification (explicit user choice only).
    pub insecure_skip_tls_verify: bool,
    /// No byte moving for this long = stalled (retried); there is no total-time cap.
    /// Also the longest wait for a connection (TCP and TLS handshake) and for an
    /// answer: a registry that has not answered yet fails after this, unretried.
    pub stall_timeout: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            cacert: None,
            insecure_skip_tls_verify: false,
            stall_timeout: Duration::from_secs(60),
        }
    }
}

/// A request body that can be replayed.
pub enum Body<'a> {
    /// No body (`Content-Length: 0` for POST/PUT/PATCH).
    Empty,
    /// Small in-memory body.
    Bytes(&'a [u8]),
    /// A streamed body of known length.
    Reader(&'a mut dyn Read, u64),
}

/// A response: status, headers, and the body still to read.
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// The URL that answered (after redirects).
    pub url: String,
    inner: ureq::http::Response<ureq::Body>,
}

impl Response {
    /// A header value as a string.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.inner.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// Reads the whole body, up to `limit` bytes.
    pub fn bytes(self, limit: u64) -> Result<Vec<u8>, RegistryError> {
        let url = self.url.clone();
        self.inner
            .into_body()
            .into_with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| map_error(&format!("reading {}", redact(&url)), "", None, e))
    }

    /// The body as a reader.
    pub fn reader(self) -> impl Read {
        self.inner.into_body().into_reader()
    }

    /// Turns an error status into a typed error, reading the registry's JSON errors.
    pub fn into_error(self, method: &str, what: &str) -> RegistryError {
        let status = self.status;
        let retry_after = self
            .header("retry-after")
            .and_then(|v| v.trim().parse::<u64>().ok());
        let body = if method == "HEAD" {
            Vec::new()
        } else {
            self.bytes(64 * 1024).unwrap_or_default()
        };
        #[derive(serde::Deserialize)]
        struct Errors {
            errors: Vec<RegistryErrorEntry>,
        }
        let errors = serde_json::from_slice::<Errors>(&body)
            .map(|e| e.errors)
            .unwrap_or_default();
        RegistryError::Status {
            method: method.to_owned(),
            what: what.to_owned(),
            status,
            errors,
            retry_after,
        }
    }
}

/// The HTTP side of a registry client.
pub struct Transport {
    agent: ureq::Agent,
    target: Target,
    cacert: Option<std::path::PathBuf>,
    stall_timeout: Duration,
    /// Set once the registry's own origin has answered anything: before that,
    /// a refused or silent connection is reported at once, not retried.
    answered: std::sync::atomic::AtomicBool,
    /// The proxy in use, as `scheme://host:port` (for first-contact errors).
    proxy_shown: Option<String>,
}

/// How many stall timeouts the registry may take to answer once an upload's
/// last byte is written: up to a socket buffer of the body (megabytes) may
/// still be on its way on a slow link, and the registry syncs (or, on object
/// storage, copies) the blob before it answers. A stall while the body is
/// being sent is still caught after one stall timeout (writes stop moving).
pub const AFTER_UPLOAD_STALLS: u32 = 5;

impl Transport {
    /// Builds the agent for `target`.
    pub fn new(target: &Target, opts: &TransportOptions) -> Result<Transport, RegistryError> {
        let mut roots: Vec<ureq::tls::Certificate<'static>> = Vec::new();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            roots.push(ureq::tls::Certificate::from_der(cert.as_ref()).to_owned());
        }
        if let Some(path) = &opts.cacert {
            let pem = std::fs::read(path)
                .map_err(|e| RegistryError::Usage(format!("--cacert {}: {e}", path.display())))?;
            let before = roots.len();
            for item in ureq::tls::parse_pem(&pem) {
                if let Ok(ureq::tls::PemItem::Certificate(c)) = item {
                    roots.push(c.to_owned());
                }
            }
            if roots.len() == before {
                return Err(RegistryError::Usage(format!(
                    "--cacert {}: no PEM certificate found",
                    path.display()
                )));
            }
        }
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
            .disable_verification(opts.insecure_skip_tls_verify)
            .build();
        let proxy_url =
            crate::proxy::proxy_for(&target.scheme, target.hostname(), target.port(), &|k| {
                std::env::var(k).ok()
            });
        // scheme://host:port only: a proxy URL may carry credentials.
        let proxy_shown = proxy_url.as_deref().map(origin_of);
        let proxy = proxy_url
            .map(|p| {
                ureq::Proxy::new(&p)
                    .map_err(|e| RegistryError::Usage(format!("proxy {}: {e}", redact(&p))))
            })
            .transpose()?;
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .proxy(proxy)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(opts.stall_timeout))
            .timeout_recv_response(Some(opts.stall_timeout))
            .timeout_per_read(Some(opts.stall_timeout))
            .timeout_per_write(Some(opts.stall_timeout))
            .max_idle_connections(IDLE_CONNECTIONS)
            .max_idle_connections_per_host(IDLE_CONNECTIONS)
            .user_agent(format!("ferry/{}", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Transport {
            agent: ureq::Agent::new_with_config(config),
            target: target.clone(),
            cacert: opts.cacert.clone(),
            stall_timeout: opts.stall_timeout,
            answered: std::sync::atomic::AtomicBool::new(false),
            proxy_shown,
        })
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Resolves a `Location` (absolute or relative) against the registry.
    pub fn resolve(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else if location.starts_with('/') {
            format!("{}{location}", self.target.base_url())
        } else {
            format!("{}/{location}", self.target.base_url())
        }
    }

    /// Sends one request. `authorization` is attached only on the registry's
    /// own origin. GET/HEAD follow up to 5 redirects, dropping `Authorization`
    /// when the redirect leaves the registry's origin.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        authorization: Option<&str>,
        body: Body<'_>,
    ) -> Result<Response, RegistryError> {
        let origin = self.target.base_url();
        self.send_with_origin(method, url, headers, authorization, body, &origin)
    }

    /// Like [`Transport::send`], with `authorization` allowed only on `origin`'s scheme and authority.
    pub(crate) fn send_with_origin(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        authorization: Option<&str>,
        body: Body<'_>,
        origin: &str,
    ) -> Result<Response, RegistryError> {
        let origin = origin_of(origin);
        let mut url = url.to_owned();
        let mut body = Some(body);
        for _ in 0..6 {
            let what = format!("{method} {}", redact(&url));
            let mut req = ureq::http::Request::builder().method(method).uri(&url);
            for (k, v) in headers {
                req = req.header(*k, v.as_str());
            }
            if let Some(a) = authorization.filter(|_| origin_of(&url) == origin) {
                req = req.header("Authorization", a);
            }
            let result = match body.take().unwrap_or(Body::Empty) {
                Body::Empty => {
                    if matches!(method, "POST" | "PUT" | "PATCH") {
                        req = req.header("Content-Length", "0");
                        self.agent
                            .run(req.body(Vec::<u8>::new()).map_err(|e| usage(&what, e))?)
                    } else {
                        self.agent.run(req.body(()).map_err(|e| usage(&what, e))?)
                    }
                }
                Body::Bytes(b) => self
                    .agent
                    .run(req.body(b.to_vec()).map_err(|e| usage(&what, e))?),
                Body::Reader(r, len) => {
                    req = req.header("Content-Length", len.to_string());
                    let body = ureq::SendBody::from_reader(r);
                    let req = req.body(body).map_err(|e| usage(&what, e))?;
                    // After the last byte is handed to the kernel, up to a socket
                    // buffer of it is still on its way (megabytes, on a slow link),
                    // and the registry then syncs the blob: the stall timeout would
                    // cut uploads that are still moving.
                    let wait = self.stall_timeout * AFTER_UPLOAD_STALLS;
                    let req = self
                        .agent
                        .configure_request(req)
                        .timeout_recv_response(Some(wait))
                        .timeout_per_read(Some(wait))
                        .build();
                    self.agent.run(req)
                }
            };
            let own_origin = origin_of(&url) == origin_of(&self.target.base_url());
            let resp = match result {
                Ok(resp) => resp,
                Err(e) => {
                    if own_origin && !self.answered.load(std::sync::atomic::Ordering::SeqCst) {
                        if let Some(err) = self.first_contact_error(&what, &url, &e) {
                            return Err(err);
                        }
                    }
                    return Err(map_error(
                        &what,
                        &self.target.host,
                        self.cacert.as_deref(),
                        e,
                    ));
                }
            };
            if own_origin {
                self.answered
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            let status = resp.status().as_u16();
            if status == 400
                && url.starts_with("http://")
                && resp.version() == ureq::http::Version::HTTP_10
                && resp.headers().is_empty()
            {
                return Err(RegistryError::ExpectsTls {
                    host: self.target.host.clone(),
                });
            }
            if matches!(status, 301 | 302 | 303 | 307 | 308) && matches!(method, "GET" | "HEAD") {
                if let Some(loc) = resp.headers().get("location").and_then(|v| v.to_str().ok()) {
                    url = self.resolve(loc);
                    continue;
                }
            }
            return Ok(Response {
                status,
                url,
                inner: resp,
            });
        }
        Err(RegistryError::Protocol {
            what: format!("{method} {}", redact(&url)),
            detail: "too many redirects".into(),
        })
    }
}

impl Transport {
    /// The error for a registry that never answered: nothing listens at its
    /// address, or it accepted the connection and stayed silent for a stall
    /// timeout. `None` for any other failure (mapped and retried as usual).
    fn first_contact_error(&self, what: &str, url: &str, e: &ureq::Error) -> Option<RegistryError> {
        let address = self.target.host.clone();
        let secs = self.stall_timeout.as_secs();
        let silent = |waited_for: &str| {
            format!(
                "{address} accepted the connection but {waited_for} within {secs} s \
                 (--stall-timeout): is this the registry's address and port? \
                 Raise --stall-timeout if the registry is this slow to answer"
            )
        };
        let through = match &self.proxy_shown {
            Some(p) => format!(" (through the proxy {p}: check it too)"),
            None => String::new(),
        };
        let detail = match e {
            ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => format!(
                "{address} refused the connection: nothing listens there (check the host and port of --private-registry)"
            ),
            ureq::Error::ConnectionFailed => format!(
                "cannot connect to {address} (check the host and port of --private-registry)"
            ),
            ureq::Error::Timeout(ureq::Timeout::Connect) if url.starts_with("https://") => {
                silent("did not complete the TLS handshake")
            }
            ureq::Error::Timeout(ureq::Timeout::Connect) => {
                format!("no connection to {address} within {secs} s (--stall-timeout): is the host reachable?")
            }
            ureq::Error::Timeout(ureq::Timeout::SendRequest | ureq::Timeout::RecvResponse) => {
                silent("sent no answer")
            }
            _ => return None,
        };
        Some(RegistryError::Unreachable {
            address,
            what: what.to_owned(),
            detail: detail + &through,
        })
    }
}

/// `scheme://authority` of an absolute URL (lowercased).
pub fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // Strip userinfo, if any.
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        authority.to_ascii_lowercase()
    )
}

fn usage(what: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Protocol {
        what: what.to_owned(),
        detail: e.to_string(),
    }
}

/// Drops query strings (which may carry signed upload state) from URLs shown to users.
pub fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((path, _)) => format!("{path}?…"),
        None => url.to_owned(),
    }
}

fn map_error(
    what: &str,
    host: &str,
    cacert: Option<&std::path::Path>,
    e: ureq::Error,
) -> RegistryError {
    let detail = e.to_string();
    let lower = detail.to_ascii_lowercase();
    let tls_words = [
        "certificate",
        "unknownissuer",
        "notvalidforname",
        "expired",
        "badsignature",
        "invalid peer",
    ];
    // rustls reading an HTTP answer to its ClientHello: the server speaks plain HTTP.
    if lower.contains("invalidcontenttype") || lower.contains("corrupt message") {
        return RegistryError::NotTls {
            host: host.to_owned(),
            detail,
        };
    }
    if matches!(e, ureq::Error::Rustls(_) | ureq::Error::Tls(_))
        || tls_words.iter().any(|w| lower.contains(w))
    {
        let hint = match cacert {
            Some(ca) => format!(
                "Check that {} is the CA that signed the registry's certificate, and that the certificate names this host and is in date (or, insecurely, --insecure-skip-tls-verify)",
                ca.display()
            ),
            None => "If the registry uses a private CA, pass it with --cacert CA.pem (or, insecurely, --insecure-skip-tls-verify)"
                .to_owned(),
        };
        return RegistryError::Tls {
            host: host.to_owned(),
            detail: explain_tls(&detail),
            hint,
        };
    }
    let retryable = match &e {
        ureq::Error::Timeout(_)
        | ureq::Error::Io(_)
        | ureq::Error::ConnectionFailed
        | ureq::Error::BodyStalled => true,
        ureq::Error::Protocol(_) => true,
        ureq::Error::HostNotFound => false,
        _ => {
            lower.contains("reset")
                || lower.contains("broken pipe")
                || lower.contains("unexpected eof")
        }
    };
    RegistryError::Transport {
        what: what.to_owned(),
        detail,
        retryable,
    }
}

fn explain_tls(detail: &str) -> String {
    let d = detail.to_ascii_lowercase();
    let why = if d.contains("unknownissuer") {
        "signed by an unknown certificate authority"
    } else if d.contains("notvalidforname") || d.contains("not valid for name") {
        "it is not valid for this host name or IP address"
    } else if d.contains("expired") {
        "it has expired"
    } else if d.contains("notvalidyet") {
        "it is not valid yet"
    } else {
        "verification failed"
    };
    format!("{why}: {detail}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::thread::JoinHandle;
    use std::time::Instant;

    /// A one-shot HTTP/1.1 fake: serves `responses.len()` connections, one
    /// request each (answering with `Connection: close`), and returns the raw
    /// request heads it received, in order. Never blocks for more than ~10 s.
    pub(crate) struct FakeServer {
        port: u16,
        thread: Option<JoinHandle<Vec<String>>>,
    }

    impl FakeServer {
        /// Binds 127.0.0.1:0; the responses are produced once the port is known.
        pub(crate) fn start(
            responses: impl FnOnce(u16) -> Vec<String> + Send + 'static,
        ) -> FakeServer {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
            let port = listener.local_addr().expect("local addr").port();
            listener
                .set_nonblocking(true)
                .expect("nonblocking listener");
            let thread = std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(10);
                let mut heads = Vec::new();
                for response in responses(port) {
                    let stream = loop {
                        match listener.accept() {
                            Ok((s, _)) => break Some(s),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                if Instant::now() >= deadline {
                                    break None;
                                }
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            Err(_) => break None,
                        }
                    };
                    let Some(stream) = stream else { break };
                    match serve_one(stream, &response) {
                        Ok(head) => heads.push(head),
                        Err(e) => heads.push(format!("<error: {e}>")),
                    }
                }
                heads
            });
            FakeServer {
                port,
                thread: Some(thread),
            }
        }

        pub(crate) fn url(&self, path: &str) -> String {
            format!("http://127.0.0.1:{}{path}", self.port)
        }

        /// Waits for the server thread and returns the request heads it saw.
        pub(crate) fn heads(mut self) -> Vec<String> {
            self.thread
                .take()
                .expect("joined once")
                .join()
                .expect("fake server thread panicked")
        }
    }

    impl Drop for FakeServer {
        fn drop(&mut self) {
            // Unblock a server still waiting for a connection, then reap it.
            if let Some(t) = self.thread.take() {
                let _ = TcpStream::connect_timeout(
                    &std::net::SocketAddr::from(([127, 0, 0, 1], self.port)),
                    Duration::from_secs(1),
                );
                let _ = t.join();
            }
        }
    }

    fn serve_one(mut stream: TcpStream, response: &str) -> std::io::Result<String> {
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.set_write_timeout(Some(Duration::from_secs(5)))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > 64 * 1024 {
                break;
            }
        }
        stream.write_all(response.as_bytes())?;
        stream.flush()?;
        let _ = stream.shutdown(std::net::Shutdown::Write);
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn redirect_to(location: &str) -> String {
        format!(
            "HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
    }

    fn ok(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    /// A `200 OK` with a JSON body (for token realms).
    pub(crate) fn ok_json(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    /// The values of every `Authorization` header line of a raw request head.
    pub(crate) fn authorization_values(head: &str) -> Vec<String> {
        head.split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .filter(|(name, _)| name.trim().eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }

    fn request_path(head: &str) -> &str {
        head.split(' ').nth(1).unwrap_or_default()
    }

    const BLOB: &str =
        "/v2/x/blobs/sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn transport_for(base: &str) -> Transport {
        let target = Target::parse(base).expect("target parses");
        // The fakes are plain HTTP on 127.0.0.1: a proxy from the environment
        // would change what they see, so say so instead of failing obscurely.
        assert!(
            crate::proxy::proxy_for(&target.scheme, target.hostname(), target.port(), &|k| {
                std::env::var(k).ok()
            })
            .is_none(),
            "unset http_proxy/all_proxy (or add 127.0.0.1 to no_proxy) to run this test"
        );
        Transport::new(&target, &TransportOptions::default()).expect("transport")
    }

    #[test]
    fn redirect_to_another_origin_drops_authorization() {
        let b = FakeServer::start(|_| vec![ok("blob-bytes")]);
        let b_url = b.url("/blob");
        let location = b_url.clone();
        let a = FakeServer::start(move |_| vec![redirect_to(&location)]);
        let t = transport_for(&a.url(""));
        let resp = t
            .send(
                "GET",
                &a.url(BLOB),
                &[],
                Some("Bearer secret-token"),
                Body::Empty,
            )
            .expect("GET follows the redirect");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.url, b_url);
        assert_eq!(resp.bytes(1024).expect("body"), b"blob-bytes");

        let a_heads = a.heads();
        let b_heads = b.heads();
        assert_eq!(a_heads.len(), 1, "{a_heads:?}");
        assert_eq!(b_heads.len(), 1, "{b_heads:?}");
        assert_eq!(request_path(&a_heads[0]), BLOB);
        assert_eq!(
            authorization_values(&a_heads[0]),
            ["Bearer secret-token"],
            "the registry itself must get the token:\n{}",
            a_heads[0]
        );
        assert_eq!(request_path(&b_heads[0]), "/blob");
        assert!(
            authorization_values(&b_heads[0]).is_empty(),
            "Authorization leaked to another origin:\n{}",
            b_heads[0]
        );
        assert!(!b_heads[0].contains("secret-token"), "{}", b_heads[0]);
    }

    #[test]
    fn redirect_within_the_same_origin_keeps_authorization() {
        let a = FakeServer::start(|port| {
            vec![
                redirect_to(&format!("http://127.0.0.1:{port}/other")),
                ok("same-origin"),
            ]
        });
        let t = transport_for(&a.url(""));
        let resp = t
            .send(
                "GET",
                &a.url(BLOB),
                &[],
                Some("Bearer secret-token"),
                Body::Empty,
            )
            .expect("GET follows the redirect");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.url, a.url("/other"));
        assert_eq!(resp.bytes(1024).expect("body"), b"same-origin");
        let heads = a.heads();
        assert_eq!(heads.len(), 2, "{heads:?}");
        assert_eq!(request_path(&heads[0]), BLOB);
        assert_eq!(request_path(&heads[1]), "/other");
        for h in &heads {
            assert_eq!(authorization_values(h), ["Bearer secret-token"], "{h}");
        }
    }

    #[test]
    fn relative_redirect_stays_on_the_registry_and_keeps_authorization() {
        let a = FakeServer::start(|_| vec![redirect_to("/relative"), ok("rel")]);
        let t = transport_for(&a.url(""));
        let resp = t
            .send("HEAD", &a.url(BLOB), &[], Some("Basic dTpw"), Body::Empty)
            .expect("HEAD follows the redirect");
        assert_eq!(
            (resp.status, resp.url.as_str()),
            (200, a.url("/relative").as_str())
        );
        let heads = a.heads();
        assert_eq!(heads.len(), 2, "{heads:?}");
        for h in &heads {
            assert_eq!(authorization_values(h), ["Basic dTpw"], "{h}");
        }
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert_eq!(
            origin_of("HTTP://Reg.Local:5000/v2/x"),
            "http://reg.local:5000"
        );
        assert_eq!(origin_of("https://u:p@reg:443/a?b"), "https://reg:443");
        assert_ne!(
            origin_of("http://127.0.0.1:1/a"),
            origin_of("http://127.0.0.1:2/a")
        );
        assert_ne!(origin_of("http://h/a"), origin_of("https://h/a"));
        assert_eq!(redact("https://h/u?_state=secret"), "https://h/u?…");
    }
}
