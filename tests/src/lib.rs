//! ferry-e2e: helpers for end-to-end tests that run the built ferry binaries
//! (from this workspace's target directory) and check their results with real
//! third-party clients (skopeo, umoci), never with ferry's own report alone.

pub mod fault_push;
pub mod registry_push;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use ferry_store::{Digest, Store};

/// Path of a built workspace binary (`cargo build --workspace --bins` must have run).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// Result of running a command.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs a command to completion.
pub fn run(cmd: &mut Command) -> Run {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
        .into()
}

/// Removes the proxy variables (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, in
/// either case) from `cmd`'s environment, so that a test's requests go straight
/// to its local registry or fault proxy, never through the developer's proxy.
pub fn without_proxies(cmd: &mut Command) -> &mut Command {
    cmd.env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
}

/// Spawns `cmd` with its stdin, stdout and stderr piped (panics if it cannot start).
pub fn spawn_piped(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Spawns `cmd` with its output piped and `input` (e.g. a password for
/// `--password-stdin`) written to its stdin, which is then closed.
pub fn spawn_with_input(cmd: &mut Command, input: &[u8]) -> Child {
    let mut child = spawn_piped(cmd);
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(input).expect("write to the child's stdin");
    drop(stdin);
    child
}

/// Runs `ferry-export --source SRC --to DEST [extra…]`.
pub fn export(src: &Path, dest: &Path, extra: &[&str]) -> Run {
    run(Command::new(bin("ferry-export"))
        .arg("--source")
        .arg(src)
        .arg("--to")
        .arg(dest)
        .args(extra))
}

/// Runs skopeo with `args`, panicking with its stderr on failure.
pub fn skopeo_ok(args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo is installed (scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `skopeo inspect --raw oci:DIR:REF` → the digest of the exact manifest bytes.
pub fn skopeo_manifest_digest(store: &Path, reference: &str) -> (Digest, Vec<u8>) {
    let raw = skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("oci:{}:{reference}", store.display()),
    ]);
    (Digest::sha256_of(&raw), raw)
}

/// Checks every blob file of a layout hashes to its name (and that there is at
/// least one); returns how many were checked.
pub fn assert_all_blobs_verify(store: &Path) -> usize {
    let mut n = 0;
    for alg in ["sha256", "sha512"] {
        let dir = store.join("blobs").join(alg);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries {
            let e = e.expect("read blobs dir");
            let name = format!("{alg}:{}", e.file_name().to_string_lossy());
            let expected: Digest = name
                .parse()
                .unwrap_or_else(|err| panic!("bad blob name {name}: {err}"));
            let bytes = std::fs::read(e.path()).expect("read blob");
            assert_eq!(
                expected.of_same_algorithm(&bytes),
                expected,
                "blob {} is corrupt",
                e.path().display()
            );
            n += 1;
        }
    }
    assert!(n > 0, "{} holds no blob", store.display());
    n
}

/// Opens a store read-only and checks that every named image's graph is complete.
pub fn assert_store_complete(store: &Path) -> Vec<String> {
    let s = Store::open_read_only(store).expect("store opens");
    let walk = s.walk_index().expect("index.json reads");
    assert!(
        walk.problems.is_empty(),
        "store {} has problems: {:?}",
        store.display(),
        walk.problems
    );
    s.index_entries()
        .expect("index")
        .iter()
        .filter_map(|d| ferry_store::layout::image_name(d).map(str::to_owned))
        .collect()
}

/// Parses ferry's `--json` output.
pub fn json(run: &Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("bad JSON ({e}): {}\nstderr: {}", run.stdout, run.stderr))
}

/// The JSON lines of a `--json` run's stdout (any other line is skipped).
pub fn events(run: &Run) -> Vec<serde_json::Value> {
    run.stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The messages of the `{"event":"retry",…}` lines of a `--json` run.
pub fn retry_events(run: &Run) -> Vec<String> {
    events(run)
        .iter()
        .filter(|e| e["event"] == "retry")
        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The `summary` object of a `--json` run's last stdout line,
/// `{"event":"summary","summary":{…}}` (which must be there).
pub fn summary(run: &Run) -> serde_json::Value {
    let last = run.stdout.lines().next_back().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("last stdout line is not JSON ({e}): {}", run.stdout));
    assert_eq!(v["event"], "summary", "{last}");
    v["summary"].clone()
}

/// True for Docker schema 2 manifest and list media types, which skopeo 1.9
/// (Debian 12) does not look up in OCI layouts (it skips non-OCI `index.json`
/// entries); ferry keeps the truthful type, so such images are checked directly.
pub fn skopeo_cannot_see(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.docker.")
}

/// The manifest digest an image resolves to in a store: through skopeo for OCI
/// types, else from `index.json`, re-hashing the manifest bytes either way.
pub fn stored_manifest_digest(store: &Path, reference: &str, media_type: &str) -> Digest {
    if !skopeo_cannot_see(media_type) {
        return skopeo_manifest_digest(store, reference).0;
    }
    let s = Store::open_read_only(store).expect("store opens");
    let entry = s
        .index_entries()
        .expect("index")
        .into_iter()
        .find(|d| ferry_store::layout::image_name(d) == Some(reference))
        .unwrap_or_else(|| panic!("{reference} is not named in {}", store.display()));
    assert_eq!(
        entry.media_type, media_type,
        "{reference}: media type changed"
    );
    let bytes = std::fs::read(s.blob_path(&entry.digest)).expect("manifest blob");
    Digest::sha256_of(&bytes)
}

/// A trial count: `default` in the CI suite, raised by `scripts/soak.sh`
/// through the environment variable `name`.
pub fn soak_count(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}
