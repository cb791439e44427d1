//! Volume sets end to end: a generated package split into 6+ volumes with 2
//! parity volumes (through `ferry_package::volume`, as ferry-pack
//! `--volume-size --parity` does), then the real tools: each volume verifies
//! alone and `tar -t` lists it; the set exports and pushes into a real
//! registry byte-identical (skopeo) from files in any order; one or two
//! volumes lost, or one lost and a byte flipped in another, are rebuilt and
//! named; three lost: exit 2 naming them, the complete images pushed and the
//! others not, then a rerun with every volume finishes without sending again
//! what is there; a volume of another set is refused; no file over the size.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_e2e::registry_push::{mapped, push, registry_tool, skopeo};
use ferry_e2e::{bin, export, run, Run};
use ferry_package::pack::{Compression, PackImage, WriteOptions};
use ferry_package::volume::{write_volume_set, VolumeOptions, VolumeSetSummary};
use ferry_store::{Digest, Store};
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions, SkopeoRole};
use ferry_testkit::{generate_layout, Fixture, FixtureSpec};

const SIZE: u64 = 900_000;

fn fixture(dir: &Path, seed: u64, images: usize) -> (Store, Vec<PackImage>, Fixture) {
    let spec = FixtureSpec {
        seed,
        images,
        layers_per_image: 2,
        layer_size: 300 * 1024,
        incompressible: true,
        multi_arch_every: 2,
        docker_schema2_every: 3,
        shared_base_layer: false,
        ..FixtureSpec::default()
    };
    let fx = generate_layout(&spec, dir).unwrap();
    let store = Store::open_read_only(dir).unwrap();
    let images = fx
        .images
        .iter()
        .map(|i| PackImage {
            name: i.reference.clone(),
            root: i.descriptor.clone(),
            requested: i.reference.clone(),
            source_digest: i.descriptor.digest.clone(),
            platforms: Vec::new(),
        })
        .collect();
    (store, images, fx)
}

fn split(
    cache: &Store,
    images: &[PackImage],
    dir: &Path,
    size: u64,
    parity: u32,
) -> VolumeSetSummary {
    std::fs::create_dir_all(dir).unwrap();
    write_volume_set(
        cache,
        images,
        &[],
        &dir.join("bundle"),
        &WriteOptions {
            compression: Compression::Zstd { level: 3 },
            threads: 2,
            tool: "ferry-pack test".into(),
            options: Default::default(),
            checksum: false,
        },
        &VolumeOptions {
            volume_size: size,
            parity,
        },
        &|_| {},
    )
    .unwrap()
}

fn verify(paths: &[&Path]) -> Run {
    run(Command::new(bin("ferry-verify")).args(paths))
}

fn sh(script: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether `reference` is in `reg` under `ns`, byte-identical.
fn pushed(reg: &Registry, ns: &str, reference: &str, digest: &Digest) -> bool {
    let out = Command::new("skopeo")
        .arg("inspect")
        .args(reg.skopeo_args(SkopeoRole::Inspect))
        .args(["--raw", &mapped(reg, ns, reference)])
        .output()
        .unwrap();
    out.status.success() && Digest::sha256_of(&out.stdout) == *digest
}

fn assert_all_pushed(reg: &Registry, ns: &str, fx: &Fixture) {
    for image in &fx.images {
        let raw = skopeo(
            reg,
            SkopeoRole::Inspect,
            &["inspect", "--raw", &mapped(reg, ns, &image.reference)],
        );
        assert_eq!(
            Digest::sha256_of(&raw),
            image.descriptor.digest,
            "{} is not byte-identical",
            image.reference
        );
    }
}

/// `--source A --source B …` after the first.
fn more_sources(files: &[PathBuf]) -> Vec<String> {
    files
        .iter()
        .flat_map(|f| ["--source".to_owned(), f.display().to_string()])
        .collect()
}

fn export_files(files: &[PathBuf], to: &Path) -> Run {
    let mut cmd = Command::new(bin("ferry-export"));
    for f in files {
        cmd.arg("--source").arg(f);
    }
    run(cmd.arg("--to").arg(to))
}

fn assert_store_has(store: &Path, fx: &Fixture) {
    let index = std::fs::read_to_string(store.join("index.json")).unwrap();
    for image in &fx.images {
        assert!(
            index.contains(&image.descriptor.digest.to_string()),
            "{} not in the store",
            image.reference
        );
    }
    let v = verify(&[store]);
    assert_eq!(v.code, 0, "{}", v.stdout);
}

/// `ferry-pack --from LAYOUT --out DIR/bundle.tar.zst --volume-size SIZE --parity N`:
/// the data and parity volume files it wrote.
fn pack_cli(layout: &Path, dir: &Path, size: &str, parity: u32) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let r = run(Command::new(bin("ferry-pack"))
        .arg("--from")
        .arg(layout)
        .arg("--out")
        .arg(dir.join("bundle.tar.zst"))
        .arg("--cache")
        .arg(dir.with_extension("cache"))
        .args(["--volume-size", size, "--parity", &parity.to_string()])
        .arg("--checksum"));
    assert_eq!(r.code, 0, "ferry-pack: {}", r.stderr);
    assert!(r.stdout.contains("wrote volume set"), "{}", r.stdout);
    // --checksum: one line per volume and parity file, as sha256sum -c reads them.
    let sums = std::fs::read_to_string(dir.join("bundle.sha256")).unwrap();
    let check = Command::new("sha256sum")
        .args(["-c", "bundle.sha256"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_none_or(|x| x != "sha256"))
        .collect();
    assert_eq!(sums.lines().count(), files.len(), "{sums}");
    files.sort();
    let (data, par): (Vec<PathBuf>, Vec<PathBuf>) = files
        .into_iter()
        .partition(|f| f.to_string_lossy().contains(".vol"));
    (data, par)
}

#[test]
fn ferry_pack_refuses_an_ambiguous_size() {
    let r = run(Command::new(bin("ferry-pack")).args([
        "--from",
        "/nonexistent",
        "--out",
        "/tmp/x",
        "--volume-size",
        "4G",
    ]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("ambiguous"), "{}", r.stderr);
    let r = run(Command::new(bin("ferry-pack")).args([
        "--from",
        "/nonexistent",
        "--out",
        "/tmp/x",
        "--parity",
        "2",
    ]));
    assert_eq!(r.code, 2, "--parity without --volume-size: {}", r.stderr);
}

#[test]
fn volume_set_verifies_exports_pushes_rebuilds_and_waits_for_volumes() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    let (cache, images, fx) = fixture(&layout, 51, 5);
    let set_dir = tmp.path().join("set");
    let (data, parity) = pack_cli(&layout, &set_dir, &SIZE.to_string(), 2);
    let all: Vec<PathBuf> = data.iter().chain(&parity).cloned().collect();
    assert!(data.len() >= 5, "{} data volumes", data.len());
    assert_eq!(parity.len(), 2);
    assert!(data[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .ends_with(&format!(".vol001-of-{:03}.tar.zst", data.len())));

    // Each volume alone: ferry-verify, and tar -t with no ferry.
    for f in &all {
        assert!(std::fs::metadata(f).unwrap().len() <= SIZE);
        let v = verify(&[f]);
        assert_eq!(v.code, 0, "{}: {}{}", f.display(), v.stdout, v.stderr);
        assert!(v.stdout.contains("volume"), "{}", v.stdout);
        let is_data = data.contains(f);
        let listing = if is_data {
            sh(&format!("zstd -dc '{}' | tar -t", f.display()))
        } else {
            sh(&format!("tar -tf '{}'", f.display()))
        };
        assert!(listing.starts_with("ferry-volume.json\n"), "{listing}");
        if is_data {
            assert!(
                listing.contains("ferry-package.json\n") && listing.contains("blobs/sha256/"),
                "{listing}"
            );
        }
    }
    assert!(sh(&format!(
        "zstd -dc '{}' '{}' | tar -t",
        data[0].display(),
        data[1].display()
    ))
    .contains("ferry-volume.json"),);
    let whole = verify(&[&set_dir]);
    assert_eq!(whole.code, 0, "{}{}", whole.stdout, whole.stderr);
    assert!(
        whole.stdout.contains("volume set") && whole.stdout.contains("OK"),
        "{}",
        whole.stdout
    );

    // Export and push from the files in another order.
    let mut shuffled: Vec<PathBuf> = all.iter().rev().cloned().collect();
    shuffled.rotate_left(3);
    let out = tmp.path().join("store-any-order");
    let e = export_files(&shuffled, &out);
    assert_eq!(e.code, 0, "{}", e.stderr);
    assert_store_has(&out, &fx);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    let p = push(
        &reg,
        &shuffled[0],
        "any",
        &more_sources(&shuffled[1..])
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert_all_pushed(&reg, "any", &fx);
    let d = registry_tool("ferry-diff", &reg, &set_dir, "any", &[], &[], true);
    assert_eq!(
        d.code, 0,
        "ferry-diff of the set against what it pushed: {}{}",
        d.stdout, d.stderr
    );

    // Damage: moved away and brought back.
    let away = tmp.path().join("away");
    std::fs::create_dir_all(&away).unwrap();
    let take = |f: &Path| std::fs::rename(f, away.join(f.file_name().unwrap())).unwrap();
    let give = |f: &Path| std::fs::rename(away.join(f.file_name().unwrap()), f).unwrap();
    let original_2 = std::fs::read(&data[2]).unwrap();
    let flip = |f: &Path| {
        let mut b = std::fs::read(f).unwrap();
        let at = b.len() / 3;
        b[at] ^= 0x01;
        std::fs::write(f, b).unwrap();
    };
    for (case, ns) in [
        ("one lost", "one"),
        ("two lost", "two"),
        ("one lost, one flipped", "flip"),
    ] {
        take(&data[1]);
        match case {
            "two lost" => take(&data[4]),
            "one lost, one flipped" => flip(&data[2]),
            _ => {}
        }
        let v = verify(&[&set_dir]);
        assert_eq!(v.code, 1, "{case}: {}{}", v.stdout, v.stderr);
        assert!(
            v.stdout.contains("data volume 2 of") && v.stdout.contains("rebuilt from"),
            "{case}: {}",
            v.stdout
        );
        if case == "two lost" {
            assert!(v.stdout.contains("data volume 5 of"), "{}", v.stdout);
        }
        if case == "one lost, one flipped" {
            assert!(
                v.stdout.contains("data volume 3 of") && v.stdout.contains("damaged"),
                "{}",
                v.stdout
            );
        }
        let out = tmp.path().join(format!("store-{ns}"));
        let e = export(&set_dir, &out, &[]);
        assert_eq!(e.code, 0, "{case}: {}", e.stderr);
        assert!(e.stderr.contains("rebuilt from"), "{case}: {}", e.stderr);
        assert_store_has(&out, &fx);
        let p = push(&reg, &set_dir, ns, &[]);
        assert_eq!(p.code, 0, "{case}: {}", p.stderr);
        assert_all_pushed(&reg, ns, &fx);
        give(&data[1]);
        if case == "two lost" {
            give(&data[4]);
        }
        std::fs::write(&data[2], &original_2).unwrap();
        let hidden: Vec<_> = std::fs::read_dir(&set_dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(
            hidden.is_empty(),
            "{case}: the rebuild directory was left behind"
        );
    }

    // Three lost: more than parity rebuilds.
    let n = data.len();
    let lost = [&data[n - 3], &data[n - 2], &data[n - 1]];
    for f in lost {
        take(f);
    }
    let numbers = format!("{}, {}, {}", n - 2, n - 1, n);
    let v = verify(&[&set_dir]);
    assert_eq!(v.code, 1, "{}", v.stdout);
    assert!(v.stdout.contains(&numbers), "{}", v.stdout);
    let partial = tmp.path().join("store-partial");
    let e = export(&set_dir, &partial, &[]);
    assert_eq!(e.code, 2, "{}", e.stderr);
    assert!(
        e.stderr.contains(&numbers) && e.stderr.contains("waits for volume"),
        "{}",
        e.stderr
    );
    let p = push(&reg, &set_dir, "partial", &[]);
    assert_eq!(p.code, 2, "{}", p.stderr);
    assert!(
        p.stderr.contains(&numbers) && p.stderr.contains("waits for volume"),
        "{}",
        p.stderr
    );
    let complete: Vec<bool> = fx
        .images
        .iter()
        .map(|i| pushed(&reg, "partial", &i.reference, &i.descriptor.digest))
        .collect();
    assert!(
        complete.iter().any(|c| *c),
        "no image was complete: {}",
        p.stderr
    );
    assert!(
        complete.iter().any(|c| !*c),
        "every image was pushed with three volumes missing"
    );
    for (image, done) in fx.images.iter().zip(&complete) {
        assert_eq!(
            p.stderr.contains(&format!("{} waits for", image.reference)),
            !done,
            "{}",
            p.stderr
        );
    }
    // Rerun with every volume: the rest, and nothing sent twice.
    for f in lost {
        give(f);
    }
    let uploads_before = reg.count_requests("PUT", "/blobs/uploads/");
    let p = push(&reg, &set_dir, "partial", &[]);
    assert_eq!(p.code, 0, "{}", p.stderr);
    assert_all_pushed(&reg, "partial", &fx);
    let uploads = reg.count_requests("PUT", "/blobs/uploads/") - uploads_before;
    let total = fx.unique_blobs().len();
    assert!(
        uploads > 0 && uploads < total,
        "{uploads} blob uploads on the rerun of {total} blobs"
    );
    let e = export(&set_dir, &partial, &["--json"]);
    assert_eq!(e.code, 0, "{}", e.stderr);
    assert_store_has(&partial, &fx);

    // A volume of another set (other images) is refused before anything is sent.
    let other = split(&cache, &images[..2], &tmp.path().join("other"), SIZE, 1);
    std::fs::copy(&other.files[0].path, set_dir.join("intruder.tar.zst")).unwrap();
    let p = push(&reg, &set_dir, "foreign", &[]);
    assert_eq!(p.code, 2, "{}", p.stderr);
    assert!(
        p.stderr.contains("another set") && p.stderr.contains("intruder.tar.zst"),
        "{}",
        p.stderr
    );
    assert!(!fx
        .images
        .iter()
        .any(|i| pushed(&reg, "foreign", &i.reference, &i.descriptor.digest)));
    let e = export(&set_dir, &tmp.path().join("store-foreign"), &[]);
    assert_eq!(e.code, 2, "{}", e.stderr);
}

#[test]
fn no_volume_exceeds_the_size() {
    let tmp = tempfile::tempdir().unwrap();
    let (cache, images, fx) = fixture(&tmp.path().join("layout"), 52, 4);
    let largest = fx.unique_blobs().iter().map(|d| d.size).max().unwrap();
    for (i, size) in [200_000, largest - 1, 1_000_000, 4 << 20]
        .into_iter()
        .enumerate()
    {
        let dir = tmp.path().join(format!("s{i}"));
        let sum = split(&cache, &images, &dir, size, 2);
        for f in &sum.files {
            let len = std::fs::metadata(&f.path).unwrap().len();
            assert!(len <= size, "{}: {len} > {size}", f.path.display());
        }
        let v = verify(&[&dir]);
        assert_eq!(v.code, 0, "{size}: {}{}", v.stdout, v.stderr);
    }
}
