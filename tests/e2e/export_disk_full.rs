//! Full disks: export onto a small tmpfs this test mounts (needs root, as in
//! CI; set FERRY_SKIP_MOUNT_TESTS=1 to skip on a machine without it).

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_e2e::{assert_all_blobs_verify, assert_store_complete, export, json, run};
use ferry_testkit::{generate_layout, write_package, FixtureSpec, PackageFormat, PackageOptions};

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size_mib: u64) -> Option<Tmpfs> {
        if std::env::var_os("FERRY_SKIP_MOUNT_TESTS").is_some() {
            eprintln!("FERRY_SKIP_MOUNT_TESTS set: skipping the disk-full test");
            return None;
        }
        std::fs::create_dir_all(at).unwrap();
        let r = run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(at));
        assert_eq!(
            r.code, 0,
            "cannot mount a tmpfs (needs root; FERRY_SKIP_MOUNT_TESTS=1 skips): {}",
            r.stderr
        );
        Some(Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn package(work: &Path, images: usize) -> (PathBuf, ferry_testkit::Fixture) {
    let layout = work.join(format!("layout-{images}"));
    let spec = FixtureSpec {
        seed: 11,
        images,
        layers_per_image: 2,
        layer_size: 2 << 20,
        incompressible: true,
        ..Default::default()
    };
    let fixture = generate_layout(&spec, &layout).unwrap();
    let pkg = work.join(format!("pkg-{images}.tar"));
    write_package(
        &layout,
        PackageFormat::Tar,
        &PackageOptions::default(),
        &pkg,
    )
    .unwrap();
    (pkg, fixture)
}

#[test]
fn too_small_destination_fails_early_with_the_numbers() {
    let work = tempfile::tempdir().unwrap();
    let (pkg, _) = package(work.path(), 6); // about 26 MiB of blobs
    let Some(mnt) = Tmpfs::mount(&work.path().join("mnt"), 8) else {
        return;
    };
    let dest = mnt.0.join("store");
    let r = export(&pkg, &dest, &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("not enough space"), "{}", r.stderr);
    assert!(
        r.stderr.contains("available") && r.stderr.contains("needed"),
        "{}",
        r.stderr
    );
    let written: u64 = std::fs::read_dir(dest.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(written, 0, "nothing is written when the early check fails");
}

#[test]
fn disk_that_fills_anyway_gives_a_clear_error_and_rerun_completes_after_freeing_space() {
    let work = tempfile::tempdir().unwrap();
    let (pkg, fixture) = package(work.path(), 4);
    let blob_mib = fixture.total_blob_bytes() >> 20;
    // Room for the filler plus about half the package.
    let Some(mnt) = Tmpfs::mount(&work.path().join("mnt"), 2 * blob_mib + 4) else {
        return;
    };
    let dest = mnt.0.join("store");
    // Another file as big as the package on the same filesystem, inside the
    // store's blobs folder, where the estimate counts it as content already
    // present: the early check passes, then the disk really fills.
    std::fs::create_dir_all(dest.join("blobs/sha256")).unwrap();
    let filler = dest.join("blobs/sha256/other-data");
    std::fs::write(
        &filler,
        vec![0x5a; ((blob_mib + blob_mib / 2 + 4) << 20) as usize],
    )
    .unwrap();

    let r = export(&pkg, &dest, &[]);
    assert_eq!(r.code, 2, "expected a full disk: {}", r.stderr);
    assert!(r.stderr.contains("no space left"), "{}", r.stderr);
    assert!(r.stderr.contains("rerun"), "{}", r.stderr);
    assert_eq!(
        assert_store_complete(&dest),
        Vec::<String>::new(),
        "nothing named after a failed export"
    );

    std::fs::remove_file(&filler).unwrap();
    let r = export(&pkg, &dest, &["--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        json(&r)["blobs_present"].as_u64().unwrap() > 0,
        "the rerun kept blobs written before the disk filled"
    );
    assert_eq!(assert_store_complete(&dest).len(), fixture.images.len());
    assert_eq!(assert_all_blobs_verify(&dest), fixture.unique_blobs().len());
}
