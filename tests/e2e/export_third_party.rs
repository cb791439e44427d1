//! Export packages made by real third-party tools (umoci, skopeo) and check
//! names and digests with skopeo.

use std::path::Path;
use std::process::Command;

use ferry_e2e::{
    assert_all_blobs_verify, assert_store_complete, export, run, skopeo_manifest_digest, skopeo_ok,
};

const REF_A: &str = "gcr.io/anthos-baremetal-release/umoci-a:1.0";
const REF_B: &str = "gcr.io/anthos-baremetal-release/umoci-b:2.1";

fn umoci(args: &[&str], cwd: &Path) {
    let r = run(Command::new("umoci").args(args).current_dir(cwd));
    assert_eq!(r.code, 0, "umoci {args:?}: {}", r.stderr);
}

/// Builds a layout with two images using umoci, each with real file layers.
fn umoci_layout(work: &Path) -> std::path::PathBuf {
    let layout = work.join("umoci-layout");
    umoci(&["init", "--layout", "umoci-layout"], work);
    for (i, reference) in [REF_A, REF_B].iter().enumerate() {
        umoci(
            &["new", "--image", &format!("umoci-layout:{reference}")],
            work,
        );
        let root = work.join(format!("rootfs-{i}"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(
            root.join("etc/ferry-test.conf"),
            format!("image {i}\n").repeat(1000),
        )
        .unwrap();
        umoci(
            &[
                "insert",
                "--image",
                &format!("umoci-layout:{reference}"),
                root.to_str().unwrap(),
                "/",
            ],
            work,
        );
    }
    layout
}

#[test]
fn umoci_layout_dir_tar_and_skopeo_archives_export_with_names_and_digests() {
    let work = tempfile::tempdir().unwrap();
    let layout = umoci_layout(work.path());
    let (digest_a, _) = skopeo_manifest_digest(&layout, REF_A);
    let (digest_b, _) = skopeo_manifest_digest(&layout, REF_B);

    // 1. The umoci layout directory itself, and a tar.gz of it.
    let tgz = work.path().join("umoci.tar.gz");
    let r = run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-czf")
        .arg(&tgz)
        .arg("."));
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (i, src) in [layout.clone(), tgz].iter().enumerate() {
        let dest = work.path().join(format!("store-umoci-{i}"));
        let r = export(src, &dest, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let mut names = assert_store_complete(&dest);
        names.sort();
        assert_eq!(names, vec![REF_A.to_string(), REF_B.to_string()]);
        assert_eq!(skopeo_manifest_digest(&dest, REF_A).0, digest_a);
        assert_eq!(skopeo_manifest_digest(&dest, REF_B).0, digest_b);
        assert_all_blobs_verify(&dest);
    }

    // 2. skopeo oci-archive (ref.name holds the full reference).
    let oci_archive = work.path().join("skopeo-oci-archive.tar");
    skopeo_ok(&[
        "copy",
        &format!("oci:{}:{REF_A}", layout.display()),
        &format!("oci-archive:{}:{REF_A}", oci_archive.display()),
    ]);
    let dest = work.path().join("store-oci-archive");
    let r = export(&oci_archive, &dest, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(assert_store_complete(&dest), vec![REF_A.to_string()]);
    assert_eq!(skopeo_manifest_digest(&dest, REF_A).0, digest_a);

    // 3. skopeo docker-archive (legacy layout with in-archive symlinks; the
    //    manifest is re-synthesised, the config digest = image ID is preserved).
    let docker_archive = work.path().join("skopeo-docker-archive.tar");
    skopeo_ok(&[
        "copy",
        &format!("oci:{}:{REF_B}", layout.display()),
        &format!("docker-archive:{}:{REF_B}", docker_archive.display()),
    ]);
    let dest = work.path().join("store-docker-archive");
    let r = export(&docker_archive, &dest, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(assert_store_complete(&dest), vec![REF_B.to_string()]);
    let config_of = |store: &Path| -> String {
        let (_, raw) = skopeo_manifest_digest(store, REF_B);
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        v["config"]["digest"].as_str().unwrap().to_owned()
    };
    assert_eq!(config_of(&dest), config_of(&layout));
    // The exported image round-trips through skopeo into another layout.
    let other = work.path().join("copied");
    skopeo_ok(&[
        "copy",
        &format!("oci:{}:{REF_B}", dest.display()),
        &format!("oci:{}:{REF_B}", other.display()),
    ]);
    assert_all_blobs_verify(&dest);
    assert_all_blobs_verify(&other);
    assert_eq!(config_of(&other), config_of(&layout));
}
