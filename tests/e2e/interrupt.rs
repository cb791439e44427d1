//! Ctrl-C: a push interrupted mid-upload exits 130, says how far it got and
//! that rerunning resumes, leaves the terminal's cursor on a fresh line after
//! its progress bar, and the rerun completes. The push goes through a
//! throttling proxy so that it is still uploading when SIGINT arrives.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_e2e::fault_push::upstream;
use ferry_e2e::registry_push::{assert_registry_has_package, package, push, Pkg};
use ferry_e2e::{bin, export, without_proxies, Run};
use ferry_testkit::faults::{FaultPlan, FaultProxy, HttpFault};
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions};

/// A registry behind a proxy that forwards 256 KiB/s per connection and
/// records requests, and an exported store of a ~16 MiB package.
struct Setup {
    pkg: Pkg,
    store: std::path::PathBuf,
    reg: Registry,
    proxy: FaultProxy,
}

fn setup(seed: u64) -> Setup {
    let pkg = package(seed, 2 << 20);
    let store = pkg.dir.join("store");
    let r = export(&pkg.path, &store, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    let plan = FaultPlan {
        throttle_bytes_per_sec: Some(256 * 1024),
        // A fault that never matches: only so that the proxy records requests.
        http_faults: vec![HttpFault::new(None, "/never-requested", 500, 0)],
        ..FaultPlan::default()
    };
    let proxy = FaultProxy::start(upstream(&reg), plan).unwrap();
    Setup {
        pkg,
        store,
        reg,
        proxy,
    }
}

impl Setup {
    /// The ferry-push command line through the proxy.
    fn push_args(&self) -> Vec<String> {
        vec![
            "--source".into(),
            self.store.display().to_string(),
            "--private-registry".into(),
            format!("http://{}/ns", self.proxy.addr()),
            "--need-credential=false".into(),
        ]
    }

    /// Waits until the push has started sending blob data through the proxy.
    fn wait_for_upload(&self, child: &mut Child) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.proxy.count_requests("PATCH", "/blobs/uploads/")
            + self.proxy.count_requests("PUT", "/blobs/uploads/")
            == 0
        {
            assert!(
                child.try_wait().unwrap().is_none(),
                "ferry-push ended before uploading"
            );
            assert!(Instant::now() < deadline, "no upload started");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The rerun, straight to the registry, completes and the registry holds every image.
    fn assert_rerun_completes(&self) {
        let r = push(&self.reg, &self.store, "ns", &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_registry_has_package(&self.reg, "ns", &self.pkg);
    }
}

fn assert_interrupt_message(output: &str) {
    let line = output
        .lines()
        .find(|l| l.contains("interrupted"))
        .unwrap_or_else(|| panic!("no interrupt message:\n{output}"));
    assert!(
        line.contains("ferry-push: interrupted (Ctrl-C) during push, after ")
            && line
                .trim_end()
                .ends_with("rerun the same command to resume"),
        "{line:?}"
    );
}

#[test]
fn sigint_mid_push_exits_130_saying_how_to_resume_and_the_rerun_completes() {
    let s = setup(101);
    let mut child = without_proxies(Command::new(bin("ferry-push")).args(s.push_args()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    s.wait_for_upload(&mut child);
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let r: Run = child.wait_with_output().unwrap().into();
    assert_eq!(r.code, 130, "{}{}", r.stdout, r.stderr);
    assert_interrupt_message(&r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    s.assert_rerun_completes();
}

/// On a terminal (util-linux `script` gives ferry-push a pty), Ctrl-C typed
/// on it leaves the bar where it stopped, and the message on its own line,
/// ending with a newline so the next prompt starts on a fresh line.
#[test]
fn ctrl_c_on_a_terminal_finishes_the_bar_and_the_line() {
    let s = setup(102);
    let command = format!(
        "exec {} {}",
        bin("ferry-push").display(),
        s.push_args().join(" ")
    );
    let mut script = without_proxies(Command::new("script").args(["-qefc", &command, "/dev/null"]))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    s.wait_for_upload(&mut script);
    let mut keyboard = script.stdin.take().unwrap();
    keyboard.write_all(b"\x03").unwrap(); // Ctrl-C, as typed on the terminal
    keyboard.flush().unwrap();
    let out = script.wait_with_output().unwrap();
    drop(keyboard);
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{screen}");
    let at = screen
        .find("ferry-push: interrupted")
        .unwrap_or_else(|| panic!("no interrupt message:\n{screen}"));
    let before = &screen[..at];
    assert!(
        before.contains("push ["),
        "no progress bar before the message:\n{screen}"
    );
    assert!(
        before.ends_with('\n'),
        "the message does not start on its own line: {:?}",
        &before[before.len().saturating_sub(200)..]
    );
    assert!(
        screen.ends_with('\n'),
        "the output does not end with a newline"
    );
    assert_interrupt_message(&screen[at..]);
    s.assert_rerun_completes();
}
