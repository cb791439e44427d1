//! Registries as a copy source (what ferry-pack pulls from), against
//! ferry-testkit's in-process fake registry, counting its requests: a tag is
//! resolved once, blobs are checked against their digest (a registry serving
//! other bytes is an error naming the repository and the digest, not retried
//! into success), oversized manifests are refused, a cut transfer resumes
//! with `Range` (or from 0 where `Range` is ignored), and a copy into a
//! partial store fetches only what it lacks.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use ferry_copy::executor::{copy, CopyOptions};
use ferry_copy::source::Source;
use ferry_copy::{CopyEvent, StoreSink};
use ferry_registry::retry::RetryPolicy;
use ferry_registry::source::{Place, RegistrySource};
use ferry_registry::transport::TransportOptions;
use ferry_registry::{Client, RegistryError, Target};
use ferry_store::layout::named_entry;
use ferry_store::{media, Descriptor, Digest, Reference, Store};
use ferry_testkit::fake_registry::{FakeRegistry, Quirks, Rule};
use serde_json::json;

fn source_for(reg: &FakeRegistry) -> RegistrySource {
    let target = Target::parse(&format!("http://{}", reg.addr())).unwrap();
    let client = Client::new(&target, &TransportOptions::default(), None)
        .unwrap()
        .with_retry(RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(1),
            max: Duration::from_millis(5),
        });
    RegistrySource::new([Arc::new(client)])
}

/// An image in `repo` tagged `tag`: (manifest descriptor, config, layers).
fn seed(
    reg: &FakeRegistry,
    repo: &str,
    tag: &str,
    layers: &[Vec<u8>],
) -> (Descriptor, Vec<Descriptor>) {
    let config = br#"{"architecture":"amd64","os":"linux"}"#;
    let cfg = Descriptor::new(
        media::OCI_CONFIG,
        reg.add_blob(repo, config).parse().unwrap(),
        config.len() as u64,
    );
    let mut blobs = vec![cfg.clone()];
    for l in layers {
        blobs.push(Descriptor::new(
            media::OCI_LAYER_GZIP,
            reg.add_blob(repo, l).parse().unwrap(),
            l.len() as u64,
        ));
    }
    let body = json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": cfg, "layers": &blobs[1..]});
    let bytes = serde_json::to_vec(&body).unwrap();
    reg.add_manifest(repo, tag, media::OCI_MANIFEST, &bytes);
    let desc = Descriptor::new(
        media::OCI_MANIFEST,
        Digest::sha256_of(&bytes),
        bytes.len() as u64,
    );
    (desc, blobs)
}

fn count(reg: &FakeRegistry, prefix: &str) -> usize {
    reg.requests()
        .iter()
        .filter(|r| r.starts_with(prefix))
        .count()
}

fn reference(reg: &FakeRegistry, rest: &str) -> Reference {
    format!("{}/{rest}", reg.addr()).parse().unwrap()
}

#[test]
fn a_tag_is_resolved_with_one_get_and_by_digest_the_bytes_are_checked() {
    let reg = FakeRegistry::start();
    let (desc, _) = seed(&reg, "demo/app", "1.0", &[b"layer".to_vec()]);
    let source = source_for(&reg);
    let got = source
        .resolve(&reference(&reg, "demo/app:1.0"))
        .unwrap()
        .unwrap();
    assert_eq!(got.descriptor, desc);
    assert_eq!(count(&reg, "GET /v2/demo/app/manifests/"), 1);
    assert_eq!(count(&reg, "HEAD "), 0, "resolved with the GET alone");
    assert_eq!(
        source.place_of(&desc.digest).unwrap().repository,
        "demo/app"
    );

    // By digest: served bytes are checked against the digest asked for.
    let lying = FakeRegistry::with_quirks(Quirks {
        serve_wrong_manifest_bytes: true,
        ..Quirks::default()
    });
    let (d, _) = seed(&lying, "demo/app", "1.0", &[b"layer".to_vec()]);
    let err = source_for(&lying)
        .resolve(&reference(&lying, &format!("demo/app@{}", d.digest)))
        .unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&d.digest.to_string()), "{err}");
    assert_eq!(
        count(&lying, "GET /v2/demo/app/manifests/"),
        1,
        "not retried"
    );
}

#[test]
fn a_missing_reference_is_none_and_an_oversized_manifest_is_refused() {
    let reg = FakeRegistry::start();
    let source = source_for(&reg);
    assert!(source
        .resolve(&reference(&reg, "demo/nope:1.0"))
        .unwrap()
        .is_none());

    let mut huge = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","annotations":{"pad":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 4 * 1024 * 1024));
    huge.extend_from_slice(br#""}}"#);
    reg.add_manifest("demo/huge", "1.0", media::OCI_MANIFEST, &huge);
    let err = source
        .resolve(&reference(&reg, "demo/huge:1.0"))
        .unwrap_err();
    assert!(
        matches!(err, RegistryError::ManifestTooLarge { .. }),
        "{err}"
    );
    let text = err.to_string();
    assert!(
        text.contains("demo/huge:1.0") && text.contains("4 MiB"),
        "{text}"
    );
    assert_eq!(
        count(&reg, "GET /v2/demo/huge/manifests/"),
        1,
        "not retried"
    );
}

#[test]
fn blob_bytes_that_do_not_match_are_an_error_naming_repository_and_digest_never_retried() {
    let reg = FakeRegistry::start();
    let layer = vec![7u8; 50_000];
    let (_, blobs) = seed(&reg, "demo/app", "1.0", &[layer]);
    let source = source_for(&reg);
    let root = source
        .resolve(&reference(&reg, "demo/app:1.0"))
        .unwrap()
        .unwrap();
    let place = source.place_of(&root.descriptor.digest).unwrap();
    let bad = blobs[1].clone();
    source.locate(&bad.digest, &place);
    reg.script(Rule {
        method: "GET".into(),
        path_contains: format!("/blobs/{}", bad.digest),
        status: 200,
        times: 1,
        body: "x".repeat(50_000),
        headers: vec![],
    });
    let mut reader = source.open_blob(&bad, 0).unwrap();
    let err = std::io::copy(&mut reader, &mut std::io::sink()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    let text = err.to_string();
    assert!(
        text.contains(&bad.digest.to_string()) && text.contains("demo/app"),
        "{text}"
    );
    assert_eq!(
        count(&reg, &format!("GET /v2/demo/app/blobs/{}", bad.digest)),
        1
    );
}

#[test]
fn a_cut_transfer_resumes_with_range_or_from_zero_where_range_is_ignored() {
    for ignore_range in [false, true] {
        let reg = FakeRegistry::with_quirks(Quirks {
            cut_blob_after: Some(10_000),
            ignore_range,
            ..Quirks::default()
        });
        let layer: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let (_, blobs) = seed(&reg, "demo/app", "1.0", std::slice::from_ref(&layer));
        let source = source_for(&reg);
        source.locate(
            &blobs[1].digest,
            &Place {
                host: reg.addr(),
                repository: "demo/app".into(),
            },
        );
        let mut got = Vec::new();
        source
            .open_blob(&blobs[1], 0)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, layer, "ignore_range {ignore_range}");
        let gets = count(&reg, &format!("GET /v2/demo/app/blobs/{}", blobs[1].digest));
        assert_eq!(gets, 2, "one cut transfer, one resumed");
    }
}

#[test]
fn a_copy_into_a_partial_store_fetches_only_what_it_lacks() {
    let reg = FakeRegistry::start();
    let layers = vec![vec![1u8; 30_000], vec![2u8; 40_000], vec![3u8; 50_000]];
    let (desc, blobs) = seed(&reg, "demo/app", "1.0", &layers);
    let source = source_for(&reg);
    let name = format!("{}/demo/app:1.0", reg.addr());
    let root = source.resolve(&name.parse().unwrap()).unwrap().unwrap();
    let place = source.place_of(&desc.digest).unwrap();
    for b in &blobs {
        source.locate(&b.digest, &place);
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_for_write(dir.path()).unwrap();
    // As after a kill: the manifest and one layer are already in the cache.
    store
        .put_bytes(&desc.digest, &root.bytes, "manifest")
        .unwrap();
    store
        .put_bytes(&blobs[2].digest, &layers[1], "layer")
        .unwrap();
    let entries = vec![named_entry(root.descriptor.clone(), &name)];
    let plan = ferry_copy::plan(
        &entries,
        |n| {
            let r: Reference = n.parse().map_err(|e| format!("{e}"))?;
            Ok(ferry_copy::Destination {
                display: n.to_owned(),
                repository: format!("{}/{}", r.host, r.repository),
                tag: r.tag,
            })
        },
        |d| store.read_small_blob(d, 1 << 22),
    )
    .unwrap();
    reg.clear_requests();
    let sink = StoreSink::new(&store);
    let options = CopyOptions {
        jobs: 2,
        force: false,
        clean_holding: false,
    };
    copy(&plan, &source, &sink, options, &|_: CopyEvent| {}).unwrap();
    let gets: Vec<String> = reg
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /v2/demo/app/blobs/"))
        .collect();
    assert_eq!(
        gets.len(),
        3,
        "config and two layers, not the cached one: {gets:?}"
    );
    assert!(!gets
        .iter()
        .any(|g| g.contains(&blobs[2].digest.to_string())));
    for (b, bytes) in blobs[1..].iter().zip(&layers) {
        assert_eq!(&std::fs::read(store.blob_path(&b.digest)).unwrap(), bytes);
    }
    // A rerun asks nothing of the registry.
    reg.clear_requests();
    copy(&plan, &source, &sink, options, &|_: CopyEvent| {}).unwrap();
    assert!(reg.requests().is_empty(), "{:?}", reg.requests());
}
