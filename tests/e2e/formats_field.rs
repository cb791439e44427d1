//! Package formats from the field, made by the real tools: images built from
//! scratch (offline) with Debian's `buildah`, saved with `podman save` as a
//! multi-image docker-archive (`-m`), an oci-archive and a docker-archive, and
//! pushed by `buildah` itself into an oci-archive. Each is exported, verified,
//! pushed to a real registry and diffed; what landed is checked with skopeo.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_e2e::registry_push::{mapped, push, registry_tool, skopeo};
use ferry_e2e::{assert_all_blobs_verify, assert_store_complete, bin, export, run, skopeo_ok};
use ferry_store::Digest;
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions, SkopeoRole};

/// The images the tests build: (reference, file content seed).
const IMAGES: [&str; 3] = [
    "localhost/ferry/field-a:1.0",
    "localhost/ferry/field-b:2.0",
    "localhost/ferry/field-c:3.0",
];

/// A private container storage (vfs driver, own root and run root in a temp
/// dir) holding [`IMAGES`], built from scratch with buildah.
struct Images {
    dir: tempfile::TempDir,
    /// Image IDs (config digests) by reference, in [`IMAGES`] order.
    ids: Vec<Digest>,
}

impl Images {
    fn build() -> Images {
        let dir = tempfile::Builder::new()
            .prefix("ferry-field-")
            .tempdir()
            .unwrap();
        let mut images = Images {
            dir,
            ids: Vec::new(),
        };
        for (i, reference) in IMAGES.iter().enumerate() {
            let container = images.ok("buildah", &["from", "scratch"]);
            let files = images.dir.path().join(format!("files-{i}"));
            std::fs::create_dir_all(files.join("etc")).unwrap();
            std::fs::write(
                files.join("etc/field.conf"),
                format!("image {i}\n").repeat(2000),
            )
            .unwrap();
            std::fs::write(files.join("hello"), format!("hello from {reference}\n")).unwrap();
            images.ok(
                "buildah",
                &["copy", &container, files.to_str().unwrap(), "/"],
            );
            images.ok("buildah", &["config", "--cmd", "/hello", &container]);
            let id = images.ok("buildah", &["commit", "-q", &container, reference]);
            images.ids.push(format!("sha256:{id}").parse().unwrap());
        }
        images
    }

    /// Runs `tool` (buildah or podman) on this storage; its trimmed stdout.
    fn ok(&self, tool: &str, args: &[&str]) -> String {
        let root = self.dir.path().join("root");
        let runroot = self.dir.path().join("runroot");
        let r = run(Command::new(tool)
            .args(["--storage-driver", "vfs", "--root"])
            .arg(&root)
            .arg("--runroot")
            .arg(&runroot)
            .args(args));
        assert_eq!(r.code, 0, "{tool} {args:?}: {}", r.stderr);
        r.stdout.trim().to_owned()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `ferry-verify` on `paths`.
fn verify(paths: &[&Path]) -> ferry_e2e::Run {
    run(Command::new(bin("ferry-verify")).args(paths))
}

/// The config digest of the image `reference` pushed under `ns` of `reg`.
fn pushed_config(reg: &Registry, ns: &str, reference: &str) -> Digest {
    let raw = skopeo(
        reg,
        SkopeoRole::Inspect,
        &["inspect", "--raw", &mapped(reg, ns, reference)],
    );
    let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
    v["config"]["digest"].as_str().unwrap().parse().unwrap()
}

/// Exports, verifies, pushes and diffs `package`, which must hold the images
/// `expected` (indices into [`IMAGES`]): names, image IDs (config digests) and
/// the pulled content are checked with skopeo. `ferry-verify` reads the
/// package too when `verify_package`, and the exported store always.
fn round_trip(images: &Images, package: &Path, expected: &[usize], verify_package: bool) {
    let label = package.display().to_string();
    let store = images.path("store");
    let _ = std::fs::remove_dir_all(&store);
    let r = export(package, &store, &[]);
    assert_eq!(r.code, 0, "export {label}: {}\n{}", r.stderr, r.stdout);
    let mut names = assert_store_complete(&store);
    names.sort();
    let mut want: Vec<String> = expected.iter().map(|&i| IMAGES[i].to_owned()).collect();
    want.sort();
    assert_eq!(names, want, "{label}");
    assert_all_blobs_verify(&store);
    let r = if verify_package {
        verify(&[package, &store])
    } else {
        verify(&[&store])
    };
    assert_eq!(r.code, 0, "verify {label}: {}\n{}", r.stderr, r.stdout);

    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    let diff = |extra: &[&str]| registry_tool("ferry-diff", &reg, package, "f", extra, &[], true);
    let before = diff(&[]);
    assert_eq!(
        before.code, 1,
        "diff before push {label}: {}",
        before.stderr
    );
    let r = push(&reg, package, "f", &[]);
    assert_eq!(r.code, 0, "push {label}: {}\n{}", r.stderr, r.stdout);
    for &i in expected {
        assert_eq!(
            pushed_config(&reg, "f", IMAGES[i]),
            images.ids[i],
            "{label}: {} landed with another image ID",
            IMAGES[i]
        );
        let pulled = images.path(&format!("pulled-{i}"));
        let _ = std::fs::remove_dir_all(&pulled);
        skopeo(
            &reg,
            SkopeoRole::Src,
            &[
                "copy",
                &mapped(&reg, "f", IMAGES[i]),
                &format!("oci:{}:x", pulled.display()),
            ],
        );
        assert_all_blobs_verify(&pulled);
    }
    let after = diff(&[]);
    assert_eq!(
        after.code, 0,
        "diff after push {label}: {}{}",
        after.stdout, after.stderr
    );
}

#[test]
fn podman_and_buildah_archives_export_verify_push_and_diff() {
    let images = Images::build();
    let storage_ref = |i: usize| IMAGES[i].to_owned();

    // podman save -m: one docker-archive holding both images.
    let multi = images.path("multi.docker-archive.tar");
    images.ok(
        "podman",
        &[
            "save",
            "-m",
            "-o",
            multi.to_str().unwrap(),
            &storage_ref(0),
            &storage_ref(1),
        ],
    );
    round_trip(&images, &multi, &[0, 1], true);

    // podman save --format docker-archive (one image).
    let docker = images.path("b.docker-archive.tar");
    images.ok(
        "podman",
        &[
            "save",
            "--format",
            "docker-archive",
            "-o",
            docker.to_str().unwrap(),
            &storage_ref(1),
        ],
    );
    round_trip(&images, &docker, &[1], true);

    // podman save --format oci-archive: the manifest is kept byte for byte.
    let oci = images.path("a.oci-archive.tar");
    images.ok(
        "podman",
        &[
            "save",
            "--format",
            "oci-archive",
            "-o",
            oci.to_str().unwrap(),
            &storage_ref(0),
        ],
    );
    round_trip(&images, &oci, &[0], true);

    // buildah push IMAGE oci-archive:FILE:NAME.
    let bah = images.path("b.buildah.oci-archive.tar");
    images.ok(
        "buildah",
        &[
            "push",
            "-q",
            &storage_ref(1),
            &format!("oci-archive:{}:{}", bah.display(), IMAGES[1]),
        ],
    );
    round_trip(&images, &bah, &[1], true);
    // Byte-identical: the registry holds the manifest skopeo reads from the archive.
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    let r = push(&reg, &bah, "f", &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let in_archive = skopeo_ok(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}", bah.display()),
    ]);
    let landed = skopeo(
        &reg,
        SkopeoRole::Inspect,
        &["inspect", "--raw", &mapped(&reg, "f", IMAGES[1])],
    );
    assert_eq!(Digest::sha256_of(&landed), Digest::sha256_of(&in_archive));
}

/// Compresses `file` with `tool` (`gzip`, `zstd`, `xz`) into `out`.
fn compress(tool: &str, file: &Path, out: &Path) {
    let r = run(Command::new(tool)
        .args(["-c", "-q"])
        .arg(file)
        .stdout(std::fs::File::create(out).unwrap()));
    assert_eq!(r.code, 0, "{tool}: {}", r.stderr);
}

/// `tar -C dir -cf OUT [-z] .`
fn tar_dir(dir: &Path, out: &Path, gzip: bool) {
    let r = run(Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg(if gzip { "-czf" } else { "-cf" })
        .arg(out)
        .arg("."));
    assert_eq!(r.code, 0, "tar: {}", r.stderr);
}

/// A vendor's "push each image file" package: a directory holding one archive
/// per image (a docker-archive as .tar.gz, a podman oci-archive as .tar.zst, a
/// buildah oci-archive as .tar.xz) and a README; the directory itself, a tar
/// of it and a tar.gz of it are each exported, verified, pushed and diffed.
#[test]
fn a_package_of_image_archives_exports_verifies_pushes_and_diffs() {
    let images = Images::build();
    let vendor = images.path("vendor");
    std::fs::create_dir_all(vendor.join("images")).unwrap();
    std::fs::write(vendor.join("README.txt"), "podman load -i each file\n").unwrap();
    let saved = |format: &str, i: usize| {
        let out = images.path(&format!("{i}.{format}.tar"));
        images.ok(
            "podman",
            &[
                "save",
                "--format",
                format,
                "-o",
                out.to_str().unwrap(),
                IMAGES[i],
            ],
        );
        out
    };
    compress(
        "gzip",
        &saved("docker-archive", 0),
        &vendor.join("images/a.tar.gz"),
    );
    compress("zstd", &saved("oci-archive", 1), &vendor.join("b.tar.zst"));
    let bah = images.path("c.buildah.tar");
    images.ok(
        "buildah",
        &[
            "push",
            "-q",
            IMAGES[2],
            &format!("oci-archive:{}:{}", bah.display(), IMAGES[2]),
        ],
    );
    compress("xz", &bah, &vendor.join("c.tar.xz"));

    round_trip(&images, &vendor, &[0, 1, 2], true);
    for gzip in [false, true] {
        let outer = images.path(if gzip { "vendor.tgz" } else { "vendor.tar" });
        tar_dir(&vendor, &outer, gzip);
        round_trip(&images, &outer, &[0, 1, 2], true);
    }
}

/// Hostile image archives inside a package (the testkit's hostile corpus):
/// traversal entries, a truncated archive; each refused with exit 2 naming the
/// outer and the inner entry, and nothing named (the good archive beside it is
/// not exported alone).
#[test]
fn hostile_image_archives_inside_a_package_are_refused_naming_both_entries() {
    let work = tempfile::tempdir().unwrap();
    let corpus = work.path().join("corpus");
    let cases = ferry_testkit::write_hostile_corpus(&corpus).unwrap();
    let good = std::fs::read(corpus.join(ferry_testkit::hostile::VALID_PACKAGE)).unwrap();
    let case = |name: &str| {
        let c = cases.iter().find(|c| c.name == name).unwrap();
        (std::fs::read(&c.path).unwrap(), c.must_mention.clone())
    };
    let mut hostile = vec![
        case("path-traversal"),
        case("path-traversal-nested"),
        case("absolute-path"),
    ];
    hostile.push((good[..good.len() / 2].to_vec(), "truncated".to_owned()));

    for (i, (inner, says)) in hostile.iter().enumerate() {
        let dir = work.path().join(format!("case-{i}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("1-good.tar"), &good).unwrap();
        std::fs::write(dir.join("2-bad.tar"), inner).unwrap();
        let outer = work.path().join(format!("case-{i}.tar.gz"));
        tar_dir(&dir, &outer, true);
        for source in [&dir, &outer] {
            let store = work.path().join(format!("store-{i}"));
            let r = export(source, &store, &[]);
            assert_eq!(r.code, 2, "{says}: {}\n{}", r.stderr, r.stdout);
            assert!(
                r.stderr.contains("2-bad.tar") && r.stderr.contains(says.as_str()),
                "{says}: the error names the outer and inner entry: {}",
                r.stderr
            );
            let named = ferry_store::Store::open_read_only(&store)
                .ok()
                .and_then(|s| s.index_entries().ok())
                .map_or(0, |e| e.len());
            assert_eq!(named, 0, "{says}: an image was named");
        }
        // ferry-verify reads the same package (the tar and the directory)
        // through and reports the problem (exit 1) under both entries.
        for source in [&outer, &dir] {
            let r = verify(&[source]);
            assert_eq!(r.code, 1, "{says}: {}\n{}", r.stderr, r.stdout);
            let text = format!("{}{}", r.stdout, r.stderr);
            assert!(
                text.contains("2-bad.tar") && text.contains(says.as_str()),
                "{says}: {text}"
            );
        }
    }
}

/// The event `name` of a `--json` run (which must be there, once per image).
fn events_named(r: &ferry_e2e::Run, name: &str) -> Vec<serde_json::Value> {
    ferry_e2e::events(r)
        .into_iter()
        .filter(|e| e["event"] == name)
        .collect()
}

/// A docker-archive's layers are plain tar: ferry-push says how many bytes
/// that costs; with `--compress-layers gzip|zstd` the registry gets compressed
/// layers under the printed new manifest, whose layers decompress to the
/// config's diff_ids (same image ID).
#[test]
fn docker_archive_layers_cost_is_printed_and_compress_layers_compresses_them() {
    let images = Images::build();
    let multi = images.path("multi.tar");
    images.ok(
        "podman",
        &[
            "save",
            "-m",
            "-o",
            multi.to_str().unwrap(),
            IMAGES[0],
            IMAGES[1],
        ],
    );
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    let staging = |n: &str| images.path(&format!("staging-{n}"));

    // Plain: the cost is printed, and is what the registry then holds.
    let r = push(
        &reg,
        &multi,
        "plain",
        &["--json", "--staging", staging("plain").to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    let cost = events_named(&r, "uncompressed_layers");
    assert_eq!(cost.len(), 1, "{}", r.stdout);
    let mut layer_bytes = 0;
    for reference in &IMAGES[..2] {
        let raw = skopeo(
            &reg,
            SkopeoRole::Inspect,
            &["inspect", "--raw", &mapped(&reg, "plain", reference)],
        );
        let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        for l in v["layers"].as_array().unwrap() {
            assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar");
            layer_bytes += l["size"].as_u64().unwrap();
        }
    }
    assert_eq!(cost[0]["bytes"].as_u64().unwrap(), layer_bytes);
    assert_eq!(cost[0]["images"], 2);
    let human = push(
        &reg,
        &multi,
        "plain",
        &["--staging", staging("plain").to_str().unwrap()],
    );
    assert!(
        human.stderr.contains("uncompressed tar") && human.stderr.contains("--compress-layers"),
        "{}",
        human.stderr
    );

    for (how, media_type, tool) in [
        (
            "gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "gzip",
        ),
        (
            "zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "zstd",
        ),
    ] {
        let r = push(
            &reg,
            &multi,
            how,
            &[
                "--json",
                "--compress-layers",
                how,
                "--staging",
                staging(how).to_str().unwrap(),
            ],
        );
        assert_eq!(r.code, 0, "{how}: {}\n{}", r.stderr, r.stdout);
        let done = events_named(&r, "compressed_layers");
        assert_eq!(done.len(), 2, "{how}: {}", r.stdout);
        for (i, reference) in IMAGES[..2].iter().enumerate() {
            let event = done.iter().find(|e| e["image"] == *reference).unwrap();
            let raw = skopeo(
                &reg,
                SkopeoRole::Inspect,
                &["inspect", "--raw", &mapped(&reg, how, reference)],
            );
            assert_eq!(
                Digest::sha256_of(&raw).to_string(),
                event["manifest"].as_str().unwrap(),
                "{how}: the printed manifest is the one in the registry"
            );
            assert_eq!(pushed_config(&reg, how, reference), images.ids[i]);
            let pulled = images.path(&format!("pulled-{how}-{i}"));
            skopeo(
                &reg,
                SkopeoRole::Src,
                &[
                    "copy",
                    &mapped(&reg, how, reference),
                    &format!("oci:{}:x", pulled.display()),
                ],
            );
            let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
            let blob = |d: &str| pulled.join("blobs/sha256").join(&d["sha256:".len()..]);
            let config: serde_json::Value = serde_json::from_slice(
                &std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
            )
            .unwrap();
            for (layer, diff_id) in manifest["layers"]
                .as_array()
                .unwrap()
                .iter()
                .zip(config["rootfs"]["diff_ids"].as_array().unwrap())
            {
                assert_eq!(layer["mediaType"], media_type);
                let out = Command::new(tool)
                    .args(["-dc"])
                    .arg(blob(layer["digest"].as_str().unwrap()))
                    .output()
                    .unwrap();
                assert!(out.status.success(), "{tool} -dc");
                assert_eq!(
                    Digest::sha256_of(&out.stdout).to_string(),
                    diff_id.as_str().unwrap(),
                    "{how}: a compressed layer decompresses to its diff_id"
                );
            }
        }
    }
}
