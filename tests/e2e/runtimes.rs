//! Real container runtimes pull every image of a pushed package through the
//! mirror configuration ferry itself writes (`ferry-mirror-config --out`):
//! containerd (`ctr`, its own daemon on its own socket and state directories)
//! through `hosts.toml`, Podman through `registries.conf` and `certs.d`. The
//! pulled digests must equal the package's and the registry's access log must
//! show the runtime's own requests for every image, under the pushed namespace.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferry_e2e::registry_push::{basic_auth, package, push, target, Pkg};
use ferry_e2e::{bin, run, without_proxies, Run};
use ferry_store::Digest;
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions};

/// Runs `ferry-mirror-config` for `reg` (namespace `ns`, its CA, upstream hosts
/// from the package) writing `format` below `out`; panics unless it succeeds.
fn mirror_config(reg: &Registry, ns: &str, pkg: &Pkg, format: &str, air_gap: bool, out: &Path) {
    mirror_config_for(reg, ns, &pkg.path, format, air_gap, out)
}

/// [`mirror_config`] for the package at `source`.
fn mirror_config_for(
    reg: &Registry,
    ns: &str,
    source: &Path,
    format: &str,
    air_gap: bool,
    out: &Path,
) {
    let mut cmd = Command::new(bin("ferry-mirror-config"));
    cmd.arg("--private-registry")
        .arg(target(reg, ns))
        .arg("--source")
        .arg(source)
        .args(["--format", format])
        .arg("--out")
        .arg(out);
    if let Some(ca) = reg.ca_cert_path() {
        cmd.arg("--cacert").arg(ca);
    }
    if air_gap {
        cmd.arg("--air-gap");
    }
    let r = run(&mut cmd);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
}

/// A TLS + htpasswd registry holding `pkg` pushed under `ns`.
fn registry_with(pkg: &Pkg, ns: &str) -> Registry {
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    let r = push(&reg, &pkg.path, ns, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    reg
}

/// `user:password` of the registry.
fn user_colon_password(reg: &Registry) -> String {
    let (user, password) = reg.credentials().expect("an htpasswd registry");
    format!("{user}:{password}")
}

/// The repository `reference` (`gcr.io/PATH:TAG`) was pushed to under `ns`.
fn pushed_repository(ns: &str, reference: &str) -> String {
    let path = reference.split_once('/').expect("HOST/PATH").1;
    let repo = path.rsplit_once(':').expect("PATH:TAG").0;
    if ns.is_empty() {
        repo.to_owned()
    } else {
        format!("{ns}/{repo}")
    }
}

/// `reference` by digest: `gcr.io/PATH@DIGEST`.
fn by_digest(reference: &str, digest: &Digest) -> String {
    let name = reference.rsplit_once(':').expect("NAME:TAG").0;
    format!("{name}@{digest}")
}

/// The registry's access-log lines of requests sent with a user agent containing `agent`.
fn requests_from(reg: &Registry, agent: &str) -> Vec<String> {
    reg.log()
        .lines()
        .filter(|l| l.contains("\"GET /v2/") || l.contains("\"HEAD /v2/"))
        .filter(|l| l.rsplit('"').nth(1).is_some_and(|ua| ua.contains(agent)))
        .map(str::to_owned)
        .collect()
}

/// Every image's manifest was asked for by the runtime (user agent `agent`) in
/// its pushed repository under `ns`.
fn assert_runtime_asked_for_every_image(reg: &Registry, agent: &str, ns: &str, pkg: &Pkg) {
    let lines = requests_from(reg, agent);
    for image in &pkg.fixture.images {
        let want = format!("/v2/{}/manifests/", pushed_repository(ns, &image.reference));
        assert!(
            lines.iter().any(|l| l.contains(&want)),
            "no {agent} request for {want} in the access log:\n{}",
            reg.log()
        );
    }
}

// ---------------------------------------------------------------------------
// containerd

/// A containerd daemon of its own (root, state, socket and plugin directories
/// in a temp dir, the CRI plugin off); killed by PID on drop.
struct Containerd {
    child: Child,
    socket: PathBuf,
    // Last: removed after the daemon is gone.
    dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("ferry-ctd-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        let socket = d.join("c.sock");
        let config = d.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = {root:?}\nstate = {state:?}\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = {sock:?}\n[ttrpc]\n  address = {ttrpc:?}\n\
                 [plugins.\"io.containerd.internal.v1.opt\"]\n  path = {opt:?}\n",
                root = d.join("root"),
                state = d.join("state"),
                sock = socket,
                ttrpc = d.join("c.sock.ttrpc"),
                opt = d.join("opt"),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(d.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd is installed (scripts/install-deps.sh)");
        let mut ctd = Containerd { child, socket, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while ctd.ctr(&["version"]).code != 0 {
            assert!(
                Instant::now() < deadline && ctd.child.try_wait().unwrap().is_none(),
                "containerd did not start:\n{}",
                std::fs::read_to_string(ctd.dir.path().join("containerd.log")).unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ctd
    }

    /// Runs `ctr --address SOCKET ARGS…` (no proxies).
    fn ctr(&self, args: &[&str]) -> Run {
        run(without_proxies(
            Command::new("ctr")
                .arg("--address")
                .arg(&self.socket)
                .args(args),
        ))
    }

    /// The digest `ctr images ls` shows for `name`.
    fn image_digest(&self, name: &str) -> Option<String> {
        let r = self.ctr(&["images", "ls"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        r.stdout.lines().find_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.first() == Some(&name)).then(|| cols[2].to_owned())
        })
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// containerd pulls every image of the package (all platforms, unpacked),
/// by tag and then, in a fresh daemon, by digest, through the hosts.toml
/// ferry wrote, from the TLS + htpasswd registry.
fn containerd_pulls_through_hosts_toml(ns: &str, air_gap: bool, seed: u64) {
    let pkg = package(seed, 48 * 1024);
    let reg = registry_with(&pkg, ns);
    let out = pkg.dir.join("mirror-config");
    mirror_config(&reg, ns, &pkg, "containerd", air_gap, &out);
    let hosts_dir = out.join("etc/containerd/certs.d");
    assert!(hosts_dir.join("gcr.io/hosts.toml").is_file());
    let user = user_colon_password(&reg);

    for digest_refs in [false, true] {
        let ctd = Containerd::start();
        for image in &pkg.fixture.images {
            let name = if digest_refs {
                by_digest(&image.reference, &image.descriptor.digest)
            } else {
                image.reference.clone()
            };
            let r = ctd.ctr(&[
                "images",
                "pull",
                "--all-platforms",
                "--snapshotter",
                "native",
                "--hosts-dir",
                hosts_dir.to_str().unwrap(),
                "--user",
                &user,
                &name,
            ]);
            assert_eq!(r.code, 0, "ctr pull {name}: {}\n{}", r.stderr, r.stdout);
            assert_eq!(
                ctd.image_digest(&name).as_deref(),
                Some(image.descriptor.digest.to_string().as_str()),
                "{name}"
            );
        }
        // Every blob of the package (configs, layers, child manifests) came from the mirror.
        let lines = requests_from(&reg, "containerd/");
        for blob in pkg.fixture.unique_blobs() {
            assert!(
                lines.iter().any(|l| l.contains(&blob.digest.to_string())),
                "containerd never asked for {}:\n{}",
                blob.digest,
                lines.join("\n")
            );
        }
        // Mirror requests name the upstream host they stand in for.
        assert!(
            lines.iter().all(|l| l.contains("ns=gcr.io")),
            "{}",
            lines.join("\n")
        );
    }
    assert_runtime_asked_for_every_image(&reg, "containerd/", ns, &pkg);
}

/// `ferry-pack --platform linux/amd64` of a multi-arch image writes a new,
/// smaller index (another digest, recorded beside the source's); pushed into
/// the private registry, containerd pulls it by tag through the printed
/// hosts.toml and gets exactly that index (with every platform asked for, it
/// finds only amd64), while a pull by the source index's digest is not served.
#[test]
fn containerd_pulls_a_platform_filtered_pack_by_tag() {
    let spec = ferry_testkit::FixtureSpec {
        seed: 147,
        images: 1,
        layers_per_image: 2,
        layer_size: 64 * 1024,
        multi_arch_every: 1,
        ..Default::default()
    };
    let (dir, layout, fixture) = ferry_e2e::registry_push::generated(&spec);
    let source = registry_with_layout(&layout, "");
    let image = &fixture.images[0];
    let source_ref = format!(
        "{}/{}",
        source.host(),
        image.reference.split_once('/').unwrap().1
    );
    let pkg = dir.path().join("amd64-only.tar.zst");
    let mut cmd = Command::new(bin("ferry-pack"));
    cmd.arg("--out")
        .arg(&pkg)
        .arg("--cache")
        .arg(dir.path().join("cache"))
        .args([
            "--platform",
            "linux/amd64",
            "--image",
            &source_ref,
            "--json",
        ])
        .arg("--cacert")
        .arg(source.ca_cert_path().unwrap());
    let (user, pass) = source.credentials().unwrap();
    cmd.args(["--username", &user, "--password-stdin"]);
    let r: Run = ferry_e2e::spawn_with_input(without_proxies(&mut cmd), pass.as_bytes())
        .wait_with_output()
        .unwrap()
        .into();
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    // It says what happened to the index digest.
    let said = format!("{}{}", r.stderr, r.stdout);
    assert!(
        said.contains(&image.descriptor.digest.to_string()),
        "{said}"
    );
    let verify = run(Command::new(bin("ferry-verify")).arg(&pkg));
    assert_eq!(verify.code, 0, "{}", verify.stderr);
    let e = ferry_e2e::export(&pkg, &dir.path().join("store"), &[]);
    assert_eq!(e.code, 0, "{}", e.stderr);
    let index = ferry_testkit::read_index(&dir.path().join("store")).unwrap();
    let filtered = index[0].digest.clone();
    assert_ne!(
        filtered, image.descriptor.digest,
        "a filtered index has another digest"
    );

    let mirror = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    let p = push(&mirror, &pkg, "m", &[]);
    assert_eq!(p.code, 0, "{}\n{}", p.stderr, p.stdout);
    let out = dir.path().join("mirror-config");
    mirror_config_for(&mirror, "m", &pkg, "containerd", false, &out);
    let hosts_dir = out.join("etc/containerd/certs.d");
    let user = user_colon_password(&mirror);
    let ctd = Containerd::start();
    let pull = |name: &str| {
        ctd.ctr(&[
            "images",
            "pull",
            "--all-platforms",
            "--snapshotter",
            "native",
            "--hosts-dir",
            hosts_dir.to_str().unwrap(),
            "--user",
            &user,
            name,
        ])
    };
    let r = pull(&source_ref);
    assert_eq!(
        r.code, 0,
        "ctr pull {source_ref}: {}\n{}",
        r.stderr, r.stdout
    );
    assert_eq!(ctd.image_digest(&source_ref), Some(filtered.to_string()));
    let by_source_digest = by_digest(&source_ref, &image.descriptor.digest);
    let r = pull(&by_source_digest);
    assert_ne!(
        r.code, 0,
        "the source index's digest is not in the mirror: {}",
        r.stdout
    );
}

/// A TLS + htpasswd registry holding the layout at `layout` pushed under `ns`.
fn registry_with_layout(layout: &Path, ns: &str) -> Registry {
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    let r = push(&reg, layout, ns, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, r.stdout);
    reg
}

#[test]
fn containerd_pulls_every_image_through_a_namespaced_hosts_toml() {
    containerd_pulls_through_hosts_toml("mirror", false, 141);
}

#[test]
fn containerd_pulls_every_image_without_a_namespace_in_an_air_gap() {
    containerd_pulls_through_hosts_toml("", true, 142);
}

#[test]
fn containerd_pulls_every_image_through_a_namespaced_air_gap_server() {
    containerd_pulls_through_hosts_toml("mirror", true, 143);
}

// ---------------------------------------------------------------------------
// Podman

/// Podman pulls every image (its linux/amd64 instance, unpacked into vfs
/// storage), by tag and then, into fresh storage, by digest, through the
/// registries.conf drop-in and the certs.d CA ferry wrote.
fn podman_pulls_through_registries_conf(ns: &str, air_gap: bool, seed: u64) {
    let pkg = package(seed, 48 * 1024);
    let reg = registry_with(&pkg, ns);
    let out = pkg.dir.join("mirror-config");
    mirror_config(&reg, ns, &pkg, "cri-o", air_gap, &out);
    let conf = out.join("etc/containers/registries.conf.d/50-ferry-mirror.conf");
    let cert_dir = out.join("etc/containers/certs.d").join(reg.host());
    assert!(cert_dir.join("ca.crt").is_file());
    // Podman sends --creds to the upstream host only, never to a mirror:
    // the mirror's credentials come from an auth file (as `podman login` writes).
    let (user, password) = reg.credentials().expect("an htpasswd registry");
    let auth_file = pkg.dir.join("auth.json");
    std::fs::write(
        &auth_file,
        serde_json::json!({"auths": {reg.host(): {"auth": basic_auth(&user, &password)}}})
            .to_string(),
    )
    .unwrap();

    for digest_refs in [false, true] {
        let storage = tempfile::Builder::new()
            .prefix("ferry-podman-")
            .tempdir()
            .unwrap();
        let podman = |args: &[&str]| -> Run {
            run(without_proxies(
                Command::new("podman")
                    .env("CONTAINERS_REGISTRIES_CONF", &conf)
                    .arg("--root")
                    .arg(storage.path().join("root"))
                    .arg("--runroot")
                    .arg(storage.path().join("run"))
                    .args(["--storage-driver", "vfs"])
                    .args(args),
            ))
        };
        for image in &pkg.fixture.images {
            let name = if digest_refs {
                by_digest(&image.reference, &image.descriptor.digest)
            } else {
                image.reference.clone()
            };
            let r = podman(&[
                "pull",
                "--quiet",
                "--cert-dir",
                cert_dir.to_str().unwrap(),
                "--authfile",
                auth_file.to_str().unwrap(),
                &name,
            ]);
            assert_eq!(r.code, 0, "podman pull {name}: {}\n{}", r.stderr, r.stdout);
            let r = podman(&[
                "image",
                "inspect",
                "--format",
                "{{json .RepoDigests}}",
                &name,
            ]);
            assert_eq!(r.code, 0, "{}", r.stderr);
            let want = by_digest(&image.reference, &image.descriptor.digest);
            assert!(
                r.stdout.contains(&want),
                "{name}: podman holds {} and not {want}",
                r.stdout
            );
        }
    }
    assert_runtime_asked_for_every_image(&reg, "containers/", ns, &pkg);
}

#[test]
fn podman_pulls_every_image_through_a_namespaced_mirror_and_certs_d() {
    podman_pulls_through_registries_conf("mirror", false, 144);
}

#[test]
fn podman_pulls_every_image_without_a_namespace_in_an_air_gap() {
    podman_pulls_through_registries_conf("", true, 145);
}
