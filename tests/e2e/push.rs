//! ferry-push end to end against Debian's real docker-registry (distribution
//! v2.8) in the four modes users have, checked with skopeo and the registry's
//! own access log.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_e2e::registry_push::{
    assert_registry_has_package, assert_wrong_password_refused, basic_auth, generated, mapped,
    package, packaged, push, push_with, registry_tool, run_against, skopeo, target, Pkg,
};
use ferry_e2e::{bin, run, Run};
use ferry_store::Digest;
use ferry_testkit::blob_origin::BlobOrigin;
use ferry_testkit::registry::{Registry, RegistryMode, RegistryOptions, SkopeoRole};
use ferry_testkit::{generate_layout, write_package, FixtureSpec, PackageFormat, PackageOptions};

#[test]
fn push_in_every_registry_mode_is_byte_identical_and_rerun_uploads_nothing() {
    let pkg = package(21, 200 * 1024);
    for mode in RegistryMode::ALL {
        let reg = Registry::start(RegistryOptions::new(mode)).unwrap();
        let r = push(&reg, &pkg.path, "mirror", &[]);
        assert_eq!(r.code, 0, "{mode:?}: {}\n{}", r.stderr, r.stdout);
        assert!(
            r.stdout.contains("registryMirrors:") && r.stdout.contains(&format!("/v2/mirror")),
            "{}",
            r.stdout
        );
        assert_registry_has_package(&reg, "mirror", &pkg);
        if mode == RegistryMode::TlsToken {
            assert!(reg.token_requests() > 0);
        }

        let uploads = reg.count_requests("POST", "/blobs/uploads/");
        let patches = reg.count_requests("PATCH", "/blobs/uploads/");
        let blob_puts = reg.count_requests("PUT", "/blobs/uploads/");
        let manifest_puts = reg.count_requests("PUT", "/manifests/");
        // The access log is read: the first push shows up in it.
        assert!(
            uploads > 0 && blob_puts > 0 && manifest_puts > 0,
            "{mode:?}"
        );
        let again = push(&reg, &pkg.path, "mirror", &["--json"]);
        assert_eq!(again.code, 0, "{}", again.stderr);
        assert_eq!(
            reg.count_requests("POST", "/blobs/uploads/"),
            uploads,
            "{mode:?}: rerun opened uploads"
        );
        assert_eq!(
            reg.count_requests("PATCH", "/blobs/uploads/"),
            patches,
            "{mode:?}: rerun sent chunks"
        );
        assert_eq!(
            reg.count_requests("PUT", "/blobs/uploads/"),
            blob_puts,
            "{mode:?}: rerun finished uploads"
        );
        assert_eq!(
            reg.count_requests("PUT", "/manifests/"),
            manifest_puts,
            "{mode:?}: rerun pushed manifests"
        );
        let summary: serde_json::Value =
            serde_json::from_str(again.stdout.lines().last().unwrap()).unwrap();
        assert_eq!(summary["summary"]["blobs_uploaded"], 0);
    }
}

#[test]
fn namespace_mapping_and_dry_run() {
    let pkg = package(22, 64 * 1024);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    let dry = push(&reg, &pkg.path, "ns/deeper", &["--dry-run", "--json"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(dry.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["dry_run"], true);
    assert!(summary["summary"]["blobs_uploaded"].as_u64().unwrap() > 0);
    assert!(summary["summary"]["manifests_pushed"].as_u64().unwrap() > 0);
    // Planned from the package's index and manifests: nothing staged on disk.
    let entries: Vec<_> = std::fs::read_dir(&pkg.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !entries
            .iter()
            .any(|n| n.to_string_lossy().ends_with(".ferry-store")),
        "a dry run staged the package: {entries:?}"
    );
    assert!(
        reg.count_requests("HEAD", "/v2/ns/deeper/") > 0,
        "the dry run asked the registry"
    );
    assert_eq!(
        reg.count_requests("POST", "/blobs/uploads/"),
        0,
        "a dry run sent an upload"
    );
    assert_eq!(reg.count_requests("PUT", "/manifests/"), 0);

    let r = push(&reg, &pkg.path, "ns/deeper", &["--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let pushed: serde_json::Value = serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    // The dry run's plan is what the real push did.
    for field in [
        "bytes_uploaded",
        "blobs_uploaded",
        "blobs_mounted",
        "blobs_skipped",
        "manifests_pushed",
        "tags_set",
    ] {
        assert_eq!(
            pushed["summary"][field], summary["summary"][field],
            "{field}: dry run {} vs push {}",
            summary["summary"], pushed["summary"]
        );
    }
    for image in &pkg.fixture.images {
        let expect = format!(
            "{}/ns/deeper/{}",
            reg.host(),
            image.reference.split_once('/').unwrap().1
        );
        assert!(
            r.stdout.contains(&expect),
            "{expect} missing in {}",
            r.stdout
        );
    }
    assert_registry_has_package(&reg, "ns/deeper", &pkg);
}

#[test]
fn tls_without_cacert_fails_clearly_and_wrong_password_is_not_echoed() {
    let pkg = package(23, 32 * 1024);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    let (user, _) = reg.credentials().unwrap();
    let r = run(Command::new(bin("ferry-push"))
        .arg("--source")
        .arg(&pkg.path)
        .args([
            "--private-registry",
            &reg.host(),
            "--username",
            &user,
            "--password",
            "irrelevant",
        ]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("--cacert") && r.stderr.contains("certificate"),
        "{}",
        r.stderr
    );

    let wrong = "Wr0ng-Secret-Value-77";
    for extra in [&[][..], &["--json"][..], &["-v"][..]] {
        let r = run(Command::new(bin("ferry-push"))
            .arg("--source")
            .arg(&pkg.path)
            .args([
                "--private-registry",
                &reg.host(),
                "--username",
                &user,
                "--password",
                wrong,
            ])
            .arg("--cacert")
            .arg(reg.ca_cert_path().unwrap())
            .args(extra));
        assert_wrong_password_refused(&r, wrong);
    }
}

#[test]
fn credentials_from_docker_config_helper_and_auth_json() {
    let pkg = package(24, 32 * 1024);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsToken)).unwrap();
    let (user, pass) = reg.credentials().unwrap();
    let work = pkg.dir.join("creds");
    std::fs::create_dir_all(&work).unwrap();

    // 1. DOCKER_CONFIG with an "auth" entry.
    let docker_dir = work.join("docker");
    std::fs::create_dir_all(&docker_dir).unwrap();
    let auth = basic_auth(&user, &pass);
    std::fs::write(
        docker_dir.join("config.json"),
        serde_json::json!({"auths": {reg.host(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let r = push_with(
        &reg,
        &pkg.path,
        "from-docker-config",
        &[],
        &[
            ("DOCKER_CONFIG", docker_dir.to_str().unwrap()),
            ("HOME", work.to_str().unwrap()),
        ],
        false,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("pullCredentialConfigPath"),
        "{}",
        r.stdout
    );

    // 2. A credential helper on PATH.
    let helper_dir = work.join("bin");
    std::fs::create_dir_all(&helper_dir).unwrap();
    let helper = helper_dir.join("docker-credential-ferrytest");
    std::fs::write(&helper, format!("#!/bin/sh\nread server\necho '{{\"ServerURL\":\"'$server'\",\"Username\":\"{user}\",\"Secret\":\"{pass}\"}}'\n")).unwrap();
    let mut perms = std::fs::metadata(&helper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&helper, perms).unwrap();
    let helper_cfg = work.join("helper-config");
    std::fs::create_dir_all(&helper_cfg).unwrap();
    std::fs::write(
        helper_cfg.join("config.json"),
        serde_json::json!({"credHelpers": {reg.host(): "ferrytest"}}).to_string(),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        helper_dir.display(),
        std::env::var("PATH").unwrap()
    );
    let r = push_with(
        &reg,
        &pkg.path,
        "from-helper",
        &[],
        &[
            ("DOCKER_CONFIG", helper_cfg.to_str().unwrap()),
            ("PATH", &path),
            ("HOME", work.to_str().unwrap()),
        ],
        false,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);

    // A configured helper that is missing is named in the error.
    std::fs::write(
        helper_cfg.join("config.json"),
        serde_json::json!({"credHelpers": {reg.host(): "absent"}}).to_string(),
    )
    .unwrap();
    let r = push_with(
        &reg,
        &pkg.path,
        "x",
        &[],
        &[
            ("DOCKER_CONFIG", helper_cfg.to_str().unwrap()),
            ("HOME", work.to_str().unwrap()),
        ],
        false,
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("docker-credential-absent"),
        "{}",
        r.stderr
    );

    // 3. REGISTRY_AUTH_FILE (containers auth.json).
    let auth_json = work.join("auth.json");
    std::fs::write(
        &auth_json,
        serde_json::json!({"auths": {reg.host(): {"auth": auth}}}).to_string(),
    )
    .unwrap();
    let empty = work.join("empty-docker");
    std::fs::create_dir_all(&empty).unwrap();
    let r = push_with(
        &reg,
        &pkg.path,
        "from-auth-json",
        &[],
        &[
            ("REGISTRY_AUTH_FILE", auth_json.to_str().unwrap()),
            ("DOCKER_CONFIG", empty.to_str().unwrap()),
            ("HOME", work.to_str().unwrap()),
        ],
        false,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_registry_has_package(&reg, "from-auth-json", &pkg);

    // Nothing found off a TTY: a clear error listing what was tried.
    let r = push_with(
        &reg,
        &pkg.path,
        "x",
        &[],
        &[
            ("DOCKER_CONFIG", empty.to_str().unwrap()),
            ("HOME", work.to_str().unwrap()),
            ("REGISTRY_AUTH_FILE", "/nonexistent/auth.json"),
        ],
        false,
    );
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("auth.json") && r.stderr.contains("config.json"),
        "{}",
        r.stderr
    );
}

#[test]
fn https_proxy_through_a_real_proxy() {
    let pkg = package(25, 32 * 1024);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Tls)).unwrap();
    let work = pkg.dir.join("proxy");
    std::fs::create_dir_all(&work).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = work.join("tinyproxy.log");
    let conf = work.join("tinyproxy.conf");
    std::fs::write(&conf, format!("Port {port}\nListen 127.0.0.1\nTimeout 60\nAllow 127.0.0.1\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 20\n", log.display())).unwrap();
    let mut proxy = Command::new("tinyproxy")
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tinyproxy installed (scripts/install-deps.sh)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tinyproxy did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let proxy_url = format!("http://127.0.0.1:{port}");
    let r = push_with(
        &reg,
        &pkg.path,
        "via-proxy",
        &[],
        &[("HTTPS_PROXY", &proxy_url), ("NO_PROXY", "")],
        true,
    );
    let _ = proxy.kill();
    let _ = proxy.wait();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seen = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        seen.contains("CONNECT") && seen.contains(&reg.port().to_string()),
        "proxy log shows no CONNECT to the registry:\n{seen}"
    );
    assert_registry_has_package(&reg, "via-proxy", &pkg);

    // NO_PROXY bypasses it (the proxy is down now: only a direct connection works).
    let r = push_with(
        &reg,
        &pkg.path,
        "no-proxy",
        &[],
        &[("HTTPS_PROXY", &proxy_url), ("NO_PROXY", "127.0.0.1")],
        true,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
}

#[test]
fn kill_9_between_chunks_then_rerun_resends_at_most_one_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let spec = FixtureSpec {
        seed: 26,
        images: 1,
        layers_per_image: 1,
        layer_size: 24 << 20,
        incompressible: true,
        shared_base_layer: false,
        ..Default::default()
    };
    let fixture = generate_layout(&spec, &layout).unwrap();
    let big = fixture
        .unique_blobs()
        .into_iter()
        .max_by_key(|d| d.size)
        .unwrap();
    let chunk: u64 = 2 << 20;
    let chunks = big.size.div_ceil(chunk) as usize;
    let store = dir.path().join("store");
    assert_eq!(ferry_e2e::export(&layout, &store, &[]).code, 0);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    let (user, pass) = reg.credentials().unwrap();
    let args = |cmd: &mut Command| {
        cmd.arg("--source")
            .arg(&store)
            .args([
                "--private-registry",
                &reg.host(),
                "--username",
                &user,
                "--password",
                &pass,
                "--monolithic-max-mib",
                "1",
                "--chunk-mib",
                "2",
                "--json",
            ])
            .arg("--cacert")
            .arg(reg.ca_cert_path().unwrap());
    };
    let mut cmd = Command::new(bin("ferry-push"));
    args(&mut cmd);
    let mut child = cmd
        .env("FERRY_TEST_CHUNK_PAUSE_MS", "400")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let journal = store.join(".ferry/journal.jsonl");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sessions = std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .matches("\"upload_session\"")
            .count();
        if sessions >= 3 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "push finished before it could be killed"
        );
        assert!(Instant::now() < deadline, "no chunk confirmed in time");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL, by PID, during the pause between chunks
    child.wait().unwrap();
    let patches_before = reg.count_requests("PATCH", "/blobs/uploads/");

    let mut cmd = Command::new(bin("ferry-push"));
    args(&mut cmd);
    let r: Run = cmd.output().unwrap().into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let resumed = r
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "blob_uploaded" && v["digest"] == big.digest.to_string())
        .expect("the big blob was uploaded by the rerun");
    let from = resumed["resumed_from"].as_u64().unwrap();
    assert!(
        from >= 3 * chunk,
        "rerun restarted at {from}, not from the confirmed chunks"
    );
    let patches_after = reg.count_requests("PATCH", "/blobs/uploads/");
    let total_patches = patches_after;
    assert!(
        total_patches <= chunks + 1,
        "{total_patches} PATCHes for {chunks} chunks: more than one chunk re-sent"
    );
    assert!(patches_after - patches_before <= chunks - 3 + 1);
    let raw = skopeo(
        &reg,
        SkopeoRole::Inspect,
        &[
            "inspect",
            "--raw",
            &mapped(&reg, "", &fixture.images[0].reference),
        ],
    );
    assert_eq!(Digest::sha256_of(&raw), fixture.images[0].descriptor.digest);
    let local = dir.path().join("pulled");
    skopeo(
        &reg,
        SkopeoRole::Src,
        &[
            "copy",
            &mapped(&reg, "", &fixture.images[0].reference),
            &format!("oci:{}:x", local.display()),
        ],
    );
}

#[test]
fn any_package_order_is_pushed_in_one_read_without_a_scratch_copy() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let spec = FixtureSpec {
        seed: 27,
        images: 3,
        layers_per_image: 2,
        layer_size: 3 << 20,
        incompressible: true,
        multi_arch_every: 3,
        ..Default::default()
    };
    let fixture = generate_layout(&spec, &layout).unwrap();
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    for (layers_first, name) in [(false, "streamed.tar.xz"), (true, "layers-first.tar.xz")] {
        let path = dir.path().join(name);
        write_package(
            &layout,
            PackageFormat::TarXzMultiBlock,
            &PackageOptions {
                layers_first,
                ..Default::default()
            },
            &path,
        )
        .unwrap();
        let pkg = Pkg {
            tempdir: tempfile::tempdir().unwrap(),
            dir: dir.path().to_path_buf(),
            path: path.clone(),
            fixture: fixture.clone(),
        };
        let ns = if layers_first { "staged" } else { "streamed" };
        let r = push(&reg, &path, ns, &[]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        let staging = dir.path().join(format!("{name}.ferry-store"));
        assert!(
            !staging.exists(),
            "the package was copied to disk: {}",
            r.stderr
        );
        if layers_first {
            // Blobs wait in the holding repository until index.json arrives, then are mounted.
            assert!(
                r.stderr.contains("holding") && r.stderr.contains(&format!("{ns}/ferry-holding")),
                "the read path is not said: {}",
                r.stderr
            );
            let into_holding =
                reg.count_requests("POST", &format!("/v2/{ns}/ferry-holding/blobs/uploads/"));
            let naming_holding = reg.count_requests("POST", "ferry-holding");
            assert!(into_holding > 0, "nothing went to the holding repository");
            assert!(
                naming_holding > into_holding,
                "nothing was mounted from the holding repository"
            );
        } else {
            assert!(!r.stderr.contains("holding"), "{}", r.stderr);
        }
        assert_registry_has_package(&reg, ns, &pkg);
        // Warm rerun: nothing uploaded, no manifest sent again.
        let uploads = reg.count_requests("POST", "/blobs/uploads/");
        let manifest_puts = reg.count_requests("PUT", "/manifests/");
        assert!(
            uploads > 0 && manifest_puts > 0,
            "the first push is in the access log"
        );
        let again = push(&reg, &path, ns, &["--json"]);
        assert_eq!(again.code, 0, "{}", again.stderr);
        assert_eq!(reg.count_requests("POST", "/blobs/uploads/"), uploads);
        assert_eq!(reg.count_requests("PUT", "/manifests/"), manifest_puts);
    }
}

/// On a terminal, ferry-push draws a total bar and one bar per blob in flight
/// (repository@digest, bytes, rate, ETA); off a terminal it draws none.
#[test]
fn progress_bars_per_blob_on_a_tty_and_none_off_it() {
    let pkg = package(31, 3 << 20);
    let store = pkg.dir.join("store");
    let r = ferry_e2e::export(&pkg.path, &store, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    // 1 MiB chunks with a pause after each: every layer stays in flight for over a
    // second, long enough for several redraws of its bar.
    let slow = [
        "--jobs",
        "2",
        "--monolithic-max-mib",
        "1",
        "--chunk-mib",
        "1",
    ];
    let command = format!(
        "{} --source {} --private-registry {} --need-credential=false {}",
        bin("ferry-push").display(),
        store.display(),
        target(&reg, "tty"),
        slow.join(" ")
    );
    // util-linux `script` runs the command on a pseudo-terminal and copies what it draws.
    let out = Command::new("script")
        .args(["-qefc", &command, "/dev/null"])
        .env("FERRY_TEST_CHUNK_PAUSE_MS", "300")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("push ["), "no total bar:\n{screen}");
    let blob_bars: Vec<&str> = screen
        .split(['\r', '\n'])
        .filter(|l| l.contains("tty/anthos-baremetal-release/") && l.contains("@sha256:"))
        .collect();
    assert!(!blob_bars.is_empty(), "no per-blob bar:\n{screen}");
    assert!(
        blob_bars
            .iter()
            .any(|l| l.contains("MiB/s") && l.contains("ETA")),
        "per-blob bars without rate and ETA:\n{}",
        blob_bars.join("\n")
    );
    assert_registry_has_package(&reg, "tty", &pkg);

    let r = push_with(
        &reg,
        &store,
        "notty",
        &slow,
        &[("FERRY_TEST_CHUNK_PAUSE_MS", "50")],
        true,
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !r.stderr.contains("@sha256:") && !r.stderr.contains("push ["),
        "{}",
        r.stderr
    );
}

/// A streamed package whose layer does not match its name is refused with the
/// digest named, and that layer is never sent: blobs handed to the background
/// uploaders are verified in memory first, and no manifest or tag is pushed.
#[test]
fn corrupt_layer_in_a_streamed_package_is_named_and_never_sent() {
    let (dir, layout, fixture) = generated(&FixtureSpec {
        seed: 41,
        images: 3,
        layers_per_image: 2,
        layer_size: 256 << 10,
        incompressible: true,
        ..Default::default()
    });
    let layer = fixture.images[2]
        .blobs
        .iter()
        .find(|d| d.media_type.contains("layer"))
        .unwrap()
        .clone();
    let blob = layout.join("blobs/sha256").join(layer.digest.hex());
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[1000] ^= 0x40;
    std::fs::write(&blob, &bytes).unwrap();
    let pkg = packaged(dir, &layout, fixture, "bmpackages_corrupt.tar.zst");
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Plain)).unwrap();
    let r = push(&reg, &pkg.path, "corrupt", &[]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains(&layer.digest.to_string()), "{}", r.stderr);
    assert!(
        !r.stderr.contains("staging"),
        "streamed, not staged: {}",
        r.stderr
    );
    // Blob PUTs name their digest (`?digest=`); PATCHes do not, and the other
    // layers (256 KiB) go in one PUT each, so no PATCH may appear at all.
    let hex = layer.digest.hex();
    assert!(
        reg.count_requests("HEAD", "/v2/corrupt/") > 0,
        "the run is in the access log"
    );
    assert_eq!(
        reg.count_requests("PUT", hex),
        0,
        "the corrupt layer was sent"
    );
    assert_eq!(
        reg.count_requests("PATCH", "/v2/corrupt/"),
        0,
        "a chunk was sent"
    );
    assert_eq!(
        reg.count_requests("PUT", "/manifests/"),
        0,
        "no image may be tagged"
    );
}

/// Layers too large for the in-memory spool stream straight from the
/// decompressor to the registry (one pass, no scratch copy), beside spooled ones.
#[test]
fn a_layer_larger_than_the_spool_streams_straight_through() {
    let (dir, layout, fixture) = generated(&FixtureSpec {
        seed: 43,
        images: 2,
        layers_per_image: 2,
        layer_size: 25 << 20,
        incompressible: true,
        ..Default::default()
    });
    let pkg = packaged(dir, &layout, fixture, "bmpackages_big.tar.zst");
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Tls)).unwrap();
    let r = push(&reg, &pkg.path, "big", &["--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !pkg.dir.join("bmpackages_big.tar.zst.ferry-store").exists(),
        "staged instead of streamed"
    );
    let summary: serde_json::Value =
        serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    let layers: u64 = pkg
        .fixture
        .unique_blobs()
        .iter()
        .filter(|d| d.size > 24 << 20)
        .count() as u64;
    assert!(layers >= 3, "the fixture has {layers} layers over 24 MiB");
    assert!(summary["summary"]["bytes_uploaded"].as_u64().unwrap() > layers * (24 << 20));
    assert_registry_has_package(&reg, "big", &pkg);
}

/// Referrers (a signature and an SBOM whose `subject` is an image, unnamed in
/// `index.json`, as `oras copy -r --to-oci-layout` stores them) survive export
/// and verify, are pushed by digest into their image's repository, and are
/// listed under the subject's fallback tag `sha256-<hex>` (distribution v2.8
/// has no referrers API), which skopeo reads back; a rerun sends nothing.
#[test]
fn referrers_travel_with_their_image_and_are_listed_under_the_fallback_tag() {
    let (dir, layout, fixture) = generated(&FixtureSpec {
        seed: 47,
        images: 2,
        layers_per_image: 1,
        layer_size: 64 << 10,
        ..Default::default()
    });
    let subject = fixture.images[1].descriptor.clone();
    let sig_type = "application/vnd.dev.cosign.artifact.sig.v1+json";
    let sbom_type = "application/spdx+json";
    let sig = ferry_testkit::add_referrer(&layout, &subject, sig_type, b"signature bytes").unwrap();
    let sbom = ferry_testkit::add_referrer(
        &layout,
        &subject,
        sbom_type,
        b"{\"spdxVersion\":\"SPDX-2.3\"}",
    )
    .unwrap();
    let pkg = packaged(dir, &layout, fixture.clone(), "bmpackages_signed.tar.zst");
    let path = pkg.path.clone();

    // export keeps them (unnamed) and verify checks their graphs too.
    let store = pkg.dir.join("store");
    let r = ferry_e2e::export(&path, &store, &[]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("index.json")).unwrap()).unwrap();
    let unnamed: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e.get("annotations").is_none())
        .map(|e| e["digest"].as_str().unwrap())
        .collect();
    assert_eq!(unnamed.len(), 2, "{index}");
    let v = run(Command::new(bin("ferry-verify")).arg(&store));
    assert_eq!(v.code, 0, "{}", v.stdout);

    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    let diff = |expect: i32| {
        let d = registry_tool("ferry-diff", &reg, &path, "signed", &["--json"], &[], true);
        assert_eq!(d.code, expect, "{}\n{}", d.stdout, d.stderr);
        serde_json::from_str::<serde_json::Value>(&d.stdout).unwrap()
    };
    let before = diff(1);
    let r = push(&reg, &path, "signed", &["--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["referrers"], 2, "{summary}");
    // (ferry-diff above staged the package beside it; push itself streams it.)
    assert!(
        !r.stdout.contains(r#""event":"staging""#),
        "an index-first package with referrers is streamed, not staged: {}",
        r.stdout
    );
    // diff counts referrers as part of their image: its bytes are what push sent.
    assert_eq!(
        before["summary"]["push_bytes"],
        summary["summary"]["bytes_uploaded"]
    );
    diff(0);
    // The subject's repository in namespace `ns`, and its fallback index there.
    let repo_of = |ns: &str| {
        let r = mapped(&reg, ns, &fixture.images[1].reference);
        r.rsplit_once(':').unwrap().0.to_owned()
    };
    let fallback_index = |ns: &str| -> serde_json::Value {
        let tag = format!("{}:sha256-{}", repo_of(ns), subject.digest.hex());
        serde_json::from_slice(&skopeo(
            &reg,
            SkopeoRole::Inspect,
            &["inspect", "--raw", &tag],
        ))
        .unwrap()
    };
    let fallback = fallback_index("signed");
    for (referrer, artifact_type) in [(&sig, sig_type), (&sbom, sbom_type)] {
        let raw = skopeo(
            &reg,
            SkopeoRole::Inspect,
            &[
                "inspect",
                "--raw",
                &format!("{}@{}", repo_of("signed"), referrer.digest),
            ],
        );
        assert_eq!(Digest::sha256_of(&raw), referrer.digest);
        assert!(
            fallback["manifests"].as_array().unwrap().iter().any(|e| {
                e["digest"] == referrer.digest.to_string() && e["artifactType"] == artifact_type
            }),
            "{fallback}"
        );
    }
    assert_registry_has_package(&reg, "signed", &pkg);

    let puts = reg.count_requests("PUT", "/manifests/");
    let uploads = reg.count_requests("POST", "/blobs/uploads/");
    assert!(
        puts > 0 && uploads > 0,
        "the first push is in the access log"
    );
    let again = push(&reg, &path, "signed", &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        reg.count_requests("PUT", "/manifests/"),
        puts,
        "a rerun re-sent manifests"
    );
    assert_eq!(
        reg.count_requests("POST", "/blobs/uploads/"),
        uploads,
        "a rerun opened uploads"
    );

    // The same from a store (the staged path), into another namespace.
    let r = push(&reg, &store, "signed-store", &["--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(r.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["referrers"], 2, "{summary}");
    let fallback = fallback_index("signed-store");
    assert_eq!(
        fallback["manifests"].as_array().unwrap().len(),
        2,
        "{fallback}"
    );
}

/// A `.tar.xz` with big blocks (24 MiB: what `xz -T0 -6` writes) is pushed
/// within the memory bound: liblzma's threaded decoder would hold two such
/// blocks per thread on top of the spool; the streaming push decodes with one
/// thread, so peak RSS stays under 100 MiB.
#[test]
fn a_push_from_an_xz_with_large_blocks_stays_under_100_mib() {
    let (dir, layout, fixture) = generated(&FixtureSpec {
        seed: 53,
        images: 4,
        layers_per_image: 2,
        layer_size: 12 << 20,
        incompressible: true,
        ..Default::default()
    });
    let path = dir.path().join("bmpackages_bigblocks.tar.xz");
    write_package(
        &layout,
        PackageFormat::TarXzMultiBlock,
        &PackageOptions {
            xz_stored: true,
            xz_block_size: 24 << 20,
            ..Default::default()
        },
        &path,
    )
    .unwrap();
    let reg = Registry::start(RegistryOptions::new(RegistryMode::Tls)).unwrap();
    let mut measured = Command::new("/usr/bin/time");
    measured
        .args(["-f", "peak_rss_kib=%M"])
        .arg(bin("ferry-push"));
    let r = run_against(measured, &reg, &path, "bigblocks", &[], &[], true);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        !dir.path()
            .join("bmpackages_bigblocks.tar.xz.ferry-store")
            .exists(),
        "staged instead of streamed"
    );
    let peak_kib: u64 = r
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak_rss_kib="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak RSS in {}", r.stderr));
    eprintln!("ferry-push peak RSS: {} MiB", peak_kib >> 10);
    assert!(
        peak_kib < 100 << 10,
        "peak RSS {} MiB (bound: 100 MiB)",
        peak_kib >> 10
    );
    let pkg = Pkg {
        dir: dir.path().to_path_buf(),
        tempdir: dir,
        path,
        fixture,
    };
    assert_registry_has_package(&reg, "bigblocks", &pkg);
}

/// A registry that answers blob HEAD/GET with a 307 to another host (an object
/// store or CDN: here distribution's `redirect` storage middleware pointing at
/// a second origin on another port): ferry follows the redirects, and that host
/// never receives the registry credentials.
#[test]
fn a_blob_redirect_to_another_host_never_receives_authorization() {
    let pkg = package(59, 96 * 1024);
    let origin = BlobOrigin::start().unwrap();
    let reg = Registry::start(RegistryOptions {
        mode: RegistryMode::TlsHtpasswd,
        redirect_blobs_to: Some(format!("http://{}/", origin.addr())),
        ..Default::default()
    })
    .unwrap();
    origin.serve_from(reg.storage_dir());

    let first = push(&reg, &pkg.path, "cdn", &[]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    // diff --deep HEADs and reads the blobs back; push --force HEADs every blob again.
    let diff = registry_tool("ferry-diff", &reg, &pkg.path, "cdn", &["--deep"], &[], true);
    assert_eq!(diff.code, 0, "{}\n{}", diff.stderr, diff.stdout);
    let again = push(&reg, &pkg.path, "cdn", &["--force", "--json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(again.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["summary"]["blobs_uploaded"], 0, "{}", again.stdout);

    let requests = origin.requests();
    let blobs = pkg.fixture.unique_blobs().len();
    assert!(
        requests.len() >= blobs,
        "the origin saw {} requests for {blobs} blobs: were the redirects followed?",
        requests.len()
    );
    assert!(requests.iter().any(|r| r.method == "HEAD"));
    assert!(
        requests.iter().any(|r| r.method == "GET"),
        "diff --deep reads blobs"
    );
    for r in &requests {
        assert!(
            r.path.starts_with("/docker/registry/v2/blobs/"),
            "{} {}",
            r.method,
            r.path
        );
        assert_eq!(r.status, 200, "{} {}", r.method, r.path);
        assert_eq!(
            r.header("authorization"),
            None,
            "{} {} carried the registry's Authorization to another host",
            r.method,
            r.path
        );
    }
    assert_registry_has_package(&reg, "cdn", &pkg);
}

/// cosign's own scheme (no referrers API needed): a signature, an attestation
/// and an SBOM tagged `sha256-<hex>.sig/.att/.sbom` in the image's repository
/// are named images in the package; they are pushed with the same mapping,
/// byte-identical, and cosign finds them under the mirrored repository.
#[test]
fn cosign_style_tags_travel_with_their_image() {
    let (dir, layout, fixture) = generated(&FixtureSpec {
        seed: 61,
        images: 2,
        layers_per_image: 1,
        layer_size: 64 << 10,
        ..Default::default()
    });
    let image = fixture.images[0].clone();
    let mut tagged = Vec::new();
    for (suffix, payload) in [
        ("sig", &b"{\"critical\":{}}"[..]),
        (
            "att",
            &b"{\"payloadType\":\"application/vnd.in-toto+json\"}"[..],
        ),
        ("sbom", &b"{\"spdxVersion\":\"SPDX-2.3\"}"[..]),
    ] {
        tagged.push(
            ferry_testkit::add_cosign_tag(
                &layout,
                &image.reference,
                &image.descriptor,
                suffix,
                payload,
            )
            .unwrap(),
        );
    }
    let pkg = packaged(dir, &layout, fixture, "bmpackages_cosign.tar.zst");
    let reg = Registry::start(RegistryOptions::new(RegistryMode::TlsHtpasswd)).unwrap();
    let r = push(&reg, &pkg.path, "signed", &["--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_registry_has_package(&reg, "signed", &pkg);
    let hex = image.descriptor.digest.hex();
    for (reference, desc) in &tagged {
        assert!(
            reference.ends_with(&format!(":sha256-{hex}.sig"))
                || reference.ends_with(&format!(":sha256-{hex}.att"))
                || reference.ends_with(&format!(":sha256-{hex}.sbom"))
        );
        let raw = skopeo(
            &reg,
            SkopeoRole::Inspect,
            &["inspect", "--raw", &mapped(&reg, "signed", reference)],
        );
        assert_eq!(Digest::sha256_of(&raw), desc.digest, "{reference}");
    }
    // Where cosign looks: the mirrored repository lists the image's tag and the three.
    let repository = mapped(&reg, "signed", &image.reference);
    let repository = repository.rsplit_once(':').unwrap().0;
    let tags: serde_json::Value = serde_json::from_slice(&skopeo(
        &reg,
        SkopeoRole::Inspect,
        &["list-tags", repository],
    ))
    .unwrap();
    let tags: Vec<&str> = tags["Tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    for suffix in ["sig", "att", "sbom"] {
        let tag = format!("sha256-{hex}.{suffix}");
        assert!(tags.contains(&tag.as_str()), "{tag} not in {tags:?}");
    }
}
