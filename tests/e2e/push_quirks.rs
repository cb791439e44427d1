//! ferry-push against real distribution v2.8 quirks and failure modes: a
//! stale upload session (v2.8 cancels it), a slow but moving upload, a bare
//! HOST:PORT against a plain-HTTP registry, a wrong password, and a namespace
//! the registry refuses (Harbor's missing project). Outcomes are checked in the
//! registry's own access log, with skopeo and ferry-diff.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_e2e::fault_push::{push_through, upstream};
use ferry_e2e::registry_push::{
    assert_registry_has_package, assert_wrong_password_refused, one_layer_package, registry_tool,
    target,
};
use ferry_e2e::{bin, events, retry_events, run, spawn_with_input, without_proxies, Run};
use ferry_testkit::faults::{FaultPlan, FaultProxy, HttpFault};
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions};

/// `(method, uri, status)` of every access-log line of the registry, e.g.
/// `127.0.0.1 - - [DATE] "PUT /v2/a/b/manifests/x HTTP/1.1" 201 0 "" "ua"`.
fn access_log(reg: &Registry) -> Vec<(String, String, u16)> {
    reg.log()
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find("] \"")? + 3..];
            let end = rest.find('"')?;
            let mut request = rest[..end].split(' ');
            let method = request.next()?.to_owned();
            let uri = request.next()?.to_owned();
            if !request.next()?.starts_with("HTTP/") {
                return None;
            }
            let status = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
            Some((method, uri, status))
        })
        .collect()
}

/// The number of `"event":"upload_session"` records of `digest` in a journal.
fn confirmed_chunks(journal: &Path, digest: &str) -> usize {
    std::fs::read_to_string(journal)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"upload_session\"") && l.contains(digest))
        .count()
}

/// Waits until `journal` records `n` confirmed chunks of `digest` while `child` runs.
fn wait_for_chunks(child: &mut std::process::Child, journal: &Path, digest: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while confirmed_chunks(journal, digest) < n {
        assert!(
            child.try_wait().unwrap().is_none(),
            "push finished before {n} chunks were confirmed"
        );
        assert!(
            Instant::now() < deadline,
            "{n} chunks not confirmed in time"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// distribution v2.8 signs the upload offset into `_state`; a session resumed
/// from an older `Location` (behind what the registry holds) is cancelled
/// ("upload resumed at wrong offest", 404 BLOB_UPLOAD_INVALID). A rerun from a
/// journal that recorded such an older offset restarts the blob from byte 0
/// in a new session and completes, byte-identical.
#[test]
fn a_stale_upload_session_restarts_the_blob_cleanly() {
    let pkg = one_layer_package(71, 6 << 20);
    let big = pkg.largest_blob();
    let chunk: u64 = 1 << 20;
    let chunks = big.size.div_ceil(chunk) as usize;
    assert!(chunks >= 6, "{} bytes: {chunks} chunks", big.size);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    let staging = pkg.dir.join("staging");
    let journal = staging.join(".ferry/journal.jsonl");
    let digest = big.digest.to_string();
    let command = || {
        let mut cmd = Command::new(bin("ferry-push"));
        cmd.arg("--source")
            .arg(&pkg.path)
            .arg("--staging")
            .arg(&staging)
            .args([
                "--private-registry",
                &target(&reg, "stale"),
                "--need-credential=false",
                "--monolithic-max-mib",
                "1",
                "--chunk-mib",
                "1",
                "--json",
            ]);
        without_proxies(&mut cmd);
        cmd
    };

    // 1. Two chunks confirmed: keep that journal; a third confirmed: SIGKILL.
    let mut child = command()
        .env("FERRY_TEST_CHUNK_PAUSE_MS", "1500")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_chunks(&mut child, &journal, &digest, 2);
    let older = std::fs::read(&journal).unwrap();
    wait_for_chunks(&mut child, &journal, &digest, 3);
    child.kill().unwrap(); // SIGKILL, by PID, in the pause after the 3rd chunk
    child.wait().unwrap();
    assert_eq!(
        reg.count_requests("PATCH", "/v2/stale/"),
        3,
        "the first run sent exactly 3 chunks"
    );
    assert_eq!(reg.count_requests("PUT", "/manifests/"), 0);

    // 2. The older journal: its Location carries offset 2 MiB, the registry holds 3 MiB.
    std::fs::write(&journal, &older).unwrap();
    let older_text = String::from_utf8_lossy(&older).into_owned();
    let recorded = older_text
        .lines()
        .rfind(|l| l.contains("\"upload_session\"") && l.contains(&digest))
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .unwrap();
    assert_eq!(recorded["offset"], 2 * chunk, "{recorded}");

    // 3. The rerun.
    let patches_before = reg.count_requests("PATCH", "/v2/stale/");
    let posts_before = reg.count_requests("POST", "/v2/stale/");
    let r: Run = command().output().unwrap().into();
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    let log = reg.log();
    assert!(
        log.contains("upload resumed at wrong offest"),
        "distribution did not see the stale session:\n{log}"
    );
    // The stale status GET was answered 404 (BLOB_UPLOAD_INVALID), the session cancelled.
    let stale_gets: Vec<u16> = access_log(&reg)
        .into_iter()
        .filter(|(m, u, _)| m == "GET" && u.contains("/v2/stale/") && u.contains("/blobs/uploads/"))
        .map(|(_, _, s)| s)
        .collect();
    assert_eq!(stale_gets, vec![404], "status GETs of the recorded session");
    let uploaded = events(&r)
        .into_iter()
        .find(|e| e["event"] == "blob_uploaded" && e["digest"] == digest.as_str())
        .unwrap_or_else(|| panic!("the big blob was not uploaded by the rerun:\n{}", r.stdout));
    assert_eq!(
        uploaded["resumed_from"], 0,
        "the blob did not restart from 0: {uploaded}"
    );
    // A new session, and every chunk sent again from byte 0.
    assert_eq!(
        reg.count_requests("POST", "/v2/stale/") - posts_before,
        1,
        "one new session for the big blob"
    );
    assert_eq!(
        reg.count_requests("PATCH", "/v2/stale/") - patches_before,
        chunks,
        "the rerun sent the whole blob again"
    );
    assert!(
        confirmed_chunks(&journal, &digest) > 2,
        "the rerun recorded its chunks"
    );
    assert_registry_has_package(&reg, "stale", &pkg);
    let diff = registry_tool("ferry-diff", &reg, &staging, "stale", &[], &[], true);
    assert_eq!(diff.code, 0, "{}\n{}", diff.stdout, diff.stderr);
}

/// The stall timeout bounds the time without any byte moving, not the length of
/// a transfer: a 4 MiB layer throttled to 1 MiB/s (about 4 s, twice
/// `--stall-timeout 2`) goes through in one request, never retried.
#[test]
fn a_slow_but_moving_upload_is_never_cut_by_a_total_time_cap() {
    let pkg = one_layer_package(73, 4 << 20);
    let big = pkg.largest_blob();
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    let proxy = FaultProxy::start(
        upstream(&reg),
        FaultPlan {
            throttle_bytes_per_sec: Some(1 << 20),
            ..FaultPlan::default()
        },
    )
    .unwrap();
    let staging = pkg.dir.join("staging");
    let started = Instant::now();
    let r = push_through(
        &proxy,
        &pkg.path,
        "slow",
        &[
            "--staging",
            staging.to_str().unwrap(),
            "--stall-timeout",
            "2",
            "--json",
        ],
    );
    let elapsed = started.elapsed();
    println!("exit {} in {elapsed:?}; {:?}", r.code, proxy.stats());
    for (m, u, s) in access_log(&reg) {
        println!("  {s} {m} {}", u.split('?').next().unwrap());
    }
    println!("{}", r.stdout);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert!(
        retry_events(&r).is_empty(),
        "a moving upload was retried: {:?}",
        retry_events(&r)
    );
    assert!(
        elapsed >= Duration::from_millis(3500),
        "the throttle did not hold the upload past the stall timeout: {elapsed:?}"
    );
    // The layer went in one PUT, once.
    assert_eq!(
        reg.count_requests("PUT", big.digest.hex()),
        1,
        "the layer's PUT was repeated"
    );
    assert_eq!(reg.count_requests("PATCH", "/v2/slow/"), 0);
    assert_registry_has_package(&reg, "slow", &pkg);
}

/// `--private-registry 127.0.0.1:PORT/ns` means HTTPS: against a plain-HTTP
/// registry it fails with a TLS error naming the registry, and never falls back
/// to plain HTTP (the registry logs no request); `http://` works.
#[test]
fn a_bare_host_port_is_https_and_never_falls_back_to_plain_http() {
    let pkg = one_layer_package(79, 64 << 10);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    // (The testkit's readiness probe, GET /v2/, is in the log already.)
    let methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
    let counts = || -> Vec<usize> {
        methods
            .iter()
            .map(|m| reg.count_requests(m, "/v2/"))
            .collect()
    };
    // Anonymous ferry-push of the package to `registry`, as --private-registry gives it.
    let push_to = |registry: String| {
        run(without_proxies(
            Command::new(bin("ferry-push"))
                .arg("--source")
                .arg(&pkg.path)
                .args(["--private-registry", &registry, "--need-credential=false"]),
        ))
    };
    let probes = counts();
    let before = access_log(&reg).len();
    let r = push_to(format!("{}/ns", reg.host()));
    println!("exit {}: {}", r.code, r.stderr.trim());
    // Never plain HTTP: the registry (which logs every HTTP request it parses)
    // saw nothing, only TLS handshakes it could not read.
    let after: Vec<_> = access_log(&reg).into_iter().skip(before).collect();
    assert!(
        after.iter().all(|(_, u, _)| !u.contains("/v2/")),
        "plain HTTP requests reached the registry: {after:?}"
    );
    assert!(after.is_empty(), "{after:?}");
    assert_eq!(counts(), probes, "requests per method {methods:?}");
    assert_eq!(r.code, 2, "{}\n{}", r.stderr, r.stdout);
    // The final error (not a URL that happens to start with https://) says TLS
    // and names the registry.
    let error = r
        .stderr
        .lines()
        .find(|l| l.starts_with("ferry-push: error:"))
        .unwrap_or_else(|| panic!("no error line: {}", r.stderr));
    assert!(
        error.contains(&reg.host()),
        "the error does not name {}: {error}",
        reg.host()
    );
    assert!(
        error.to_ascii_lowercase().contains("tls"),
        "the error does not say TLS/HTTPS failed: {error}"
    );
    // A registry that does not speak TLS will not start to on a retry.
    assert!(
        !r.stderr.contains("retrying"),
        "a TLS handshake failure was retried: {}",
        r.stderr
    );
    assert!(
        error.contains(&format!("http://{}", reg.host())),
        "the error does not say what to pass instead: {error}"
    );

    let ok = push_to(format!("http://{}/ns", reg.host()));
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(reg.count_requests("PUT", "/v2/ns/") > 0);
    assert_registry_has_package(&reg, "ns", &pkg);
}

/// A wrong password (htpasswd over TLS) ends the run with exit 2 after the first
/// API call (at most the challenge and one refused attempt), never retried.
#[test]
fn a_wrong_password_is_not_retried() {
    let pkg = one_layer_package(83, 64 << 10);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    let (user, _) = reg.credentials().unwrap();
    let before = access_log(&reg).len();
    let wrong = "Not-The-Password-4711";
    let child = spawn_with_input(
        without_proxies(
            Command::new(bin("ferry-push"))
                .arg("--source")
                .arg(&pkg.path)
                .args([
                    "--private-registry",
                    &format!("{}/auth", reg.host()),
                    "--username",
                    &user,
                    "--password-stdin",
                ])
                .arg("--cacert")
                .arg(reg.ca_cert_path().unwrap()),
        ),
        format!("{wrong}\n").as_bytes(),
    );
    let r: Run = child.wait_with_output().unwrap().into();
    println!("exit {}: {}", r.code, r.stderr.trim());
    assert_wrong_password_refused(&r, wrong);
    assert!(!r.stderr.contains("retrying"), "{}", r.stderr);
    let after: Vec<_> = access_log(&reg).into_iter().skip(before).collect();
    let refused = after.iter().filter(|(_, _, s)| *s == 401).count();
    println!("access log of the run: {after:?}");
    assert!(refused >= 1, "the run is not in the access log: {after:?}");
    assert!(
        refused <= 2,
        "{refused} requests answered 401: the wrong password was retried: {after:?}"
    );
    assert!(
        after.iter().all(|(_, _, s)| *s == 401),
        "something got past the wrong password: {after:?}"
    );
}

/// A registry that refuses the repository path (Harbor: 404 NAME_UNKNOWN for
/// a missing project; or 403 DENIED) on the upload POST: exit 2, the registry's
/// code and message, a hint naming the namespace to create, and no manifest
/// reaching the registry.
#[test]
fn a_namespace_the_registry_refuses_gets_a_hint_naming_it() {
    let pkg = one_layer_package(89, 256 << 10);
    for (status, code, message) in [
        (404, "NAME_UNKNOWN", "project bm-mirror not found"),
        (403, "DENIED", "requested access to the resource is denied"),
    ] {
        let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
        let plan = FaultPlan {
            http_faults: vec![
                HttpFault::new(Some("POST"), "/blobs/uploads/", status, 1000).error(code, message),
            ],
            ..FaultPlan::default()
        };
        let proxy = FaultProxy::start(upstream(&reg), plan).unwrap();
        let r = push_through(&proxy, &pkg.path, "bm-mirror/bmctl", &[]);
        println!("{status} {code}: exit {}: {}", r.code, r.stderr.trim());
        assert_eq!(r.code, 2, "{status}: {}\n{}", r.stderr, r.stdout);
        assert!(proxy.stats().http_faults >= 1, "{status}: no POST refused");
        for expected in [
            code,
            message,
            "create the project or namespace \"bm-mirror\"",
        ] {
            assert!(
                r.stderr.contains(expected),
                "{status}: stderr lacks {expected:?}:\n{}",
                r.stderr
            );
        }
        assert!(!r.stderr.contains("retrying"), "{status}: {}", r.stderr);
        assert!(
            reg.count_requests("HEAD", "/v2/bm-mirror/") > 0,
            "{status}: the run is in the access log"
        );
        assert_eq!(
            reg.count_requests("PUT", "/manifests/"),
            0,
            "{status}: a manifest reached the registry"
        );
        assert!(
            !proxy
                .requests()
                .iter()
                .any(|(m, t)| m == "PUT" && t.contains("/manifests/")),
            "{status}: a manifest PUT was sent"
        );
    }
}

/// The opposite mistake: `http://` in front of a TLS registry. Go answers plain
/// HTTP on a TLS port with a bare `HTTP/1.0 400`; ferry says the registry serves
/// HTTPS and what to pass, instead of a bare "HTTP 400", and does not retry.
#[test]
fn http_in_front_of_a_tls_registry_says_it_serves_https() {
    let pkg = one_layer_package(89, 64 << 10);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Tls)).unwrap();
    let r = run(without_proxies(
        Command::new(bin("ferry-push"))
            .arg("--source")
            .arg(&pkg.path)
            .args([
                "--private-registry",
                &format!("http://{}/ns", reg.host()),
                "--need-credential=false",
            ]),
    ));
    assert_eq!(r.code, 2, "{}\n{}", r.stderr, r.stdout);
    assert!(
        r.stderr.contains(&reg.host()) && r.stderr.contains("serves HTTPS"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("Drop http://"), "{}", r.stderr);
    assert!(!r.stderr.contains("retrying"), "{}", r.stderr);
}
