//! TLS failures against the real `docker-registry` (distribution v2.8) started
//! here with hand-made certificates: a certificate for another host, an expired
//! certificate and an unknown CA are refused by default (exit 2, a message
//! naming the problem); `--insecure-skip-tls-verify` gets past them.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use ferry_e2e::{bin, export, run, Run};
use ferry_testkit::registry::{TestCa, REGISTRY_BIN};
use ferry_testkit::{generate_layout, FixtureSpec};

const DAY: Duration = Duration::from_secs(86_400);

/// A `docker-registry` serving TLS with a given certificate; killed by PID on drop.
struct TlsRegistry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl TlsRegistry {
    /// Starts the registry with `cert_pem` (leaf, then the CA) and `key_pem`, and
    /// waits until its port accepts connections.
    fn start(cert_pem: &str, key_pem: &str) -> TlsRegistry {
        assert!(
            Path::new(REGISTRY_BIN).is_file(),
            "{REGISTRY_BIN} missing: run scripts/install-deps.sh"
        );
        let dir = tempfile::Builder::new()
            .prefix("ferry-tls-registry-")
            .tempdir()
            .unwrap();
        let cert = dir.path().join("server.pem");
        let key = dir.path().join("server.key");
        std::fs::write(&cert, cert_pem).unwrap();
        std::fs::write(&key, key_pem).unwrap();
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let q = |p: &Path| serde_json::Value::String(p.display().to_string()).to_string();
        for attempt in 0..4 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                     http:\n  addr: \"127.0.0.1:{port}\"\n  secret: ferry-tls-test-secret\n  tls:\n    certificate: {}\n    key: {}\n",
                    q(&storage),
                    q(&cert),
                    q(&key)
                ),
            )
            .unwrap();
            let log =
                std::fs::File::create(dir.path().join(format!("registry-{attempt}.log"))).unwrap();
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::from(log.try_clone().unwrap()))
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                if child.try_wait().unwrap().is_some() {
                    break; // exited: port clash or bad config; retry or fail below
                }
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return TlsRegistry { child, port, dir };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        panic!(
            "docker-registry did not start; logs in {}:\n{}",
            dir.path().display(),
            std::fs::read_to_string(dir.path().join("registry-3.log")).unwrap_or_default()
        );
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect()
    }
}

impl Drop for TlsRegistry {
    fn drop(&mut self) {
        // Kills this child's PID only, then reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small store (one image, two tiny layers) exported from a generated layout.
fn small_store(work: &Path) -> PathBuf {
    let layout = work.join("layout");
    let spec = FixtureSpec {
        seed: 0x7150,
        images: 1,
        layers_per_image: 2,
        layer_size: 4096,
        ..FixtureSpec::default()
    };
    generate_layout(&spec, &layout).unwrap();
    let store = work.join("store");
    let r = export(&layout, &store, &[]);
    assert_eq!(r.code, 0, "export: {}", r.stderr);
    store
}

fn push(store: &Path, reg: &TlsRegistry, extra: &[&str]) -> Run {
    run(Command::new(bin("ferry-push"))
        .arg("--source")
        .arg(store)
        .arg("--private-registry")
        .arg(reg.host())
        .arg("--need-credential=false")
        .args(extra)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .stdin(Stdio::null()))
}

fn assert_refused(what: &str, r: &Run, needles: &[&str], reg: &TlsRegistry) {
    eprintln!("{what}: exit {}: {}", r.code, r.stderr.trim());
    assert_eq!(
        r.code, 2,
        "{what}: expected exit 2, got {}\nstdout: {}\nstderr: {}",
        r.code, r.stdout, r.stderr
    );
    for n in needles {
        assert!(
            r.stderr.contains(n),
            "{what}: stderr does not mention {n:?}:\n{}",
            r.stderr
        );
    }
    assert!(
        !reg.log().contains("\"PUT /v2/"),
        "{what}: something was uploaded:\n{}",
        reg.log()
    );
}

#[test]
fn tls_problems_are_refused_by_default_with_a_precise_message() {
    let work = tempfile::tempdir().unwrap();
    let store = small_store(work.path());
    let ca = TestCa::new().unwrap();
    let ca_path = work.path().join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem()).unwrap();
    let ca_arg = ca_path.to_str().unwrap();
    let later = SystemTime::now() + 365 * DAY;

    // (a) A certificate for another host only.
    let (cert, key) = ca.issue_server_cert(&["other.example"], later).unwrap();
    let reg = TlsRegistry::start(&format!("{cert}{}", ca.cert_pem()), &key);
    let r = push(&store, &reg, &["--cacert", ca_arg]);
    assert_refused(
        "certificate for other.example",
        &r,
        &["not valid for this host", &reg.host()],
        &reg,
    );
    // The registry itself works: skipping verification, the push goes through.
    let r = push(&store, &reg, &["--insecure-skip-tls-verify"]);
    assert_eq!(
        r.code, 0,
        "push with --insecure-skip-tls-verify failed:\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    assert!(
        reg.log().contains("\"PUT /v2/"),
        "no manifest was uploaded:\n{}",
        reg.log()
    );
    drop(reg);

    // (b) An expired certificate for the right address.
    let (cert, key) = ca
        .issue_server_cert(&["127.0.0.1"], SystemTime::now() - 2 * DAY)
        .unwrap();
    let reg = TlsRegistry::start(&format!("{cert}{}", ca.cert_pem()), &key);
    let r = push(&store, &reg, &["--cacert", ca_arg]);
    assert_refused("expired certificate", &r, &["expired", &reg.host()], &reg);
    drop(reg);

    // (c) A valid certificate from a CA the client was not given.
    let (cert, key) = ca.issue_server_cert(&["127.0.0.1"], later).unwrap();
    let reg = TlsRegistry::start(&format!("{cert}{}", ca.cert_pem()), &key);
    let r = push(&store, &reg, &[]);
    assert_refused(
        "unknown CA",
        &r,
        &["unknown certificate authority", "--cacert", &reg.host()],
        &reg,
    );
    // The same registry with its CA given: accepted (the failure above was the CA).
    let r = push(&store, &reg, &["--cacert", ca_arg]);
    assert_eq!(
        r.code, 0,
        "push with --cacert failed:\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
}
