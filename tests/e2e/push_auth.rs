//! ferry-push authentication end to end against Debian's real docker-registry
//! (distribution v2.8): bearer tokens are refreshed when they expire during a
//! long push, and no secret (password, Basic value, JWT) ever reaches stdout,
//! stderr or the staging store's journal, whatever the output mode.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ferry_e2e::registry_push::{basic_auth, mapped, one_layer_package, skopeo, Pkg};
use ferry_e2e::{bin, spawn_with_input, summary, without_proxies, Run};
use ferry_store::Digest;
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions, SkopeoRole};

/// The journal of the staging store ferry-push creates beside the package.
fn staging_journal(pkg: &Pkg) -> PathBuf {
    let mut name = pkg.path.file_name().unwrap().to_os_string();
    name.push(".ferry-store");
    pkg.path
        .with_file_name(name)
        .join(".ferry")
        .join("journal.jsonl")
}

/// Runs ferry-push against `reg` (its CA, its user) with `password` on stdin.
fn push(
    reg: &Registry,
    source: &Path,
    ns: &str,
    password: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Run, Duration) {
    run_tool("ferry-push", reg, source, ns, password, extra, env)
}

/// Runs ferry-push or ferry-diff against `reg` with the password on stdin.
fn run_tool(
    tool: &str,
    reg: &Registry,
    source: &Path,
    ns: &str,
    password: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Run, Duration) {
    let (user, _) = reg.credentials().expect("an auth registry");
    // Staged explicitly: these tests exercise chunked, journaled uploads
    // (a package in index-first order would otherwise be streamed).
    let mut staging = source.file_name().unwrap().to_os_string();
    staging.push(".ferry-store");
    let mut cmd = Command::new(bin(tool));
    cmd.arg("--source")
        .arg(source)
        .arg("--staging")
        .arg(source.with_file_name(staging))
        .arg("--private-registry")
        .arg(format!("{}/{ns}", reg.host()))
        .arg("--cacert")
        .arg(reg.ca_cert_path().expect("a TLS registry"))
        .args(["--username", &user, "--password-stdin"])
        .args(extra)
        .env_remove("FERRY_TEST_CHUNK_PAUSE_MS");
    without_proxies(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let child = spawn_with_input(&mut cmd, password.as_bytes());
    let run: Run = child.wait_with_output().unwrap().into();
    (run, started.elapsed())
}

fn manifest_digest(reg: &Registry, ns: &str, reference: &str) -> Digest {
    let raw = skopeo(
        reg,
        SkopeoRole::Inspect,
        &["inspect", "--raw", &mapped(reg, ns, reference)],
    );
    Digest::sha256_of(&raw)
}

/// Push args that make the 6 MiB layer go in 1 MiB chunks with a pause after each.
const CHUNKED: [&str; 4] = ["--monolithic-max-mib", "1", "--chunk-mib", "1"];
const PAUSE: (&str, &str) = ("FERRY_TEST_CHUNK_PAUSE_MS", "700");

#[test]
fn expired_tokens_are_refreshed_mid_push_and_the_push_completes() {
    let pkg = one_layer_package(41, 6 << 20);
    let image = &pkg.fixture.images[0];
    let layer = pkg.largest_blob();
    assert!(layer.size > 5 << 20, "layer of {} bytes", layer.size);
    // Short enough that a 4+ s push needs at least two refreshes.
    let lifetime = 1;

    // Baseline: the same push with tokens that outlive it.
    let long = Registry::start(RegistryOptions::new(RegistryMode::TlsToken)).unwrap();
    let (_, pass) = long.credentials().unwrap();
    let mut args = CHUNKED.to_vec();
    args.extend(["--json", "--jobs", "1"]);
    let (base, base_took) = push(&long, &pkg.path, "baseline", &pass, &args, &[PAUSE]);
    assert_eq!(base.code, 0, "{}\n{}", base.stderr, base.stdout);
    let baseline = long.token_requests();
    assert_eq!(
        summary(&base)["tokens_fetched"].as_u64(),
        Some(baseline as u64)
    );
    drop(long);

    let reg = Registry::start(RegistryOptions {
        mode: RegistryMode::TlsToken,
        token_lifetime_secs: lifetime,
        ..Default::default()
    })
    .unwrap();
    let (r, took) = push(&reg, &pkg.path, "refresh", &pass, &args, &[PAUSE]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    eprintln!(
        "baseline: {baseline} token(s) in {base_took:?}; {lifetime} s tokens: {} token(s) in {took:?}",
        reg.token_requests()
    );
    // The pauses alone (one per confirmed chunk) outlast several token lifetimes.
    let chunks = layer.size.div_ceil(1 << 20);
    assert!(chunks >= 6, "{chunks} chunks");
    assert!(
        took > Duration::from_secs(2 * lifetime),
        "the push took {took:?}, not longer than the token lifetime"
    );
    assert!(
        reg.count_requests("PATCH", "/blobs/uploads/") as u64 >= chunks,
        "the layer did not go in chunks"
    );

    let issued = reg.token_requests();
    let fetched = summary(&r)["tokens_fetched"].as_u64().unwrap();
    assert!(issued >= 2, "{issued} token(s) issued: no refresh");
    assert!(fetched >= 2, "summary says {fetched} token(s) fetched");
    assert_eq!(
        fetched, issued as u64,
        "ferry's count and the issuer's differ"
    );
    // Refreshes, not just one token per scope: the layer's chunks span more than
    // four lifetimes (one 700 ms pause after each of >= 6 chunks), so a client
    // that refreshes tokens when they expire fetches at least two more tokens
    // than with 60 s tokens.
    assert!(
        issued >= baseline + 2,
        "{issued} token(s) with {lifetime} s tokens vs {baseline} with 60 s tokens: ferry kept using expired tokens"
    );
    // distribution accepts tokens up to 60 s past exp, so no request should have been refused:
    // the refresh came from ferry's own expiry, and nothing was retried.
    assert!(
        !r.stdout.contains("\"retry\""),
        "unexpected retries: {}",
        r.stdout
    );

    assert_eq!(
        manifest_digest(&reg, "refresh", &image.reference),
        image.descriptor.digest,
        "the pushed manifest is not byte-identical"
    );
}

/// Everything a user or a log collector could see of a run: stdout, stderr and
/// the staging store's journal as it is after the run.
fn visible(pkg: &Pkg, r: &Run) -> Vec<(&'static str, String)> {
    vec![
        ("stdout", r.stdout.clone()),
        ("stderr", r.stderr.clone()),
        (
            "journal",
            std::fs::read_to_string(staging_journal(pkg)).unwrap_or_default(),
        ),
    ]
}

/// `text` with the values of `_state=` query parameters removed: distribution's
/// signed upload state (an HMAC then JSON, base64url) is journaled with each
/// upload location and, being random, may hold any three characters, `eyJ`
/// included. It is made by the registry, never from a credential.
fn without_upload_state(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("_state=") {
        out.push_str(&rest[..i + "_state=".len()]);
        rest = &rest[i + "_state=".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-_=%".contains(c)))
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Runs ferry-push with a wrong then the right password in every output mode
/// and checks that no secret from `forbidden` (nor a JWT when `no_jwt`) shows.
fn assert_no_secrets_in_any_mode(reg: &Registry, pkg: &Pkg, no_jwt: bool) {
    let (user, right) = reg.credentials().unwrap();
    let wrong = "Wr0ng-Secret-Value-77";
    let forbidden = [
        right.clone(),
        wrong.to_owned(),
        basic_auth(&user, &right),
        basic_auth(&user, wrong),
    ];
    let modes: [&[&str]; 4] = [&[], &["-v"], &["--json"], &["--dry-run"]];
    let mut journaled_sessions = 0;
    for (i, mode) in modes.iter().enumerate() {
        for (password, ok) in [(wrong, false), (right.as_str(), true)] {
            let ns = format!("secrets{i}");
            let mut args = CHUNKED.to_vec();
            args.extend_from_slice(mode);
            let (r, _) = push(reg, &pkg.path, &ns, password, &args, &[]);
            let label = format!("{:?} {mode:?} password ok={ok}", reg.mode());
            if ok {
                assert_eq!(r.code, 0, "{label}: {}\n{}", r.stderr, r.stdout);
            } else {
                assert_eq!(r.code, 2, "{label}: {}\n{}", r.stderr, r.stdout);
                let said = format!("{}{}", r.stderr, r.stdout).to_ascii_lowercase();
                assert!(
                    said.contains("401") || said.contains("credential") || said.contains("auth"),
                    "{label}: the failure does not say it is about credentials: {said}"
                );
            }
            for (what, text) in visible(pkg, &r) {
                for secret in &forbidden {
                    assert!(
                        !text.contains(secret.as_str()),
                        "{label}: {what} contains the secret {secret:?}:\n{text}"
                    );
                }
                if no_jwt {
                    let text = without_upload_state(&text);
                    assert!(
                        !text.contains("eyJ"),
                        "{label}: {what} contains a JWT fragment:\n{text}"
                    );
                }
                if what == "journal" && text.contains("_state=") {
                    journaled_sessions += 1;
                }
            }
        }
    }
    assert!(
        journaled_sessions > 0,
        "no upload session was ever journaled: the journal check above checked nothing"
    );

    // ferry-diff, in every output mode, with the wrong and the right password.
    let diff_modes: [&[&str]; 4] = [&[], &["--json"], &["--deep"], &["--extra", "--json"]];
    for mode in diff_modes {
        for (password, ok) in [(wrong, false), (right.as_str(), true)] {
            let (r, _) = run_tool(
                "ferry-diff",
                reg,
                &pkg.path,
                "secrets0",
                password,
                mode,
                &[],
            );
            let label = format!("diff {:?} {mode:?} password ok={ok}", reg.mode());
            assert_eq!(
                r.code,
                if ok { 0 } else { 2 },
                "{label}: {}\n{}",
                r.stderr,
                r.stdout
            );
            for (what, text) in visible(pkg, &r) {
                for secret in &forbidden {
                    assert!(
                        !text.contains(secret.as_str()),
                        "{label}: {what} contains the secret {secret:?}:\n{text}"
                    );
                }
                if no_jwt {
                    let text = without_upload_state(&text);
                    assert!(
                        !text.contains("eyJ"),
                        "{label}: {what} contains a JWT fragment:\n{text}"
                    );
                }
            }
        }
    }
    // The chunked uploads were journaled: the journal was really looked at.
    let journal = std::fs::read_to_string(staging_journal(pkg)).unwrap();
    assert!(
        journal.contains("upload_session"),
        "no upload session in the journal:\n{journal}"
    );
}

#[test]
fn upload_state_is_the_only_thing_skipped_by_the_jwt_check() {
    assert_eq!(
        without_upload_state(
            r#""location":"https://h/u?_state=ab-eyJ_c=&digest=x","token":"eyJhb""#
        ),
        r#""location":"https://h/u?_state=&digest=x","token":"eyJhb""#
    );
}

#[test]
fn no_secret_in_output_or_journal_with_htpasswd() {
    let pkg = one_layer_package(42, 3 << 20);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    assert_no_secrets_in_any_mode(&reg, &pkg, false);
    // The right password pushed byte-identical images.
    let image = &pkg.fixture.images[0];
    assert_eq!(
        manifest_digest(&reg, "secrets0", &image.reference),
        image.descriptor.digest
    );
}

#[test]
fn no_secret_or_token_in_output_or_journal_with_bearer_tokens() {
    let pkg = one_layer_package(43, 3 << 20);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsToken)).unwrap();
    assert_no_secrets_in_any_mode(&reg, &pkg, true);
    assert!(reg.token_requests() > 0);
    let image = &pkg.fixture.images[0];
    assert_eq!(
        manifest_digest(&reg, "secrets2", &image.reference),
        image.descriptor.digest
    );
}
