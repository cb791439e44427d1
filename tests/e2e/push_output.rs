//! What ferry-push tells the user and the cluster after a push, checked
//! against a real registry (distribution v2.8 started by the testkit).

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};

use ferry_e2e::registry_push::{assert_registry_has_package, generated, package, push, Pkg};
use ferry_e2e::summary;
use ferry_store::{media, Descriptor, Digest};
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions};
use ferry_testkit::{write_package, FixtureSpec, PackageFormat, PackageOptions};

/// Generates `spec` and packages it as a `.tar.zst` named `name`.
fn packaged_spec(spec: &FixtureSpec, opts: &PackageOptions, name: &str) -> Pkg {
    let (dir, layout, fixture) = generated(spec);
    let path = dir.path().join(name);
    write_package(&layout, PackageFormat::TarZst, opts, &path).unwrap();
    Pkg {
        dir: dir.path().to_path_buf(),
        tempdir: dir,
        path,
        fixture,
    }
}

/// `gcr.io/a/b:1` → `a/b:1` (the path and tag kept by the mirror mapping).
fn path_of(reference: &str) -> &str {
    reference.split_once('/').unwrap().1
}

/// The target reference ferry shows: `127.0.0.1:PORT/NS/a/b:1`.
fn shown(reg: &Registry, ns: &str, reference: &str) -> String {
    format!("{}/{ns}/{}", reg.host(), path_of(reference))
}

/// The repository an image goes to: `NS/a/b`.
fn repository(ns: &str, reference: &str) -> String {
    let path = path_of(reference);
    format!("{ns}/{}", path.rsplit_once(':').unwrap().0)
}

fn count(summary: &serde_json::Value, field: &str) -> u64 {
    summary[field]
        .as_u64()
        .unwrap_or_else(|| panic!("summary has no count {field}: {summary}"))
}

/// Configs and layers (not manifests or indexes), by digest.
fn leaves(blobs: &[Descriptor]) -> BTreeMap<Digest, u64> {
    blobs
        .iter()
        .filter(|d| !media::is_manifest_like(&d.media_type))
        .map(|d| (d.digest.clone(), d.size))
        .collect()
}

// ---------------------------------------------------------------------------
// The registry's access log, in order.

/// One combined-format access-log line:
/// `HOST - USER [DATE] "METHOD URI PROTO" STATUS SIZE "REFERER" "UA"`.
#[derive(Debug, Clone)]
struct Access {
    method: String,
    uri: String,
    status: u16,
}

impl Access {
    /// The repository of a `/v2/<repo>/manifests/…` or `/v2/<repo>/blobs/…` URI.
    fn repository(&self) -> Option<&str> {
        let rest = self.uri.strip_prefix("/v2/")?;
        let end = rest.find("/manifests/").or_else(|| rest.find("/blobs/"))?;
        Some(&rest[..end])
    }

    /// The manifest reference (tag or digest) of a manifests URI.
    fn manifest_ref(&self) -> Option<&str> {
        let r = self.uri.split_once("/manifests/")?.1;
        Some(r.split('?').next().unwrap_or(r))
    }

    /// A query parameter, percent-decoded.
    fn param(&self, name: &str) -> Option<String> {
        let query = self.uri.split_once('?')?.1;
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| percent_decode(v))
    }

    fn is_blob_put(&self) -> bool {
        self.method == "PUT" && self.uri.contains("/blobs/uploads/")
    }

    fn is_mount(&self) -> bool {
        self.method == "POST" && self.uri.contains("/blobs/uploads/") && self.uri.contains("mount=")
    }

    fn is_manifest_put(&self) -> bool {
        self.method == "PUT" && self.uri.contains("/manifests/")
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap()
}

fn parse_access(line: &str) -> Option<Access> {
    let rest = &line[line.find("] \"")? + 3..];
    let end = rest.find('"')?;
    let mut parts = rest[..end].split(' ');
    let method = parts.next()?.to_owned();
    let uri = parts.next()?.to_owned();
    if !parts.next()?.starts_with("HTTP/") {
        return None;
    }
    let status = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
    Some(Access {
        method,
        uri,
        status,
    })
}

fn access_log(reg: &Registry) -> Vec<Access> {
    reg.log().lines().filter_map(parse_access).collect()
}

/// No progress bar, carriage return or terminal escape in `text`.
fn assert_no_progress(what: &str, text: &str) {
    for bad in ["\r", "\x1b[", "push [", "staging [", "ETA", "=>"] {
        assert!(
            !text.contains(bad),
            "{what} holds progress output ({bad:?}) off a TTY:\n{text}"
        );
    }
}

// ---------------------------------------------------------------------------

/// Off a terminal: one `pushed TARGET@DIGEST` line per image and no progress
/// bar; then the `registryMirrors:` stanza and containerd's hosts.toml naming
/// the CA given with --cacert; a rerun prints one `up to date` line per image.
#[test]
fn off_a_tty_one_line_per_image_and_the_mirror_config() {
    let pkg = package(61, 96 * 1024);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    let ca = reg.ca_cert_path().unwrap().display().to_string();
    let r = push(&reg, &pkg.path, "mirror", &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert_no_progress("stdout", &r.stdout);
    assert_no_progress("stderr", &r.stderr);

    let image_lines = |out: &str, verb: &str| -> Vec<String> {
        let mut v: Vec<String> = out
            .lines()
            .filter(|l| l.starts_with(&format!("{verb} {}/", reg.host())))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    let mut expected: Vec<String> = pkg
        .fixture
        .images
        .iter()
        .map(|i| {
            format!(
                "{}@{}",
                shown(&reg, "mirror", &i.reference),
                i.descriptor.digest
            )
        })
        .collect();
    expected.sort();
    let with =
        |verb: &str| -> Vec<String> { expected.iter().map(|e| format!("{verb} {e}")).collect() };
    assert_eq!(
        image_lines(&r.stdout, "pushed"),
        with("pushed"),
        "{}",
        r.stdout
    );
    assert!(
        image_lines(&r.stdout, "up to date").is_empty(),
        "{}",
        r.stdout
    );

    // The mirror configuration comes after the per-image lines.
    let endpoint = format!("https://{}/v2/mirror", reg.host());
    let at = r
        .stdout
        .find("registryMirrors:")
        .unwrap_or_else(|| panic!("no registryMirrors: in\n{}", r.stdout));
    let last_image = expected
        .iter()
        .map(|e| r.stdout.find(e.as_str()).unwrap())
        .max()
        .unwrap();
    assert!(
        last_image < at,
        "mirror config before the images:\n{}",
        r.stdout
    );
    let config = &r.stdout[at..];
    let lines: Vec<&str> = config.lines().map(str::trim).collect();
    for want in [
        format!("- endpoint: {endpoint}"),
        format!("caCertPath: {ca}"),
        "hosts:".to_owned(),
        "- gcr.io".to_owned(),
        "# containerd: /etc/containerd/certs.d/gcr.io/hosts.toml".to_owned(),
        "server = \"https://gcr.io\"".to_owned(),
        format!("[host.\"{endpoint}\"]"),
        "capabilities = [\"pull\", \"resolve\"]".to_owned(),
        format!("ca = \"{ca}\""),
        "override_path = true".to_owned(),
    ] {
        assert!(
            lines.contains(&want.as_str()),
            "mirror config lacks the line {want:?}:\n{config}"
        );
    }
    // The hosts.toml part follows the bmctl stanza.
    assert!(
        config.find("registryMirrors:") < config.find("hosts.toml"),
        "{config}"
    );
    assert_registry_has_package(&reg, "mirror", &pkg);

    let again = push(&reg, &pkg.path, "mirror", &[]);
    assert_eq!(again.code, 0, "{}\n{}", again.stderr, again.stdout);
    assert_no_progress("stdout", &again.stdout);
    assert_no_progress("stderr", &again.stderr);
    assert_eq!(
        image_lines(&again.stdout, "up to date"),
        with("up to date"),
        "{}",
        again.stdout
    );
    assert!(
        image_lines(&again.stdout, "pushed").is_empty(),
        "{}",
        again.stdout
    );
}

/// The `--json` summary agrees with what the registry's access log shows:
/// every image with its target and digest, one completed upload per blob
/// uploaded, their bytes; a forced rerun uploads nothing and counts every
/// blob it checked as present.
#[test]
fn json_summary_counts_match_the_registry() {
    let pkg = package(62, 128 * 1024);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Tls)).unwrap();
    let ns = "counted";
    let r = push(&reg, &pkg.path, ns, &["--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    let s = summary(&r);

    // Images: one entry per fixture image, with its target and digest.
    let images = s["images"].as_array().unwrap();
    assert_eq!(images.len(), pkg.fixture.images.len(), "{s}");
    for image in &pkg.fixture.images {
        let entries: Vec<_> = images
            .iter()
            .filter(|e| e["source"] == image.reference.as_str())
            .collect();
        assert_eq!(entries.len(), 1, "{} in {s}", image.reference);
        assert_eq!(
            entries[0]["target"],
            shown(&reg, ns, &image.reference).as_str(),
            "{s}"
        );
        assert_eq!(
            entries[0]["digest"],
            image.descriptor.digest.to_string().as_str(),
            "{s}"
        );
    }

    // The access log: sessions opened, uploads completed, mounts.
    let log = access_log(&reg);
    let opened = log
        .iter()
        .filter(|a| a.method == "POST" && a.uri.contains("/blobs/uploads/") && a.status == 202)
        .count() as u64;
    let plain_posts = log
        .iter()
        .filter(|a| a.method == "POST" && a.uri.contains("/blobs/uploads/") && !a.is_mount())
        .count() as u64;
    let mounts_fell_back = log
        .iter()
        .filter(|a| a.is_mount() && a.status == 202)
        .count() as u64;
    let mounted = log
        .iter()
        .filter(|a| a.is_mount() && a.status == 201)
        .count() as u64;
    let completed: Vec<Digest> = log
        .iter()
        .filter(|a| a.is_blob_put() && a.status == 201)
        .map(|a| a.param("digest").unwrap().parse().unwrap())
        .collect();
    let unique_leaves = leaves(&pkg.fixture.unique_blobs());
    let uploaded = count(&s, "blobs_uploaded");
    assert!(uploaded > 0, "{s}");
    assert_eq!(
        uploaded,
        plain_posts + mounts_fell_back,
        "blobs_uploaded vs upload POSTs (mounts excluded) in the access log: {s}"
    );
    assert_eq!(uploaded, opened, "{s}");
    assert_eq!(uploaded, completed.len() as u64, "{s}");
    // Each distinct config and layer is uploaded exactly once (the others mounted).
    let completed_set: BTreeSet<&Digest> = completed.iter().collect();
    assert_eq!(
        completed_set.len(),
        completed.len(),
        "a blob was uploaded twice"
    );
    assert_eq!(
        completed_set,
        unique_leaves.keys().collect::<BTreeSet<_>>(),
        "uploaded blobs are not the package's configs and layers"
    );
    let bytes: u64 = completed.iter().map(|d| unique_leaves[d]).sum();
    assert_eq!(count(&s, "bytes_uploaded"), bytes, "{s}");
    assert_eq!(count(&s, "blobs_mounted"), mounted, "{s}");
    let seconds = s["seconds"].as_f64().unwrap();
    assert!(seconds > 0.0, "{s}");
    assert_eq!(count(&s, "images_up_to_date"), 0, "{s}");

    // Rerun with --force: everything is checked, nothing sent.
    let before = log.len();
    let again = push(&reg, &pkg.path, ns, &["--force", "--json"]);
    assert_eq!(again.code, 0, "{}\n{}", again.stderr, again.stdout);
    let s2 = summary(&again);
    let rerun: Vec<Access> = access_log(&reg).split_off(before);
    assert!(!rerun.is_empty(), "the rerun is not in the access log");
    assert_eq!(count(&s2, "blobs_uploaded"), 0, "{s2}");
    assert_eq!(count(&s2, "bytes_uploaded"), 0, "{s2}");
    assert_eq!(count(&s2, "blobs_mounted"), 0, "{s2}");
    assert!(
        !rerun
            .iter()
            .any(|a| matches!(a.method.as_str(), "POST" | "PATCH" | "PUT")),
        "a forced rerun sent something: {:?}",
        rerun
            .iter()
            .filter(|a| a.method != "HEAD" && a.method != "GET")
            .collect::<Vec<_>>()
    );
    let checked = rerun
        .iter()
        .filter(|a| a.method == "HEAD" && a.uri.contains("/blobs/sha256:") && a.status == 200)
        .count() as u64;
    // (repository, blob) pairs of the package: each is checked once.
    let pairs: BTreeSet<(String, Digest)> = pkg
        .fixture
        .images
        .iter()
        .flat_map(|i| {
            let repo = repository(ns, &i.reference);
            leaves(&i.blobs).into_keys().map(move |d| (repo.clone(), d))
        })
        .collect();
    let skipped = count(&s2, "blobs_skipped");
    assert!(skipped > 0, "{s2}");
    assert_eq!(
        skipped, checked,
        "blobs_skipped vs blob HEADs answered 200: {s2}"
    );
    assert_eq!(skipped, pairs.len() as u64, "{s2}");
}

/// Images sharing a base layer: it is uploaded once and mounted into the
/// other repositories (POST `?mount=…&from=…` answered 201), from a
/// repository that already held it, and the summary counts those mounts.
#[test]
fn shared_layers_are_mounted_across_repositories() {
    let pkg = packaged_spec(
        &FixtureSpec {
            seed: 63,
            images: 3,
            layers_per_image: 2,
            layer_size: 128 * 1024,
            shared_base_layer: true,
            ..Default::default()
        },
        &PackageOptions::default(),
        "bmpackages_shared.tar.zst",
    );
    // Each leaf blob, with the repositories that need it.
    let ns = "shared";
    let mut needed: BTreeMap<Digest, BTreeSet<String>> = BTreeMap::new();
    for i in &pkg.fixture.images {
        for d in leaves(&i.blobs).into_keys() {
            needed
                .entry(d)
                .or_default()
                .insert(repository(ns, &i.reference));
        }
    }
    let expected_mounts: u64 = needed.values().map(|r| r.len() as u64 - 1).sum();
    assert!(expected_mounts >= 2, "the fixture shares no layer");

    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsToken)).unwrap();
    let r = push(&reg, &pkg.path, ns, &["--json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    let s = summary(&r);
    let log = access_log(&reg);
    let mounts: Vec<(usize, &Access)> = log
        .iter()
        .enumerate()
        .filter(|(_, a)| a.is_mount())
        .collect();
    assert!(
        mounts
            .iter()
            .all(|(_, a)| a.param("mount").is_some() && a.param("from").is_some()),
        "{mounts:?}"
    );
    let answered: Vec<&(usize, &Access)> = mounts.iter().filter(|(_, a)| a.status == 201).collect();
    assert!(
        !answered.is_empty(),
        "no mount was answered 201: {mounts:?}"
    );
    let mounted = count(&s, "blobs_mounted");
    assert!(mounted > 0, "{s}");
    assert_eq!(mounted, answered.len() as u64, "{s}");
    assert_eq!(mounted, expected_mounts, "{s}");
    // Each mount names a blob the target repository needs, from a repository
    // that got it (upload or mount) earlier in the log.
    for (at, m) in &answered {
        let digest: Digest = m.param("mount").unwrap().parse().unwrap();
        let from = m.param("from").unwrap();
        let repo = m.repository().unwrap();
        assert!(
            needed.get(&digest).is_some_and(|r| r.contains(repo)),
            "{digest} mounted into {repo}, which does not need it"
        );
        assert_ne!(from, repo);
        let held = log[..*at].iter().any(|a| {
            a.repository() == Some(from.as_str())
                && a.status == 201
                && ((a.is_blob_put() && a.param("digest").as_deref() == Some(&digest.to_string()))
                    || (a.is_mount() && a.param("mount").as_deref() == Some(&digest.to_string())))
        });
        assert!(held, "{digest} mounted from {from} before it was there");
    }
    // Shared blobs were uploaded once, not once per repository.
    assert_eq!(count(&s, "blobs_uploaded"), needed.len() as u64, "{s}");
    assert_registry_has_package(&reg, ns, &pkg);
}

/// Commit order, per repository, from the access log: every blob is in before
/// any manifest; child manifests before their index; tags after every
/// manifest by digest (a client that sees the tag finds the whole image).
#[test]
fn tags_are_set_only_after_the_manifests_they_point_to() {
    let pkg = package(64, 96 * 1024);
    assert!(
        pkg.fixture
            .images
            .iter()
            .any(|i| i.descriptor.media_type.contains("index")
                || i.descriptor.media_type.contains("list")),
        "no multi-arch image in the fixture"
    );
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    let ns = "ordered";
    let r = push(&reg, &pkg.path, ns, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    let log = access_log(&reg);
    let ok: Vec<(usize, &Access)> = log
        .iter()
        .enumerate()
        .filter(|(_, a)| a.status == 201)
        .collect();
    for image in &pkg.fixture.images {
        let repo = repository(ns, &image.reference);
        let tag = image.reference.rsplit_once(':').unwrap().1;
        let mine: Vec<&(usize, &Access)> = ok
            .iter()
            .filter(|(_, a)| a.repository() == Some(repo.as_str()))
            .collect();
        let blobs: Vec<usize> = mine
            .iter()
            .filter(|(_, a)| a.is_blob_put() || a.is_mount())
            .map(|(i, _)| *i)
            .collect();
        let by_digest: Vec<(usize, String)> = mine
            .iter()
            .filter(|(_, a)| a.is_manifest_put())
            .filter(|(_, a)| a.manifest_ref().unwrap().starts_with("sha256:"))
            .map(|(i, a)| (*i, a.manifest_ref().unwrap().to_owned()))
            .collect();
        let tags: Vec<usize> = mine
            .iter()
            .filter(|(_, a)| a.is_manifest_put())
            .filter(|(_, a)| !a.manifest_ref().unwrap().starts_with("sha256:"))
            .map(|(i, _)| *i)
            .collect();
        let manifests: Vec<&Descriptor> = image
            .blobs
            .iter()
            .filter(|d| media::is_manifest_like(&d.media_type))
            .collect();
        assert_eq!(
            tags.len(),
            1,
            "{repo}: expected one tag PUT ({tag}), got {}",
            tags.len()
        );
        assert_eq!(
            mine.iter()
                .filter(|(_, a)| a.is_manifest_put() && a.manifest_ref() == Some(tag))
                .count(),
            1,
            "{repo}: the tag PUT is not {tag}"
        );
        assert_eq!(
            by_digest.len(),
            manifests.len(),
            "{repo}: manifests PUT by digest vs the image's manifests"
        );
        assert_eq!(
            blobs.len(),
            leaves(&image.blobs).len(),
            "{repo}: blobs uploaded or mounted"
        );
        let last_blob = *blobs.iter().max().unwrap();
        let first_manifest = by_digest.iter().map(|(i, _)| *i).min().unwrap();
        let last_manifest = by_digest.iter().map(|(i, _)| *i).max().unwrap();
        assert!(
            last_blob < first_manifest,
            "{repo}: a manifest was PUT before a blob it needs was in"
        );
        assert!(
            last_manifest < tags[0],
            "{repo}: tag {tag} was set before a manifest PUT by digest"
        );
        // Children before the index that lists them.
        let root = image.descriptor.digest.to_string();
        let root_at = by_digest
            .iter()
            .find(|(_, d)| *d == root)
            .unwrap_or_else(|| panic!("{repo}: {root} never PUT by digest"))
            .0;
        assert_eq!(root_at, last_manifest, "{repo}: a child after its index");
    }
}

/// Staging, when asked with --staging: stderr states the space needed and
/// available before writing; the staged store is about the package's
/// unpacked size (not a multiple of it).
#[test]
fn staging_when_asked_prints_the_space_it_needs() {
    let pkg = packaged_spec(
        &FixtureSpec {
            seed: 65,
            images: 3,
            layers_per_image: 2,
            layer_size: 2 << 20,
            multi_arch_every: 3,
            ..Default::default()
        },
        &PackageOptions {
            layers_first: true,
            ..Default::default()
        },
        "bmpackages_layers_first.tar.zst",
    );
    // The package's unpacked size: its tar, decompressed.
    let mut zstd = Command::new("zstd")
        .arg("-dcq")
        .arg(&pkg.path)
        .stdout(Stdio::piped())
        .spawn()
        .expect("zstd installed");
    let unpacked = std::io::copy(&mut zstd.stdout.take().unwrap(), &mut std::io::sink()).unwrap();
    assert!(zstd.wait().unwrap().success());

    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    let staging = pkg.dir.join("bmpackages_layers_first.tar.zst.ferry-store");
    assert!(!staging.exists());
    // Staging is only done when asked (a layers-first package is otherwise
    // pushed in one read through the holding repository).
    let r = push(
        &reg,
        &pkg.path,
        "staged",
        &["--staging", staging.to_str().unwrap()],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    assert_no_progress("stderr", &r.stderr);

    // ferry-push: staging PKG into DIR (needs about N MB; M MB available; kept for reruns)
    let prefix = format!(
        "ferry-push: staging {} into {} (needs about ",
        pkg.path.display(),
        staging.display()
    );
    let line = r
        .stderr
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no staging line with the space in:\n{}", r.stderr));
    let rest = line[prefix.len()..].to_owned();
    let (needed, rest) = rest.split_once(" MB; ").unwrap();
    let (available, rest) = rest.split_once(" MB available").unwrap();
    assert_eq!(rest, "; kept for reruns)", "{line}");
    let needed: u64 = needed.parse().unwrap();
    let available: u64 = available.parse().unwrap();
    assert_eq!(
        needed,
        unpacked / 1_000_000,
        "stated need vs the package's unpacked size ({unpacked} bytes): {line}"
    );
    // Free space of the staging filesystem now (the staged store is in it).
    let df = Command::new("df")
        .args(["-B1", "--output=avail"])
        .arg(&staging)
        .output()
        .unwrap();
    let now: u64 = String::from_utf8_lossy(&df.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let now_mb = now / 1_000_000;
    assert!(
        available + 1 >= now_mb && available <= now_mb + needed + 2048,
        "stated {available} MB available, df says {now_mb} MB after staging {needed} MB: {line}"
    );

    assert!(
        staging.join("index.json").is_file(),
        "{} is not a store",
        staging.display()
    );
    assert_registry_has_package(&reg, "staged", &pkg);

    // Size of the staged store, as files (apparent) and as allocated blocks.
    let (mut apparent, mut allocated) = (0u64, 0u64);
    let mut dirs = vec![staging.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = std::fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                dirs.push(e.path());
            } else {
                apparent += m.len();
                allocated += std::os::unix::fs::MetadataExt::blocks(&m) * 512;
            }
        }
    }
    let limit = unpacked + unpacked / 10;
    assert!(
        apparent <= limit && allocated <= limit,
        "staged store: {apparent} bytes ({allocated} allocated) for a package of {unpacked} unpacked (limit {limit})"
    );
    assert!(
        apparent >= pkg.fixture.total_blob_bytes(),
        "staged store smaller than the blobs"
    );
}
