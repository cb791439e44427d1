//! Packages in any order pushed in one read with no scratch copy: layers-first
//! `.tar.xz` and `.tar.zst` (what `tar -c` of a layout, Hauler and Zarf write)
//! through the holding repository, byte-identical per skopeo, with the disk
//! use of the run measured; a registry that refuses mounts (the fake
//! registry) takes a second read; a push killed mid-way finishes on rerun; a
//! dry run of a layers-first package writes nothing and counts what the push
//! then does.

use std::path::Path;
use std::process::Command;

use ferry_e2e::fault_push::{push_through, upstream};
use ferry_e2e::registry_push::{assert_registry_has_package, packaged_with, push, Pkg};
use ferry_e2e::{bin, run, spawn_with_input, summary, without_proxies};
use ferry_store::Digest;
use ferry_testkit::fake_registry::{FakeRegistry, Quirks, Rule};
use ferry_testkit::faults::{FaultPlan, FaultProxy};
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions};
use ferry_testkit::{FixtureSpec, PackageFormat};

/// A layers-first package of `images` images x 2 incompressible layers of `layer_size`.
fn layers_first(format: PackageFormat, name: &str, images: usize, layer_size: u64) -> Pkg {
    let spec = FixtureSpec {
        seed: 41,
        images,
        layers_per_image: 2,
        layer_size,
        incompressible: true,
        multi_arch_every: 3,
        docker_schema2_every: 2,
        ..Default::default()
    };
    packaged_with(&spec, format, true, name)
}

/// Bytes of the files under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let m = e.metadata().unwrap();
                    if m.is_dir() {
                        disk_bytes(&e.path())
                    } else {
                        m.len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn layers_first_xz_and_zst_are_pushed_in_one_read_with_no_scratch_disk() {
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    for (format, name, ns) in [
        (PackageFormat::TarXzMultiBlock, "hauler-style.tar.xz", "xz"),
        (PackageFormat::TarZst, "zarf-style.tar.zst", "zst"),
    ] {
        let pkg = layers_first(format, name, 3, 2 << 20);
        let before = disk_bytes(&pkg.dir);
        let r = push(&reg, &pkg.path, ns, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let grown = disk_bytes(&pkg.dir).saturating_sub(before);
        assert!(
            grown < 10 << 20,
            "{name}: the run wrote {grown} bytes beside the package"
        );
        assert!(
            !pkg.dir.join(format!("{name}.ferry-store")).exists(),
            "{name} was staged"
        );
        assert!(
            r.stderr.contains(&format!(
                "holding: index.json comes after the layers: blobs wait in {ns}/ferry-holding"
            )),
            "{name}: the path taken is not said: {}",
            r.stderr
        );
        assert_registry_has_package(&reg, ns, &pkg);
    }
}

#[test]
fn a_registry_that_refuses_mounts_gets_a_second_read_and_every_image_whole() {
    let reg = FakeRegistry::with_quirks(Quirks {
        refuse_mounts: true,
        ..Quirks::default()
    });
    let pkg = layers_first(PackageFormat::TarZst, "pkg.tar.zst", 3, 256 << 10);
    let r = push_to_fake(&reg, &pkg);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("second-read: the registry refused to mount"),
        "{}",
        r.stderr
    );
    assert!(!pkg.dir.join("pkg.tar.zst.ferry-store").exists());
    assert_fake_holds(&reg, "ns", &pkg);
}

/// `ferry-push` of `pkg` to the fake registry under `ns` (plain HTTP, anonymous).
fn push_to_fake(reg: &FakeRegistry, pkg: &Pkg) -> ferry_e2e::Run {
    let mut cmd = Command::new(bin("ferry-push"));
    cmd.arg("--source").arg(&pkg.path).args([
        "--private-registry",
        &format!("http://{}/ns", reg.addr()),
        "--need-credential=false",
    ]);
    run(without_proxies(&mut cmd))
}

/// Every image of `pkg` is in the fake registry under `ns`, byte for byte.
fn assert_fake_holds(reg: &FakeRegistry, ns: &str, pkg: &Pkg) {
    for image in &pkg.fixture.images {
        let (repo, tag) = image
            .reference
            .split_once('/')
            .unwrap()
            .1
            .rsplit_once(':')
            .unwrap();
        let repo = format!("{ns}/{repo}");
        let (_, bytes) = reg
            .manifest(&repo, tag)
            .unwrap_or_else(|| panic!("{repo}:{tag} missing"));
        assert_eq!(Digest::sha256_of(&bytes), image.descriptor.digest);
        for b in &image.blobs {
            let held = reg
                .blob(&repo, &b.digest.to_string())
                .or_else(|| reg.manifest(&repo, &b.digest.to_string()).map(|(_, m)| m))
                .unwrap_or_else(|| panic!("{repo} lacks {}", b.digest));
            assert_eq!(Digest::sha256_of(&held), b.digest);
        }
    }
}

#[test]
fn a_registry_that_refuses_the_holding_repository_gets_a_second_read() {
    // As Harbor or Quay do for a repository nobody created: DENIED.
    let reg = FakeRegistry::start();
    reg.script(Rule {
        method: "POST".into(),
        path_contains: "/ferry-holding/blobs/uploads/".into(),
        status: 403,
        times: 1000,
        body: r#"{"errors":[{"code":"DENIED","message":"requested access to the resource is denied"}]}"#.into(),
        headers: Vec::new(),
    });
    let pkg = layers_first(PackageFormat::TarZst, "pkg.tar.zst", 2, 256 << 10);
    let r = push_to_fake(&reg, &pkg);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("second-read: the registry refused the holding repository ns/ferry-holding"),
        "{}",
        r.stderr
    );
    assert!(!pkg.dir.join("pkg.tar.zst.ferry-store").exists());
    assert_fake_holds(&reg, "ns", &pkg);
}

#[test]
fn a_layers_first_push_killed_midway_finishes_on_rerun_without_resending_what_arrived() {
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    let pkg = layers_first(PackageFormat::TarZst, "big.tar.zst", 4, 6 << 20);
    let mut cmd = Command::new(bin("ferry-push"));
    cmd.arg("--source").arg(&pkg.path).args([
        "--private-registry",
        &format!("http://{}/k", reg.host()),
        "--need-credential=false",
        "--jobs",
        "1",
    ]);
    let mut child = spawn_with_input(without_proxies(&mut cmd), b"");
    // Kill it once a few blobs have reached the holding repository.
    let holding_puts = || reg.count_requests("PUT", "/v2/k/ferry-holding/blobs/uploads/");
    let started = std::time::Instant::now();
    while holding_puts() < 3 && started.elapsed() < std::time::Duration::from_secs(120) {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let arrived = holding_puts();
    assert!(
        arrived >= 3,
        "the push did not reach the holding repository"
    );
    let r = push(&reg, &pkg.path, "k", &["--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_registry_has_package(&reg, "k", &pkg);
    let total_blobs = pkg.fixture.unique_blobs().len() as u64;
    let resent = summary(&r)["blobs_uploaded"].as_u64().unwrap();
    assert!(
        resent < total_blobs,
        "the rerun sent every blob again ({resent} of {total_blobs})"
    );
}

#[test]
fn a_dry_run_of_a_layers_first_package_writes_nothing_and_counts_what_the_push_does() {
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    let pkg = layers_first(PackageFormat::TarXz, "pkg.tar.xz", 3, 256 << 10);
    let plan = push(&reg, &pkg.path, "d", &["--dry-run", "--json"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    assert_eq!(
        reg.count_requests("POST", "/"),
        0,
        "a dry run started an upload"
    );
    assert_eq!(reg.count_requests("PUT", "/"), 0, "a dry run wrote");
    assert!(
        !pkg.dir.join("pkg.tar.xz.ferry-store").exists(),
        "a dry run staged the package"
    );
    let done = push(&reg, &pkg.path, "d", &["--json"]);
    assert_eq!(done.code, 0, "{}", done.stderr);
    let (p, d) = (summary(&plan), summary(&done));
    for key in ["blobs_skipped", "manifests_pushed", "tags_set"] {
        assert_eq!(
            p[key], d[key],
            "{key}: dry run {} vs push {}",
            p[key], d[key]
        );
    }
    // The dry run counts sending each image's blobs; the push sent them to the
    // holding repository once and mounted them: the blobs each image received agree.
    let per_image = |s: &serde_json::Value| {
        s["blobs_uploaded"].as_u64().unwrap() + s["blobs_mounted"].as_u64().unwrap()
    };
    let holding_uploads = reg.count_requests("PUT", "/v2/d/ferry-holding/blobs/uploads/") as u64;
    assert_eq!(
        per_image(&p) + holding_uploads,
        per_image(&d),
        "dry run {p} vs push {d}"
    );
}

#[test]
fn clean_holding_removes_the_held_blobs_where_the_registry_allows_deletes() {
    let pkg = layers_first(PackageFormat::TarZst, "pkg.tar.zst", 2, 256 << 10);
    // Deletes enabled: every held blob is removed; the images stay whole.
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    let r = push(&reg, &pkg.path, "c", &["--clean-holding"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let held = reg.count_requests("PUT", "/v2/c/ferry-holding/blobs/uploads/");
    assert!(held > 0);
    assert!(
        r.stderr
            .contains(&format!("removed {held} blob(s) from c/ferry-holding")),
        "{}",
        r.stderr
    );
    assert_eq!(
        reg.count_requests("DELETE", "/v2/c/ferry-holding/blobs/"),
        held
    );
    assert_registry_has_package(&reg, "c", &pkg);
    // Deletes disabled: said, and nothing else changes.
    let no_delete = Registry::start(RegistryOptions {
        delete_enabled: false,
        ..RegistryOptions::new(RegistryMode::Plain)
    })
    .unwrap();
    let r = push(&no_delete, &pkg.path, "c", &["--clean-holding"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("deletes disabled"), "{}", r.stderr);
    assert_registry_has_package(&no_delete, "c", &pkg);
}

#[test]
fn connection_resets_during_a_layers_first_push_end_with_every_image_whole() {
    let pkg = layers_first(PackageFormat::TarZst, "pkg.tar.zst", 3, 2 << 20);
    let mut resets = 0;
    for seed in [11u64, 12, 13] {
        let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
        let plan = FaultPlan {
            seed,
            reset_probability: 0.3,
            max_bytes_before_reset: 2 << 20,
            ..FaultPlan::default()
        };
        let proxy = FaultProxy::start(upstream(&reg), plan).unwrap();
        // A run may end early on a reset mid-stream (its bytes are gone); the
        // same command run again finishes it, sending only what is missing.
        let mut runs = 0;
        let r = loop {
            runs += 1;
            let r = push_through(&proxy, &pkg.path, "r", &[]);
            if r.code == 0 || runs == 3 {
                break r;
            }
        };
        assert_eq!(r.code, 0, "seed {seed}: {}", r.stderr);
        resets += proxy.stats().resets;
        assert_registry_has_package(&reg, "r", &pkg);
        assert!(!pkg.dir.join("pkg.tar.zst.ferry-store").exists(), "staged");
    }
    assert!(resets > 0, "the plan injected no reset at all");
}
