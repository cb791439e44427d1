//! kill -9 at random moments during export, then rerun: the rerun finishes,
//! every blob verifies and every image reads back through skopeo.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ferry_e2e::{
    assert_all_blobs_verify, assert_store_complete, bin, export, json, stored_manifest_digest,
};
use ferry_testkit::{generate_layout, write_package, FixtureSpec, PackageFormat, PackageOptions};
use rand::{Rng, SeedableRng};

const TRIALS: usize = 10;

#[test]
fn kill_9_during_export_then_rerun_completes() {
    let seed: u64 = std::env::var("FERRY_TRIAL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261127);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    let spec = FixtureSpec {
        seed: 3,
        images: 6,
        layers_per_image: 3,
        layer_size: 2 << 20,
        incompressible: true,
        multi_arch_every: 3,
        ..FixtureSpec::default()
    };
    let fixture = generate_layout(&spec, &layout).unwrap();
    let pkg = work.path().join("pkg.tar.xz");
    write_package(
        &layout,
        PackageFormat::TarXzMultiBlock,
        &PackageOptions {
            xz_block_size: 4 << 20,
            ..Default::default()
        },
        &pkg,
    )
    .unwrap();

    // How long an uninterrupted export takes here, to spread kills over all of it.
    let started = Instant::now();
    let full = export(&pkg, &work.path().join("reference-store"), &[]);
    assert_eq!(full.code, 0, "{}", full.stderr);
    let full_ms = started.elapsed().as_millis().max(20) as u64;

    let mut resumed_blobs = 0u64;
    let mut killed = 0;
    let trials = ferry_e2e::soak_count("FERRY_SOAK_TRIALS", TRIALS as u64) as usize;
    for trial in 0..trials {
        let dest = work.path().join(format!("store-{trial}"));
        let kill_after = Duration::from_millis(rng.gen_range(0..full_ms));
        let mut child = Command::new(bin("ferry-export"))
            .arg("--source")
            .arg(&pkg)
            .arg("--to")
            .arg(&dest)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(kill_after);
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        // SIGKILL, by PID, of the process this test started.
        child.kill().ok();
        child.wait().unwrap();

        let rerun = export(&pkg, &dest, &["--json"]);
        assert_eq!(
            rerun.code, 0,
            "trial {trial} (seed {seed}, kill after {kill_after:?}): {}",
            rerun.stderr
        );
        resumed_blobs += json(&rerun)["blobs_present"].as_u64().unwrap();
        assert_store_complete(&dest);
        let verify = ferry_e2e::run(Command::new(bin("ferry-verify")).arg(&dest));
        assert_eq!(
            verify.code, 0,
            "trial {trial}: ferry-verify after the rerun: {}{}",
            verify.stdout, verify.stderr
        );
        assert_eq!(
            assert_all_blobs_verify(&dest),
            fixture.unique_blobs().len(),
            "trial {trial}"
        );
        for image in &fixture.images {
            let digest =
                stored_manifest_digest(&dest, &image.reference, &image.descriptor.media_type);
            assert_eq!(digest, image.descriptor.digest, "trial {trial}");
        }
        assert!(
            std::fs::read_dir(dest.join(".ferry/tmp"))
                .unwrap()
                .next()
                .is_none(),
            "trial {trial}: temp files left after a successful rerun"
        );
    }
    eprintln!("crash trials: {trials} runs, {killed} killed mid-export, {resumed_blobs} blobs kept by reruns (seed {seed}, full export {full_ms} ms)");
    assert!(
        killed >= trials / 2,
        "only {killed} of {trials} kills hit a running export"
    );
    assert!(
        resumed_blobs > 0,
        "no rerun reused a blob written before the kill"
    );
}
