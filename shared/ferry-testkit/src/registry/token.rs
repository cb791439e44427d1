//! A minimal docker token issuer over HTTPS (rustls), for `RegistryMode::TlsToken`.
//!
//! Implements `GET /token?service=…&scope=…` with `Authorization: Basic` and the OAuth2
//! password grant `POST /token` (form body). Anonymous or wrong credentials get 401. Tokens are
//! ES256 JWTs whose header carries `x5c` = [signing certificate], issued by the test CA that the
//! registry's `rootcertbundle` trusts.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
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
        let (status, body) = handle(shared, &req);
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
        tls.write_all(head.as_bytes())?;
        tls.write_all(body.as_bytes())?;
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

fn handle(shared: &Shared, req: &Request) -> (u16, String) {
    if req.path != "/token" {
        return (404, error_body("NOT_FOUND", "only /token is served"));
    }
    let (user, password, scopes) = match req.method.as_str() {
        "GET" => {
            let Some((user, password)) = req.authorization.as_deref().and_then(parse_basic) else {
                return (401, error_body("UNAUTHORIZED", "credentials required"));
            };
            let scopes = form_pairs(&req.query)
                .filter(|(k, _)| k == "scope")
                .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
                .collect::<Vec<_>>();
            (user, password, scopes)
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
            if get("grant_type").as_deref() != Some("password") {
                return (400, error_body("UNSUPPORTED", "only grant_type=password"));
            }
            let (Some(user), Some(password)) = (get("username"), get("password")) else {
                return (401, error_body("UNAUTHORIZED", "credentials required"));
            };
            let scopes = pairs
                .iter()
                .filter(|(k, _)| k == "scope")
                .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
                .collect::<Vec<_>>();
            (user, password, scopes)
        }
        _ => return (405, error_body("UNSUPPORTED", "GET or POST")),
    };
    if user != shared.settings.user || password != shared.settings.password {
        return (401, error_body("UNAUTHORIZED", "invalid credentials"));
    }
    match sign(shared, &user, &scopes) {
        Ok((token, issued_at)) => {
            shared.issued.fetch_add(1, Ordering::SeqCst);
            let body = json!({
                "token": token,
                "access_token": token,
                "expires_in": shared.settings.lifetime_secs,
                "issued_at": issued_at,
            });
            (200, body.to_string())
        }
        Err(e) => (400, error_body("UNKNOWN", &format!("{e:#}"))),
    }
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
    use super::*;

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
