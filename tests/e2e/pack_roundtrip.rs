//! ferry-pack's package, end to end: images seeded into a real registry (TLS +
//! htpasswd) are packed by tag and by digest (a multi-arch index, a Docker
//! schema 2 image, an OCI referrer and a cosign-style tag among them), then the
//! package is exported, verified and pushed into a second registry (Bearer
//! tokens), where skopeo reads every manifest byte-identical to the source's.
//! Third-party tools read the package with no ferry installed (skopeo
//! `oci-archive:`, `zstd -d | tar`, umoci); the same images packed again with
//! other `--jobs`, another umask, on another day of the clock (faketime, 100 days on) and
//! from an empty cache give the same sha256.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_e2e::registry_push::{push, skopeo};
use ferry_e2e::{bin, spawn_with_input, without_proxies, Run};
use ferry_store::Digest;
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions, SkopeoRole};
use ferry_testkit::{add_cosign_tag, add_referrer, generate_layout, Fixture, FixtureSpec};

/// Source registry seeded with generated images under namespace `src`: returns
/// the fixture and the references in the registry, with the referrer's digest
/// and the cosign tag's reference.
struct Seeded {
    reg: Registry,
    fixture: Fixture,
    refs: Vec<String>,
    referrer: Digest,
    cosign: String,
    _dir: tempfile::TempDir,
}

fn seeded() -> Seeded {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let spec = FixtureSpec {
        seed: 91,
        images: 4,
        layers_per_image: 2,
        layer_size: 400 * 1024,
        incompressible: true,
        multi_arch_every: 2,
        docker_schema2_every: 3,
        ..Default::default()
    };
    let fixture = generate_layout(&spec, &layout).unwrap();
    let subject = &fixture.images[0];
    let referrer = add_referrer(
        &layout,
        &subject.descriptor,
        "application/vnd.example.sbom.v1+json",
        b"{\"sbom\":true}",
    )
    .unwrap();
    let (cosign_ref, _) = add_cosign_tag(
        &layout,
        &subject.reference,
        &subject.descriptor,
        "sig",
        b"signature",
    )
    .unwrap();
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    let r = push(&reg, &layout, "src", &[]);
    assert_eq!(r.code, 0, "seeding: {}", r.stderr);
    let host = reg.host();
    let in_registry =
        |reference: &str| format!("{host}/src/{}", reference.split_once('/').unwrap().1);
    let refs = fixture
        .images
        .iter()
        .map(|i| in_registry(&i.reference))
        .collect();
    let cosign = in_registry(&cosign_ref);
    Seeded {
        reg,
        fixture,
        refs,
        referrer: referrer.digest,
        cosign,
        _dir: dir,
    }
}

/// Runs ferry-pack against `reg` with its CA and credentials.
fn pack(reg: &Registry, out: &Path, cache: &Path, args: &[&str], wrap: &[&str]) -> Run {
    let mut cmd = if wrap.is_empty() {
        Command::new(bin("ferry-pack"))
    } else {
        let mut c = Command::new(wrap[0]);
        c.args(&wrap[1..]).arg(bin("ferry-pack"));
        c
    };
    cmd.arg("--out")
        .arg(out)
        .arg("--cache")
        .arg(cache)
        .args(args);
    cmd.arg("--cacert").arg(reg.ca_cert_path().unwrap());
    let (user, pass) = reg.credentials().unwrap();
    cmd.args(["--username", &user, "--password-stdin"]);
    without_proxies(&mut cmd);
    spawn_with_input(&mut cmd, pass.as_bytes())
        .wait_with_output()
        .unwrap()
        .into()
}

fn tar_names(tar: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn zstd_decoded(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    zstd::stream::read::Decoder::new(std::fs::File::open(path).unwrap())
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn sha256_file(path: &Path) -> Digest {
    Digest::sha256_of(&std::fs::read(path).unwrap())
}

#[test]
fn packed_images_export_verify_and_push_byte_identical() {
    let s = seeded();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("bundle.tar.zst");
    let cache = tmp.path().join("cache");
    // One image by digest, the others by tag (one of them through a list file).
    let by_digest = format!(
        "{}@{}",
        s.refs[1].rsplit_once(':').unwrap().0,
        s.fixture.images[1].descriptor.digest
    );
    let list = tmp.path().join("images.txt");
    std::fs::write(
        &list,
        format!(
            "# the connected side's list\n\n{}\n  {}  \n",
            s.refs[2], s.refs[3]
        ),
    )
    .unwrap();
    let r = pack(
        &s.reg,
        &out,
        &cache,
        &[
            "--image",
            &s.refs[0],
            "--image",
            &by_digest,
            "--images",
            list.to_str().unwrap(),
            "--referrers",
            "--json",
        ],
        &[],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert!(out.is_file());

    // Metadata first, then manifests, then blobs; every blob once.
    let tar = zstd_decoded(&out);
    let names = tar_names(&tar);
    assert_eq!(
        names[..3],
        ["oci-layout", "index.json", "ferry-package.json"],
        "{names:?}"
    );
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), names.len(), "an entry appears twice");
    let mut a = tar::Archive::new(&tar[..]);
    let mut manifest_json = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("ferry-package.json") {
            e.read_to_end(&mut manifest_json).unwrap();
            break;
        }
    }
    let m: serde_json::Value = serde_json::from_slice(&manifest_json).unwrap();
    let kinds: Vec<&str> = m["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    let first_blob = kinds.iter().position(|k| *k == "blob").unwrap();
    assert!(
        kinds[first_blob..].iter().all(|k| *k == "blob"),
        "a manifest after a blob"
    );
    // Both the tag and the digest are recorded for each image.
    let images = m["images"].as_array().unwrap();
    let tagged = images
        .iter()
        .find(|i| i["requested"] == s.refs[0].as_str())
        .unwrap();
    assert_eq!(
        tagged["digest"],
        s.fixture.images[0].descriptor.digest.to_string()
    );
    let pinned = images
        .iter()
        .find(|i| i["requested"] == by_digest.as_str())
        .unwrap();
    assert_eq!(
        pinned["digest"],
        s.fixture.images[1].descriptor.digest.to_string()
    );
    // The referrer and the cosign tag travelled with image 0.
    assert!(
        m["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["digest"] == s.referrer.to_string()),
        "the referrer is in the package"
    );
    assert!(
        images.iter().any(|i| i["name"]
            .as_str()
            .unwrap()
            .ends_with(s.cosign.rsplit_once(':').unwrap().1)),
        "the cosign tag is in the package: {images:?}"
    );

    // ferry-verify checks it (ferry-package.json included), ferry-export takes it.
    let v = ferry_e2e::run(Command::new(bin("ferry-verify")).arg(&out).arg("--json"));
    assert_eq!(v.code, 0, "{}\n{}", v.stderr, v.stdout);
    assert!(
        v.stdout.contains("ferry-package.json checked"),
        "{}",
        v.stdout
    );
    let store = tmp.path().join("store");
    let e = ferry_e2e::export(&out, &store, &[]);
    assert_eq!(e.code, 0, "{}", e.stderr);

    // Pushed into a second registry (Bearer tokens): byte-identical to the source.
    let dst = Registry::start(RegistryOptions::new(RegistryMode::TlsToken)).unwrap();
    let p = push(&dst, &out, "dst", &[]);
    assert_eq!(p.code, 0, "{}\n{}", p.stderr, p.stdout);
    // Streamed in one read (metadata first): no staging copy beside the package.
    assert!(
        !tmp.path().join("bundle.tar.zst.ferry-store").exists(),
        "the package was staged instead of streamed: {}",
        p.stderr
    );
    let strip = |r: &str| r.split_once('/').unwrap().1.to_owned(); // drop the source host
    for (i, reference) in s.refs.iter().enumerate() {
        let digest = s.fixture.images[i].descriptor.digest.to_string();
        let at = |reg: &Registry, path: &str| {
            let repo = path.rsplit_once(':').unwrap().0;
            format!("docker://{}/{repo}@{digest}", reg.host())
        };
        let source = skopeo(
            &s.reg,
            SkopeoRole::Inspect,
            &["inspect", "--raw", &at(&s.reg, &strip(reference))],
        );
        let pushed = skopeo(
            &dst,
            SkopeoRole::Inspect,
            &[
                "inspect",
                "--raw",
                &at(&dst, &format!("dst/{}", strip(reference))),
            ],
        );
        assert!(source == pushed, "{reference}: manifests differ");
        assert_eq!(Digest::sha256_of(&pushed).to_string(), digest);
    }
    // By tag too, for the images asked by tag.
    let tag_ref = format!("docker://{}/dst/{}", dst.host(), strip(&s.refs[0]));
    let by_tag = skopeo(&dst, SkopeoRole::Inspect, &["inspect", "--raw", &tag_ref]);
    assert_eq!(
        Digest::sha256_of(&by_tag),
        s.fixture.images[0].descriptor.digest
    );
    // The cosign tag is there under its own tag.
    let cosign_ref = format!("docker://{}/dst/{}", dst.host(), strip(&s.cosign));
    skopeo(
        &dst,
        SkopeoRole::Inspect,
        &["inspect", "--raw", &cosign_ref],
    );
}

#[test]
fn the_same_images_give_the_same_bytes_and_third_party_tools_read_them() {
    let s = seeded();
    let tmp = tempfile::tempdir().unwrap();
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = s
            .refs
            .iter()
            .flat_map(|r| ["--image".to_owned(), r.clone()])
            .collect();
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let run = |out: &PathBuf, cache: &str, extra: &[&'static str], wrap: &[&str]| {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        let r = pack(&s.reg, out, &tmp.path().join(cache), &a, wrap);
        assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    };
    let first = tmp.path().join("a.tar.zst");
    run(&first, "cache-a", &["--jobs", "4"], &[]);
    // Another day, another thread count, another umask, an empty cache, images in another order.
    let second = tmp.path().join("b.tar.zst");
    let a = {
        let mut v = args(&["--jobs", "1"]);
        v.reverse(); // reversed pairs: REF --image ... so put flags back in order
        let mut fixed = Vec::new();
        for pair in v.chunks(2) {
            fixed.push(pair[1].clone());
            fixed.push(pair[0].clone());
        }
        fixed
    };
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let r = pack(
        &s.reg,
        &second,
        &tmp.path().join("cache-b"),
        &a,
        &[
            "faketime",
            "-f",
            "+100d", // within the test certificates' validity
            "sh",
            "-c",
            "umask 077; exec \"$0\" \"$@\"",
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert_eq!(
        sha256_file(&first),
        sha256_file(&second),
        "two packs of the same images differ"
    );

    // xz and an uncompressed tar: the same check, and third-party readers.
    let xz = tmp.path().join("p.tar.xz");
    run(&xz, "cache-a", &["--compress", "xz"], &[]);
    let xz2 = tmp.path().join("p2.tar.xz");
    run(&xz2, "cache-a", &["--compress", "xz", "--jobs", "1"], &[]);
    assert_eq!(sha256_file(&xz), sha256_file(&xz2));
    let listing = Command::new("xz")
        .args(["--robot", "--list"])
        .arg(&xz)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let blocks: u64 = listing
        .lines()
        .find(|l| l.starts_with("file\t"))
        .and_then(|l| l.split('\t').nth(2))
        .and_then(|b| b.parse().ok())
        .unwrap_or(0);
    assert!(
        blocks > 10,
        "a multi-block xz (a block per entry): {listing}"
    );

    let plain = tmp.path().join("p.tar");
    run(&plain, "cache-a", &["--compress", "none"], &[]);
    let name = {
        let index: serde_json::Value =
            serde_json::from_slice(&extract(&plain, "index.json")).unwrap();
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let copy = tmp.path().join("copied");
    let out = Command::new("skopeo")
        .args(["copy", "--all"])
        .arg(format!("oci-archive:{}:{name}", plain.display()))
        .arg(format!("oci:{}:x", copy.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo oci-archive: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // zstd + tar with no ferry: the layout unpacks and umoci lists every image.
    let unpacked = tmp.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{}' | tar -xf - -C '{}'",
            first.display(),
            unpacked.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let ls = Command::new("umoci")
        .args(["ls", "--layout"])
        .arg(&unpacked)
        .output()
        .unwrap();
    let ls = String::from_utf8_lossy(&ls.stdout).into_owned();
    for r in &s.refs {
        assert!(ls.contains(r.as_str()), "umoci ls lacks {r}: {ls}");
    }
}

/// The bytes of entry `name` of a plain tar.
fn extract(tar: &Path, name: &str) -> Vec<u8> {
    let mut a = tar::Archive::new(std::fs::File::open(tar).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some(name) {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            return v;
        }
    }
    panic!("{name} not in {}", tar.display());
}
