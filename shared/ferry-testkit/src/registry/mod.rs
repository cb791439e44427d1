//! A real registry for end-to-end tests: Debian's `docker-registry` (distribution v2.8) on a free
//! 127.0.0.1 port, plain HTTP or TLS with a private CA, optionally with htpasswd (bcrypt) or
//! token auth served by an in-process ES256 token issuer over HTTPS.
//!
//! Everything (config, certificates, htpasswd, storage, log) lives in a temporary directory owned
//! by the [`Registry`]; dropping it kills the registry process by PID, stops the token issuer and
//! removes the directory.
//!
//! ```no_run
//! use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions, SkopeoRole};
//! let reg = Registry::start(RegistryOptions { mode: RegistryMode::TlsToken, ..Default::default() })?;
//! let mut args = vec!["copy".to_owned(), "--all".to_owned()];
//! args.extend(reg.skopeo_args(SkopeoRole::Dest));
//! # Ok::<(), anyhow::Error>(())
//! ```

mod tls;
mod token;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};

pub use tls::TestCa;

/// Where Debian's `docker-registry` package installs distribution v2.8.
pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
/// `auth.token.service`: the JWT audience and the challenge's `service`.
pub const TOKEN_SERVICE: &str = "ferry-test-registry";
/// `auth.token.issuer`: the JWT `iss`.
pub const TOKEN_ISSUER: &str = "ferry-test-issuer";
/// `auth.htpasswd.realm`.
pub const HTPASSWD_REALM: &str = "ferry-test-realm";
/// Fixed `http.secret` (signs upload state; fixed so restarts on the same storage keep working).
const HTTP_SECRET: &str = "ferry-testkit-http-secret-5f1c0a9e7b3d42c68e0f1a2b3c4d5e6f7a8b9c0d";
/// How long [`Registry::start`] waits for `GET /v2/` to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Transport and authentication of a test registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryMode {
    /// Plain HTTP, anonymous.
    Plain,
    /// HTTPS with a certificate from a private CA, anonymous.
    Tls,
    /// HTTPS + htpasswd (bcrypt) Basic auth.
    TlsHtpasswd,
    /// HTTPS + bearer tokens from the testkit's token issuer (HTTPS, same CA).
    TlsToken,
}

impl RegistryMode {
    /// All modes, for table-driven tests.
    pub const ALL: [RegistryMode; 4] = [
        RegistryMode::Plain,
        RegistryMode::Tls,
        RegistryMode::TlsHtpasswd,
        RegistryMode::TlsToken,
    ];

    /// True for every mode but [`RegistryMode::Plain`].
    pub fn is_tls(self) -> bool {
        self != RegistryMode::Plain
    }

    /// True for the modes that require credentials.
    pub fn has_auth(self) -> bool {
        matches!(self, RegistryMode::TlsHtpasswd | RegistryMode::TlsToken)
    }
}

/// How to start a [`Registry`].
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Transport and authentication.
    pub mode: RegistryMode,
    /// `storage.delete.enabled` (default true).
    pub delete_enabled: bool,
    /// User for htpasswd/token modes (default "ferry").
    pub user: String,
    /// Password for htpasswd/token modes (default "s3cret-Pa55").
    pub password: String,
    /// Lifetime (`exp - iat` and `expires_in`) of issued tokens, seconds (default 60;
    /// distribution allows 60 s of leeway on `exp`/`nbf`).
    pub token_lifetime_secs: u64,
    /// Answer blob GET/HEAD with a 307 to this base URL + the storage path
    /// (distribution's `redirect` storage middleware, as registries backed by
    /// an object store or CDN do); pair with [`crate::blob_origin::BlobOrigin`].
    pub redirect_blobs_to: Option<String>,
}

impl Default for RegistryOptions {
    fn default() -> RegistryOptions {
        RegistryOptions {
            mode: RegistryMode::Plain,
            delete_enabled: true,
            user: "ferry".to_owned(),
            password: "s3cret-Pa55".to_owned(),
            token_lifetime_secs: 60,
            redirect_blobs_to: None,
        }
    }
}

impl RegistryOptions {
    /// Defaults with the given mode.
    pub fn new(mode: RegistryMode) -> RegistryOptions {
        RegistryOptions {
            mode,
            ..RegistryOptions::default()
        }
    }
}

/// Which skopeo flags [`Registry::skopeo_args`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkopeoRole {
    /// `skopeo inspect` / `list-tags` / `delete`: `--cert-dir`, `--tls-verify`, `--creds`.
    Inspect,
    /// Source of `skopeo copy`: `--src-…`.
    Src,
    /// Destination of `skopeo copy`: `--dest-…`.
    Dest,
}

impl SkopeoRole {
    fn flag_prefix(self) -> &'static str {
        match self {
            SkopeoRole::Inspect => "",
            SkopeoRole::Src => "src",
            SkopeoRole::Dest => "dest",
        }
    }
}

/// Is distribution installed at [`REGISTRY_BIN`]?
///
/// Tests must not skip when it is missing: [`Registry::start`] fails with a message pointing at
/// `scripts/install-deps.sh`.
pub fn registry_available() -> bool {
    Path::new(REGISTRY_BIN).is_file()
}

/// A running distribution v2.8 registry; killed (by PID) and cleaned up on drop.
pub struct Registry {
    mode: RegistryMode,
    port: u16,
    child: Child,
    ca_cert: Option<PathBuf>,
    cert_dir: Option<PathBuf>,
    credentials: Option<(String, String)>,
    storage: PathBuf,
    log_path: PathBuf,
    token: Option<token::TokenIssuer>,
    /// TLS client config trusting the registry's CA (readiness probes).
    probe_tls: Option<Arc<rustls::ClientConfig>>,
    // Last: removed after the process is gone.
    dir: tempfile::TempDir,
}

/// Config pieces that do not depend on the registry port.
struct Prepared {
    tls: Option<(PathBuf, PathBuf)>,
    auth_yaml: String,
    ca_cert: Option<PathBuf>,
    cert_dir: Option<PathBuf>,
    ca_der: Option<Vec<u8>>,
    token: Option<token::TokenIssuer>,
}

/// A YAML double-quoted scalar (JSON strings are valid YAML).
fn q(s: impl AsRef<str>) -> String {
    serde_json::Value::String(s.as_ref().to_owned()).to_string()
}

fn q_path(p: &Path) -> String {
    q(p.to_string_lossy())
}

/// A free 127.0.0.1 port (bound then released; [`Registry::start`] retries on a clash).
fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn check_tool(path: &str, what: &str) -> anyhow::Result<()> {
    if !Path::new(path).is_file() {
        bail!("{what} not found at {path}: run scripts/install-deps.sh (as root or with sudo)");
    }
    Ok(())
}

impl Registry {
    /// Starts a registry in `opts.mode` and waits (up to ~10 s) until `GET /v2/` answers 200 or
    /// 401. Fails with the registry log tail if it does not.
    pub fn start(opts: RegistryOptions) -> anyhow::Result<Registry> {
        check_tool(REGISTRY_BIN, "docker-registry (distribution v2.8)")?;
        let dir = tempfile::Builder::new()
            .prefix("ferry-registry-")
            .tempdir()
            .context("creating the registry temp dir")?;
        let storage = dir.path().join("storage");
        fs::create_dir_all(&storage)?;
        let prepared = prepare(dir.path(), &opts)?;
        let credentials = opts
            .mode
            .has_auth()
            .then(|| (opts.user.clone(), opts.password.clone()));

        let client = prepared
            .ca_der
            .as_deref()
            .map(tls::client_config)
            .transpose()?;
        let mut attempt = 0;
        loop {
            let port = free_port()?;
            let log_path = dir.path().join(format!("registry-{attempt}.log"));
            let config_path = dir.path().join("config.yml");
            fs::write(&config_path, config_yaml(&opts, port, &storage, &prepared))?;
            let mut child = spawn(&config_path, &log_path)?;
            match wait_ready(&mut child, port, &log_path, client.as_ref()) {
                Ok(()) => {
                    return Ok(Registry {
                        mode: opts.mode,
                        port,
                        child,
                        ca_cert: prepared.ca_cert,
                        cert_dir: prepared.cert_dir,
                        credentials,
                        storage,
                        log_path,
                        token: prepared.token,
                        probe_tls: client,
                        dir,
                    })
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    let clash = read_lossy(&log_path).contains("address already in use");
                    attempt += 1;
                    if !clash || attempt >= 4 {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Kills the registry process (its storage and port are kept for
    /// [`Registry::restart`]): a registry that goes away mid-run.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the registry again on the same port, storage and configuration
    /// (after [`Registry::stop`]); [`Registry::log`] reads the new log from then on.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        let config_path = self.dir.path().join("config.yml");
        let log_path = self.dir.path().join("registry-restarted.log");
        let mut child = spawn(&config_path, &log_path)?;
        wait_ready(&mut child, self.port, &log_path, self.probe_tls.as_ref())?;
        self.child = child;
        self.log_path = log_path;
        Ok(())
    }

    /// Where the token issuer listens ([`RegistryMode::TlsToken`] only).
    pub fn token_addr(&self) -> Option<std::net::SocketAddr> {
        self.token.as_ref().map(|t| t.addr)
    }

    /// A TLS client configuration trusting only the registry's CA (TLS modes only).
    pub fn tls_client_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.probe_tls.clone()
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry process's PID (its CPU time is in `/proc/PID/stat`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The registry's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The mode it was started in.
    pub fn mode(&self) -> RegistryMode {
        self.mode
    }

    /// `http://127.0.0.1:PORT` or `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        let scheme = if self.mode.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.host())
    }

    /// PEM of the private CA that signed the server certificate (TLS modes).
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.ca_cert.as_deref()
    }

    /// A directory holding only `ca.crt` (the CA), for `--cert-dir`-style options (TLS modes).
    pub fn cert_dir(&self) -> Option<&Path> {
        self.cert_dir.as_deref()
    }

    /// `(user, password)` in htpasswd and token modes.
    pub fn credentials(&self) -> Option<(String, String)> {
        self.credentials.clone()
    }

    /// The filesystem storage root (`docker/registry/v2/...` below it).
    pub fn storage_dir(&self) -> &Path {
        &self.storage
    }

    /// The registry's temp dir (config, certificates, htpasswd, storage, log).
    pub fn work_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The registry's stdout+stderr log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The log's content so far.
    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    /// Counts requests with this method whose URI (path and query) contains `path_contains`,
    /// from the access log: one combined-format line per request, whatever its outcome, e.g.
    /// `127.0.0.1 - - [27/Nov/2026:03:55:08 +0000] "PUT /v2/a/b/manifests/x HTTP/1.1" 201 0 "" "ua"`.
    pub fn count_requests(&self, method: &str, path_contains: &str) -> usize {
        self.log()
            .lines()
            .filter_map(access_line)
            .filter(|(m, uri)| *m == method && uri.contains(path_contains))
            .count()
    }

    /// Tokens handed out by the issuer (0 outside [`RegistryMode::TlsToken`]).
    pub fn token_requests(&self) -> usize {
        self.token.as_ref().map_or(0, token::TokenIssuer::issued)
    }

    /// The token realm (`https://127.0.0.1:PORT/token`) in [`RegistryMode::TlsToken`].
    pub fn token_realm(&self) -> Option<String> {
        self.token
            .as_ref()
            .map(|t| format!("https://{}/token", t.addr))
    }

    /// TLS flags for skopeo; `prefix` is "src", "dest" or "" (inspect & co.):
    /// `--{prefix-}cert-dir DIR` (DIR holds `ca.crt`) in TLS modes, `--{prefix-}tls-verify=false`
    /// for plain HTTP.
    pub fn skopeo_tls_args(&self, prefix: &str) -> Vec<String> {
        let p = flag_prefix(prefix);
        match &self.cert_dir {
            Some(d) => vec![format!("--{p}cert-dir"), d.to_string_lossy().into_owned()],
            None => vec![format!("--{p}tls-verify=false")],
        }
    }

    /// `--{prefix-}creds user:pass` in auth modes, nothing otherwise; `prefix` as in
    /// [`Registry::skopeo_tls_args`].
    pub fn skopeo_creds_args(&self, prefix: &str) -> Vec<String> {
        let p = flag_prefix(prefix);
        match &self.credentials {
            Some((u, pw)) => vec![format!("--{p}creds"), format!("{u}:{pw}")],
            None => Vec::new(),
        }
    }

    /// TLS and credential flags for skopeo in `role`.
    pub fn skopeo_args(&self, role: SkopeoRole) -> Vec<String> {
        let mut v = self.skopeo_tls_args(role.flag_prefix());
        v.extend(self.skopeo_creds_args(role.flag_prefix()));
        v
    }

    /// `docker://127.0.0.1:PORT/<repo_and_tag>` for skopeo.
    pub fn docker_ref(&self, repo_and_tag: &str) -> String {
        format!("docker://{}/{repo_and_tag}", self.host())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // Child::kill signals this child's PID only; wait reaps it so the port is free after.
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.token = None;
        // `dir` (TempDir) is removed when the fields drop.
    }
}

/// "src"/"dest"/"" → "src-"/"dest-"/"".
fn flag_prefix(prefix: &str) -> String {
    match prefix.trim_end_matches('-') {
        "" => String::new(),
        p @ ("src" | "dest") => format!("{p}-"),
        other => panic!("skopeo flag prefix must be \"src\", \"dest\" or \"\", not {other:?}"),
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

fn log_tail(path: &Path, lines: usize) -> String {
    let log = read_lossy(path);
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `(method, uri)` of a combined-format access-log line
/// (`HOST - USER [DATE] "METHOD URI PROTO" STATUS SIZE "REFERER" "UA"`), else `None`.
fn access_line(line: &str) -> Option<(&str, &str)> {
    let rest = &line[line.find("] \"")? + 3..];
    let request = &rest[..rest.find('"')?];
    let mut parts = request.split(' ');
    let method = parts.next()?;
    let uri = parts.next()?;
    let proto = parts.next()?;
    proto.starts_with("HTTP/").then_some((method, uri))
}

/// Starts `docker-registry serve CONFIG` with stdout+stderr appended to `log_path`.
fn spawn(config: &Path, log_path: &Path) -> anyhow::Result<Child> {
    let log = File::create(log_path).context("creating the registry log")?;
    let log2 = log.try_clone()?;
    Command::new(REGISTRY_BIN)
        .arg("serve")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log2))
        .spawn()
        .with_context(|| format!("spawning {REGISTRY_BIN}"))
}

/// Polls `GET /v2/` until it answers 200 or 401, the process exits, or the timeout.
fn wait_ready(
    child: &mut Child,
    port: u16,
    log_path: &Path,
    client: Option<&Arc<rustls::ClientConfig>>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "docker-registry exited ({status}) before answering GET /v2/ on 127.0.0.1:{port}; log tail:\n{}",
                log_tail(log_path, 40)
            );
        }
        let last = match probe(port, client) {
            Ok(200 | 401) => return Ok(()),
            Ok(code) => format!("HTTP {code}"),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!(
                "docker-registry did not answer GET /v2/ on 127.0.0.1:{port} within {START_TIMEOUT:?} (last: {last}); log tail:\n{}",
                log_tail(log_path, 40)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One `GET /v2/` (HTTPS when `client` is set); returns the status code.
fn probe(port: u16, client: Option<&Arc<rustls::ClientConfig>>) -> anyhow::Result<u16> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    tcp.set_read_timeout(Some(Duration::from_secs(2)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(2)))?;
    let request =
        format!("GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    let mut response = Vec::new();
    match client {
        None => {
            let mut tcp = tcp;
            tcp.write_all(request.as_bytes())?;
            tcp.read_to_end(&mut response)?;
        }
        Some(config) => {
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
            let conn = rustls::ClientConnection::new(config.clone(), name)?;
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            tls.write_all(request.as_bytes())?;
            // Go closes without close_notify sometimes: keep what was read.
            let mut buf = [0u8; 4096];
            loop {
                match tls.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => response.extend_from_slice(&buf[..n]),
                    Err(_) if response.len() >= 12 => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    let head = String::from_utf8_lossy(&response[..response.len().min(64)]).into_owned();
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("not an HTTP response: {head:?}"))?;
    Ok(code)
}

/// Writes certificates, htpasswd and starts the token issuer as the mode needs.
fn prepare(dir: &Path, opts: &RegistryOptions) -> anyhow::Result<Prepared> {
    let mut p = Prepared {
        tls: None,
        auth_yaml: String::new(),
        ca_cert: None,
        cert_dir: None,
        ca_der: None,
        token: None,
    };
    if !opts.mode.is_tls() {
        return Ok(p);
    }
    let ca = TestCa::new()?;
    let far = SystemTime::now() + Duration::from_secs(365 * 86_400);
    let server = ca.issue(&["127.0.0.1", "localhost"], far, true)?;
    let ca_pem = ca.cert_pem();
    let ca_path = dir.join("ca.pem");
    fs::write(&ca_path, &ca_pem)?;
    let cert_dir = dir.join("certs.d");
    fs::create_dir_all(&cert_dir)?;
    fs::write(cert_dir.join("ca.crt"), &ca_pem)?;
    let chain_path = dir.join("server.pem");
    fs::write(&chain_path, format!("{}{}", server.cert_pem, ca_pem))?;
    let key_path = dir.join("server.key");
    fs::write(&key_path, &server.key_pem)?;
    p.tls = Some((chain_path, key_path));
    p.ca_cert = Some(ca_path.clone());
    p.cert_dir = Some(cert_dir);
    p.ca_der = Some(ca.cert_der().to_vec());

    match opts.mode {
        RegistryMode::TlsHtpasswd => {
            check_tool("/usr/bin/htpasswd", "htpasswd (apache2-utils)")?;
            // bcrypt (the only hash distribution accepts), low cost: it is checked per request.
            let out = Command::new("/usr/bin/htpasswd")
                .args(["-B", "-C", "5", "-b", "-n", &opts.user, &opts.password])
                .output()
                .context("running htpasswd")?;
            if !out.status.success() {
                bail!(
                    "htpasswd failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            let path = dir.join("htpasswd");
            fs::write(
                &path,
                String::from_utf8_lossy(&out.stdout).trim_end().to_owned() + "\n",
            )?;
            p.auth_yaml = format!(
                "auth:\n  htpasswd:\n    realm: {}\n    path: {}\n",
                q(HTPASSWD_REALM),
                q_path(&path)
            );
        }
        RegistryMode::TlsToken => {
            let listener = TcpListener::bind("127.0.0.1:0").context("binding the token issuer")?;
            let token_port = listener.local_addr()?.port();
            // The token issuer's TLS certificate: same CA, so one cert dir serves both.
            let issuer_tls = tls::server_config(&ca, &server)?;
            let signing = ca.issue(&[TOKEN_ISSUER], far, false)?;
            let issuer = token::TokenIssuer::start(
                listener,
                issuer_tls,
                &signing.cert_der,
                &signing.key_der,
                token::TokenSettings {
                    issuer: TOKEN_ISSUER.to_owned(),
                    service: TOKEN_SERVICE.to_owned(),
                    user: opts.user.clone(),
                    password: opts.password.clone(),
                    lifetime_secs: opts.token_lifetime_secs,
                },
            )?;
            p.auth_yaml = format!(
                "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                q(format!("https://127.0.0.1:{token_port}/token")),
                q(TOKEN_SERVICE),
                q(TOKEN_ISSUER),
                q_path(&ca_path)
            );
            p.token = Some(issuer);
        }
        RegistryMode::Plain | RegistryMode::Tls => {}
    }
    Ok(p)
}

/// The distribution v2.8 config for `port`.
fn config_yaml(opts: &RegistryOptions, port: u16, storage: &Path, p: &Prepared) -> String {
    let mut y = format!(
        "version: 0.1\n\
         log:\n  level: info\n  accesslog:\n    disabled: false\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: {}\n\
         \x20 maintenance:\n    uploadpurging:\n      enabled: false\n\
         http:\n  addr: {}\n  secret: {}\n",
        q_path(storage),
        opts.delete_enabled,
        q(format!("127.0.0.1:{port}")),
        q(HTTP_SECRET),
    );
    if let Some((cert, key)) = &p.tls {
        y.push_str(&format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            q_path(cert),
            q_path(key)
        ));
    }
    if let Some(base) = &opts.redirect_blobs_to {
        y.push_str(&format!(
            "middleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: {}\n",
            q(base)
        ));
    }
    y.push_str(&p.auth_yaml);
    y
}

#[cfg(test)]
mod unit_tests {
    //! The harness's pure parts (no registry process, no network).
    #![allow(clippy::unwrap_used)]

    use std::time::{Duration, SystemTime};

    use super::*;

    #[test]
    fn only_the_delete_stanza_depends_on_delete_enabled() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = RegistryOptions::default();
        assert!(defaults.delete_enabled);
        let disabled = RegistryOptions {
            delete_enabled: false,
            ..RegistryOptions::default()
        };
        let prepared = prepare(dir.path(), &defaults).unwrap();
        let storage = dir.path().join("storage");
        let on = config_yaml(&defaults, 5000, &storage, &prepared);
        let off = config_yaml(&disabled, 5000, &storage, &prepared);
        assert!(on.contains("\n  delete:\n    enabled: true\n"), "{on}");
        assert!(off.contains("\n  delete:\n    enabled: false\n"), "{off}");
        assert_eq!(
            on.replace("delete:\n    enabled: true", "delete:\n    enabled: false"),
            off
        );
    }

    #[test]
    fn registry_access_log_line_parsing() {
        let line = r#"127.0.0.1 - - [27/Nov/2026:03:55:08 +0000] "PUT /v2/foo/bar/manifests/x HTTP/1.1" 400 82 "" "curl/7.88.1""#;
        assert_eq!(access_line(line), Some(("PUT", "/v2/foo/bar/manifests/x")));
        let h2 = r#"127.0.0.1 - - [27/Nov/2026:03:55:08 +0000] "HEAD /v2/a/blobs/sha256:ab HTTP/2.0" 404 157 "" "skopeo""#;
        assert_eq!(access_line(h2), Some(("HEAD", "/v2/a/blobs/sha256:ab")));
        let logrus = r#"time="x" level=info msg="response completed" http.request.method=PUT http.request.uri=/v2/a/manifests/x"#;
        assert_eq!(access_line(logrus), None);
    }

    #[test]
    fn registry_test_ca_issues_expired_and_mismatched_certs() {
        let ca = TestCa::new().unwrap();
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        let past = SystemTime::now() - Duration::from_secs(7 * 86_400);
        let (cert, key) = ca.issue_server_cert(&["wrong.example"], past).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(key.contains("PRIVATE KEY"));
    }

    #[test]
    fn registry_flag_prefixes() {
        assert_eq!(flag_prefix("src"), "src-");
        assert_eq!(flag_prefix("dest-"), "dest-");
        assert_eq!(flag_prefix(""), "");
    }
}
