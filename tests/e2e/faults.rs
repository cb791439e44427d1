//! ferry-push through the fault-injecting proxy (`ferry_testkit::faults`) in front of Debian's
//! real docker-registry: connection resets at seeded random offsets, injected 5xx/429/400
//! answers, and a stall. ferry only ever talks to the proxy; the results are checked directly
//! against the registry with skopeo and ferry-diff.
//!
//! Replay a reset trial with `FERRY_FAULT_SEED=N` (runs only that seed).

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ferry_e2e::fault_push::{push_through, upstream};
use ferry_e2e::registry_push::mapped;
use ferry_e2e::{bin, retry_events, run, Run};
use ferry_store::Digest;
use ferry_testkit::faults::{FaultPlan, FaultProxy, HttpFault};
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions, SkopeoRole};
use ferry_testkit::{
    generate_layout, write_package, Fixture, FixtureSpec, PackageFormat, PackageOptions,
};

/// One generated layout for every test (read only); each test writes its own package.
struct Layout {
    _dir: tempfile::TempDir,
    path: PathBuf,
    fixture: Fixture,
}

fn layout() -> &'static Layout {
    static L: OnceLock<Layout> = OnceLock::new();
    L.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layout");
        let spec = FixtureSpec {
            seed: 61,
            images: 4,
            layers_per_image: 2,
            layer_size: 900 * 1024,
            incompressible: true,
            multi_arch_every: 3,
            docker_schema2_every: 4,
            ..Default::default()
        };
        let fixture = generate_layout(&spec, &path).unwrap();
        Layout {
            _dir: dir,
            path,
            fixture,
        }
    })
}

/// A private package file (and staging dir) for one test.
struct Pkg {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl Pkg {
    fn new() -> Pkg {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bmpackages_faults.tar.zst");
        write_package(
            &layout().path,
            PackageFormat::TarZst,
            &PackageOptions::default(),
            &path,
        )
        .unwrap();
        Pkg { dir, path }
    }

    fn staging(&self) -> PathBuf {
        self.dir.path().join("staging")
    }
}

/// `ferry-push --source PKG --staging DIR --private-registry http://PROXY/ns` (anonymous).
///
/// The package is staged (not streamed) so that every blob request is retried in place; the
/// streamed case (a further read of the package) has its own test below.
fn push_via(proxy: &FaultProxy, pkg: &Pkg, ns: &str, extra: &[&str]) -> Run {
    let staging = pkg.staging();
    let mut args = vec!["--staging", staging.to_str().unwrap()];
    args.extend_from_slice(extra);
    push_through(proxy, &pkg.path, ns, &args)
}

/// skopeo (directly against the registry) sees every image at the fixture's exact manifest
/// bytes, and ferry-diff (directly too) reports everything in sync.
fn assert_registry_holds_package(reg: &Registry, pkg: &Pkg, ns: &str) {
    assert_registry_holds(reg, &layout().fixture, &pkg.staging(), ns);
}

/// Every image of `fixture` is byte-identical in the registry (skopeo) and
/// ferry-diff finds `source` in sync.
fn assert_registry_holds(reg: &Registry, fixture: &Fixture, source: &std::path::Path, ns: &str) {
    for image in &fixture.images {
        let out = Command::new("skopeo")
            .arg("inspect")
            .args(reg.skopeo_args(SkopeoRole::Inspect))
            .arg("--raw")
            .arg(mapped(reg, ns, &image.reference))
            .output()
            .expect("skopeo is installed (scripts/install-deps.sh)");
        assert!(
            out.status.success(),
            "skopeo inspect {}: {}",
            image.reference,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            Digest::sha256_of(&out.stdout),
            image.descriptor.digest,
            "{} is not byte-identical in the registry",
            image.reference
        );
    }
    let diff = run(Command::new(bin("ferry-diff"))
        .arg("--source")
        .arg(source)
        .args([
            "--private-registry",
            &format!("http://{}/{ns}", reg.host()),
            "--need-credential=false",
        ]));
    assert_eq!(
        diff.code, 0,
        "ferry-diff finds differences:\n{}\n{}",
        diff.stdout, diff.stderr
    );
}

fn seeds() -> Vec<u64> {
    match std::env::var("FERRY_FAULT_SEED") {
        Ok(s) => vec![s.parse().expect("FERRY_FAULT_SEED is a number")],
        // scripts/soak.sh raises the count with FERRY_SOAK_SCHEDULES.
        Err(_) => (1..=ferry_e2e::soak_count("FERRY_SOAK_SCHEDULES", 8)).collect(),
    }
}

#[test]
fn resets_at_random_offsets_are_retried_within_one_run() {
    let pkg = Pkg::new();
    let mut total_resets = 0;
    for seed in seeds() {
        let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
        let plan = FaultPlan {
            seed,
            reset_probability: 0.3,
            max_bytes_before_reset: 2 << 20,
            ..FaultPlan::default()
        };
        let proxy = FaultProxy::start(upstream(&reg), plan).unwrap();
        // Odd seeds also go through chunked uploads, so resets hit PATCH sessions too.
        let chunked: &[&str] = if seed % 2 == 1 {
            &["--monolithic-max-mib", "0", "--chunk-mib", "1"]
        } else {
            &[]
        };
        let mut extra = vec!["--json"];
        extra.extend_from_slice(chunked);
        let started = Instant::now();
        let r = push_via(&proxy, &pkg, "ns", &extra);
        let stats = proxy.stats();
        println!(
            "seed {seed}: {} connection(s), {} reset(s), {} retry event(s), exit {} in {:.1}s{}",
            stats.connections,
            stats.resets,
            retry_events(&r).len(),
            r.code,
            started.elapsed().as_secs_f64(),
            if chunked.is_empty() { "" } else { " (chunked)" }
        );
        assert_eq!(
            r.code, 0,
            "seed {seed} (replay with FERRY_FAULT_SEED={seed}): {stats:?}\n{}",
            r.stderr
        );
        if stats.resets > 0 {
            assert!(
                !retry_events(&r).is_empty(),
                "seed {seed}: {} reset(s) but no retry reported",
                stats.resets
            );
        }
        assert_registry_holds_package(&reg, &pkg, "ns");
        total_resets += stats.resets;
    }
    println!("resets injected over all seeds: {total_resets}");
    assert!(total_resets > 0, "the plan injected no reset at all");
}

#[test]
fn retryable_statuses_are_retried_and_retry_after_is_honoured() {
    let pkg = Pkg::new();
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    let plan = FaultPlan {
        http_faults: vec![
            HttpFault::new(Some("POST"), "/blobs/uploads/", 503, 2),
            HttpFault::new(Some("PUT"), "/manifests/", 500, 1),
            HttpFault::new(Some("HEAD"), "/blobs/", 429, 1).retry_after(5),
        ],
        ..FaultPlan::default()
    };
    let proxy = FaultProxy::start(upstream(&reg), plan).unwrap();
    let started = Instant::now();
    let r = push_via(&proxy, &pkg, "ns", &["--json"]);
    let elapsed = started.elapsed();
    let retries = retry_events(&r);
    println!(
        "{:?}; {} retry event(s) in {elapsed:?}:\n  {}",
        proxy.stats(),
        retries.len(),
        retries.join("\n  ")
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(proxy.stats().http_faults, 4, "every injected fault was hit");
    assert!(retries.len() >= 4, "{retries:?}");
    for code in ["503", "500", "429"] {
        assert!(
            retries.iter().any(|m| m.contains(code)),
            "no retry after HTTP {code}: {retries:?}"
        );
    }
    // `Retry-After: 5` is longer than ferry's own backoff for all four faults
    // together (0.25 s doubling, ±50%: under 3 s), so honouring it is what
    // makes the run last 5 s (a correctness check, not a speed target).
    let after_429 = retries
        .iter()
        .find(|m| m.contains("429"))
        .expect("a retry after the 429");
    assert!(
        after_429.starts_with("retrying in 5"),
        "Retry-After: 5 not used: {after_429}"
    );
    assert!(
        elapsed >= Duration::from_secs(5),
        "Retry-After: 5 was not honoured: the whole push took {elapsed:?}"
    );
    assert_registry_holds_package(&reg, &pkg, "ns");
}

#[test]
fn client_errors_are_not_retried_and_name_the_image() {
    let pkg = Pkg::new();
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    let plan = FaultPlan {
        http_faults: vec![HttpFault::new(Some("PUT"), "/manifests/", 400, 1)],
        ..FaultPlan::default()
    };
    let proxy = FaultProxy::start(upstream(&reg), plan).unwrap();
    let started = Instant::now();
    let r = push_via(&proxy, &pkg, "ns", &[]);
    let elapsed = started.elapsed();
    println!("exit {} after {elapsed:?}: {}", r.code, r.stderr.trim());
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(proxy.stats().http_faults, 1);
    let (_, faulted) = proxy
        .requests()
        .into_iter()
        .find(|(m, t)| m == "PUT" && t.contains("/manifests/"))
        .expect("a manifest PUT went through the proxy");
    assert_eq!(
        proxy
            .requests()
            .iter()
            .filter(|(m, t)| m == "PUT" && *t == faulted)
            .count(),
        1,
        "the 400 was retried ({faulted})"
    );
    // /v2/ns/<repository>/manifests/<ref>: the error names that image.
    let repository = faulted
        .trim_start_matches("/v2/ns/")
        .split("/manifests/")
        .next()
        .unwrap()
        .to_owned();
    assert!(
        r.stderr.contains(&repository) && r.stderr.contains("400"),
        "stderr does not name {repository} and the status:\n{}",
        r.stderr
    );
    assert!(!r.stderr.contains("retrying"), "{}", r.stderr);
}

#[test]
fn a_stall_is_detected_and_retried() {
    let pkg = Pkg::new();
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    // The stall outlasts what ferry allows after an upload's last byte (5 stall
    // timeouts: these 900 KiB bodies fit in socket buffers, so the stall shows
    // as a registry that does not answer).
    let plan = FaultPlan {
        seed: 3,
        stall_probability: 1.0,
        stall_ms: 9_000,
        max_stalls: Some(1),
        // The first connection to carry this many client bytes stalls: inside an upload.
        max_bytes_before_reset: 256 * 1024,
        ..FaultPlan::default()
    };
    let proxy = FaultProxy::start(upstream(&reg), plan).unwrap();
    let started = Instant::now();
    let r = push_via(&proxy, &pkg, "ns", &["--json", "--stall-timeout", "1"]);
    let elapsed = started.elapsed();
    let retries = retry_events(&r);
    println!(
        "{:?}; exit {} in {elapsed:?}; retries: {retries:?}",
        proxy.stats(),
        r.code
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(proxy.stats().stalls, 1);
    // Waited out, the 9 s stall would end with the request answered and no
    // retry; detected (--stall-timeout 1: 5 s for an answer after an upload),
    // the request times out and is retried.
    assert!(
        retries.iter().any(|m| m.contains("timeout")),
        "the stall was not detected and retried: {retries:?}"
    );
    assert_registry_holds_package(&reg, &pkg, "ns");
}

/// The byte-level proxy is transparent to TLS: resets through it in front of an htpasswd
/// registry are retried too.
#[test]
fn resets_through_tls_with_auth() {
    let pkg = Pkg::new();
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    let (user, pass) = reg.credentials().unwrap();
    let mut total_resets = 0;
    for seed in [11, 12, 13] {
        // Half the connections armed, each reset within its first 64 KiB (every
        // connection that carries a layer gets that far), at most 3 per run; the
        // seeds are fixed, so the schedule is the same on every run.
        let plan = FaultPlan {
            seed,
            reset_probability: 0.5,
            max_bytes_before_reset: 64 << 10,
            max_resets: Some(3),
            ..FaultPlan::default()
        };
        let proxy = FaultProxy::start(upstream(&reg), plan).unwrap();
        let ns = format!("tls{seed}");
        let r = run(Command::new(bin("ferry-push"))
            .arg("--source")
            .arg(&pkg.path)
            .arg("--staging")
            .arg(pkg.staging())
            .args([
                "--private-registry",
                &format!("{}/{ns}", proxy.addr()),
                "--username",
                &user,
                "--password",
                &pass,
                "--json",
            ])
            .arg("--cacert")
            .arg(reg.ca_cert_path().unwrap())
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy"));
        let stats = proxy.stats();
        println!(
            "TLS seed {seed}: {stats:?}, {} retry event(s), exit {}",
            retry_events(&r).len(),
            r.code
        );
        assert_eq!(r.code, 0, "TLS seed {seed}: {stats:?}\n{}", r.stderr);
        if stats.resets > 0 {
            assert!(
                !retry_events(&r).is_empty(),
                "TLS seed {seed}: {} reset(s) but no retry reported",
                stats.resets
            );
        }
        total_resets += stats.resets;
        for image in &layout().fixture.images {
            let out = Command::new("skopeo")
                .arg("inspect")
                .args(reg.skopeo_args(SkopeoRole::Inspect))
                .arg("--raw")
                .arg(mapped(&reg, &ns, &image.reference))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(Digest::sha256_of(&out.stdout), image.descriptor.digest);
        }
    }
    assert!(total_resets > 0, "no reset was injected through TLS");
}

/// A streamed package (no staging): a reset in the middle of a layer that goes
/// straight from the decompressor to the registry cannot be re-sent from the
/// stream, so ferry reads on, then reads the package again for that layer, and
/// the run still ends complete.
#[test]
fn a_streamed_layer_cut_off_mid_upload_is_sent_again_from_another_read() {
    let dir = tempfile::tempdir().unwrap();
    let layout_dir = dir.path().join("layout");
    let spec = FixtureSpec {
        seed: 67,
        images: 2,
        layers_per_image: 1,
        layer_size: 26 << 20, // over the 24 MiB in-memory spool: streamed straight through
        incompressible: true,
        ..Default::default()
    };
    let fixture = generate_layout(&spec, &layout_dir).unwrap();
    let path = dir.path().join("bmpackages_big.tar.zst");
    write_package(
        &layout_dir,
        PackageFormat::TarZst,
        &PackageOptions::default(),
        &path,
    )
    .unwrap();
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    // One reset, on the first connection that has sent 8-16 MiB: inside a layer's PUT.
    let plan = FaultPlan {
        seed: 5,
        reset_probability: 1.0,
        max_bytes_before_reset: 16 << 20,
        max_resets: Some(1),
        ..FaultPlan::default()
    };
    let proxy = FaultProxy::start(upstream(&reg), plan).unwrap();
    let r = push_through(&proxy, &path, "ns", &["--json"]);
    let stats = proxy.stats();
    assert_eq!(r.code, 0, "{stats:?}\n{}", r.stderr);
    assert_eq!(stats.resets, 1, "{stats:?}");
    assert!(
        !dir.path()
            .join("bmpackages_big.tar.zst.ferry-store")
            .exists(),
        "staged instead of streamed"
    );
    let again: Vec<String> = retry_events(&r)
        .into_iter()
        .filter(|m| m.contains("reading the package again"))
        .collect();
    assert_eq!(again.len(), 1, "{:?}", retry_events(&r));
    assert_registry_holds(&reg, &fixture, &path, "ns");
}

/// A streamed push whose background upload is refused (400 on a blob PUT)
/// stops promptly with exit 2 naming the blob, never hangs on its in-memory
/// spool, and pushes no manifest or tag.
#[test]
fn a_refused_background_upload_stops_a_streamed_push_cleanly() {
    let pkg = Pkg::new();
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    // A layer (under 1 MiB: it goes through the in-memory spool's workers), by
    // its digest in the upload's `?digest=` query.
    let layer = layout().fixture.images[1]
        .blobs
        .iter()
        .find(|d| d.media_type.contains("layer"))
        .unwrap()
        .clone();
    let plan = FaultPlan {
        http_faults: vec![HttpFault::new(Some("PUT"), layer.digest.hex(), 400, 1)],
        ..FaultPlan::default()
    };
    let proxy = FaultProxy::start(upstream(&reg), plan).unwrap();
    let started = Instant::now();
    let r = push_through(&proxy, &pkg.path, "ns", &[]);
    let elapsed = started.elapsed();
    println!("exit {} after {elapsed:?}: {}", r.code, r.stderr.trim());
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(proxy.stats().http_faults, 1);
    assert!(
        r.stderr.contains(&layer.digest.to_string()) && r.stderr.contains("400"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("staging"),
        "streamed, not staged: {}",
        r.stderr
    );
    assert!(
        !proxy
            .requests()
            .iter()
            .any(|(m, t)| m == "PUT" && t.contains("/manifests/")),
        "a manifest was pushed after a refused blob"
    );
}

/// Bytes in a progress figure such as `84.38 MiB`, `512.00 KiB` or `0 B`.
fn progress_bytes(number: &str, unit: &str) -> Option<f64> {
    let n: f64 = number.parse().ok()?;
    let scale = match unit {
        "B" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some(n * scale)
}

/// The bytes-done figure of every redraw of the bar whose line contains `label`
/// (`LABEL [====>   ] DONE UNIT/TOTAL UNIT …`), in screen order.
fn bar_positions(screen: &str, label: &str) -> Vec<f64> {
    screen
        .split(['\r', '\n'])
        .filter(|l| l.contains(label))
        .filter_map(|l| {
            let after = l.split_once("] ")?.1;
            let done = after.split('/').next()?;
            let (number, unit) = done.trim().split_once(' ')?;
            progress_bytes(number, unit)
        })
        .collect()
}

/// Progress on a terminal never goes backwards, even when connections are reset
/// mid-chunk and chunks are sent again: the total bar and every per-blob bar
/// only move forward (util-linux `script` gives ferry-push a real pty).
#[test]
fn progress_bars_never_go_backwards_when_chunks_are_retried() {
    let pkg = ferry_e2e::registry_push::package(67, 3 << 20);
    let store = pkg.dir.join("store");
    let r = ferry_e2e::export(&pkg.path, &store, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    let plan = FaultPlan {
        seed: 67,
        reset_probability: 0.5,
        max_bytes_before_reset: 2 << 20,
        max_resets: Some(6),
        ..FaultPlan::default()
    };
    let proxy = FaultProxy::start(upstream(&reg), plan).unwrap();
    let command = format!(
        "{} --source {} --private-registry http://{}/ns --need-credential=false --jobs 2 \
         --monolithic-max-mib 1 --chunk-mib 1",
        bin("ferry-push").display(),
        store.display(),
        proxy.addr()
    );
    let out = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .env("FERRY_TEST_CHUNK_PAUSE_MS", "150")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    let stats = proxy.stats();
    assert!(stats.resets > 0, "no reset was injected: {stats:?}");
    assert!(
        screen.contains("retrying"),
        "no retry was reported:\n{screen}"
    );

    let total = bar_positions(&screen, "push [");
    assert!(
        total.len() > 2,
        "too few redraws of the total bar:\n{screen}"
    );
    assert!(
        total.windows(2).all(|w| w[1] >= w[0]),
        "the total bar went backwards: {total:?}"
    );
    let labels: std::collections::BTreeSet<&str> = screen
        .split(['\r', '\n'])
        .filter_map(|l| l.trim_start().split_once(" [").map(|(label, _)| label))
        .filter(|label| label.contains("@sha256:"))
        .collect();
    assert!(!labels.is_empty(), "no per-blob bar:\n{screen}");
    for label in labels {
        let positions = bar_positions(&screen, label);
        assert!(
            positions.windows(2).all(|w| w[1] >= w[0]),
            "{label} went backwards: {positions:?}"
        );
    }
    assert_registry_holds(&reg, &pkg.fixture, &store, "ns");
}
