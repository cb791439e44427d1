//! ferry-diff end to end against the real registry: statuses after copies made
//! with skopeo, a moved tag, a layer deleted through the API, a blob corrupted
//! in the registry's storage, and push bytes equal to what push uploads.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_e2e::{bin, export, run, Run};
use ferry_store::media;
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions};
use ferry_testkit::{generate_layout, Fixture, FixtureSpec};

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
        seed: 31,
        images: 4,
        layers_per_image: 2,
        layer_size: 100 * 1024,
        multi_arch_every: 4,
        ..Default::default()
    };
    let fixture = generate_layout(&spec, &layout).unwrap();
    let store = dir.path().join("store");
    assert_eq!(export(&layout, &store, &[]).code, 0);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    Setup {
        _dir: dir,
        store,
        fixture,
        reg,
    }
}

fn ferry(tool: &str, s: &Setup, extra: &[&str]) -> Run {
    run(Command::new(bin(tool))
        .arg("--source")
        .arg(&s.store)
        .args([
            "--private-registry",
            &format!("http://{}/mirror", s.reg.host()),
            "--need-credential=false",
        ])
        .args(extra))
}

fn diff_json(s: &Setup, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args = vec!["--json"];
    args.extend_from_slice(extra);
    let r = ferry("ferry-diff", s, &args);
    assert!(r.code == 0 || r.code == 1, "diff failed: {}", r.stderr);
    (
        r.code,
        serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout)),
    )
}

fn statuses(v: &serde_json::Value) -> Vec<(String, String)> {
    v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["source"].as_str().unwrap().to_owned(),
                i["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn dest(s: &Setup, reference: &str) -> String {
    format!(
        "docker://{}/mirror/{}",
        s.reg.host(),
        reference.split_once('/').unwrap().1
    )
}

fn skopeo_copy(store: &Path, reference: &str, to: &str) {
    let r = run(Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--preserve-digests",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:{reference}", store.display()))
        .arg(to));
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn statuses_follow_what_skopeo_copied() {
    let s = setup();
    let (code, v) = diff_json(&s, &[]);
    assert_eq!(code, 1);
    assert_eq!(statuses(&v).len(), s.fixture.images.len(), "{v}");
    assert!(statuses(&v).iter().all(|(_, st)| st == "missing"), "{v}");
    assert!(v["summary"]["push_bytes"].as_u64().unwrap() > 0);

    let copied = &s.fixture.images[..2];
    for image in copied {
        skopeo_copy(&s.store, &image.reference, &dest(&s, &image.reference));
    }
    let (code, v) = diff_json(&s, &[]);
    assert_eq!(code, 1);
    assert_eq!(statuses(&v).len(), s.fixture.images.len(), "{v}");
    for (source, status) in statuses(&v) {
        let expected = if copied.iter().any(|i| i.reference == source) {
            "in-sync"
        } else {
            "missing"
        };
        assert_eq!(status, expected, "{source}");
    }

    // The bytes diff says a push would send are what push then uploads.
    let predicted = v["summary"]["push_bytes"].as_u64().unwrap();
    let pushed = ferry("ferry-push", &s, &["--json"]);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(pushed.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        summary["summary"]["bytes_uploaded"].as_u64().unwrap(),
        predicted
    );

    let (code, v) = diff_json(&s, &[]);
    assert_eq!(code, 0, "{v}");
    assert!(statuses(&v).iter().all(|(_, st)| st == "in-sync"));
    assert_eq!(v["summary"]["push_bytes"], 0);
    let human = ferry("ferry-diff", &s, &[]);
    assert_eq!(human.code, 0);
    assert!(
        human.stdout.contains("in-sync") && human.stdout.contains("IMAGE"),
        "{}",
        human.stdout
    );
}

#[test]
fn moved_tag_differs_deleted_layer_is_incomplete_and_deep_finds_corruption() {
    let s = setup();
    assert_eq!(ferry("ferry-push", &s, &[]).code, 0);

    // A tag moved to another image: differs, with both digests.
    let (a, b) = (&s.fixture.images[0], &s.fixture.images[1]);
    let a_dest = dest(&s, &a.reference);
    skopeo_copy(&s.store, &b.reference, &a_dest);
    let (code, v) = diff_json(&s, &["--extra"]);
    assert_eq!(code, 1);
    let moved = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["source"] == a.reference.as_str())
        .unwrap();
    assert_eq!(moved["status"], "differs");
    assert_eq!(moved["expected_digest"], a.descriptor.digest.to_string());
    assert_eq!(moved["actual_digest"], b.descriptor.digest.to_string());
    assert!(v["extra_tags"].as_array().unwrap().is_empty());
    skopeo_copy(&s.store, &a.reference, &a_dest);

    // A layer deleted through the registry API: incomplete, naming that layer.
    let c = s
        .fixture
        .images
        .iter()
        .find(|i| i.descriptor.media_type == media::OCI_MANIFEST)
        .unwrap();
    // Its own top layer (the base layer is shared with other repositories, where a push would mount it from).
    let layer = c
        .blobs
        .iter()
        .filter(|d| d.media_type.contains("layer"))
        .last()
        .unwrap();
    let repo = format!(
        "mirror/{}",
        c.reference
            .split_once('/')
            .unwrap()
            .1
            .rsplit_once(':')
            .unwrap()
            .0
    );
    let url = format!("http://{}/v2/{repo}/blobs/{}", s.reg.host(), layer.digest);
    let r = run(Command::new("curl").args([
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "DELETE",
        &url,
    ]));
    assert_eq!(
        r.stdout.trim(),
        "202",
        "delete through the API: {}",
        r.stderr
    );
    let (code, v) = diff_json(&s, &[]);
    assert_eq!(code, 1);
    let inc = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["source"] == c.reference.as_str())
        .unwrap();
    assert_eq!(inc["status"], "incomplete", "{v}");
    assert_eq!(inc["missing"][0]["digest"], layer.digest.to_string());
    assert_eq!(inc["missing"][0]["size"], layer.size);
    assert_eq!(
        v["summary"]["push_bytes"], layer.size,
        "push would re-send exactly the deleted layer"
    );
    // The tag is at the right digest, so a plain push trusts the image (tags
    // are set last); --force re-checks every blob and repairs it.
    let plain = ferry("ferry-push", &s, &["--json"]);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert_eq!(
        diff_json(&s, &[]).0,
        1,
        "a plain push does not re-check an up-to-date image"
    );
    let forced = ferry("ferry-push", &s, &["--force", "--json"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(forced.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        summary["summary"]["bytes_uploaded"], layer.size,
        "--force re-sent exactly the deleted layer"
    );
    assert_eq!(diff_json(&s, &[]).0, 0);

    // A blob corrupted in the registry's storage: only --deep sees it.
    let victim = s.fixture.images[2]
        .blobs
        .iter()
        .find(|d| d.media_type.contains("layer"))
        .unwrap();
    let data = s
        .reg
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&victim.digest.hex()[..2])
        .join(victim.digest.hex())
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();
    assert_eq!(
        diff_json(&s, &[]).0,
        0,
        "a HEAD-only diff cannot see corruption"
    );
    let (code, v) = diff_json(&s, &["--deep"]);
    assert_eq!(code, 1);
    let bad: Vec<&serde_json::Value> = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| !i["corrupt"].is_null())
        .collect();
    assert!(!bad.is_empty(), "{v}");
    assert_eq!(bad[0]["corrupt"][0]["digest"], victim.digest.to_string());
    assert!(v["summary"]["deep_checked_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn unreachable_registry_exits_2() {
    let s = setup();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let r = run(Command::new(bin("ferry-diff"))
        .arg("--source")
        .arg(&s.store)
        .args([
            "--private-registry",
            &format!("http://127.0.0.1:{port}"),
            "--need-credential=false",
        ]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("127.0.0.1:{port}")),
        "the error does not name the registry: {}",
        r.stderr
    );
}

/// A layers-first package (what most packagers write) is compared in one
/// read with no staging copy on disk: before the copy engine, ferry-diff
/// staged the whole package beside it before contacting the registry.
#[test]
fn a_layers_first_package_is_diffed_without_a_staging_copy() {
    use ferry_e2e::registry_push::{push, registry_tool};
    use ferry_testkit::{write_package, PackageFormat, PackageOptions};
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let spec = FixtureSpec {
        seed: 33,
        images: 3,
        layers_per_image: 2,
        layer_size: 256 * 1024,
        multi_arch_every: 3,
        ..Default::default()
    };
    let fixture = generate_layout(&spec, &layout).unwrap();
    let package = dir.path().join("layers-first.tar.zst");
    write_package(
        &layout,
        PackageFormat::TarZst,
        &PackageOptions {
            layers_first: true,
            ..Default::default()
        },
        &package,
    )
    .unwrap();
    let staging = dir.path().join("layers-first.tar.zst.ferry-store");
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    let diff = |extra: &[&str]| registry_tool("ferry-diff", &reg, &package, "m", extra, &[], true);
    let before = diff(&["--json"]);
    assert_eq!(before.code, 1, "{}", before.stderr);
    assert!(!staging.exists(), "ferry-diff staged a copy of the package");
    let v: serde_json::Value = serde_json::from_str(&before.stdout).unwrap();
    assert_eq!(statuses(&v).len(), fixture.images.len(), "{v}");
    assert!(statuses(&v).iter().all(|(_, st)| st == "missing"), "{v}");
    let push_bytes = v["summary"]["push_bytes"].as_u64().unwrap();
    let pushed = push(&reg, &package, "m", &["--json"]);
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    let summary = ferry_e2e::summary(&pushed);
    assert_eq!(
        summary["bytes_uploaded"].as_u64().unwrap(),
        push_bytes,
        "diff's push bytes are what push sent"
    );
    assert!(!staging.exists(), "ferry-push staged a copy of the package");
    let after = diff(&[]);
    assert_eq!(after.code, 0, "{}{}", after.stdout, after.stderr);
    assert!(!staging.exists(), "ferry-diff staged a copy of the package");
    assert!(!after.stderr.contains("staging"), "{}", after.stderr);
}

/// `ferry-export` (package → store) does not link the HTTP/TLS stack, and
/// builds on its own (without the features other tools turn on).
#[test]
fn ferry_export_and_verify_do_not_depend_on_the_http_or_tls_stack() {
    let built = run(Command::new(env!("CARGO"))
        // `check`, not `build`: the binaries the other tests run are left alone.
        .args([
            "check",
            "--offline",
            "--quiet",
            "-p",
            "ferry-export",
            "-p",
            "ferry-verify",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    assert_eq!(
        built.code, 0,
        "ferry-export/ferry-verify alone: {}",
        built.stderr
    );
    for tool in ["ferry-export", "ferry-verify"] {
        let r = run(Command::new(env!("CARGO"))
            .args([
                "tree",
                "--offline",
                "-e",
                "normal",
                "--prefix",
                "none",
                "-p",
                tool,
            ])
            .current_dir(env!("CARGO_MANIFEST_DIR")));
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains("ferry-store"), "{}", r.stdout);
        for http in ["ureq", "rustls", "ferry-registry"] {
            assert!(
                !r.stdout.lines().any(|l| l.starts_with(&format!("{http} "))),
                "{tool} depends on {http}:\n{}",
                r.stdout
            );
        }
    }
}
