//! One package read once and pushed to several registries at once (primary
//! and DR, one per cluster): a plain, a TLS + htpasswd and a TLS + token
//! registry, each with its own CA and credentials (`--cacert-for`,
//! `--credentials-for`). One registry stopped mid-push: the others complete,
//! the run says which failed and exits 2, and a rerun finishes only what is
//! missing where it is missing.

use std::process::{Command, Stdio};

use ferry_e2e::registry_push::{assert_registry_has_package, packaged_with, target, Pkg};
use ferry_e2e::{bin, without_proxies, Run};
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions};
use ferry_testkit::{FixtureSpec, PackageFormat};

fn package(layers_first: bool) -> Pkg {
    let spec = FixtureSpec {
        seed: 57,
        images: 4,
        layers_per_image: 2,
        layer_size: 3 << 20,
        incompressible: true,
        multi_arch_every: 3,
        ..Default::default()
    };
    packaged_with(&spec, PackageFormat::TarZst, layers_first, "pkg.tar.zst")
}

/// The ferry-push command line for `regs` (namespace `m`), each with its own CA and credentials.
fn command(pkg: &Pkg, regs: &[&Registry], extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin("ferry-push"));
    cmd.arg("--source").arg(&pkg.path).args(extra);
    for reg in regs {
        cmd.arg("--private-registry").arg(target(reg, "m"));
        if let Some(ca) = reg.ca_cert_path() {
            cmd.arg("--cacert-for")
                .arg(format!("{}={}", reg.host(), ca.display()));
        }
        let (user, pass) = reg
            .credentials()
            .unwrap_or_else(|| ("anyone".into(), "unused".into()));
        let file = pkg.dir.join(format!("password-{}", reg.port()));
        std::fs::write(&file, pass).unwrap();
        cmd.arg("--credentials-for")
            .arg(format!("{}={user}:{}", reg.host(), file.display()));
    }
    without_proxies(&mut cmd);
    cmd.stdin(Stdio::null());
    cmd
}

fn start(mode: RegistryMode) -> Registry {
    Registry::start(RegistryOptions::new(mode)).unwrap()
}

#[test]
fn one_read_pushes_every_registry_each_with_its_own_ca_and_credentials() {
    let pkg = package(true);
    let (plain, basic, token) = (
        start(RegistryMode::Plain),
        start(RegistryMode::TlsHtpasswd),
        start(RegistryMode::TlsToken),
    );
    let regs = [&plain, &basic, &token];
    let r: Run = command(&pkg, &regs, &["--json"]).output().unwrap().into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summaries: Vec<serde_json::Value> = r
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "summary")
        .collect();
    assert_eq!(summaries.len(), 3, "one summary per registry: {}", r.stdout);
    for reg in regs {
        assert!(
            summaries.iter().any(|s| s["registry"] == reg.host()),
            "no summary for {}",
            reg.host()
        );
        assert_registry_has_package(reg, "m", &pkg);
    }
    assert!(
        !r.stderr.contains("reading the package again"),
        "{}",
        r.stderr
    );
    assert!(!pkg.dir.join("pkg.tar.zst.ferry-store").exists(), "staged");
}

#[test]
fn a_registry_stopped_mid_push_fails_alone_and_a_rerun_finishes_only_it() {
    let pkg = package(false);
    let (plain, basic) = (start(RegistryMode::Plain), start(RegistryMode::TlsHtpasswd));
    let mut token = start(RegistryMode::TlsToken);
    let mut child = command(&pkg, &[&plain, &basic, &token], &["--stall-timeout", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Stop the token registry once it has received a blob.
    let started = std::time::Instant::now();
    while token.count_requests("PUT", "/blobs/uploads/") == 0 && started.elapsed().as_secs() < 120 {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push ended before a registry could be stopped"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    token.stop();
    let r: Run = child.wait_with_output().unwrap().into();
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains(&format!("{}: error:", token.host())),
        "the failed registry is not named: {}",
        r.stderr
    );
    assert!(
        r.stderr.contains("1 of 3 registries failed"),
        "{}",
        r.stderr
    );
    for reg in [&plain, &basic] {
        assert!(
            r.stdout.contains(&format!("to {} (", reg.host())),
            "no summary for {}: {}",
            reg.host(),
            r.stdout
        );
        assert_registry_has_package(reg, "m", &pkg);
    }
    // Rerun with the registry back: it completes; the others receive no upload.
    token.restart().unwrap();
    let before: Vec<usize> = [&plain, &basic]
        .iter()
        .map(|g| g.count_requests("POST", "/blobs/uploads/"))
        .collect();
    let again: Run = command(&pkg, &[&plain, &basic, &token], &[])
        .output()
        .unwrap()
        .into();
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_registry_has_package(&token, "m", &pkg);
    let after: Vec<usize> = [&plain, &basic]
        .iter()
        .map(|g| g.count_requests("POST", "/blobs/uploads/"))
        .collect();
    assert_eq!(
        before, after,
        "a complete registry received uploads on the rerun"
    );
}
