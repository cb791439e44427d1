//! Export every generated package format; check the result with skopeo.

use std::collections::BTreeSet;

use ferry_e2e::{
    assert_all_blobs_verify, assert_store_complete, export, json, skopeo_cannot_see,
    skopeo_manifest_digest, skopeo_ok, stored_manifest_digest,
};
use ferry_store::media;
use ferry_testkit::{generate_layout, write_package, FixtureSpec, PackageFormat, PackageOptions};

fn spec() -> FixtureSpec {
    FixtureSpec {
        seed: 42,
        images: 4,
        layers_per_image: 2,
        layer_size: 48 * 1024,
        multi_arch_every: 2,
        docker_schema2_every: 3,
        zstd_layers_every: 4,
        ..FixtureSpec::default()
    }
}

#[test]
fn every_format_exports_to_a_layout_skopeo_reads_with_identical_digests() {
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let fixture = generate_layout(&spec(), &layout).unwrap();
    assert!(fixture
        .images
        .iter()
        .any(|i| i.descriptor.media_type == media::OCI_INDEX));
    assert!(fixture
        .images
        .iter()
        .any(|i| i.descriptor.media_type.contains("docker")));

    for format in PackageFormat::ALL {
        if format == PackageFormat::DockerArchive {
            continue; // digests differ by design: see docker_archive_keeps_config_and_layers
        }
        for layers_first in [false, true] {
            let opts = PackageOptions {
                layers_first,
                ..PackageOptions::default()
            };
            let pkg = work.path().join(format!(
                "pkg-{}-{layers_first}{}",
                format.name(),
                format.extension()
            ));
            write_package(&layout, format, &opts, &pkg).unwrap();
            let dest = work
                .path()
                .join(format!("store-{}-{layers_first}", format.name()));
            let run = export(&pkg, &dest, &["--json"]);
            assert_eq!(run.code, 0, "{format}: {}", run.stderr);
            let report = json(&run);
            assert_eq!(
                report["images"].as_array().unwrap().len(),
                fixture.images.len(),
                "{format}"
            );
            assert_eq!(report["blobs_present"], 0, "{format}: fresh store");

            let names: BTreeSet<String> = assert_store_complete(&dest).into_iter().collect();
            let expected: BTreeSet<String> =
                fixture.images.iter().map(|i| i.reference.clone()).collect();
            assert_eq!(names, expected, "{format}");
            for image in &fixture.images {
                let digest =
                    stored_manifest_digest(&dest, &image.reference, &image.descriptor.media_type);
                assert_eq!(
                    digest, image.descriptor.digest,
                    "{format}: {}",
                    image.reference
                );
            }
            assert_eq!(
                assert_all_blobs_verify(&dest),
                fixture.unique_blobs().len(),
                "{format}"
            );
        }
    }
}

#[test]
fn exported_store_copies_with_skopeo_and_rerun_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let fixture = generate_layout(&spec(), &layout).unwrap();
    let pkg = work.path().join("pkg.tar.zst");
    write_package(
        &layout,
        PackageFormat::TarZst,
        &PackageOptions::default(),
        &pkg,
    )
    .unwrap();
    let dest = work.path().join("store");
    assert_eq!(export(&pkg, &dest, &[]).code, 0);

    let other = work.path().join("other");
    for image in fixture
        .images
        .iter()
        .filter(|i| !skopeo_cannot_see(&i.descriptor.media_type))
    {
        let src = format!("oci:{}:{}", dest.display(), image.reference);
        let dst = format!("oci:{}:{}", other.display(), image.reference);
        skopeo_ok(&["copy", "--all", "--preserve-digests", &src, &dst]);
        let (digest, _) = skopeo_manifest_digest(&other, &image.reference);
        assert_eq!(digest, image.descriptor.digest);
    }

    let rerun = export(&pkg, &dest, &["--json"]);
    assert_eq!(rerun.code, 0, "{}", rerun.stderr);
    let report = json(&rerun);
    assert_eq!(report["blobs_written"], 0);
    assert_eq!(
        report["blobs_present"].as_u64().unwrap() as usize,
        fixture.unique_blobs().len()
    );
}

#[test]
fn docker_archive_keeps_config_and_layers() {
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let fixture = generate_layout(
        &FixtureSpec {
            seed: 7,
            images: 2,
            ..FixtureSpec::default()
        },
        &layout,
    )
    .unwrap();
    let pkg = work.path().join("docker.tar");
    write_package(
        &layout,
        PackageFormat::DockerArchive,
        &PackageOptions::default(),
        &pkg,
    )
    .unwrap();
    let dest = work.path().join("store");
    let run = export(&pkg, &dest, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_store_complete(&dest);
    let configs: BTreeSet<String> = fixture
        .unique_blobs()
        .iter()
        .filter(|d| d.media_type == media::OCI_CONFIG || d.media_type == media::DOCKER_CONFIG)
        .map(|d| d.digest.to_string())
        .collect();
    for image in &fixture.images {
        let (_, raw) = skopeo_manifest_digest(&dest, &image.reference);
        let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let config = manifest["config"]["digest"].as_str().unwrap();
        assert!(
            configs.contains(config),
            "config {config} of {} is not the fixture's",
            image.reference
        );
        let inspect: serde_json::Value = serde_json::from_slice(&skopeo_ok(&[
            "inspect",
            &format!("oci:{}:{}", dest.display(), image.reference),
        ]))
        .unwrap();
        assert!(!inspect["Layers"].as_array().unwrap().is_empty());
    }
    assert_all_blobs_verify(&dest);
}

#[test]
fn help_has_an_example_and_exit_codes() {
    let run =
        ferry_e2e::run(std::process::Command::new(ferry_e2e::bin("ferry-export")).arg("--help"));
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.contains("Examples:") && run.stdout.contains("ferry-export --source"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Exit codes:"));
    let umbrella = ferry_e2e::run(
        std::process::Command::new(ferry_e2e::bin("ferry")).args(["export", "--help"]),
    );
    assert_eq!(
        umbrella.stdout, run.stdout,
        "ferry export must run ferry-export"
    );
}
