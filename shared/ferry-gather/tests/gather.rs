//! Gathering from registries, against ferry-testkit's in-process fake
//! registry (request log): referrers by the API and by the fallback tag,
//! cosign-style tags, `--platform` filtering, every missing reference named
//! at once, and a rerun that asks the registry for tags only.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_copy::referrer::fallback_tag;
use ferry_gather::{gather_registries, parse_reference, PackError, PackEvent, PackOptions};
use ferry_registry::retry::RetryPolicy;
use ferry_registry::source::RegistrySource;
use ferry_registry::transport::TransportOptions;
use ferry_registry::{Client, Target};
use ferry_store::{media, Descriptor, Digest, Store};
use ferry_testkit::fake_registry::{FakeRegistry, Quirks};
use serde_json::json;

fn source_for(reg: &FakeRegistry) -> RegistrySource {
    let target = Target::parse(&format!("http://{}", reg.addr())).unwrap();
    let client = Client::new(&target, &TransportOptions::default(), None)
        .unwrap()
        .with_retry(RetryPolicy {
            attempts: 2,
            base: Duration::from_millis(1),
            max: Duration::from_millis(2),
        });
    RegistrySource::new([Arc::new(client)])
}

fn put(reg: &FakeRegistry, repo: &str, media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor::new(
        media_type,
        reg.add_blob(repo, bytes).parse().unwrap(),
        bytes.len() as u64,
    )
}

/// A manifest of one layer for `arch`, stored by digest: its descriptor.
fn manifest(reg: &FakeRegistry, repo: &str, arch: &str) -> Descriptor {
    let config = put(
        reg,
        repo,
        media::OCI_CONFIG,
        format!(r#"{{"os":"linux","architecture":"{arch}"}}"#).as_bytes(),
    );
    let layer = put(
        reg,
        repo,
        media::OCI_LAYER_GZIP,
        format!("layer of {arch}").as_bytes(),
    );
    let bytes = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": config, "layers": [layer]}),
    )
    .unwrap();
    let d = Descriptor::new(
        media::OCI_MANIFEST,
        Digest::sha256_of(&bytes),
        bytes.len() as u64,
    );
    reg.add_manifest(repo, &d.digest.to_string(), media::OCI_MANIFEST, &bytes);
    d
}

/// An artifact referring to `subject`, stored by digest.
fn referrer(reg: &FakeRegistry, repo: &str, subject: &Descriptor) -> Descriptor {
    let config = put(reg, repo, "application/vnd.oci.empty.v1+json", b"{}");
    let payload = put(
        reg,
        repo,
        "application/vnd.example.sbom.v1+json",
        b"{\"sbom\":1}",
    );
    let bytes = serde_json::to_vec(
        &json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom.v1+json",
        "config": config, "layers": [payload], "subject": subject}),
    )
    .unwrap();
    let d = Descriptor::new(
        media::OCI_MANIFEST,
        Digest::sha256_of(&bytes),
        bytes.len() as u64,
    );
    reg.add_manifest(repo, &d.digest.to_string(), media::OCI_MANIFEST, &bytes);
    d
}

fn options(referrers: bool, platforms: &[&str]) -> PackOptions {
    PackOptions {
        platforms: platforms.iter().map(|p| p.parse().unwrap()).collect(),
        referrers,
        jobs: 2,
    }
}

#[test]
fn referrers_come_by_the_api_or_the_fallback_tag_and_cosign_tags_as_images() {
    for api in [true, false] {
        let reg = FakeRegistry::with_quirks(Quirks {
            no_referrers_api: !api,
            ..Quirks::default()
        });
        let repo = "demo/app";
        let image = manifest(&reg, repo, "amd64");
        reg.add_manifest(
            repo,
            "1.0",
            media::OCI_MANIFEST,
            &reg.manifest(repo, &image.digest.to_string()).unwrap().1,
        );
        let sbom = referrer(&reg, repo, &image);
        if !api {
            let index =
                serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX,
                "manifests": [sbom]}))
                .unwrap();
            reg.add_manifest(repo, &fallback_tag(&image.digest), media::OCI_INDEX, &index);
        }
        let sig = manifest(&reg, repo, "sig");
        let sig_tag = format!("{}.sig", fallback_tag(&image.digest));
        reg.add_manifest(
            repo,
            &sig_tag,
            media::OCI_MANIFEST,
            &reg.manifest(repo, &sig.digest.to_string()).unwrap().1,
        );

        let dir = tempfile::tempdir().unwrap();
        let cache = Store::open_for_write(dir.path()).unwrap();
        let requests =
            vec![parse_reference(&format!("{}/{repo}:1.0", reg.addr()), "--image").unwrap()];
        let seen = Mutex::new(Vec::new());
        let g = gather_registries(
            &cache,
            &source_for(&reg),
            &requests,
            &options(true, &[]),
            &|e| {
                if let PackEvent::Referrers { via, .. } = &e {
                    seen.lock().unwrap().push(via.clone());
                }
            },
        )
        .unwrap();
        assert_eq!(
            g.referrers.iter().map(|r| &r.digest).collect::<Vec<_>>(),
            vec![&sbom.digest],
            "api {api}"
        );
        let names: Vec<&str> = g.images.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                format!("{}/{repo}:1.0", reg.addr()),
                format!("{}/{repo}:{sig_tag}", reg.addr())
            ]
        );
        assert_eq!(
            *seen.lock().unwrap(),
            vec![if api { "api" } else { "fallback-tag" }.to_owned()]
        );
        // Everything the package needs is in the cache.
        let walk = ferry_store::walk::walk_graph(
            &[
                ("sbom".to_owned(), sbom.clone()),
                ("sig".to_owned(), g.images[1].root.clone()),
            ],
            |d| cache.read_small_blob(d, 1 << 22),
        );
        assert!(walk.problems.is_empty());
        for n in walk.nodes {
            assert!(
                cache.has_blob(&n.descriptor.digest, n.descriptor.size),
                "{}",
                n.descriptor.digest
            );
        }
    }
}

#[test]
fn platform_keeps_the_chosen_children_in_a_new_index_and_pulls_nothing_else() {
    let reg = FakeRegistry::start();
    let repo = "demo/multi";
    let amd = manifest(&reg, repo, "amd64");
    let arm = manifest(&reg, repo, "arm64");
    let with = |d: &Descriptor, arch: &str| {
        let mut v = serde_json::to_value(d).unwrap();
        v["platform"] = json!({"os": "linux", "architecture": arch});
        v
    };
    let index = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX,
        "manifests": [with(&amd, "amd64"), with(&arm, "arm64")]}))
    .unwrap();
    reg.add_manifest(repo, "2.0", media::OCI_INDEX, &index);
    let source_digest = Digest::sha256_of(&index);
    let dir = tempfile::tempdir().unwrap();
    let cache = Store::open_for_write(dir.path()).unwrap();
    let requests = vec![parse_reference(&format!("{}/{repo}:2.0", reg.addr()), "--image").unwrap()];
    let filtered = Mutex::new(None);
    let g = gather_registries(
        &cache,
        &source_for(&reg),
        &requests,
        &options(false, &["linux/amd64"]),
        &|e| {
            if let PackEvent::Filtered { from, to, .. } = e {
                *filtered.lock().unwrap() = Some((from, to));
            }
        },
    )
    .unwrap();
    let image = &g.images[0];
    assert_eq!(image.source_digest, source_digest);
    assert_ne!(image.root.digest, source_digest);
    assert_eq!(image.platforms, vec!["linux/amd64"]);
    assert_eq!(
        *filtered.lock().unwrap(),
        Some((source_digest, image.root.digest.clone()))
    );
    let kept: serde_json::Value =
        serde_json::from_slice(&cache.read_small_blob(&image.root, 1 << 22).unwrap()).unwrap();
    assert_eq!(kept["manifests"].as_array().unwrap().len(), 1);
    assert!(
        !reg.requests()
            .iter()
            .any(|r| r.contains(&arm.digest.to_string())),
        "the arm64 manifest was fetched"
    );
    assert_eq!(g.blobs_pulled, 2, "amd64's config and layer");

    // Nothing matches: the platforms it has are named.
    let err = gather_registries(
        &cache,
        &source_for(&reg),
        &requests,
        &options(false, &["linux/s390x"]),
        &|_| {},
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, PackError::NoPlatform { .. }) && text.contains("linux/arm64"),
        "{text}"
    );

    // A rerun: the tag is asked again, nothing else.
    reg.clear_requests();
    let again = gather_registries(
        &cache,
        &source_for(&reg),
        &requests,
        &options(false, &["linux/amd64"]),
        &|_| {},
    )
    .unwrap();
    assert_eq!(again.images, g.images);
    assert_eq!(
        reg.requests(),
        vec![format!("GET /v2/{repo}/manifests/2.0")]
    );
}

#[test]
fn every_missing_reference_is_named_in_one_error() {
    let reg = FakeRegistry::start();
    let ok = manifest(&reg, "demo/ok", "amd64");
    reg.add_manifest(
        "demo/ok",
        "1",
        media::OCI_MANIFEST,
        &reg.manifest("demo/ok", &ok.digest.to_string()).unwrap().1,
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = Store::open_for_write(dir.path()).unwrap();
    let requests: Vec<_> = ["demo/ok:1", "demo/gone:1", "demo/ok:2"]
        .iter()
        .map(|r| parse_reference(&format!("{}/{r}", reg.addr()), "--image").unwrap())
        .collect();
    let err = gather_registries(
        &cache,
        &source_for(&reg),
        &requests,
        &options(false, &[]),
        &|_| {},
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("demo/gone:1") && text.contains("demo/ok:2") && !text.contains("demo/ok:1,"),
        "{text}"
    );
    assert!(cache.index_entries().unwrap().is_empty(), "nothing named");
}
