//! Helpers for the push and diff end-to-end tests: generated packages, the
//! ferry-push/ferry-diff command line for a testkit registry (its CA, its
//! credentials on stdin, proxies cleared), and byte-for-byte checks of what
//! the registry holds with skopeo.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use ferry_store::{Descriptor, Digest};
use ferry_testkit::registry::{Registry, RegistryMode, SkopeoRole};
use ferry_testkit::{
    generate_layout, write_package, Fixture, FixtureSpec, PackageFormat, PackageOptions,
};

use crate::{bin, spawn_with_input, without_proxies, Run};

/// A generated package and the directory that holds it (removed on drop).
pub struct Pkg {
    /// The temporary directory, removed when the package is dropped.
    pub tempdir: tempfile::TempDir,
    /// Its path.
    pub dir: PathBuf,
    /// The package file.
    pub path: PathBuf,
    /// What was generated into it.
    pub fixture: Fixture,
}

impl Pkg {
    /// The package's largest blob (the layer, for a [`one_layer_package`]).
    pub fn largest_blob(&self) -> Descriptor {
        self.fixture
            .unique_blobs()
            .into_iter()
            .max_by_key(|d| d.size)
            .expect("a generated package holds blobs")
    }
}

/// 4 images of 2 layers of about `layer_size` bytes (every 2nd a multi-arch
/// index, every 3rd Docker schema 2), packaged as an index-first `.tar.zst`.
pub fn package(seed: u64, layer_size: u64) -> Pkg {
    let spec = FixtureSpec {
        seed,
        images: 4,
        layers_per_image: 2,
        layer_size,
        multi_arch_every: 2,
        docker_schema2_every: 3,
        ..Default::default()
    };
    let (dir, layout, fixture) = generated(&spec);
    packaged(dir, &layout, fixture, "bmpackages_test.tar.zst")
}

/// One image of one incompressible layer of `layer_size` bytes (no base layer
/// shared with anything), packaged as an index-first `.tar.zst`.
pub fn one_layer_package(seed: u64, layer_size: u64) -> Pkg {
    let spec = FixtureSpec {
        seed,
        images: 1,
        layers_per_image: 1,
        layer_size,
        incompressible: true,
        shared_base_layer: false,
        ..Default::default()
    };
    let (dir, layout, fixture) = generated(&spec);
    packaged(dir, &layout, fixture, "bmpackages_test.tar.zst")
}

/// A generated layout in a fresh temporary directory (tests may alter it
/// before packaging it).
pub fn generated(spec: &FixtureSpec) -> (tempfile::TempDir, PathBuf, Fixture) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let fixture = generate_layout(spec, &layout).unwrap();
    (dir, layout, fixture)
}

/// A package generated from `spec` in a fresh temporary directory: `format`,
/// index-first or (with `layers_first`) blobs first and `index.json` last, as
/// most packagers write; the layout it came from is removed.
pub fn packaged_with(
    spec: &FixtureSpec,
    format: PackageFormat,
    layers_first: bool,
    name: &str,
) -> Pkg {
    let (dir, layout, fixture) = generated(spec);
    let path = dir.path().join(name);
    let options = PackageOptions {
        layers_first,
        ..Default::default()
    };
    write_package(&layout, format, &options, &path).unwrap();
    std::fs::remove_dir_all(&layout).unwrap();
    Pkg {
        dir: dir.path().to_path_buf(),
        tempdir: dir,
        path,
        fixture,
    }
}

/// Packages `layout` as an index-first `.tar.zst` named `name` beside it.
pub fn packaged(dir: tempfile::TempDir, layout: &Path, fixture: Fixture, name: &str) -> Pkg {
    let path = dir.path().join(name);
    write_package(
        layout,
        PackageFormat::TarZst,
        &PackageOptions::default(),
        &path,
    )
    .unwrap();
    Pkg {
        dir: dir.path().to_path_buf(),
        tempdir: dir,
        path,
        fixture,
    }
}

/// `--private-registry` value (http:// for the plain registry).
pub fn target(reg: &Registry, ns: &str) -> String {
    let host = if reg.mode() == RegistryMode::Plain {
        format!("http://{}", reg.host())
    } else {
        reg.host()
    };
    if ns.is_empty() {
        host
    } else {
        format!("{host}/{ns}")
    }
}

/// Runs ferry-push with the registry's CA and credentials (password on stdin).
pub fn push(reg: &Registry, source: &Path, ns: &str, extra: &[&str]) -> Run {
    push_with(reg, source, ns, extra, &[], true)
}

/// Runs ferry-push with extra environment, with or without the credentials.
pub fn push_with(
    reg: &Registry,
    source: &Path,
    ns: &str,
    extra: &[&str],
    env: &[(&str, &str)],
    creds: bool,
) -> Run {
    registry_tool("ferry-push", reg, source, ns, extra, env, creds)
}

/// Runs ferry-push or ferry-diff (same flags) against `reg`.
pub fn registry_tool(
    tool: &str,
    reg: &Registry,
    source: &Path,
    ns: &str,
    extra: &[&str],
    env: &[(&str, &str)],
    creds: bool,
) -> Run {
    run_against(Command::new(bin(tool)), reg, source, ns, extra, env, creds)
}

/// Runs `cmd` (a ferry tool, or a wrapper whose arguments end with one) with
/// the source, registry, CA and credential flags for `reg`.
pub fn run_against(
    mut cmd: Command,
    reg: &Registry,
    source: &Path,
    ns: &str,
    extra: &[&str],
    env: &[(&str, &str)],
    creds: bool,
) -> Run {
    cmd.arg("--source")
        .arg(source)
        .arg("--private-registry")
        .arg(target(reg, ns))
        .args(extra);
    if let Some(ca) = reg.ca_cert_path() {
        cmd.arg("--cacert").arg(ca);
    }
    let mut password = String::new();
    match reg.credentials() {
        Some((user, pass)) if creds => {
            cmd.args(["--username", &user, "--password-stdin"]);
            password = pass;
        }
        Some(_) => {}
        None => {
            cmd.arg("--need-credential=false");
        }
    }
    without_proxies(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    spawn_with_input(&mut cmd, password.as_bytes())
        .wait_with_output()
        .unwrap()
        .into()
}

/// A Docker config `auth` value (and HTTP Basic credential): base64 of `user:pass`.
pub fn basic_auth(user: &str, pass: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

/// A run refused for the wrong password `wrong`: exit 2, an error that says
/// authentication failed (or 401), and the password shown nowhere.
pub fn assert_wrong_password_refused(r: &Run, wrong: &str) {
    assert_eq!(r.code, 2, "{}\n{}", r.stderr, r.stdout);
    assert!(
        r.stderr.contains("authentication") || r.stderr.contains("401"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains(wrong) && !r.stdout.contains(wrong),
        "password echoed"
    );
}

/// Runs skopeo with `reg`'s TLS and credential flags for `role`; panics on failure.
pub fn skopeo(reg: &Registry, role: SkopeoRole, args: &[&str]) -> Vec<u8> {
    let out = Command::new("skopeo")
        .arg(args[0])
        .args(reg.skopeo_args(role))
        .args(&args[1..])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `docker://` reference of `reference` pushed under namespace `ns` of `reg`.
pub fn mapped(reg: &Registry, ns: &str, reference: &str) -> String {
    let path = reference.split_once('/').unwrap().1;
    if ns.is_empty() {
        format!("docker://{}/{path}", reg.host())
    } else {
        format!("docker://{}/{ns}/{path}", reg.host())
    }
}

/// Every image of `pkg` is in `reg` under `ns` byte-identical (skopeo
/// `inspect --raw`) and pulls back whole (`skopeo copy --all`).
pub fn assert_registry_has_package(reg: &Registry, ns: &str, pkg: &Pkg) {
    for image in &pkg.fixture.images {
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
        let local = pkg
            .dir
            .join(format!("pulled-{}", image.descriptor.digest.hex()));
        skopeo(
            reg,
            SkopeoRole::Src,
            &[
                "copy",
                "--all",
                "--preserve-digests",
                &mapped(reg, ns, &image.reference),
                &format!("oci:{}:x", local.display()),
            ],
        );
    }
}
