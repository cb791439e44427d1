//! A minimal docker token issuer over HTTPS (rustls), for `RegistryMode::TlsToken`.
//!
//! Implements `GET /token?service=…&scope=…` with `Authorization: Basic` and the OAuth2
//! password grant `POST /token` (form body). Anonymous or wrong credentials get 401. Tokens are
//! ES256 JWTs whose header carries `x5c` = [signing certificate], issued by the test CA that the
//! registry's `rootcertbundle` trusts.
//!
//! Refresh tokens (docker's "identity tokens"), as in distribution's OAuth2 token spec: a password
//! grant with `access_type=offline` also answers a random `refresh_token`, which this issuer then
//! accepts in `POST /token` with `grant_type=refresh_token&refresh_token=…&client_id=…`
//! (`service` and `scope` as for the password grant) for the same user. An unknown refresh token
//! gets 401; a refresh grant without `client_id` gets 400.
//!
//! Every `/token` request is recorded (method, `grant_type`, `client_id`, status; never a secret)
//! and `GET /requests` answers the list as JSON, oldest first, e.g.
//! `[{"method":"POST","grant_type":"refresh_token","client_id":"ferry","status":200}]`, so tests
//! outside this crate can check how a client obtained its tokens.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;

/// What the issuer needs to sign tokens.
pub(crate) struct TokenSettings {
    pub(crate) issuer: String,
    pub(crate) service: String,
    pub(crate) user: String,
    pub(crate) password: String,
    pub(crate) lifetime_secs: u64,
}

/// The running issuer; stopped (thread joined) on drop.
pub(crate) struct TokenIssuer {
    pub(crate) addr: SocketAddr,
    stop: Arc<AtomicBool>,
    issued: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

struct Shared {
    settings: TokenSettings,
    key: EcdsaKeyPair,
    x5c: String,
    rng: SystemRandom,
    issued: Arc<AtomicUsize>,
    tls: Arc<rustls::ServerConfig>,
    /// Refresh tokens handed out by offline password grants → their user.
    refresh_tokens: Mutex<HashMap<String, String>>,
    /// Every `/token` request, oldest first (served by `GET /requests`).
    requests: Mutex<Vec<serde_json::Value>>,
}

impl TokenIssuer {
    /// Starts serving on `listener` (already bound to 127.0.0.1).
    pub(crate) fn start(
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        signing_cert_der: &[u8],
        signing_key_pkcs8: &[u8],
        settings: TokenSettings,
    ) -> anyhow::Result<TokenIssuer> {
        let rng = SystemRandom::new();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, signing_key_pkcs8, &rng)
                .map_err(|e| anyhow::anyhow!("loading the token signing key: {e}"))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(Shared {
            settings,
            key,
            x5c: STANDARD.encode(signing_cert_der),
            rng,
            issued: issued.clone(),
            tls,
            refresh_tokens: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
        });
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ferry-token-issuer".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let shared = shared.clone();
                    // One short-lived thread per connection; a stuck client cannot block the rest.
                    let _ = std::thread::Builder::new()
                        .name("ferry-token-conn".into())
                        .spawn(move || {
                            let _ = serve(&shared, stream);
                        });
                }
            })
            .context("spawning the token issuer thread")?;
        Ok(TokenIssuer {
            addr,
            stop,
            issued,
            thread: Some(thread),
        })
    }

    /// Tokens handed out so far.
    pub(crate) fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }
}

impl Drop for TokenIssuer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; the loop sees the flag and returns, dropping the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A parsed request: method, path, query, headers (lower-cased names), body.
struct Request {
    method: String,
    path: String,
    query: String,
    authorization: Option<String>,
    content_type: String,
    body: Vec<u8>,
}

fn serve(shared: &Shared, tcp: TcpStream) -> anyhow::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(10)))?;
    // A response is one write of head and body, sent at once: without this, Nagle's
    // algorithm held a response's last segment until the client's delayed ACK (~40 ms a token).
    tcp.set_nodelay(true)?;
    let conn = rustls::ServerConnection::new(shared.tls.clone())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // Keep-alive: serve requests until the client closes or errs.
    loop {
        let req = {
            let mut reader = BufReader::new(&mut tls);
            match read_request(&mut reader)? {
                Some(r) => r,
                None => return Ok(()),
            }
        };
        let (status, body) = if req.method == "GET" && req.path == "/requests" {
            let log = shared.requests.lock().unwrap_or_else(|p| p.into_inner());
            (200, serde_json::Value::Array(log.clone()).to_string())
        } else {
            let (status, body) = handle(shared, &req);
            if req.path == "/token" {
                record(shared, &req, status);
            }
            (status, body)
        };
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            404 => "Not Found",
            _ => "Method Not Allowed",
        };
        let mut head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        if status == 401 {
            head.push_str("WWW-Authenticate: Basic realm=\"ferry-test-issuer\"\r\n");
        }
        head.push_str("\r\n");
        head.push_str(&body);
        tls.write_all(head.as_bytes())?;
        tls.flush()?;
    }
}

/// Reads one HTTP/1.1 request; `None` on a clean close before any byte.
fn read_request<R: BufRead>(r: &mut R) -> anyhow::Result<Option<Request>> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let target = parts.next().unwrap_or_default().to_owned();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (target, String::new()),
    };
    let mut authorization = None;
    let mut content_type = String::new();
    let mut content_length = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            anyhow::bail!("connection closed inside headers");
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "authorization" => authorization = Some(value.to_owned()),
                "content-type" => content_type = value.to_ascii_lowercase(),
                "content-length" => content_length = value.parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    anyhow::ensure!(content_length <= 1 << 20, "request body too large");
    let mut body = vec![0; content_length];
    r.read_exact(&mut body)?;
    Ok(Some(Request {
        method,
        path,
        query,
        authorization,
        content_type,
        body,
    }))
}

fn error_body(code: &str, message: &str) -> String {
    json!({"errors": [{"code": code, "message": message}]}).to_string()
}

/// Appends one `/token` request to the log served by `GET /requests` (no secret is kept).
fn record(shared: &Shared, req: &Request, status: u16) {
    let body = String::from_utf8_lossy(&req.body).into_owned();
    let field = |name: &str| {
        (req.method == "POST")
            .then(|| form_pairs(&body).find(|(k, _)| k == name).map(|(_, v)| v))
            .flatten()
    };
    let entry = json!({
        "method": req.method,
        "grant_type": field("grant_type"),
        "client_id": field("client_id"),
        "status": status,
    });
    shared
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(entry);
}

/// `scope` values (each possibly several space-separated scopes) → one scope per entry.
fn split_scopes<'a>(values: impl Iterator<Item = &'a str>) -> Vec<String> {
    values
        .flat_map(|v| v.split(' ').filter(|s| !s.is_empty()).map(str::to_owned))
        .collect()
}

fn handle(shared: &Shared, req: &Request) -> (u16, String) {
    if req.path != "/token" {
        return (404, error_body("NOT_FOUND", "only /token is served"));
    }
    let invalid = || (401, error_body("UNAUTHORIZED", "invalid credentials"));
    let password_ok = |user: &str, password: &str| {
        user == shared.settings.user && password == shared.settings.password
    };
    // (user the token is for, scopes, whether to hand out a refresh token too)
    let (user, scopes, offline) = match req.method.as_str() {
        "GET" => {
            let Some((user, password)) = req.authorization.as_deref().and_then(parse_basic) else {
                return (401, error_body("UNAUTHORIZED", "credentials required"));
            };
            if !password_ok(&user, &password) {
                return invalid();
            }
            let pairs: Vec<(String, String)> = form_pairs(&req.query).collect();
            let scopes = split_scopes(
                pairs
                    .iter()
                    .filter(|(k, _)| k == "scope")
                    .map(|(_, v)| v.as_str()),
            );
            (user, scopes, false)
        }
        "POST" => {
            if !req
                .content_type
                .starts_with("application/x-www-form-urlencoded")
            {
                return (400, error_body("UNSUPPORTED", "form body expected"));
            }
            let body = String::from_utf8_lossy(&req.body).into_owned();
            let pairs: Vec<(String, String)> = form_pairs(&body).collect();
            let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            let scopes = split_scopes(
                pairs
                    .iter()
                    .filter(|(k, _)| k == "scope")
                    .map(|(_, v)| v.as_str()),
            );
            match get("grant_type").as_deref() {
                Some("password") => {
                    let (Some(user), Some(password)) = (get("username"), get("password")) else {
                        return (401, error_body("UNAUTHORIZED", "credentials required"));
                    };
                    if !password_ok(&user, &password) {
                        return invalid();
                    }
                    let offline = get("access_type").as_deref() == Some("offline");
                    (user, scopes, offline)
                }
                Some("refresh_token") => {
                    if get("client_id").unwrap_or_default().is_empty() {
                        return (400, error_body("UNSUPPORTED", "client_id is required"));
                    }
                    let Some(refresh) = get("refresh_token").filter(|t| !t.is_empty()) else {
                        return (401, error_body("UNAUTHORIZED", "refresh_token required"));
                    };
                    let known = shared
                        .refresh_tokens
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&refresh)
                        .cloned();
                    let Some(user) = known else {
                        return (401, error_body("UNAUTHORIZED", "invalid refresh token"));
                    };
                    (user, scopes, false)
                }
                _ => {
                    return (
                        400,
                        error_body(
                            "UNSUPPORTED",
                            "only grant_type=password or grant_type=refresh_token",
                        ),
                    )
                }
            }
        }
        _ => return (405, error_body("UNSUPPORTED", "GET or POST")),
    };
    let refresh_token = if offline {
        match new_refresh_token(shared) {
            Ok(t) => {
                shared
                    .refresh_tokens
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(t.clone(), user.clone());
                Some(t)
            }
            Err(e) => return (400, error_body("UNKNOWN", &format!("{e:#}"))),
        }
    } else {
        None
    };
    match sign(shared, &user, &scopes) {
        Ok((token, issued_at)) => {
            shared.issued.fetch_add(1, Ordering::SeqCst);
            let mut body = json!({
                "token": token,
                "access_token": token,
                "expires_in": shared.settings.lifetime_secs,
                "issued_at": issued_at,
            });
            if let Some(t) = refresh_token {
                body["refresh_token"] = json!(t);
            }
            (200, body.to_string())
        }
        Err(e) => (400, error_body("UNKNOWN", &format!("{e:#}"))),
    }
}

/// A fresh random refresh token (32 bytes, hex).
fn new_refresh_token(shared: &Shared) -> anyhow::Result<String> {
    let mut raw = [0u8; 32];
    shared
        .rng
        .fill(&mut raw)
        .map_err(|_| anyhow::anyhow!("random refresh token"))?;
    Ok(raw.iter().map(|b| format!("{b:02x}")).collect())
}

/// `Basic base64(user:pass)` → (user, pass).
fn parse_basic(header: &str) -> Option<(String, String)> {
    let (scheme, b64) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = STANDARD.decode(b64.trim()).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

/// `a=b&c=d` with percent and `+` decoding.
fn form_pairs(s: &str) -> impl Iterator<Item = (String, String)> + '_ {
    s.split('&').filter(|p| !p.is_empty()).map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `type:name:actions` → access entry; the name may itself contain `:` (host:port).
fn access_entry(scope: &str) -> Option<serde_json::Value> {
    let (typ, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
    Some(json!({"type": typ, "name": name, "actions": actions}))
}

/// Signs a token granting every requested scope; returns (JWT, issued_at RFC 3339).
fn sign(shared: &Shared, user: &str, scopes: &[String]) -> anyhow::Result<(String, String)> {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH)?.as_secs();
    let mut jti = [0u8; 16];
    shared
        .rng
        .fill(&mut jti)
        .map_err(|_| anyhow::anyhow!("random jti"))?;
    let jti: String = jti.iter().map(|b| format!("{b:02x}")).collect();
    let access: Vec<serde_json::Value> = scopes.iter().filter_map(|s| access_entry(s)).collect();
    let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [shared.x5c]});
    let claims = json!({
        "iss": shared.settings.issuer,
        "sub": user,
        "aud": shared.settings.service,
        "exp": secs + shared.settings.lifetime_secs,
        "nbf": secs.saturating_sub(1),
        "iat": secs,
        "jti": jti,
        "access": access,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = shared
        .key
        .sign(&shared.rng, input.as_bytes())
        .map_err(|_| anyhow::anyhow!("ES256 signing failed"))?;
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    let issued_at = time::OffsetDateTime::from(now)
        .format(&time::format_description::well_known::Rfc3339)
        .context("formatting issued_at")?;
    Ok((token, issued_at))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::io::Read as _;

    use super::super::tls::{client_config, server_config, TestCa};
    use super::*;

    /// An issuer for user `u` / password `p`, and a client config trusting its CA.
    fn issuer() -> (TokenIssuer, Arc<rustls::ClientConfig>) {
        let ca = TestCa::new().unwrap();
        let far = SystemTime::now() + Duration::from_secs(86_400);
        let server = ca.issue(&["127.0.0.1"], far, true).unwrap();
        let signing = ca.issue(&["issuer"], far, false).unwrap();
        let issuer = TokenIssuer::start(
            TcpListener::bind("127.0.0.1:0").unwrap(),
            server_config(&ca, &server).unwrap(),
            &signing.cert_der,
            &signing.key_der,
            TokenSettings {
                issuer: "issuer".into(),
                service: "svc".into(),
                user: "u".into(),
                password: "p".into(),
                lifetime_secs: 60,
            },
        )
        .unwrap();
        (issuer, client_config(ca.cert_der()).unwrap())
    }

    /// One request on its own connection; returns (status, body).
    fn request(
        issuer: &TokenIssuer,
        client: &Arc<rustls::ClientConfig>,
        method: &str,
        path: &str,
        form: &str,
    ) -> (u16, String) {
        let tcp = TcpStream::connect(issuer.addr).unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let conn = rustls::ClientConnection::new(client.clone(), name).unwrap();
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        );
        tls.write_all(req.as_bytes()).unwrap();
        let mut reader = BufReader::new(tls);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let mut len = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            if h.trim().is_empty() {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        (
            status_line[9..12].parse().unwrap(),
            String::from_utf8(body).unwrap(),
        )
    }

    #[test]
    fn registry_token_refresh_grant_and_request_log() {
        let (issuer, client) = issuer();
        let post = |form: &str| request(&issuer, &client, "POST", "/token", form);

        // A plain password grant hands out no refresh token.
        let (status, body) = post("grant_type=password&username=u&password=p&service=svc");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v.get("refresh_token").is_none(), "{body}");

        // access_type=offline does; the refresh grant then works for that user.
        let (status, body) = post(
            "grant_type=password&username=u&password=p&service=svc&client_id=c&access_type=offline",
        );
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let refresh = v["refresh_token"].as_str().unwrap().to_owned();
        assert_eq!(refresh.len(), 64);
        let (status, body) = post(&format!(
            "grant_type=refresh_token&refresh_token={refresh}&service=svc&client_id=c&scope=repository%3Aa%3Apull%2Cpush"
        ));
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let claims = v["token"].as_str().unwrap().split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        assert_eq!(claims["sub"], "u");
        assert_eq!(claims["access"][0]["actions"], json!(["pull", "push"]));
        assert_eq!(issuer.issued(), 3);

        // Unknown refresh token: 401; no client_id: 400; unknown grant: 400.
        let (status, _) =
            post("grant_type=refresh_token&refresh_token=nope&service=svc&client_id=c");
        assert_eq!(status, 401);
        let (status, _) = post(&format!(
            "grant_type=refresh_token&refresh_token={refresh}&service=svc"
        ));
        assert_eq!(status, 400);
        let (status, _) = post("grant_type=client_credentials&client_id=c");
        assert_eq!(status, 400);
        assert_eq!(issuer.issued(), 3);

        // The log: every /token request, with no secret in it.
        let (status, body) = request(&issuer, &client, "GET", "/requests", "");
        assert_eq!(status, 200, "{body}");
        assert!(
            !body.contains(&refresh) && !body.contains("\"p\""),
            "{body}"
        );
        let log: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        let summary: Vec<(String, String, u64)> = log
            .iter()
            .map(|e| {
                (
                    e["method"].as_str().unwrap().to_owned(),
                    e["grant_type"].as_str().unwrap_or("-").to_owned(),
                    e["status"].as_u64().unwrap(),
                )
            })
            .collect();
        let expected: Vec<(String, String, u64)> = [
            ("POST", "password", 200),
            ("POST", "password", 200),
            ("POST", "refresh_token", 200),
            ("POST", "refresh_token", 401),
            ("POST", "refresh_token", 400),
            ("POST", "client_credentials", 400),
        ]
        .iter()
        .map(|(m, g, s)| ((*m).to_owned(), (*g).to_owned(), *s))
        .collect();
        assert_eq!(summary, expected);
        assert_eq!(log[2]["client_id"], "c");
        assert_eq!(log[0]["client_id"], serde_json::Value::Null);
    }

    #[test]
    fn registry_token_helpers_parse() {
        assert_eq!(
            percent_decode("repository%3Aa%2Fb%3Apull+x"),
            "repository:a/b:pull x"
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(
            parse_basic(&format!("Basic {}", STANDARD.encode("u:p:q"))),
            Some(("u".into(), "p:q".into()))
        );
        assert_eq!(
            access_entry("repository:host:5000/a/b:pull,push"),
            Some(json!({"type":"repository","name":"host:5000/a/b","actions":["pull","push"]}))
        );
    }
}
