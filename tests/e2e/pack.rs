//! ferry-pack's pull side end to end, against Debian's real docker-registry
//! (distribution v2.8: TLS + htpasswd, and Bearer tokens) seeded with
//! generated images, checked with the registry's own access log and the
//! cache store's content: tags resolved once, `--platform` pulls only the
//! chosen platforms, a rerun pulls nothing, kill -9 at random points then a
//! rerun pulls only what the cache lacks, and bad input (a reference that
//! does not exist, bytes that do not match their digest, a manifest over
//! 4 MiB, a reference without its host) exits 2 naming it, with nothing at
//! `--out`. (The package's format and round trip: `pack_roundtrip.rs`.)

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferry_e2e::registry_push::{generated, push};
use ferry_e2e::{bin, run, spawn_with_input, without_proxies, Run};
use ferry_store::{media, Descriptor, Digest};
use ferry_testkit::fake_registry::FakeRegistry;
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions};
use ferry_testkit::{Fixture, FixtureSpec};
use rand::{Rng, SeedableRng};

/// `reg`'s CA and credentials on a ferry-pack command line.
fn with_registry<'c>(cmd: &'c mut Command, reg: &Registry) -> (&'c mut Command, String) {
    if let Some(ca) = reg.ca_cert_path() {
        cmd.arg("--cacert").arg(ca);
    }
    let mut password = String::new();
    if let Some((user, pass)) = reg.credentials() {
        cmd.args(["--username", &user, "--password-stdin"]);
        password = pass;
    }
    (without_proxies(cmd), password)
}

fn pack_cmd(out: &Path, cache: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin("ferry-pack"));
    cmd.arg("--out")
        .arg(out)
        .arg("--cache")
        .arg(cache)
        .args(args);
    cmd
}

/// Runs ferry-pack against `reg` to completion.
fn pack(reg: &Registry, out: &Path, cache: &Path, args: &[&str]) -> Run {
    let mut cmd = pack_cmd(out, cache, args);
    let (cmd, password) = with_registry(&mut cmd, reg);
    spawn_with_input(cmd, password.as_bytes())
        .wait_with_output()
        .unwrap()
        .into()
}

/// A registry of `mode` holding `spec`'s images under `src/`; their references there.
fn seeded(
    mode: RegistryMode,
    spec: &FixtureSpec,
) -> (Registry, Fixture, Vec<String>, tempfile::TempDir, PathBuf) {
    let (dir, layout, fixture) = generated(spec);
    let reg = Registry::start(RegistryOptions::new(mode)).unwrap();
    let r = push(&reg, &layout, "src", &[]);
    assert_eq!(r.code, 0, "seeding: {}", r.stderr);
    let refs = fixture
        .images
        .iter()
        .map(|i| {
            format!(
                "{}/src/{}",
                reg.host(),
                i.reference.split_once('/').unwrap().1
            )
        })
        .collect();
    (reg, fixture, refs, dir, layout)
}

fn summary(r: &Run) -> serde_json::Value {
    let last = r.stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    assert_eq!(v["event"], "summary", "{last}");
    v["summary"].clone()
}

/// Blob digests held by a cache store.
fn cached(cache: &Path) -> BTreeSet<String> {
    std::fs::read_dir(cache.join("blobs/sha256"))
        .map(|d| {
            d.map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default()
}

/// Requests with `method` whose path contains `path` that the registry
/// answered 200 (in token mode each new scope is first answered 401).
fn answered(reg: &Registry, method: &str, path: &str) -> usize {
    let start = format!("\"{method} ");
    reg.log()
        .lines()
        .filter_map(|l| l.split_once(&start))
        .filter(|(_, rest)| {
            let (request, after) = rest.split_once('"').unwrap_or_default();
            request.contains(path) && after.trim_start().starts_with("200 ")
        })
        .count()
}

fn blob_gets(reg: &Registry, digest: &str) -> usize {
    reg.count_requests("GET", &format!("/blobs/{digest}"))
}

/// A layout blob's bytes.
fn layout_blob(layout: &Path, d: &Digest) -> Vec<u8> {
    std::fs::read(layout.join("blobs/sha256").join(d.hex())).unwrap()
}

/// The configs and layers only an index's children other than `os/arch` use.
fn other_platform_blobs(layout: &Path, index: &Descriptor, keep: (&str, &str)) -> Vec<Digest> {
    let doc: serde_json::Value =
        serde_json::from_slice(&layout_blob(layout, &index.digest)).unwrap();
    let (mut kept, mut others) = (BTreeSet::new(), BTreeSet::new());
    for child in doc["manifests"].as_array().unwrap() {
        let p = &child["platform"];
        let set = if p["os"] == keep.0 && p["architecture"] == keep.1 {
            &mut kept
        } else {
            &mut others
        };
        let d: Digest = child["digest"].as_str().unwrap().parse().unwrap();
        let m: serde_json::Value = serde_json::from_slice(&layout_blob(layout, &d)).unwrap();
        set.insert(m["config"]["digest"].as_str().unwrap().to_owned());
        for l in m["layers"].as_array().unwrap() {
            set.insert(l["digest"].as_str().unwrap().to_owned());
        }
    }
    others
        .difference(&kept)
        .map(|d| d.parse().unwrap())
        .collect()
}

#[test]
fn token_registry_by_tag_and_digest_with_platform_resolves_once_and_a_rerun_pulls_nothing() {
    let spec = FixtureSpec {
        seed: 301,
        images: 3,
        layers_per_image: 2,
        layer_size: 64 * 1024,
        incompressible: true,
        multi_arch_every: 2,
        docker_schema2_every: 3,
        ..Default::default()
    };
    let (reg, fixture, refs, dir, layout) = seeded(RegistryMode::TlsToken, &spec);
    let kinds: Vec<&str> = fixture
        .images
        .iter()
        .map(|i| i.descriptor.media_type.as_str())
        .collect();
    let multi = fixture
        .images
        .iter()
        .position(|i| {
            i.descriptor.media_type == media::OCI_INDEX
                || i.descriptor.media_type == media::DOCKER_MANIFEST_LIST
        })
        .expect("a multi-arch image");
    let schema2 = fixture
        .images
        .iter()
        .position(|i| {
            i.descriptor
                .media_type
                .starts_with("application/vnd.docker.")
        })
        .unwrap_or_else(|| panic!("a Docker schema 2 image in {kinds:?}"));
    let single = (0..3).find(|i| *i != multi).unwrap();
    let by_digest = format!(
        "{}@{}",
        refs[single].rsplit_once(':').unwrap().0,
        fixture.images[single].descriptor.digest
    );
    let tagged: Vec<&String> = (0..3).filter(|i| *i != single).map(|i| &refs[i]).collect();
    let out = dir.path().join("p.tar.zst");
    let cache = dir.path().join("cache");
    let mut args = vec!["--platform", "linux/amd64", "--json", "--image", &by_digest];
    for t in &tagged {
        args.extend(["--image", t.as_str()]);
    }
    let tag_gets = || answered(&reg, "GET", "/manifests/1.8.0");
    let heads = || reg.count_requests("HEAD", "/manifests/");
    let (tags_seeded, heads_seeded) = (tag_gets(), heads());
    let r = pack(&reg, &out, &cache, &args);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert!(out.is_file());
    assert!(reg.token_requests() > 0, "Bearer tokens were used");
    // Every tag resolved with one GET, nothing HEADed.
    assert_eq!(tag_gets() - tags_seeded, tagged.len(), "{}", reg.log());
    assert_eq!(heads(), heads_seeded);

    let s = summary(&r);
    let images = s["images"].as_array().unwrap();
    let multi_ref = &refs[multi];
    let m = images
        .iter()
        .find(|i| i["requested"] == multi_ref.as_str())
        .unwrap();
    assert_eq!(
        m["source_digest"],
        fixture.images[multi].descriptor.digest.to_string()
    );
    assert_ne!(
        m["digest"], m["source_digest"],
        "a filtered index is a new one"
    );
    assert_eq!(m["platforms"], serde_json::json!(["linux/amd64"]));
    // The notice names both digests.
    assert!(r.stdout.contains("\"event\":\"filtered\""), "{}", r.stdout);
    let pinned = images
        .iter()
        .find(|i| i["requested"] == by_digest.as_str())
        .unwrap();
    assert_eq!(
        pinned["digest"],
        fixture.images[single].descriptor.digest.to_string()
    );
    assert!(pinned["name"].as_str().unwrap().contains('@'));
    let d2 = images
        .iter()
        .find(|i| i["requested"] == refs[schema2].as_str())
        .unwrap();
    assert_eq!(
        d2["digest"],
        fixture.images[schema2].descriptor.digest.to_string()
    );
    // Other platforms' configs and layers were never asked for.
    let others = other_platform_blobs(
        &layout,
        &fixture.images[multi].descriptor,
        ("linux", "amd64"),
    );
    assert!(!others.is_empty());
    let in_cache = cached(&cache);
    for d in &others {
        assert_eq!(
            blob_gets(&reg, &d.to_string()),
            0,
            "{d} of another platform was pulled"
        );
        assert!(!in_cache.contains(&d.to_string()));
    }
    assert!(s["blobs_pulled"].as_u64().unwrap() > 0);

    // No whole-file hash unless asked for.
    assert!(s["sha256"].is_null(), "{s}");
    let checksum_file = dir.path().join("p.tar.zst.sha256");
    assert!(!checksum_file.exists());
    let first_sha256 = Digest::sha256_of(&std::fs::read(&out).unwrap()).to_string();

    // Again, with --checksum: tags resolved once more, no blob and no manifest by
    // digest fetched; the same bytes, and their sha256 in a file sha256sum -c reads.
    let blobs_before = reg.count_requests("GET", "/blobs/");
    let manifests_before = answered(&reg, "GET", "/manifests/sha256:");
    let mut with_checksum = args.clone();
    with_checksum.push("--checksum");
    let again = pack(&reg, &out, &cache, &with_checksum);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        reg.count_requests("GET", "/blobs/"),
        blobs_before,
        "a rerun pulled blobs"
    );
    assert_eq!(
        answered(&reg, "GET", "/manifests/sha256:"),
        manifests_before + 1,
        "only the by-digest reference is asked again"
    );
    assert_eq!(tag_gets() - tags_seeded, 2 * tagged.len());
    let s2 = summary(&again);
    assert_eq!(s2["blobs_pulled"], 0);
    assert_eq!(
        s2["sha256"],
        first_sha256.as_str(),
        "same images, same bytes"
    );
    assert_eq!(
        std::fs::read_to_string(&checksum_file).unwrap(),
        format!("{}  p.tar.zst\n", &first_sha256["sha256:".len()..])
    );
    assert_eq!(s2["checksums"], checksum_file.to_str().unwrap());
    let check = std::process::Command::new("sha256sum")
        .args(["-c", "p.tar.zst.sha256"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
}

#[test]
fn kill_9_at_random_points_then_a_rerun_pulls_only_what_the_cache_lacks() {
    let spec = FixtureSpec {
        seed: 302,
        images: 4,
        layers_per_image: 2,
        layer_size: 6 << 20,
        incompressible: true,
        shared_base_layer: false,
        ..Default::default()
    };
    let (reg, fixture, refs, dir, _layout) = seeded(RegistryMode::TlsHtpasswd, &spec);
    let out = dir.path().join("p.tar.zst");
    let cache = dir.path().join("cache");
    let mut args: Vec<&str> = vec!["--jobs", "2", "--json"];
    for r in &refs {
        args.extend(["--image", r.as_str()]);
    }
    let all: BTreeSet<String> = fixture
        .unique_blobs()
        .iter()
        .map(|d| d.digest.to_string())
        .collect();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(302);
    let mut killed = 0;
    for trial in 0..4 {
        let mut cmd = pack_cmd(&out, &cache, &args);
        let (cmd, password) = with_registry(&mut cmd, &reg);
        let mut child = spawn_with_input(cmd, password.as_bytes());
        // A random point of the pull, by progress rather than by clock (a fast
        // machine finishes before any fixed delay): once the cache holds one to
        // all-but-one more blobs than it held from the earlier trials (all of
        // them, when just one was missing: then during the package's write).
        let have = cached(&cache).len();
        let target = if have + 1 < all.len() {
            rng.gen_range(have + 1..all.len())
        } else {
            all.len()
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while cached(&cache).len() < target
            && child.try_wait().unwrap().is_none()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        let finished = child.try_wait().unwrap().is_some();
        // SIGKILL, by PID (the child's own, started above).
        let _ = child.kill();
        let status = child.wait().unwrap();
        if finished {
            // Too late: it was done. Start the next trial from an empty cache.
            assert!(status.success(), "trial {trial} failed");
            std::fs::remove_dir_all(&cache).unwrap();
            std::fs::remove_file(&out).unwrap();
            continue;
        }
        killed += 1;
        assert!(
            !out.exists(),
            "trial {trial}: a package at --out after kill -9"
        );
        for tmp in std::fs::read_dir(cache.join(".ferry/tmp")).unwrap() {
            let name = tmp.unwrap().file_name();
            assert!(!cached(&cache).contains(&format!("sha256:{}", name.to_string_lossy())));
        }
    }
    assert!(
        killed >= 2,
        "only {killed} trial(s) were killed before the end"
    );
    let before = cached(&cache);
    let gets_before: Vec<usize> = before.iter().map(|d| blob_gets(&reg, d)).collect();
    let r = pack(&reg, &out, &cache, &args);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    for (d, n) in before.iter().zip(gets_before) {
        assert_eq!(
            blob_gets(&reg, d),
            n,
            "{d} was in the cache but fetched again"
        );
    }
    let s = summary(&r);
    let held_leaves = before.intersection(&all).count() as u64;
    assert!(
        s["blobs_cached"].as_u64().unwrap()
            >= held_leaves.saturating_sub(fixture.images.len() as u64)
    );
    assert_eq!(
        s["blobs_pulled"].as_u64().unwrap() + s["blobs_cached"].as_u64().unwrap(),
        (all.len() - fixture.images.len()) as u64,
        "every config and layer, once"
    );
    // The package is whole: ferry-verify checks every digest.
    let v = run(Command::new(bin("ferry-verify")).arg(&out));
    assert_eq!(v.code, 0, "{}\n{}", v.stderr, v.stdout);
}

#[test]
fn bad_input_exits_2_naming_it_and_leaves_nothing_at_out() {
    let spec = FixtureSpec {
        seed: 303,
        images: 1,
        layers_per_image: 1,
        layer_size: 200 * 1024,
        incompressible: true,
        shared_base_layer: false,
        ..Default::default()
    };
    let (reg, fixture, refs, dir, _layout) = seeded(RegistryMode::TlsHtpasswd, &spec);
    let out = dir.path().join("p.tar.zst");
    let cache = dir.path().join("cache");
    let refused = |r: &Run, names: &[&str]| {
        assert_eq!(r.code, 2, "{}\n{}", r.stderr, r.stdout);
        for n in names {
            assert!(r.stderr.contains(n), "{n} not named in: {}", r.stderr);
        }
        assert!(!out.exists(), "something at --out");
    };

    // A reference that does not exist (with one that does: nothing is written).
    let missing = format!("{}/src/no/such:1.0", reg.host());
    let r = pack(
        &reg,
        &out,
        &cache,
        &["--image", &refs[0], "--image", &missing],
    );
    refused(&r, &[&missing, "not found"]);

    // A reference without its registry host.
    let r = pack(&reg, &out, &cache, &["--image", "library/nginx:1.27"]);
    refused(&r, &["library/nginx:1.27", "no registry host"]);

    // The registry serves bytes that are not the blob asked for.
    let layer = fixture.images[0]
        .blobs
        .iter()
        .max_by_key(|b| b.size)
        .unwrap()
        .clone();
    let data = reg
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&layer.digest.hex()[..2])
        .join(layer.digest.hex())
        .join("data");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();
    let fresh = dir.path().join("cache-2");
    let gets = blob_gets(&reg, &layer.digest.to_string());
    let r = pack(&reg, &out, &fresh, &["--image", &refs[0]]);
    refused(
        &r,
        &[
            &layer.digest.to_string(),
            "src/anthos-baremetal-release/img-0",
        ],
    );
    assert_eq!(
        blob_gets(&reg, &layer.digest.to_string()),
        gets + 1,
        "a mismatch is not retried"
    );
    assert!(!cached(&fresh).contains(&layer.digest.to_string()));

    // A tag pointing at a manifest over 4 MiB (the fake registry: distribution refuses to store one).
    let fake = FakeRegistry::start();
    let mut huge = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"pad":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 4 << 20));
    huge.extend_from_slice(br#""}}"#);
    fake.add_manifest("big/image", "1.0", media::OCI_MANIFEST, &huge);
    let big = format!("{}/big/image:1.0", fake.addr());
    let mut cmd = pack_cmd(
        &out,
        &dir.path().join("cache-3"),
        &["--image", &big, "--plain-http", &fake.addr()],
    );
    let r = run(without_proxies(&mut cmd));
    refused(&r, &[&big, "4 MiB"]);
}

#[test]
fn local_sources_a_layout_directory_and_a_package_file_are_packed_by_their_names() {
    let spec = FixtureSpec {
        seed: 304,
        images: 2,
        layers_per_image: 1,
        layer_size: 32 * 1024,
        multi_arch_every: 2,
        ..Default::default()
    };
    let (dir, layout, fixture) = generated(&spec);
    let archive = dir.path().join("images.tar");
    ferry_testkit::write_package(
        &layout,
        ferry_testkit::PackageFormat::Tar,
        &ferry_testkit::PackageOptions::default(),
        &archive,
    )
    .unwrap();
    for (from, cache) in [(&layout, "cache-a"), (&archive, "cache-b")] {
        let out = dir.path().join(format!("{cache}.tar"));
        let mut cmd = pack_cmd(
            &out,
            &dir.path().join(cache),
            &["--compress", "none", "--json"],
        );
        cmd.arg("--from").arg(from);
        let r = run(&mut cmd);
        assert_eq!(r.code, 0, "{}: {}\n{}", from.display(), r.stderr, r.stdout);
        let s = summary(&r);
        let names: BTreeSet<&str> = s["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap())
            .collect();
        let want: BTreeSet<&str> = fixture
            .images
            .iter()
            .map(|i| i.reference.as_str())
            .collect();
        assert_eq!(names, want);
        for i in s["images"].as_array().unwrap() {
            assert!(i["requested"]
                .as_str()
                .unwrap()
                .starts_with(&from.display().to_string()));
        }
        // skopeo reads the plain tar as an oci-archive.
        let reference = &fixture.images[0].reference;
        let raw = ferry_e2e::skopeo_ok(&[
            "inspect",
            "--raw",
            &format!("oci-archive:{}:{reference}", out.display()),
        ]);
        assert_eq!(Digest::sha256_of(&raw), fixture.images[0].descriptor.digest);
    }
}

#[test]
fn two_source_registries_each_with_its_own_ca_and_credentials() {
    let spec = |seed| FixtureSpec {
        seed,
        images: 1,
        layers_per_image: 1,
        layer_size: 64 * 1024,
        ..Default::default()
    };
    let start = |password: &str, seed| {
        let (dir, layout, fixture) = generated(&spec(seed));
        let reg = Registry::start(RegistryOptions {
            password: password.to_owned(),
            ..RegistryOptions::new(RegistryMode::TlsHtpasswd)
        })
        .unwrap();
        let r = push(&reg, &layout, "src", &[]);
        assert_eq!(r.code, 0, "seeding: {}", r.stderr);
        let reference = format!(
            "{}/src/{}",
            reg.host(),
            fixture.images[0].reference.split_once('/').unwrap().1
        );
        (reg, reference, fixture, dir)
    };
    let (a, ref_a, fix_a, dir) = start("first-Pa55", 305);
    let (b, ref_b, fix_b, _dir_b) = start("second-Pa55", 306);
    let mut args: Vec<String> = vec![
        "--json".into(),
        "--image".into(),
        ref_a.clone(),
        "--image".into(),
        ref_b.clone(),
    ];
    for reg in [&a, &b] {
        let (user, pass) = reg.credentials().unwrap();
        let file = dir.path().join(format!("{}.pw", reg.port()));
        std::fs::write(&file, pass).unwrap();
        args.push("--credentials-for".into());
        args.push(format!("{}={user}:{}", reg.host(), file.display()));
        args.push("--cacert-for".into());
        args.push(format!(
            "{}={}",
            reg.host(),
            reg.ca_cert_path().unwrap().display()
        ));
    }
    let out = dir.path().join("two.tar.zst");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = pack_cmd(&out, &dir.path().join("cache"), &args);
    let r = run(without_proxies(&mut cmd));
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    let s = summary(&r);
    let digests: BTreeSet<&str> = s["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["digest"].as_str().unwrap())
        .collect();
    let want: BTreeSet<String> = [&fix_a, &fix_b]
        .iter()
        .map(|f| f.images[0].descriptor.digest.to_string())
        .collect();
    assert_eq!(digests, want.iter().map(String::as_str).collect());
    assert!(a.count_requests("GET", "/blobs/") > 0 && b.count_requests("GET", "/blobs/") > 0);
    // A host that is no image's registry is refused by name.
    let mut cmd = pack_cmd(
        &out,
        &dir.path().join("cache"),
        &["--image", &ref_a, "--cacert-for", "10.9.9.9:5000=x.pem"],
    );
    let r = run(without_proxies(&mut cmd));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("10.9.9.9:5000"), "{}", r.stderr);
}
