//! Unit tests of the plan, the executor, the dry run, the comparison and the
//! single-pass driver, against the recording in-memory sink: the exact calls
//! (the engine's request sequence) and the order invariants.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use ferry_store::{media, Descriptor};

use crate::compare::{compare, DiffOptions, Status};
use crate::dry_run::DryRun;
use crate::executor::{copy, CopyOptions};
use crate::report::{CopyEvent, CopyReport};
use crate::stream::{copy_stream, read_plan, StreamOutcome};
use crate::testing::{map, short, Images, MemorySink};

const ONE: CopyOptions = CopyOptions {
    jobs: 1,
    force: false,
    clean_holding: false,
};

fn quiet() -> impl Fn(CopyEvent) + Sync {
    |_| {}
}

/// One image `gcr.io/a/app:1.0`: config + two layers.
fn one_image() -> (Images, Descriptor) {
    let mut images = Images::default();
    let m = images.manifest(r#"{"os":"linux"}"#, &[b"layer-one", b"layer-two"]);
    images.name(&m, "gcr.io/a/app:1.0");
    (images, m)
}

fn blob_of(images: &Images, m: &Descriptor, i: usize) -> Descriptor {
    let doc: serde_json::Value = serde_json::from_slice(&images.blobs[&m.digest]).unwrap();
    let d = if i == 0 {
        &doc["config"]
    } else {
        &doc["layers"][i - 1]
    };
    serde_json::from_value(d.clone()).unwrap()
}

fn position(calls: &[String], prefix: &str) -> usize {
    calls
        .iter()
        .position(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("no call {prefix:?} in {calls:#?}"))
}

#[test]
fn the_plan_lists_manifests_children_first_and_each_blob_once() {
    let mut images = Images::default();
    let amd = images.manifest(r#"{"arch":"amd64"}"#, &[b"shared-base", b"amd-top"]);
    let arm = images.manifest(r#"{"arch":"arm64"}"#, &[b"shared-base", b"arm-top"]);
    let index = images.index_of(&[amd.clone(), arm.clone()]);
    images.name(&index, "gcr.io/a/multi:2.0");
    let plan = images.plan();
    assert_eq!(plan.images.len(), 1);
    let image = &plan.images[0];
    let order: Vec<_> = image.manifests.iter().map(|m| m.digest.clone()).collect();
    assert_eq!(
        order.last(),
        Some(&index.digest),
        "the index comes after its children"
    );
    assert!(order.contains(&amd.digest) && order.contains(&arm.digest));
    // 2 configs + shared base once + 2 tops.
    assert_eq!(image.blobs.len(), 5);
    assert_eq!(image.dest.repository, "ns/a/multi");
    assert_eq!(image.dest.tag.as_deref(), Some("2.0"));
    let needs = plan.blob_needs(&[false]);
    assert_eq!(needs.len(), 5);
    assert!(
        plan.blob_needs(&[true]).is_empty(),
        "a complete image needs nothing"
    );
}

#[test]
fn referrers_are_attached_to_every_image_holding_their_subject() {
    let mut images = Images::default();
    let amd = images.manifest(r#"{"arch":"amd64"}"#, &[b"base"]);
    let index = images.index_of(&[amd.clone()]);
    images.name(&index, "gcr.io/a/app:1.0");
    images.name(&index, "gcr.io/b/app:1.0");
    let sig = images.referrer(&amd, b"signature of a child manifest");
    let stray_subject =
        Descriptor::new(media::OCI_MANIFEST, ferry_store::Digest::sha256_of(b"x"), 1);
    let stray = images.referrer(&stray_subject, b"signature of nothing here");
    let plan = images.plan();
    for image in &plan.images {
        assert_eq!(image.referrers.len(), 1, "{}", image.source);
        assert_eq!(image.referrers[0].root.digest, sig.digest);
        assert!(image.manifests.iter().any(|m| m.digest == sig.digest));
        assert_eq!(
            image.blobs.len(),
            4,
            "config, layer, and the referrer's two blobs"
        );
    }
    assert_eq!(plan.unattached.len(), 1);
    assert_eq!(plan.unattached[0].digest, stray.digest);
}

#[test]
fn plan_order_hands_blobs_to_the_workers_in_the_order_the_plan_lists_them() {
    let mut images = Images::default();
    // Sizes chosen so that largest-first would be another order.
    let m = images.manifest(
        r#"{"os":"linux","pad":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#,
        &[b"a", b"layer-two-is-the-longest"],
    );
    images.name(&m, "gcr.io/a/app:1.0");
    let want: Vec<String> = (0..3)
        .map(|i| format!("UPLOAD ns/a/app {}", short(&blob_of(&images, &m, i).digest)))
        .collect();
    let sink = MemorySink::default();
    crate::executor::copy_in_order(
        &images.plan(),
        &images,
        &sink,
        ONE,
        crate::executor::BlobOrder::PlanOrder,
        &quiet(),
    )
    .unwrap();
    let uploads: Vec<String> = sink
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("UPLOAD"))
        .collect();
    assert_eq!(uploads, want);
    let sink = MemorySink::default();
    copy(&images.plan(), &images, &sink, ONE, &quiet()).unwrap();
    let uploads: Vec<String> = sink
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("UPLOAD"))
        .collect();
    assert_ne!(
        uploads, want,
        "largest-first differs here, so the test can tell them apart"
    );
}

#[test]
fn an_empty_sink_gets_blobs_then_manifests_then_the_tag_in_exactly_this_sequence() {
    let (images, m) = one_image();
    let sink = MemorySink::default();
    let report = copy(&images.plan(), &images, &sink, ONE, &quiet()).unwrap();
    let (config, one, two) = (
        blob_of(&images, &m, 0),
        blob_of(&images, &m, 1),
        blob_of(&images, &m, 2),
    );
    // Largest blob first; presence asked once per blob before any upload.
    let mut by_size = [&config, &one, &two];
    by_size.sort_by_key(|d| std::cmp::Reverse(d.size));
    // Presence asked in the plan's digest order: checked as a set.
    let calls = sink.calls();
    assert_eq!(calls[0], "HEAD manifest ns/a/app 1.0");
    let heads: std::collections::BTreeSet<&String> = calls[1..4].iter().collect();
    let want_heads: std::collections::BTreeSet<String> = [&config, &one, &two]
        .iter()
        .map(|d| format!("HEAD blob ns/a/app {}", short(&d.digest)))
        .collect();
    assert_eq!(heads, want_heads.iter().collect());
    let uploads: Vec<String> = by_size
        .iter()
        .map(|d| format!("UPLOAD ns/a/app {}", short(&d.digest)))
        .collect();
    assert_eq!(calls[4..7], uploads[..]);
    assert_eq!(
        calls[7..],
        [
            format!("HEAD manifest ns/a/app {}", short(&m.digest)),
            format!("PUT manifest ns/a/app {}", short(&m.digest)),
            "HEAD manifest ns/a/app 1.0".to_owned(),
            "PUT manifest ns/a/app 1.0".to_owned(),
        ]
    );
    assert_eq!(
        (
            report.blobs_uploaded,
            report.blobs_mounted,
            report.blobs_skipped
        ),
        (3, 0, 0)
    );
    assert_eq!((report.manifests_pushed, report.tags_set), (1, 1));
    assert_eq!(
        sink.manifest("ns/a/app", "1.0").unwrap(),
        images.blobs[&m.digest]
    );
}

#[test]
fn a_rerun_asks_one_question_and_writes_nothing() {
    let (images, _) = one_image();
    let sink = MemorySink::default();
    copy(&images.plan(), &images, &sink, ONE, &quiet()).unwrap();
    sink.calls.lock().unwrap().clear();
    let report = copy(&images.plan(), &images, &sink, ONE, &quiet()).unwrap();
    assert_eq!(sink.calls(), ["HEAD manifest ns/a/app 1.0"]);
    assert_eq!(report.images_up_to_date, 1);
    // --force re-checks everything but still sends nothing present.
    sink.calls.lock().unwrap().clear();
    let forced = copy(
        &images.plan(),
        &images,
        &sink,
        CopyOptions {
            jobs: 1,
            force: true,
            clean_holding: false,
        },
        &quiet(),
    )
    .unwrap();
    assert!(sink.writes().is_empty(), "{:?}", sink.writes());
    assert_eq!(forced.blobs_skipped, 3);
}

#[test]
fn the_blob_phase_spans_the_uploads_inside_the_run_and_is_zero_when_nothing_is_uploaded() {
    let (images, _) = one_image();
    let sink = MemorySink::default();
    let first = copy(&images.plan(), &images, &sink, ONE, &quiet()).unwrap();
    assert_eq!(first.blobs_uploaded, 3);
    assert!(first.blob_seconds > 0.0, "{first:?}");
    assert!(first.blob_seconds <= first.seconds, "{first:?}");
    // Present everywhere: checked, not uploaded, so there is no blob phase.
    let forced = copy(
        &images.plan(),
        &images,
        &sink,
        CopyOptions {
            jobs: 1,
            force: true,
            clean_holding: false,
        },
        &quiet(),
    )
    .unwrap();
    assert_eq!((forced.blobs_uploaded, forced.blobs_skipped), (0, 3));
    assert_eq!(forced.blob_seconds, 0.0);
}

#[test]
fn a_blob_present_is_skipped_and_one_shared_by_many_images_is_uploaded_once_then_mounted() {
    let mut images = Images::default();
    let a = images.manifest(r#"{"a":1}"#, &[b"common-base-layer", b"a-top"]);
    let b = images.manifest(r#"{"b":1}"#, &[b"common-base-layer", b"b-top"]);
    let c = images.manifest(r#"{"c":1}"#, &[b"common-base-layer", b"c-top"]);
    images.name(&a, "gcr.io/x/a:1");
    images.name(&b, "gcr.io/x/b:1");
    images.name(&c, "gcr.io/x/c:1");
    let base = blob_of(&images, &a, 1);
    let sink = MemorySink::default();
    // b's top layer is already there.
    let b_top = blob_of(&images, &b, 2);
    sink.blobs
        .lock()
        .unwrap()
        .insert(("ns/x/b".into(), b_top.digest.clone()));
    let report = copy(&images.plan(), &images, &sink, ONE, &quiet()).unwrap();
    let calls = sink.calls();
    let base_writes: Vec<&String> = calls
        .iter()
        .filter(|c| !c.starts_with("HEAD") && c.contains(&short(&base.digest)))
        .collect();
    assert_eq!(base_writes.len(), 3, "{base_writes:?}");
    assert!(base_writes[0].starts_with("UPLOAD"), "{base_writes:?}");
    assert!(
        base_writes[1..].iter().all(|c| c.starts_with("MOUNT")),
        "{base_writes:?}"
    );
    assert!(!calls
        .iter()
        .any(|c| c == &format!("UPLOAD ns/x/b {}", short(&b_top.digest))));
    assert_eq!(report.blobs_skipped, 1);
    assert_eq!(report.blobs_mounted, 2);
    assert_eq!(
        report.blobs_uploaded,
        3 + 2 + 1,
        "3 configs, 2 tops, the base once"
    );
    // Children before parents: every blob write precedes the first manifest PUT.
    let last_blob = calls
        .iter()
        .rposition(|c| c.starts_with("UPLOAD") || c.starts_with("MOUNT"))
        .unwrap();
    assert!(last_blob < position(&calls, "PUT manifest"));
}

#[test]
fn a_refused_mount_falls_back_to_an_upload() {
    let mut images = Images::default();
    let a = images.manifest(r#"{"a":1}"#, &[b"common"]);
    let b = images.manifest(r#"{"b":1}"#, &[b"common"]);
    images.name(&a, "gcr.io/x/a:1");
    images.name(&b, "gcr.io/x/b:1");
    let common = blob_of(&images, &a, 1);
    let sink = MemorySink {
        refuse_mounts: true,
        ..Default::default()
    };
    let report = copy(&images.plan(), &images, &sink, ONE, &quiet()).unwrap();
    let calls = sink.calls();
    let mount = position(&calls, "MOUNT");
    assert!(calls[mount].contains(&short(&common.digest)));
    assert!(
        calls[mount + 1].starts_with(&format!("UPLOAD"))
            && calls[mount + 1].contains(&short(&common.digest))
    );
    assert!(sink.holds("ns/x/a", &common.digest) && sink.holds("ns/x/b", &common.digest));
    assert_eq!(report.blobs_mounted, 0);
}

#[test]
fn a_nested_index_is_committed_children_first_and_tagged_last() {
    let mut images = Images::default();
    let amd = images.manifest(r#"{"arch":"amd64"}"#, &[b"amd"]);
    let arm = images.manifest(r#"{"arch":"arm64"}"#, &[b"arm"]);
    let inner = images.index_of(&[amd.clone(), arm.clone()]);
    let outer = images.index_of(&[inner.clone()]);
    images.name(&outer, "gcr.io/a/nested:3");
    let sink = MemorySink::default();
    let report = copy(&images.plan(), &images, &sink, ONE, &quiet()).unwrap();
    let puts: Vec<String> = sink
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("PUT"))
        .collect();
    let pos = |d: &Descriptor| {
        puts.iter()
            .position(|c| c.ends_with(&short(&d.digest)))
            .unwrap()
    };
    assert!(pos(&amd) < pos(&inner) && pos(&arm) < pos(&inner) && pos(&inner) < pos(&outer));
    assert_eq!(puts.last().unwrap(), "PUT manifest ns/a/nested 3");
    assert_eq!(report.manifests_pushed, 4);
}

#[test]
fn referrers_are_pushed_and_listed_under_the_fallback_tag_after_the_image_tag() {
    let mut images = Images::default();
    let m = images.manifest(r#"{"os":"linux"}"#, &[b"layer"]);
    images.name(&m, "gcr.io/a/app:1.0");
    let sig = images.referrer(&m, b"sig");
    let sink = MemorySink::default();
    let report = copy(&images.plan(), &images, &sink, ONE, &quiet()).unwrap();
    let calls = sink.calls();
    let fallback = format!("sha256-{}", m.digest.hex());
    let tag = position(&calls, "PUT manifest ns/a/app 1.0");
    let listed = position(&calls, &format!("PUT manifest ns/a/app {fallback}"));
    assert!(
        position(
            &calls,
            &format!("PUT manifest ns/a/app {}", short(&sig.digest))
        ) < tag
    );
    assert!(tag < listed);
    let index: serde_json::Value =
        serde_json::from_slice(&sink.manifest("ns/a/app", &fallback).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], sig.digest.to_string());
    assert_eq!((report.referrers, report.tags_set), (1, 2));
    // Complete now: a rerun reads the tag and the fallback index, writes nothing.
    sink.calls.lock().unwrap().clear();
    copy(&images.plan(), &images, &sink, ONE, &quiet()).unwrap();
    assert!(sink.writes().is_empty());
    assert_eq!(sink.calls().len(), 2, "{:?}", sink.calls());
}

fn counts(r: &CopyReport) -> [u64; 6] {
    [
        r.blobs_uploaded,
        r.blobs_mounted,
        r.blobs_skipped,
        r.bytes_uploaded,
        r.manifests_pushed,
        r.tags_set,
    ]
}

#[test]
fn a_dry_run_sends_nothing_and_counts_what_the_real_copy_then_does() {
    let mut images = Images::default();
    let a = images.manifest(r#"{"a":1}"#, &[b"common-layer", b"a-only"]);
    let b = images.manifest(r#"{"b":1}"#, &[b"common-layer", b"b-only"]);
    let index = images.index_of(&[a.clone(), b.clone()]);
    images.name(&index, "gcr.io/x/multi:1");
    images.name(&a, "gcr.io/x/a:1");
    images.referrer(&a, b"signature");
    let sink = MemorySink::default();
    // Something is there already.
    sink.blobs
        .lock()
        .unwrap()
        .insert(("ns/x/a".into(), blob_of(&images, &a, 2).digest));
    let dry = DryRun::new(&sink);
    let planned = copy(&images.plan(), &images, &dry, ONE, &quiet()).unwrap();
    assert!(
        sink.writes().is_empty(),
        "a dry run wrote: {:?}",
        sink.writes()
    );
    assert!(planned.dry_run);
    let done = copy(&images.plan(), &images, &sink, ONE, &quiet()).unwrap();
    assert_eq!(counts(&planned), counts(&done));
    assert!(counts(&done)[0] > 0 && counts(&done)[1] > 0 && counts(&done)[2] > 0);
}

#[test]
fn a_failing_sink_stops_the_copy_before_any_manifest_is_written() {
    let (images, _) = one_image();
    let sink = MemorySink {
        fail: Some("UPLOAD".into()),
        ..Default::default()
    };
    let err = copy(
        &images.plan(),
        &images,
        &sink,
        CopyOptions {
            jobs: 2,
            force: false,
            clean_holding: false,
        },
        &quiet(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("scripted failure of UPLOAD"),
        "{err}"
    );
    assert!(
        err.to_string().contains("in ns/a/app"),
        "names the repository: {err}"
    );
    assert!(!sink.calls().iter().any(|c| c.starts_with("PUT")));
}

#[test]
fn compare_reports_missing_incomplete_in_sync_and_push_bytes_by_reads_only() {
    let (images, m) = one_image();
    let sink = MemorySink::default();
    let opts = DiffOptions {
        jobs: 2,
        deep: true,
        extra: true,
    };
    let before = compare(&images.plan(), &sink, &opts).unwrap();
    assert_eq!(before.images[0].status, Status::Missing);
    let total: u64 = (0..3).map(|i| blob_of(&images, &m, i).size).sum();
    assert_eq!(before.summary.push_bytes, total);
    assert!(sink.writes().is_empty());
    copy(&images.plan(), &images, &sink, ONE, &quiet()).unwrap();
    let after = compare(&images.plan(), &sink, &opts).unwrap();
    assert_eq!(
        after.images[0].status,
        Status::InSync,
        "{:?}",
        after.images[0]
    );
    assert_eq!(after.summary.push_bytes, 0);
    assert_eq!(after.extra_tags.as_deref().map(<[_]>::len), Some(0));
    // A layer that the sink serves with other bytes is corrupt under --deep.
    let layer = blob_of(&images, &m, 1);
    sink.stored
        .lock()
        .unwrap()
        .insert(layer.digest.clone(), b"bit rot".to_vec());
    let deep = compare(&images.plan(), &sink, &opts).unwrap();
    assert_eq!(deep.images[0].status, Status::Incomplete);
    assert_eq!(deep.images[0].corrupt[0].digest, layer.digest);
    assert_eq!(
        deep.images[0].corrupt[0].actual,
        ferry_store::Digest::sha256_of(b"bit rot").to_string()
    );
}

fn stream(
    images: &Images,
    metadata_first: bool,
    sink: &dyn crate::Sink,
) -> Result<StreamOutcome, crate::CopyError> {
    copy_stream(
        &images.package(metadata_first),
        sink,
        CopyOptions {
            jobs: 2,
            force: false,
            clean_holding: false,
        },
        &map,
        Arc::new(AtomicU64::new(0)),
        &quiet(),
    )
}

#[test]
fn configs_read_with_the_manifests_are_uploaded_by_the_workers_not_the_reading_thread() {
    // Over a slow link each small upload costs round trips: delivered one by
    // one on the reading thread, they held back the first layer (1.2 s for
    // 8 configs at 50 ms RTT, BENCHMARKS.md).
    let (images, m) = one_image();
    let sink = MemorySink::default();
    assert!(matches!(
        stream(&images, true, &sink).unwrap(),
        StreamOutcome::Copied(_)
    ));
    let config = blob_of(&images, &m, 0);
    let threads = sink.upload_threads.lock().unwrap();
    let (_, on) = threads
        .iter()
        .find(|(d, _)| *d == config.digest)
        .expect("the config was uploaded");
    assert_ne!(
        *on,
        std::thread::current().id(),
        "the config was uploaded by the reading thread"
    );
    drop(threads);
    assert_eq!(
        sink.manifest("ns/a/app", "1.0").unwrap(),
        images.blobs[&m.digest]
    );
}

#[test]
fn presence_checks_run_at_least_sixteen_at_once_whatever_jobs_says() {
    // Presence checks are latency-bound: 40 blobs asked 4 at a time cost 10
    // round trips before the first upload.
    let mut images = Images::default();
    for i in 0..4 {
        let layers: Vec<Vec<u8>> = (0..3)
            .map(|l| format!("layer {i}.{l}").into_bytes())
            .collect();
        let refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
        let m = images.manifest(&format!(r#"{{"image":{i}}}"#), &refs);
        images.name(&m, &format!("gcr.io/a/app{i}:1.0"));
    }
    let sink = MemorySink {
        presence_rendezvous: Some(16),
        ..Default::default()
    };
    let report = copy(&images.plan(), &images, &sink, ONE, &quiet()).unwrap();
    assert_eq!(report.blobs_uploaded, 16);
}

#[test]
fn a_metadata_first_package_is_copied_in_one_read_and_a_layers_first_one_is_refused_before_any_write(
) {
    let (images, m) = one_image();
    let sink = MemorySink::default();
    match stream(&images, false, &sink).unwrap() {
        StreamOutcome::NotStreamable(reason) => assert!(reason.contains("index.json"), "{reason}"),
        StreamOutcome::Copied(_) => panic!("a layers-first package was streamed"),
    }
    assert!(sink.writes().is_empty());
    let StreamOutcome::Copied(report) = stream(&images, true, &sink).unwrap() else {
        panic!("not streamed")
    };
    assert_eq!(report.blobs_uploaded, 3);
    assert_eq!(
        sink.manifest("ns/a/app", "1.0").unwrap(),
        images.blobs[&m.digest]
    );
    let calls = sink.calls();
    let last_blob = calls.iter().rposition(|c| c.starts_with("UPLOAD")).unwrap();
    assert!(last_blob < position(&calls, "PUT manifest"));
}

#[test]
fn a_streamed_dry_run_counts_what_the_streamed_copy_then_does() {
    let mut images = Images::default();
    let a = images.manifest(r#"{"a":1}"#, &[b"common-layer", b"a-only"]);
    let b = images.manifest(r#"{"b":1}"#, &[b"common-layer", b"b-only"]);
    images.name(&a, "gcr.io/x/a:1");
    images.name(&b, "gcr.io/x/b:1");
    let sink = MemorySink::default();
    let dry = DryRun::new(&sink);
    let StreamOutcome::Copied(planned) = stream(&images, true, &dry).unwrap() else {
        panic!()
    };
    assert!(sink.writes().is_empty());
    let StreamOutcome::Copied(done) = stream(&images, true, &sink).unwrap() else {
        panic!()
    };
    assert_eq!(counts(&planned), counts(&done));
}

#[test]
fn a_corrupt_blob_in_a_package_is_refused_naming_it_and_nothing_is_tagged() {
    let (images, m) = one_image();
    let layer = blob_of(&images, &m, 1);
    let mut package = images.package(true);
    for (path, bytes) in package.entries.iter_mut() {
        if path.ends_with(layer.digest.hex()) {
            bytes[0] ^= 1;
        }
    }
    let sink = MemorySink::default();
    let err = copy_stream(
        &package,
        &sink,
        ONE,
        &map,
        Arc::new(AtomicU64::new(0)),
        &quiet(),
    )
    .err()
    .expect("a corrupt package was copied");
    assert!(
        err.to_string().contains(layer.digest.hex())
            || sink.calls().iter().any(|c| c.contains("DIGEST")),
        "{err}"
    );
    assert!(sink.manifest("ns/a/app", "1.0").is_none());
}

#[test]
fn read_plan_reads_a_layers_first_package_without_writing_and_compares() {
    let (images, _) = one_image();
    let plan = read_plan(&images.package(false), &map, Arc::new(AtomicU64::new(0)))
        .unwrap()
        .unwrap();
    assert_eq!(plan.images.len(), 1);
    let sink = MemorySink::default();
    let report = compare(
        &plan,
        &sink,
        &DiffOptions {
            jobs: 1,
            deep: false,
            extra: false,
        },
    )
    .unwrap();
    assert_eq!(report.images[0].status, Status::Missing);
    assert!(sink.writes().is_empty());
}

/// Runs `f` on a thread; fails the test if it neither returns nor panics in
/// a minute (a deadlock detector, not a timing assertion).
fn finishes<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::thread::Result<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
    });
    rx.recv_timeout(std::time::Duration::from_secs(60))
        .expect("the copy hung on a dead peer thread")
}

#[test]
fn a_panic_while_reporting_an_upload_ends_the_copy_with_an_error_not_a_hang() {
    let (images, _) = one_image();
    let result = finishes(move || {
        let sink = MemorySink::default();
        let panicking = |e: CopyEvent| {
            if matches!(e, CopyEvent::BlobUploaded { .. }) {
                panic!("failed printing to stdout: Broken pipe (os error 32)");
            }
        };
        copy_stream(
            &images.package(true),
            &sink,
            CopyOptions {
                jobs: 2,
                force: false,
                clean_holding: false,
            },
            &map,
            Arc::new(AtomicU64::new(0)),
            &panicking,
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    });
    match result {
        Ok(Err(message)) => assert!(message.contains("Broken pipe"), "{message}"),
        Ok(Ok(())) => panic!("the copy reported success"),
        Err(_) => {} // the panic surfaced on the calling thread: also an end, not a hang
    }
}

#[test]
fn a_panic_of_the_reading_thread_never_leaves_workers_waiting() {
    struct Exploding(crate::testing::MemoryPackage);
    impl crate::stream::SinglePassSource for Exploding {
        fn read_once(
            &self,
            progress: Arc<AtomicU64>,
            visit: &mut dyn FnMut(
                crate::stream::Entry<'_>,
            )
                -> Result<crate::stream::Flow, crate::stream::EntryError>,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            let seen = Mutex::new(0);
            self.0.read_once(progress, &mut |e| {
                *seen.lock().unwrap() += 1;
                if *seen.lock().unwrap() == 5 {
                    panic!("the decoder thread died");
                }
                visit(e)
            })
        }
    }
    let (images, _) = one_image();
    let result = finishes(move || {
        let sink = MemorySink::default();
        let source = Exploding(images.package(true));
        let _ = copy_stream(
            &source,
            &sink,
            CopyOptions {
                jobs: 2,
                force: false,
                clean_holding: false,
            },
            &map,
            Arc::new(AtomicU64::new(0)),
            &quiet(),
        );
    });
    assert!(
        result.is_err(),
        "the reading thread's panic surfaces as a panic"
    );
}

/// The read paths (`stream`, `holding`, `second-read`…) a copy reports.
#[derive(Default)]
struct Paths(Mutex<Vec<String>>);

impl Paths {
    fn record(&self) -> impl Fn(CopyEvent) + Sync + '_ {
        move |e| {
            if let CopyEvent::ReadPath { path, .. } = e {
                self.0.lock().unwrap().push(path);
            }
        }
    }

    fn taken(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn reads(p: &crate::testing::MemoryPackage) -> u64 {
    p.reads.load(std::sync::atomic::Ordering::Relaxed)
}

fn two_images_sharing_a_layer() -> Images {
    let mut images = Images::default();
    let a = images.manifest(r#"{"a":1}"#, &[b"common-layer", b"a-only"]);
    let b = images.manifest(r#"{"b":1}"#, &[b"common-layer", b"b-only"]);
    images.name(&a, "gcr.io/x/a:1");
    images.name(&b, "gcr.io/x/b:1");
    images
}

#[test]
fn a_layers_first_package_goes_through_the_holding_repository_in_one_read() {
    let images = two_images_sharing_a_layer();
    let package = images.package(false);
    let sink = MemorySink::with_holding();
    let paths = Paths::default();
    let events = paths.record();
    let outcome = copy_stream(
        &package,
        &sink,
        CopyOptions {
            jobs: 2,
            force: false,
            clean_holding: false,
        },
        &map,
        Arc::new(AtomicU64::new(0)),
        &events,
    )
    .unwrap();
    let StreamOutcome::Copied(report) = outcome else {
        panic!("not copied")
    };
    assert_eq!(reads(&package), 1, "one read of the package");
    assert_eq!(paths.taken(), ["holding"]);
    let calls = sink.calls();
    // Layers went to the holding repository before index.json was read, then were mounted.
    let layers: Vec<_> = images
        .blobs
        .values()
        .filter(|b| b.first() != Some(&b'{'))
        .collect();
    assert_eq!(layers.len(), 3);
    for layer in &layers {
        let d = ferry_store::Digest::sha256_of(layer);
        assert!(
            calls.contains(&format!("UPLOAD ns/ferry-holding {}", short(&d))),
            "{calls:#?}"
        );
        assert!(
            !calls
                .iter()
                .any(|c| c.starts_with("UPLOAD ns/x/") && c.ends_with(&short(&d))),
            "a layer was sent twice: {calls:#?}"
        );
    }
    for (repo, tag) in [("ns/x/a", "1"), ("ns/x/b", "1")] {
        assert!(
            sink.manifest(repo, tag).is_some(),
            "{repo}:{tag} not tagged"
        );
    }
    assert_eq!(
        report.blobs_mounted, 4,
        "each image's two layers mounted from holding"
    );
    let last_blob = calls
        .iter()
        .rposition(|c| c.starts_with("UPLOAD") || c.starts_with("MOUNT"))
        .unwrap();
    assert!(last_blob < position(&calls, "PUT manifest"));
    // A rerun: the images are complete; blobs found in holding are not sent again.
    sink.calls.lock().unwrap().clear();
    let StreamOutcome::Copied(again) = copy_stream(
        &package,
        &sink,
        ONE,
        &map,
        Arc::new(AtomicU64::new(0)),
        &quiet(),
    )
    .unwrap() else {
        panic!()
    };
    assert!(sink.writes().is_empty(), "{:?}", sink.writes());
    assert_eq!(again.images_up_to_date, 2);
}

#[test]
fn refused_mounts_from_holding_take_a_second_read_and_the_images_still_arrive_whole() {
    let images = two_images_sharing_a_layer();
    let package = images.package(false);
    let sink = MemorySink {
        refuse_mounts: true,
        ..MemorySink::with_holding()
    };
    let paths = Paths::default();
    let events = paths.record();
    let StreamOutcome::Copied(_) = copy_stream(
        &package,
        &sink,
        ONE,
        &map,
        Arc::new(AtomicU64::new(0)),
        &events,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(reads(&package), 2, "a second read, no disk");
    assert_eq!(paths.taken(), ["holding", "second-read"]);
    for image in two_images_sharing_a_layer().plan().images {
        for b in &image.blobs {
            assert!(
                sink.holds(&image.dest.repository, &b.digest),
                "{} lacks {}",
                image.dest.repository,
                b.digest
            );
        }
        assert!(sink.manifest(&image.dest.repository, "1").is_some());
    }
}

#[test]
fn a_dry_run_of_a_layers_first_package_reads_once_writes_nothing_and_counts_right() {
    let images = two_images_sharing_a_layer();
    let package = images.package(false);
    let sink = MemorySink::with_holding();
    let dry = DryRun::new(&sink);
    let StreamOutcome::Copied(planned) = copy_stream(
        &package,
        &dry,
        ONE,
        &map,
        Arc::new(AtomicU64::new(0)),
        &quiet(),
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(reads(&package), 1);
    assert!(sink.writes().is_empty(), "{:?}", sink.writes());
    // What a direct copy (no holding) then does.
    let plain = MemorySink::default();
    let done = copy(&images.plan(), &images, &plain, ONE, &quiet()).unwrap();
    assert_eq!(counts(&planned), counts(&done));
}

/// Two images, one with a layer over the read-ahead's per-blob limit (teed).
fn with_a_large_layer() -> Images {
    let mut images = Images::default();
    let large: Vec<u8> = (0..25u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let a = images.manifest(r#"{"a":1}"#, &[&large, b"a-small"]);
    let b = images.manifest(r#"{"b":1}"#, &[b"b-small"]);
    images.name(&a, "gcr.io/x/a:1");
    images.name(&b, "gcr.io/x/b:1");
    images
}

fn assert_holds_every_image(images: &Images, sink: &MemorySink) {
    for image in images.plan().images {
        for b in &image.blobs {
            assert!(
                sink.holds(&image.dest.repository, &b.digest),
                "{} lacks {}",
                image.dest.repository,
                b.digest
            );
            assert_eq!(
                sink.stored
                    .lock()
                    .unwrap()
                    .get(&b.digest)
                    .map(|s| ferry_store::Digest::sha256_of(s)),
                Some(b.digest.clone())
            );
        }
        assert_eq!(
            sink.manifest(&image.dest.repository, "1").unwrap(),
            images.blobs[&image.root.digest]
        );
    }
}

#[test]
fn one_read_feeds_several_sinks_and_a_large_blob_is_teed_to_each() {
    use crate::stream::{copy_stream_to_many, Target};
    let images = with_a_large_layer();
    for metadata_first in [true, false] {
        let package = images.package(metadata_first);
        let (one, two) = (MemorySink::with_holding(), MemorySink::with_holding());
        let targets = [
            Target {
                sink: &one,
                map: &map,
                events: &quiet(),
            },
            Target {
                sink: &two,
                map: &map,
                events: &quiet(),
            },
        ];
        let results = copy_stream_to_many(
            &package,
            &targets,
            CopyOptions {
                jobs: 2,
                force: false,
                clean_holding: false,
            },
            Arc::new(AtomicU64::new(0)),
        );
        assert_eq!(
            reads(&package),
            1,
            "one read for both sinks (metadata first: {metadata_first})"
        );
        for (sink, result) in [(&one, &results[0]), (&two, &results[1])] {
            assert!(
                matches!(result, Ok(StreamOutcome::Copied(_))),
                "{:?}",
                result.as_ref().err()
            );
            assert_holds_every_image(&images, sink);
        }
    }
}

#[test]
fn a_failing_sink_does_not_stop_the_others() {
    use crate::stream::{copy_stream_to_many, Target};
    let images = with_a_large_layer();
    let package = images.package(true);
    let good = MemorySink::default();
    let broken = MemorySink {
        fail: Some("UPLOAD".into()),
        ..Default::default()
    };
    let targets = [
        Target {
            sink: &broken,
            map: &map,
            events: &quiet(),
        },
        Target {
            sink: &good,
            map: &map,
            events: &quiet(),
        },
    ];
    let results = copy_stream_to_many(
        &package,
        &targets,
        CopyOptions {
            jobs: 2,
            force: false,
            clean_holding: false,
        },
        Arc::new(AtomicU64::new(0)),
    );
    let err = results[0].as_ref().err().expect("the broken sink failed");
    assert!(err.to_string().contains("scripted failure"), "{err}");
    assert!(
        broken.manifest("ns/x/a", "1").is_none(),
        "a failed sink got a tag"
    );
    assert!(matches!(results[1], Ok(StreamOutcome::Copied(_))));
    assert_holds_every_image(&images, &good);
}

#[test]
fn a_refused_holding_repository_falls_back_to_a_second_read() {
    let images = with_a_large_layer();
    let package = images.package(false);
    let sink = MemorySink {
        fail: Some("UPLOAD ns/ferry-holding".into()),
        ..MemorySink::with_holding()
    };
    let paths = Paths::default();
    let events = paths.record();
    let outcome = copy_stream(
        &package,
        &sink,
        CopyOptions {
            jobs: 2,
            force: false,
            clean_holding: false,
        },
        &map,
        Arc::new(AtomicU64::new(0)),
        &events,
    );
    assert!(
        matches!(outcome, Ok(StreamOutcome::Copied(_))),
        "{:?}",
        outcome.err()
    );
    assert_eq!(reads(&package), 2, "a second read, no disk");
    assert_eq!(paths.taken(), ["holding", "second-read"]);
    let holding_uploads = sink
        .calls()
        .iter()
        .filter(|c| c.starts_with("UPLOAD ns/ferry-holding"))
        .count();
    assert_eq!(
        holding_uploads, 1,
        "one refused probe, then nothing more to the holding repository"
    );
    assert_holds_every_image(&images, &sink);
}
