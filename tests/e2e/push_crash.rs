//! Crash trials for ferry-push: SIGKILL a push of a store to a TLS + htpasswd registry at a
//! seeded random moment (chunked upload sessions in flight), rerun the same command, and check
//! with skopeo, ferry-verify and ferry-diff that the registry holds exactly the package.
//!
//! Replay one trial with `FERRY_TRIAL_SEED=N` (the seed printed for it).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Instant;

use ferry_e2e::registry_push::mapped;
use ferry_e2e::{bin, events, export, run, spawn_with_input, without_proxies, Run};
use ferry_store::Digest;
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions, SkopeoRole};
use ferry_testkit::{generate_layout, Fixture, FixtureSpec};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const TRIALS: u64 = 10;
const DEFAULT_SEED: u64 = 0x5eed_0000;

struct Setup {
    _dir: tempfile::TempDir,
    store: PathBuf,
    fixture: Fixture,
    reg: Registry,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let spec = FixtureSpec {
        seed: 71,
        images: 3,
        layers_per_image: 2,
        layer_size: 5 << 20,
        incompressible: true,
        multi_arch_every: 3,
        docker_schema2_every: 2,
        ..Default::default()
    };
    let fixture = generate_layout(&spec, &layout).unwrap();
    let store = dir.path().join("store");
    let e = export(&layout, &store, &[]);
    assert_eq!(e.code, 0, "{}", e.stderr);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    Setup {
        _dir: dir,
        store,
        fixture,
        reg,
    }
}

/// Starts `ferry-push --source STORE --private-registry REG/ns … --json` with the password on
/// stdin, chunked uploads (1 MiB) for everything over 1 MiB.
fn spawn_push(s: &Setup, ns: &str) -> Child {
    let (user, pass) = s.reg.credentials().unwrap();
    let mut cmd = Command::new(bin("ferry-push"));
    cmd.arg("--source")
        .arg(&s.store)
        .args([
            "--private-registry",
            &format!("{}/{ns}", s.reg.host()),
            "--username",
            &user,
            "--password-stdin",
            "--monolithic-max-mib",
            "1",
            "--chunk-mib",
            "1",
            "--json",
        ])
        .arg("--cacert")
        .arg(s.reg.ca_cert_path().unwrap());
    spawn_with_input(without_proxies(&mut cmd), pass.as_bytes())
}

fn push(s: &Setup, ns: &str) -> Run {
    spawn_push(s, ns).wait_with_output().unwrap().into()
}

fn assert_registry_holds_package(s: &Setup, ns: &str, what: &str) {
    for image in &s.fixture.images {
        let out = Command::new("skopeo")
            .arg("inspect")
            .args(s.reg.skopeo_args(SkopeoRole::Inspect))
            .arg("--raw")
            .arg(mapped(&s.reg, ns, &image.reference))
            .output()
            .expect("skopeo is installed (scripts/install-deps.sh)");
        assert!(
            out.status.success(),
            "{what}: skopeo inspect {}: {}",
            image.reference,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            Digest::sha256_of(&out.stdout),
            image.descriptor.digest,
            "{what}: {} is not byte-identical",
            image.reference
        );
    }
    let (user, pass) = s.reg.credentials().unwrap();
    let diff = run(Command::new(bin("ferry-diff"))
        .arg("--source")
        .arg(&s.store)
        .args([
            "--private-registry",
            &format!("{}/{ns}", s.reg.host()),
            "--username",
            &user,
            "--password",
            &pass,
        ])
        .arg("--cacert")
        .arg(s.reg.ca_cert_path().unwrap()));
    assert_eq!(
        diff.code, 0,
        "{what}: ferry-diff:\n{}\n{}",
        diff.stdout, diff.stderr
    );
}

fn verify_store(store: &Path, what: &str) {
    let v = run(Command::new(bin("ferry-verify")).arg(store));
    assert_eq!(
        v.code, 0,
        "{what}: ferry-verify:\n{}\n{}",
        v.stdout, v.stderr
    );
}

#[test]
fn sigkill_at_random_moments_then_rerun_finishes_the_push() {
    let s = setup();

    // One full push (to its own namespace) sets the window the kills are drawn from.
    let t = Instant::now();
    let full = push(&s, "measure");
    let window = t.elapsed();
    assert_eq!(full.code, 0, "{}", full.stderr);
    assert_registry_holds_package(&s, "measure", "measure");
    println!(
        "full push: {:.2}s, {} blob(s) uploaded",
        window.as_secs_f64(),
        events(&full)
            .iter()
            .filter(|e| e["event"] == "blob_uploaded")
            .count()
    );

    let seeds: Vec<u64> = match std::env::var("FERRY_TRIAL_SEED") {
        Ok(v) => vec![v.parse().expect("FERRY_TRIAL_SEED is a number")],
        Err(_) => (0..ferry_e2e::soak_count("FERRY_SOAK_TRIALS", TRIALS))
            .map(|i| DEFAULT_SEED + i)
            .collect(),
    };
    let (mut hit_running, mut resumed_blobs, mut sessions_seen) = (0, 0, 0);
    for seed in &seeds {
        let seed = *seed;
        let what = format!("trial seed {seed} (replay with FERRY_TRIAL_SEED={seed})");
        let ns = format!("t{seed}");
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let delay = window.mul_f64(rng.gen_range(0.0..1.0));

        let journal_before = journal_sessions(&s.store);
        let mut child = spawn_push(&s, &ns);
        std::thread::sleep(delay);
        let running = child.try_wait().unwrap().is_none();
        child.kill().unwrap(); // SIGKILL, by PID
        let killed = child.wait_with_output().unwrap();
        hit_running += usize::from(running);
        let new_sessions = journal_sessions(&s.store) - journal_before;
        sessions_seen += new_sessions;

        let again = push(&s, &ns);
        assert_eq!(again.code, 0, "{what}: rerun failed:\n{}", again.stderr);
        let resumed: Vec<u64> = events(&again)
            .iter()
            .filter(|e| e["event"] == "blob_uploaded")
            .filter_map(|e| e["resumed_from"].as_u64())
            .filter(|&from| from > 0)
            .collect();
        resumed_blobs += resumed.len();
        println!(
            "{what}: kill after {:.0} ms ({}), {} session(s) journaled before the kill, {} killed-run event(s), rerun resumed {} blob(s) at {:?}",
            delay.as_secs_f64() * 1000.0,
            if running { "push running" } else { "push already done" },
            new_sessions,
            String::from_utf8_lossy(&killed.stdout).lines().count(),
            resumed.len(),
            resumed
        );
        assert_registry_holds_package(&s, &ns, &what);
        verify_store(&s.store, &what);
    }
    // distribution cancels a session whose `_state` offset is behind what it holds (a chunk it
    // took in before the kill, whose answer ferry never journaled): that blob restarts from 0.
    let cancelled = s
        .reg
        .log()
        .matches("upload resumed at wrong offest")
        .count();
    println!(
        "{} trial(s): {hit_running} kill(s) hit a running push, {sessions_seen} chunk session(s) journaled by killed runs, {resumed_blobs} blob(s) resumed by reruns, {cancelled} session(s) the registry cancelled as stale (blob restarted)",
        seeds.len()
    );
    if seeds.len() > 1 {
        assert!(hit_running > 0, "no kill hit a running push");
    }
}

/// `"upload_session"` lines in the store's journal so far.
fn journal_sessions(store: &Path) -> usize {
    std::fs::read_to_string(store.join(".ferry/journal.jsonl"))
        .unwrap_or_default()
        .matches("\"upload_session\"")
        .count()
}
