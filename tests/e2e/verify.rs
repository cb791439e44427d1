//! ferry-verify end to end: clean inputs pass; each kind of damage exits 1 and
//! names the right digest; --quarantine + export rerun repairs; --fast catches
//! a flipped byte.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_e2e::{assert_all_blobs_verify, bin, export, json, run, Run};
use ferry_store::{media, Descriptor, Digest};
use ferry_testkit::{
    generate_layout, write_package, Fixture, FixtureSpec, PackageFormat, PackageOptions,
};

fn verify(args: &[&str], paths: &[&Path]) -> Run {
    run(Command::new(bin("ferry-verify")).args(args).args(paths))
}

struct Setup {
    _dir: tempfile::TempDir,
    work: PathBuf,
    pkg: PathBuf,
    store: PathBuf,
    fixture: Fixture,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().to_path_buf();
    let layout = work.join("layout");
    let spec = FixtureSpec {
        seed: 5,
        images: 3,
        layers_per_image: 2,
        layer_size: 256 * 1024,
        multi_arch_every: 3,
        ..Default::default()
    };
    let fixture = generate_layout(&spec, &layout).unwrap();
    let pkg = work.join("pkg.tar");
    write_package(
        &layout,
        PackageFormat::Tar,
        &PackageOptions::default(),
        &pkg,
    )
    .unwrap();
    let store = work.join("store");
    assert_eq!(export(&pkg, &store, &[]).code, 0);
    Setup {
        _dir: dir,
        work,
        pkg,
        store,
        fixture,
    }
}

/// A layer blob (not a manifest or config) of the fixture, and its path in the store.
fn a_layer(s: &Setup) -> (Descriptor, PathBuf) {
    let d = s
        .fixture
        .unique_blobs()
        .into_iter()
        .find(|d| d.media_type.contains("layer") || d.media_type.contains("rootfs"))
        .unwrap();
    let path = s.store.join("blobs/sha256").join(d.digest.hex());
    (d, path)
}

fn problems(r: &Run) -> Vec<serde_json::Value> {
    json(r)["paths"][0]["problems"].as_array().unwrap().clone()
}

#[test]
fn clean_store_and_clean_package_exit_0() {
    let s = setup();
    for args in [&[][..], &["--fast"][..]] {
        let r = verify(args, &[&s.store, &s.pkg]);
        assert_eq!(r.code, 0, "{args:?}: {}{}", r.stdout, r.stderr);
    }
    let r = verify(&["--json"], &[&s.store]);
    let doc = json(&r);
    assert_eq!(doc["summary"]["problems"], 0);
    assert_eq!(
        doc["paths"][0]["summary"]["blobs"].as_u64().unwrap() as usize,
        s.fixture.unique_blobs().len()
    );
    assert_eq!(
        doc["paths"][0]["summary"]["images"].as_u64().unwrap() as usize,
        s.fixture.images.len()
    );
}

#[test]
fn flipped_byte_is_found_by_full_and_fast_checks() {
    let s = setup();
    let (layer, path) = a_layer(&s);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    for args in [&["--json"][..], &["--json", "--fast"][..]] {
        let r = verify(args, &[&s.store]);
        assert_eq!(r.code, 1, "{args:?}: {}", r.stderr);
        let p = problems(&r);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0]["digest"], layer.digest.to_string());
        assert_eq!(p[0]["problem"], "digest_mismatch");
        assert_eq!(p[0]["actual"], Digest::sha256_of(&bytes).to_string());
        assert!(!p[0]["images"].as_array().unwrap().is_empty());
    }
    let human = verify(&[], &[&s.store]);
    assert!(
        human.stdout.contains(&layer.digest.to_string())
            && human.stdout.contains("DIGEST MISMATCH"),
        "{}",
        human.stdout
    );
}

#[test]
fn truncated_and_deleted_blobs_and_missing_manifest_are_named() {
    let s = setup();
    let (layer, path) = a_layer(&s);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 3]).unwrap();
    let r = verify(&["--json"], &[&s.store]);
    assert_eq!(r.code, 1);
    let p = problems(&r);
    assert_eq!(
        (
            p[0]["digest"].as_str().unwrap(),
            p[0]["problem"].as_str().unwrap()
        ),
        (layer.digest.to_string().as_str(), "size_mismatch")
    );

    std::fs::remove_file(&path).unwrap();
    let r = verify(&["--json"], &[&s.store]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let p = problems(&r);
    assert_eq!(
        (
            p[0]["digest"].as_str().unwrap(),
            p[0]["problem"].as_str().unwrap()
        ),
        (layer.digest.to_string().as_str(), "missing")
    );

    let image = &s.fixture.images[0];
    std::fs::remove_file(
        s.store
            .join("blobs/sha256")
            .join(image.descriptor.digest.hex()),
    )
    .unwrap();
    let r = verify(&["--json"], &[&s.store]);
    assert_eq!(r.code, 1);
    let p = problems(&r);
    let m = p
        .iter()
        .find(|p| p["digest"] == image.descriptor.digest.to_string())
        .expect("manifest reported");
    assert_eq!(m["problem"], "missing");
    assert_eq!(m["images"][0], image.reference);
}

#[test]
fn blob_referenced_with_a_wrong_size_is_named() {
    let s = setup();
    // Rewrite one image's manifest so that it claims a wrong size for its first layer.
    let image = s
        .fixture
        .images
        .iter()
        .find(|i| i.descriptor.media_type == media::OCI_MANIFEST)
        .unwrap();
    let mpath = s
        .store
        .join("blobs/sha256")
        .join(image.descriptor.digest.hex());
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&mpath).unwrap()).unwrap();
    let layer_digest = manifest["layers"][0]["digest"].as_str().unwrap().to_owned();
    let real = manifest["layers"][0]["size"].as_u64().unwrap();
    manifest["layers"][0]["size"] = (real + 7).into();
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let new_digest = Digest::sha256_of(&bytes);
    std::fs::write(s.store.join("blobs/sha256").join(new_digest.hex()), &bytes).unwrap();
    let index_path = s.store.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    for e in index["manifests"].as_array_mut().unwrap() {
        if e["digest"] == image.descriptor.digest.to_string() {
            e["digest"] = new_digest.to_string().into();
            e["size"] = bytes.len().into();
        }
    }
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();

    let r = verify(&["--json"], &[&s.store]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let p = problems(&r);
    let bad = p
        .iter()
        .find(|p| p["digest"] == layer_digest.as_str())
        .unwrap_or_else(|| panic!("{p:?}"));
    assert_eq!(bad["problem"], "size_mismatch");
    assert_eq!(bad["expected_size"].as_u64().unwrap(), real + 7);
    assert_eq!(bad["actual_size"].as_u64().unwrap(), real);
}

#[test]
fn corrupted_package_exits_1_naming_the_blob() {
    let s = setup();
    let (layer, store_path) = a_layer(&s);
    let blob = std::fs::read(&store_path).unwrap();
    let mut pkg = std::fs::read(&s.pkg).unwrap();
    let at = pkg
        .windows(64)
        .position(|w| w == &blob[..64])
        .expect("blob bytes in the tar");
    pkg[at + blob.len() / 2] ^= 0x80;
    let bad_pkg = s.work.join("corrupt.tar");
    std::fs::write(&bad_pkg, &pkg).unwrap();
    let r = verify(&["--json"], &[&bad_pkg]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let p = problems(&r);
    assert!(
        p.iter()
            .any(|p| p["digest"] == layer.digest.to_string() && p["problem"] == "digest_mismatch"),
        "{p:?}"
    );

    // A truncated compressed package is corruption too, reported with the stream error.
    let xz = s.work.join("pkg.tar.xz");
    let r = run(Command::new("xz").args(["-k", "-T2", "-0"]).arg(&s.pkg));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let bytes = std::fs::read(&xz).unwrap();
    let cut = s.work.join("cut.tar.xz");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let r = verify(&["--json"], &[&cut]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        problems(&r)
            .iter()
            .any(|p| p["problem"] == "corrupt_package"),
        "{}",
        r.stdout
    );
}

#[test]
fn quarantine_then_export_rerun_restores_a_clean_store() {
    let s = setup();
    let (layer, path) = a_layer(&s);
    std::fs::write(&path, b"garbage that is not the layer").unwrap();
    let r = verify(&["--quarantine", "--json"], &[&s.store]);
    assert_eq!(r.code, 1);
    let p = problems(&r);
    assert_eq!(p[0]["digest"], layer.digest.to_string());
    let moved = PathBuf::from(p[0]["quarantined_to"].as_str().unwrap());
    assert!(moved.exists() && moved.starts_with(s.store.join(".ferry/quarantine")));
    assert!(!path.exists(), "corrupt blob left at its final path");

    let rerun = export(&s.pkg, &s.store, &["--json"]);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    assert_eq!(json(&rerun)["blobs_written"], 1);
    assert_eq!(verify(&[], &[&s.store]).code, 0);
    assert_all_blobs_verify(&s.store);
}

#[test]
fn unreadable_or_foreign_paths_exit_2() {
    let s = setup();
    let not_a_store = s.work.join("empty-dir");
    std::fs::create_dir(&not_a_store).unwrap();
    for p in [not_a_store.as_path(), &s.work.join("does-not-exist")] {
        let r = verify(&[], &[p]);
        assert_eq!(r.code, 2, "{}: {}", p.display(), r.stderr);
        assert!(r.stderr.contains(&p.display().to_string()), "{}", r.stderr);
    }
    let text = s.work.join("notes.txt");
    std::fs::write(&text, "just text, not a package").unwrap();
    let r = verify(&[], &[&text]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("notes.txt"), "{}", r.stderr);
}

#[test]
fn store_held_by_a_writer_is_exit_2_naming_it_and_a_dead_holder_is_ignored() {
    let s = setup();
    // A live writer: this test process takes the store's lock as ferry-export does.
    let writer = ferry_store::Store::open_for_write(&s.store).unwrap();
    for args in [&[][..], &["--fast"][..]] {
        let r = verify(args, &[&s.store]);
        assert_eq!(r.code, 2, "{args:?}: {}{}", r.stdout, r.stderr);
        assert!(
            r.stderr.contains("locked") && r.stderr.contains(&std::process::id().to_string()),
            "{}",
            r.stderr
        );
    }
    drop(writer);
    // The lock file still names a writer that is gone (kill -9 leaves this): no holder.
    std::fs::write(s.store.join(".ferry/lock"), "pid 999999999 (ferry-export)").unwrap();
    let r = verify(&[], &[&s.store]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

#[test]
fn store_naming_no_image_is_a_finding() {
    let s = setup();
    // What an export interrupted before naming its images leaves: blobs, an empty index.
    std::fs::write(
        s.store.join("index.json"),
        r#"{"schemaVersion":2,"manifests":[]}"#,
    )
    .unwrap();
    let empty = s.work.join("fresh");
    drop(ferry_store::Store::open_for_write(&empty).unwrap());
    for store in [&s.store, &empty] {
        let r = verify(&["--json"], &[store]);
        assert_eq!(r.code, 1, "{}: {}{}", store.display(), r.stdout, r.stderr);
        let p = problems(&r);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0]["problem"], "no_images");
        let human = verify(&[], &[store]);
        assert!(
            human.stdout.contains("NO IMAGES") && human.stdout.contains("did not finish"),
            "{}",
            human.stdout
        );
    }
}
