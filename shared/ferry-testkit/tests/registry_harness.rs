//! End-to-end checks of the harness with the real `docker-registry` and `skopeo`
//! (integration tests: `cargo test --workspace --lib` needs neither).
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use std::fs;

use ferry_testkit::registry::{
    registry_available, Registry, RegistryMode, RegistryOptions, SkopeoRole, REGISTRY_BIN,
};
use ferry_testkit::{generate_layout, FixtureSpec};

const SKOPEO: &str = "/usr/bin/skopeo";

fn skopeo(args: &[String]) -> Output {
    assert!(
        Path::new(SKOPEO).is_file(),
        "skopeo not found at {SKOPEO}: run scripts/install-deps.sh"
    );
    Command::new(SKOPEO)
        .args(args)
        .output()
        .expect("running skopeo")
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

fn start(mode: RegistryMode) -> Registry {
    assert!(
        registry_available(),
        "{REGISTRY_BIN} missing: run scripts/install-deps.sh"
    );
    Registry::start(RegistryOptions::new(mode)).unwrap()
}

/// Copies img-0 of the default fixture into `reg`, checks the manifest digest round-trips,
/// and returns the destination reference.
fn copy_and_inspect(reg: &Registry) -> String {
    let layout = tempfile::tempdir().unwrap();
    let fixture = generate_layout(&FixtureSpec::default(), layout.path()).unwrap();
    let image = &fixture.images[0];
    assert_eq!(
        image.reference,
        "gcr.io/anthos-baremetal-release/img-0:1.8.0"
    );
    let dest = reg.docker_ref("anthos-baremetal-release/img-0:1.8.0");
    let mut args = s(&["copy", "--all", "--retry-times", "0"]);
    args.extend(reg.skopeo_args(SkopeoRole::Dest));
    args.push(format!(
        "oci:{}:{}",
        layout.path().display(),
        image.reference
    ));
    args.push(dest.clone());
    let out = skopeo(&args);
    assert!(
        out.status.success(),
        "skopeo copy failed: {}\nregistry log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        reg.log()
    );

    let mut args = s(&["inspect", "--raw"]);
    args.extend(reg.skopeo_args(SkopeoRole::Inspect));
    args.push(dest.clone());
    let out = skopeo(&args);
    assert!(
        out.status.success(),
        "skopeo inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = format!("sha256:{:x}", Sha256::digest(&out.stdout));
    assert_eq!(got, image.descriptor.digest.to_string());
    assert!(
        reg.count_requests("PUT", "/manifests/") >= 1,
        "no manifest PUT in the access log:\n{}",
        reg.log()
    );
    dest
}

/// Wrong and missing credentials are refused.
fn refuses_bad_credentials(reg: &Registry, dest: &str) {
    let (user, _) = reg.credentials().unwrap();
    let mut wrong = s(&["inspect", "--raw"]);
    wrong.extend(reg.skopeo_tls_args(""));
    wrong.extend(["--creds".to_owned(), format!("{user}:not-the-password")]);
    wrong.push(dest.to_owned());
    let out = skopeo(&wrong);
    assert!(!out.status.success(), "wrong password accepted");
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("unauthorized") || err.contains("401") || err.contains("authentication"),
        "unexpected skopeo error: {err}"
    );

    let mut anon = s(&["inspect", "--raw", "--no-creds"]);
    anon.extend(reg.skopeo_tls_args(""));
    anon.push(dest.to_owned());
    assert!(!skopeo(&anon).status.success(), "anonymous pull accepted");
}

/// After drop nothing listens on the port any more.
fn assert_stopped(addr: SocketAddr) {
    let r = TcpStream::connect_timeout(&addr, Duration::from_millis(500));
    assert!(r.is_err(), "{addr} still accepts connections after drop");
}

fn addr(reg: &Registry) -> SocketAddr {
    reg.host().parse().unwrap()
}

#[test]
fn registry_plain_copy_inspect_drop() {
    let t = Instant::now();
    let reg = start(RegistryMode::Plain);
    assert!(reg.base_url().starts_with("http://127.0.0.1:"));
    assert!(reg.ca_cert_path().is_none() && reg.credentials().is_none());
    assert_eq!(
        reg.skopeo_args(SkopeoRole::Src),
        s(&["--src-tls-verify=false"])
    );
    copy_and_inspect(&reg);
    // Blobs are where tests corrupt them.
    assert!(reg
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .is_dir());
    let (a, dir) = (addr(&reg), reg.work_dir().to_owned());
    drop(reg);
    assert_stopped(a);
    assert!(!dir.exists(), "temp dir left behind");
    eprintln!("plain: {:?}", t.elapsed());
}

#[test]
fn registry_tls_copy_inspect_drop() {
    let t = Instant::now();
    let reg = start(RegistryMode::Tls);
    assert!(reg.base_url().starts_with("https://127.0.0.1:"));
    let ca = fs::read_to_string(reg.ca_cert_path().unwrap()).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(reg.skopeo_args(SkopeoRole::Inspect)[0], "--cert-dir");
    let dest = copy_and_inspect(&reg);
    // Without the CA, TLS verification fails.
    let out = skopeo(&s(&["inspect", "--raw", &dest]));
    assert!(!out.status.success(), "untrusted CA accepted");
    let a = addr(&reg);
    drop(reg);
    assert_stopped(a);
    eprintln!("tls: {:?}", t.elapsed());
}

#[test]
fn registry_htpasswd_copy_inspect_refuse_drop() {
    let t = Instant::now();
    let reg = start(RegistryMode::TlsHtpasswd);
    assert_eq!(
        reg.credentials(),
        Some(("ferry".to_owned(), "s3cret-Pa55".to_owned()))
    );
    let dest = copy_and_inspect(&reg);
    refuses_bad_credentials(&reg, &dest);
    assert_eq!(reg.token_requests(), 0);
    let a = addr(&reg);
    drop(reg);
    assert_stopped(a);
    eprintln!("htpasswd: {:?}", t.elapsed());
}

#[test]
fn registry_token_copy_inspect_refuse_drop() {
    let t = Instant::now();
    let reg = start(RegistryMode::TlsToken);
    let dest = copy_and_inspect(&reg);
    assert!(reg.token_requests() > 0);
    let before = reg.token_requests();
    refuses_bad_credentials(&reg, &dest);
    assert_eq!(reg.token_requests(), before, "token issued for bad creds");
    let a = addr(&reg);
    let token_addr = reg.token_addr().unwrap();
    drop(reg);
    assert_stopped(a);
    assert_stopped(token_addr);
    eprintln!("token: {:?}", t.elapsed());
}

/// One HTTPS request to the token issuer; returns (status, body).
fn issuer_request(reg: &Registry, request: &str) -> (u16, String) {
    let config = reg.tls_client_config().unwrap();
    let tcp = TcpStream::connect(reg.token_addr().unwrap()).unwrap();
    let conn = rustls::ClientConnection::new(config, "127.0.0.1".try_into().unwrap()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read headers + Content-Length body (the issuer keeps the connection open).
    loop {
        let n = tls.read(&mut chunk).unwrap();
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            if buf.len() >= end + 4 + len || n == 0 {
                let status = text[9..12].parse().unwrap();
                return (status, text[end + 4..].to_owned());
            }
        }
        assert!(n > 0, "connection closed early");
    }
}

fn jwt_claims(token: &str) -> serde_json::Value {
    let part = token.split('.').nth(1).unwrap();
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&raw).unwrap()
}

#[test]
fn registry_token_issuer_get_post_and_refusals() {
    let reg = Registry::start(RegistryOptions {
        mode: RegistryMode::TlsToken,
        token_lifetime_secs: 120,
        ..RegistryOptions::default()
    })
    .unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode("ferry:s3cret-Pa55");
    let (status, body) = issuer_request(
        &reg,
        &format!(
            "GET /token?service=ferry-test-registry&scope=repository%3Aa%2Fb%3Apull%2Cpush&scope=repository:c:delete HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {basic}\r\n\r\n"
        ),
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["token"], v["access_token"]);
    assert_eq!(v["expires_in"], 120);
    assert!(v["issued_at"].as_str().unwrap().ends_with('Z'));
    let c = jwt_claims(v["token"].as_str().unwrap());
    assert_eq!(c["iss"], ferry_testkit::registry::TOKEN_ISSUER);
    assert_eq!(c["aud"], ferry_testkit::registry::TOKEN_SERVICE);
    assert_eq!(c["sub"], "ferry");
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 120);
    assert_eq!(
        c["access"],
        serde_json::json!([
            {"type": "repository", "name": "a/b", "actions": ["pull", "push"]},
            {"type": "repository", "name": "c", "actions": ["delete"]}
        ])
    );

    let form = "grant_type=password&username=ferry&password=s3cret-Pa55&service=ferry-test-registry&client_id=t&scope=repository%3Ax%3Apull+repository%3Ay%3Apull";
    let (status, body) = issuer_request(
        &reg,
        &format!(
            "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        jwt_claims(v["access_token"].as_str().unwrap())["access"][1]["name"],
        "y"
    );
    assert_eq!(reg.token_requests(), 2);

    let (status, _) = issuer_request(&reg, "GET /token?service=x HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(status, 401, "anonymous");
    let bad = base64::engine::general_purpose::STANDARD.encode("ferry:nope");
    let (status, _) = issuer_request(
        &reg,
        &format!("GET /token HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {bad}\r\n\r\n"),
    );
    assert_eq!(status, 401, "wrong password");
    assert_eq!(reg.token_requests(), 2);
}

#[test]
fn registry_delete_disabled_and_config() {
    let reg = Registry::start(RegistryOptions {
        delete_enabled: false,
        ..RegistryOptions::default()
    })
    .unwrap();
    let config = fs::read_to_string(reg.work_dir().join("config.yml")).unwrap();
    // `uploadpurging` also has an `enabled: false`: look at the delete stanza itself.
    assert!(
        config.contains("\n  delete:\n    enabled: false\n"),
        "{config}"
    );
    assert!(!config.contains("enabled: true"), "{config}");
    assert!(
        config.contains(&format!("addr: \"{}\"", reg.host())),
        "{config}"
    );
}
