//! The copy engine driving the registry sink against the in-process fake
//! registry: the exact HTTP request sequence of a push (in the manner of
//! go-containerregistry's `write_test.go`), skipping a present blob, uploading
//! a shared blob once and mounting it elsewhere, a refused mount falling back
//! to an upload in the same session, and a dry run that sends no write.

use ferry_copy::{copy, CopyOptions, CopyReport, DryRun, Sink, StoreSource};
use ferry_registry::meter::TransferMeter;
use ferry_registry::sink::{destination, RegistrySink};
use ferry_registry::transport::TransportOptions;
use ferry_registry::upload::{NoSessionLog, UploadOptions};
use ferry_registry::{Client, Target};
use ferry_store::Store;
use ferry_testkit::fake_registry::{FakeRegistry, Quirks};
use ferry_testkit::{generate_layout, Fixture, FixtureSpec};

fn store(images: usize, shared_base: bool) -> (tempfile::TempDir, Store, Fixture) {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let spec = FixtureSpec {
        seed: 5,
        images,
        layers_per_image: 1,
        layer_size: 1024,
        shared_base_layer: shared_base,
        ..Default::default()
    };
    let fixture = generate_layout(&spec, &layout).unwrap();
    let store = Store::open_read_only(&layout).unwrap();
    (dir, store, fixture)
}

fn client(reg: &FakeRegistry) -> Client {
    let target = Target::parse(&format!("http://{}/ns", reg.addr())).unwrap();
    Client::new(&target, &TransportOptions::default(), None).unwrap()
}

/// Pushes the store with one job (a deterministic order), through `wrap`.
fn push(reg: &FakeRegistry, store: &Store, dry_run: bool) -> CopyReport {
    let client = client(reg);
    let meter = TransferMeter::new();
    let registry = RegistrySink::new(&client, &meter, &NoSessionLog, UploadOptions::default());
    let dry = DryRun::new(&registry);
    let sink: &dyn Sink = if dry_run { &dry } else { &registry };
    let source = StoreSource::new(store);
    let plan = source.plan(|n| destination(client.target(), n)).unwrap();
    copy(
        &plan,
        &source,
        sink,
        CopyOptions {
            jobs: 1,
            force: false,
            clean_holding: false,
        },
        &|_| {},
    )
    .unwrap()
}

#[test]
fn one_image_is_pushed_with_exactly_this_request_sequence() {
    let reg = FakeRegistry::start();
    let (_dir, store, fixture) = store(1, false);
    push(&reg, &store, false);
    let image = &fixture.images[0];
    let repo = format!(
        "ns/{}",
        image
            .reference
            .split_once('/')
            .unwrap()
            .1
            .split(':')
            .next()
            .unwrap()
    );
    let tag = image.reference.rsplit(':').next().unwrap();
    // Ping; is the image complete (its tag)?; one HEAD per blob (any order
    // among them); each blob in one session, largest first; the manifest by
    // digest; the tag, last.
    let mut blobs: Vec<&ferry_store::Descriptor> = image
        .blobs
        .iter()
        .filter(|b| !ferry_store::media::is_manifest_like(&b.media_type))
        .collect();
    blobs.sort_by_key(|b| b.digest.to_string());
    let mut expected = vec![
        "GET /v2/".to_owned(),
        format!("HEAD /v2/{repo}/manifests/{tag}"),
    ];
    expected.extend(
        blobs
            .iter()
            .map(|b| format!("HEAD /v2/{repo}/blobs/{}", b.digest)),
    );
    let mut by_size = blobs.clone();
    by_size.sort_by_key(|b| std::cmp::Reverse(b.size));
    for (i, b) in by_size.iter().enumerate() {
        expected.push(format!("POST /v2/{repo}/blobs/uploads/"));
        expected.push(format!(
            "PUT /v2/{repo}/blobs/uploads/u{}?digest={}",
            i + 1,
            b.digest
        ));
    }
    let root = &image.descriptor.digest;
    expected.extend([
        format!("HEAD /v2/{repo}/manifests/{root}"),
        format!("PUT /v2/{repo}/manifests/{root}"),
        format!("HEAD /v2/{repo}/manifests/{tag}"),
        format!("PUT /v2/{repo}/manifests/{tag}"),
    ]);
    // The presence checks run concurrently (16 in flight): their order among
    // themselves is not the engine's to keep, only that they all come after the
    // tag's HEAD and before the first upload.
    let mut got = reg.requests();
    let checks = 2..2 + blobs.len();
    got[checks.clone()].sort();
    expected[checks].sort();
    assert_eq!(got, expected);
    // A rerun: ping, one HEAD of the tag, nothing else.
    reg.clear_requests();
    let again = push(&reg, &store, false);
    assert_eq!(again.images_up_to_date, 1);
    let requests = reg.requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(requests[1], format!("HEAD /v2/{repo}/manifests/{tag}"));
}

#[test]
fn a_shared_blob_is_uploaded_once_then_mounted_and_a_present_one_is_not_sent() {
    let reg = FakeRegistry::start();
    let (_dir, store, fixture) = store(3, true);
    let report = push(&reg, &store, false);
    let requests = reg.requests();
    let mounts: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with("POST") && r.contains("mount="))
        .collect();
    assert_eq!(
        mounts.len(),
        2,
        "the shared base is mounted into the 2 other repositories: {requests:#?}"
    );
    assert_eq!(report.blobs_mounted, 2);
    let base = mounts[0]
        .split("mount=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let uploads_of_base = requests
        .iter()
        .filter(|r| r.starts_with("PUT") && r.contains("/blobs/uploads/") && r.contains(&base))
        .count();
    assert_eq!(uploads_of_base, 1, "{requests:#?}");
    assert_eq!(report.images.len(), fixture.images.len());
}

#[test]
fn a_refused_mount_uploads_in_the_session_the_registry_opened() {
    let reg = FakeRegistry::with_quirks(Quirks {
        refuse_mounts: true,
        ..Quirks::default()
    });
    let (_dir, store, _) = store(2, true);
    let report = push(&reg, &store, false);
    let requests = reg.requests();
    let mount = requests
        .iter()
        .position(|r| r.starts_with("POST") && r.contains("mount="))
        .expect("a mount was tried");
    assert!(
        requests[mount + 1].starts_with("PUT") && requests[mount + 1].contains("/blobs/uploads/"),
        "the refused mount's session carries the upload: {requests:#?}"
    );
    assert_eq!(report.blobs_mounted, 0);
}

#[test]
fn a_dry_run_sends_only_reads_and_counts_what_the_push_then_does() {
    let reg = FakeRegistry::start();
    let (_dir, store, _) = store(3, true);
    let planned = push(&reg, &store, true);
    let writes: Vec<String> = reg
        .requests()
        .into_iter()
        .filter(|r| !r.starts_with("GET") && !r.starts_with("HEAD"))
        .collect();
    assert!(writes.is_empty(), "a dry run wrote: {writes:#?}");
    let done = push(&reg, &store, false);
    let counts = |r: &CopyReport| {
        (
            r.blobs_uploaded,
            r.blobs_mounted,
            r.blobs_skipped,
            r.bytes_uploaded,
            r.manifests_pushed,
            r.tags_set,
        )
    };
    assert_eq!(counts(&planned), counts(&done));
}

/// A registry that cannot tell whether it has a blob (HEAD answers 500 every
/// time, as distribution does for a blob whose link file a crash left empty)
/// gets the blob uploaded, which repairs it, instead of failing the push:
/// the upload is content-addressed, so sending it again is always safe.
#[test]
fn a_blob_the_registry_cannot_answer_for_is_uploaded_and_the_push_completes() {
    let reg = FakeRegistry::start();
    let (_dir, store, fixture) = store(1, false);
    let layer = fixture.images[0]
        .blobs
        .iter()
        .find(|b| b.media_type.contains("layer"))
        .expect("a layer")
        .digest
        .to_string();
    reg.script(ferry_testkit::fake_registry::Rule {
        method: "HEAD".into(),
        path_contains: format!("/blobs/{layer}"),
        status: 500,
        times: 1000,
        body: String::new(),
        headers: vec![],
    });
    let target = Target::parse(&format!("http://{}/ns", reg.addr())).unwrap();
    let client = Client::new(&target, &TransportOptions::default(), None)
        .unwrap()
        .with_retry(ferry_registry::retry::RetryPolicy {
            attempts: 2,
            base: std::time::Duration::from_millis(1),
            max: std::time::Duration::from_millis(1),
        });
    let meter = TransferMeter::new();
    let sink = RegistrySink::new(&client, &meter, &NoSessionLog, UploadOptions::default());
    let source = StoreSource::new(&store);
    let plan = source.plan(|n| destination(client.target(), n)).unwrap();
    let report = copy(
        &plan,
        &source,
        &sink,
        CopyOptions {
            jobs: 1,
            force: false,
            clean_holding: false,
        },
        &|_| {},
    )
    .expect("the push completes");
    assert_eq!(report.images.len(), 1);
    let repo = plan.images[0].dest.repository.clone();
    assert!(reg.blob(&repo, &layer).is_some(), "the layer was uploaded");
    let heads = reg
        .requests()
        .iter()
        .filter(|r| r.starts_with("HEAD") && r.contains(&layer))
        .count();
    assert_eq!(
        heads, 2,
        "asked as often as the retry policy allows, no more"
    );
}
