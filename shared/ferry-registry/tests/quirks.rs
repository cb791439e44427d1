//! The registry client against registries that are not distribution, played
//! by ferry-testkit's in-process fake registry: exact request sequences, and
//! the quirks real registries have (no `Docker-Content-Digest`, 401s without
//! a challenge, path depth limits, lying about bytes, nothing listening, a
//! server that never answers).

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_registry::credentials::{Credential, Secret};
use ferry_registry::meter::TransferMeter;
use ferry_registry::retry::RetryPolicy;
use ferry_registry::sink::{destination, RegistrySink};
use ferry_registry::transport::TransportOptions;
use ferry_registry::upload::{NoSessionLog, UploadOptions};
use ferry_registry::{Access, Client, RegistryError, Target};
use ferry_store::{Descriptor, Digest};
use ferry_testkit::fake_registry::{FakeRegistry, Quirks, Rule, WRONG_MANIFEST_BYTES};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// A client for `http://ADDR` with fast retries, and a counter of its retry messages.
fn client_for(addr: &str, credential: Option<Credential>) -> (Client, Arc<AtomicUsize>) {
    client_with(addr, credential, TransportOptions::default())
}

fn client_with(
    base: &str,
    credential: Option<Credential>,
    opts: TransportOptions,
) -> (Client, Arc<AtomicUsize>) {
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        assert!(
            std::env::var_os(var).is_none(),
            "unset {var} to run these tests (they talk to 127.0.0.1)"
        );
    }
    let base = if base.contains("://") {
        base.to_owned()
    } else {
        format!("http://{base}")
    };
    let target = Target::parse(&base).expect("target");
    let retries = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&retries);
    let client = Client::new(&target, &opts, credential)
        .expect("client")
        .with_retry(RetryPolicy {
            attempts: 3,
            base: Duration::from_millis(1),
            max: Duration::from_millis(5),
        })
        .with_retry_log(move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
        });
    (client, retries)
}

fn basic(user: &str, pass: &str) -> Credential {
    Credential::Basic {
        username: user.into(),
        password: Secret::new(pass),
    }
}

/// A manifest naming one blob, both stored in `repo` of `reg`; returns (bytes, digest).
fn image(reg: &FakeRegistry, repo: &str, tag: &str) -> (Vec<u8>, Digest) {
    let blob = reg.add_blob(repo, b"layer bytes");
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{blob}","size":11}},"layers":[]}}"#
    );
    reg.add_manifest(repo, tag, OCI_MANIFEST, manifest.as_bytes());
    let digest = Digest::sha256_of(manifest.as_bytes());
    (manifest.into_bytes(), digest)
}

#[test]
fn a_manifest_fetched_by_digest_is_checked_against_the_requested_digest() {
    let reg = FakeRegistry::with_quirks(Quirks {
        serve_wrong_manifest_bytes: true,
        ..Quirks::default()
    });
    let (_, digest) = image(&reg, "a/b", "1.0");
    let (client, _) = client_for(&reg.addr(), None);
    match client.get_manifest("a/b", &digest.to_string()) {
        Err(RegistryError::DigestMismatch {
            expected, actual, ..
        }) => {
            assert_eq!(expected, digest);
            assert_eq!(actual, Digest::sha256_of(WRONG_MANIFEST_BYTES).to_string());
        }
        other => panic!("other bytes under {digest} were accepted: {other:?}"),
    }

    // A consistent liar: the other bytes with their own digest in the header.
    let other = br#"{"schemaVersion":2,"layers":[]}"#;
    let other_digest = Digest::sha256_of(other);
    reg.script(Rule {
        method: "GET".into(),
        path_contains: format!("/manifests/{digest}"),
        status: 200,
        times: 1,
        body: String::from_utf8_lossy(other).into_owned(),
        headers: vec![
            ("Content-Type".into(), OCI_MANIFEST.into()),
            ("Docker-Content-Digest".into(), other_digest.to_string()),
        ],
    });
    match client.get_manifest("a/b", &digest.to_string()) {
        Err(RegistryError::DigestMismatch {
            expected, actual, ..
        }) => assert_eq!((expected, actual), (digest, other_digest.to_string())),
        other => panic!("bytes of {other_digest} were accepted as {digest}: {other:?}"),
    }
}

#[test]
fn a_blob_fetched_by_digest_is_checked_against_the_requested_digest() {
    let reg = FakeRegistry::start();
    let digest: Digest = reg
        .add_blob("a/b", b"the real bytes")
        .parse()
        .expect("digest");
    let (client, _) = client_for(&reg.addr(), None);
    let mut good = Vec::new();
    std::io::Read::read_to_end(
        &mut client.blob_reader("a/b", &digest).expect("GET blob"),
        &mut good,
    )
    .expect("the real bytes verify");
    assert_eq!(good, b"the real bytes");

    reg.script(Rule {
        method: "GET".into(),
        path_contains: format!("/blobs/{digest}"),
        status: 200,
        times: 1,
        body: "some other bytes".into(),
        headers: vec![("Docker-Content-Digest".into(), digest.to_string())],
    });
    let mut reader = client.blob_reader("a/b", &digest).expect("GET blob");
    let err = std::io::Read::read_to_end(&mut reader, &mut Vec::new())
        .expect_err("other bytes under the digest");
    let text = err.to_string();
    assert!(
        text.contains(&digest.to_string())
            && text.contains(&Digest::sha256_of(b"some other bytes").to_string()),
        "{text}"
    );
}

#[test]
fn manifests_without_docker_content_digest_get_their_digest_from_the_body() {
    let reg = FakeRegistry::with_quirks(Quirks {
        omit_manifest_digest: true,
        ..Quirks::default()
    });
    let (bytes, digest) = image(&reg, "a/b", "1.0");
    let (client, _) = client_for(&reg.addr(), None);

    let by_tag = client
        .manifest_head("a/b", "1.0", Access::Pull)
        .expect("HEAD by tag")
        .expect("present");
    assert_eq!(by_tag.digest, digest);
    assert_eq!(by_tag.size, bytes.len() as u64);
    assert_eq!(by_tag.media_type, OCI_MANIFEST);
    let by_digest = client
        .manifest_head("a/b", &digest.to_string(), Access::Pull)
        .expect("HEAD by digest")
        .expect("present");
    assert_eq!(by_digest.digest, digest);
    let (info, got) = client
        .get_manifest("a/b", "1.0")
        .expect("GET by tag")
        .expect("present");
    assert_eq!((info.digest, got), (digest.clone(), bytes.clone()));
    assert_eq!(
        client
            .put_manifest("a/b", "2.0", OCI_MANIFEST, &bytes)
            .expect("PUT"),
        digest
    );
    assert_eq!(
        reg.requests(),
        [
            "HEAD /v2/a/b/manifests/1.0".to_owned(),
            "GET /v2/a/b/manifests/1.0".to_owned(),
            format!("HEAD /v2/a/b/manifests/{digest}"),
            "GET /v2/a/b/manifests/1.0".to_owned(),
            "PUT /v2/a/b/manifests/2.0".to_owned(),
        ],
        "a HEAD by tag without a digest is followed by one GET; by digest, the HEAD is enough"
    );
}

#[test]
fn a_401_without_a_challenge_reuses_the_basic_challenge_of_the_ping() {
    let reg = FakeRegistry::with_quirks(Quirks {
        basic_auth: Some(("u".into(), "p".into())),
        challenge_only_on_ping: true,
        ..Quirks::default()
    });
    image(&reg, "a/b", "1.0");
    let (client, _) = client_for(&reg.addr(), Some(basic("u", "p")));
    // No ping first: the client learns the challenge from /v2/ itself.
    assert!(client
        .manifest_head("a/b", "1.0", Access::Push)
        .expect("HEAD after learning the challenge from /v2/")
        .is_some());
    assert_eq!(
        reg.requests(),
        [
            "HEAD /v2/a/b/manifests/1.0",
            "GET /v2/",
            "HEAD /v2/a/b/manifests/1.0"
        ]
    );
}

#[test]
fn a_401_without_a_challenge_reuses_the_bearer_realm_of_the_ping() {
    let quirks = Quirks {
        token_auth: Some(("u".into(), "p".into())),
        challenge_only_on_ping: true,
        ..Quirks::default()
    };
    // No ping first: the 401 without a challenge sends the client to /v2/ for the realm.
    let reg = FakeRegistry::with_quirks(quirks.clone());
    image(&reg, "a/b", "1.0");
    let (client, _) = client_for(&reg.addr(), Some(basic("u", "p")));
    assert!(client
        .manifest_head("a/b", "1.0", Access::Pull)
        .expect("HEAD with a token for the repository's scope")
        .is_some());
    assert_eq!(
        reg.requests(),
        [
            "HEAD /v2/a/b/manifests/1.0",
            "GET /v2/",
            "GET /token?service=fake&scope=repository:a/b:pull",
            "HEAD /v2/a/b/manifests/1.0",
        ]
    );
    // After a ping the realm is known: the repository's token is fetched
    // before its first request, which then earns no 401.
    let reg = FakeRegistry::with_quirks(quirks);
    image(&reg, "a/b", "1.0");
    let (client, _) = client_for(&reg.addr(), Some(basic("u", "p")));
    client.ping().expect("ping");
    assert!(client
        .manifest_head("a/b", "1.0", Access::Pull)
        .expect("HEAD with a token for the repository's scope")
        .is_some());
    assert_eq!(
        reg.requests(),
        [
            "GET /v2/",
            "GET /token?service=fake",
            "GET /v2/",
            "GET /token?service=fake&scope=repository:a/b:pull",
            "HEAD /v2/a/b/manifests/1.0",
        ]
    );
}

#[test]
fn once_the_bearer_realm_is_known_a_new_scope_fetches_its_token_first_and_once() {
    // Every request to a repository not asked before used to earn a 401 first,
    // and threads asking at once each earned theirs (ferry-diff against a
    // token registry: 60 extra 401s for 10 repositories, BENCHMARKS.md).
    let reg = FakeRegistry::with_quirks(Quirks {
        token_auth: Some(("u".into(), "p".into())),
        ..Quirks::default()
    });
    image(&reg, "a/b", "1.0");
    let (client, _) = client_for(&reg.addr(), Some(basic("u", "p")));
    client.ping().expect("ping");
    let before = reg.requests().len();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                assert!(client
                    .manifest_head("a/b", "1.0", Access::Pull)
                    .expect("HEAD with a token")
                    .is_some());
            });
        }
    });
    let after: Vec<String> = reg.requests()[before..].to_vec();
    let count = |r: &str| after.iter().filter(|x| x.as_str() == r).count();
    assert_eq!(
        count("GET /token?service=fake&scope=repository:a/b:pull"),
        1,
        "{after:?}"
    );
    assert_eq!(
        count("HEAD /v2/a/b/manifests/1.0"),
        8,
        "no 401 first: {after:?}"
    );
    assert_eq!(
        after[0],
        "GET /token?service=fake&scope=repository:a/b:pull"
    );
}

#[test]
fn an_upload_refused_with_404_on_a_deep_path_names_the_depth() {
    let reg = FakeRegistry::with_quirks(Quirks {
        max_repo_depth: Some(2),
        ..Quirks::default()
    });
    let (client, _) = client_for(&reg.addr(), None);
    let defaults = UploadOptions::default();
    let err = upload(&client, "team/project/app", b"blob", None, defaults)
        .expect_err("the registry refuses 3 levels");
    let text = err.to_string();
    assert!(text.contains("HTTP 404"), "{text}");
    assert!(
        text.contains("3 levels deep") && text.contains("\"team/project/app\""),
        "{text}"
    );
    upload(&client, "team/app", b"blob", None, defaults).expect("2 levels are fine");
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn a_refused_connection_at_first_contact_is_not_retried_and_names_the_address() {
    let addr = format!("127.0.0.1:{}", closed_port());
    let (client, retries) = client_for(&addr, None);
    let err = client.ping().expect_err("nothing listens");
    assert_eq!(retries.load(Ordering::SeqCst), 0, "retried: {err}");
    assert!(!err.is_retryable());
    let text = err.to_string();
    assert!(text.contains(&addr) && text.contains("refused"), "{text}");
}

#[test]
fn a_refused_connection_after_the_registry_answered_is_retried() {
    let reg = FakeRegistry::start();
    let (client, retries) = client_for(&reg.addr(), None);
    client.ping().expect("ping");
    drop(reg);
    let err = client
        .manifest_head("a/b", "1.0", Access::Pull)
        .expect_err("the registry went away");
    assert_eq!(retries.load(Ordering::SeqCst), 2, "{err}");
}

/// A listener that accepts connections and never answers (kept until dropped).
fn silent_listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr").to_string();
    (l, addr)
}

fn stall_of_one_second() -> TransportOptions {
    TransportOptions {
        stall_timeout: Duration::from_secs(1),
        ..TransportOptions::default()
    }
}

#[test]
fn a_server_that_never_answers_fails_after_one_stall_timeout_naming_the_option() {
    // The kernel completes the TCP handshake (backlog) although nobody accepts:
    // the same as a server that accepts and never answers.
    let (_listener, addr) = silent_listener();
    for base in [format!("http://{addr}"), addr.clone()] {
        let (client, retries) = client_with(&base, None, stall_of_one_second());
        let err = client.ping().expect_err("no answer");
        let text = err.to_string();
        assert_eq!(retries.load(Ordering::SeqCst), 0, "{base}: retried: {text}");
        assert!(
            text.contains(&addr) && text.contains("--stall-timeout") && text.contains("1 s"),
            "{base}: {text}"
        );
    }
}

/// A generated layout of `images` images (shared base layer, a multi-arch
/// index, a Docker schema 2 image), opened as a store.
fn generated_store(
    images: usize,
) -> (
    tempfile::TempDir,
    ferry_store::Store,
    ferry_testkit::Fixture,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = dir.path().join("layout");
    let spec = ferry_testkit::FixtureSpec {
        seed: 11,
        images,
        layers_per_image: 2,
        layer_size: 2048,
        multi_arch_every: 2,
        docker_schema2_every: 3,
        ..Default::default()
    };
    let fixture = ferry_testkit::generate_layout(&spec, &layout).expect("fixture");
    let store = ferry_store::Store::open_read_only(&layout).expect("store");
    (dir, store, fixture)
}

/// Pushes `store` with `client` through the copy engine (2 jobs, default uploads).
fn push(
    store: &ferry_store::Store,
    client: &Client,
) -> Result<ferry_copy::CopyReport, ferry_copy::CopyError> {
    let meter = TransferMeter::new();
    let sink = RegistrySink::new(client, &meter, &NoSessionLog, UploadOptions::default());
    let source = ferry_copy::StoreSource::new(store);
    let plan = source.plan(|name| destination(client.target(), name))?;
    let options = ferry_copy::CopyOptions {
        jobs: 2,
        force: false,
        clean_holding: false,
    };
    ferry_copy::copy(&plan, &source, &sink, options, &|_| {})
}

#[test]
fn push_and_diff_work_against_a_registry_with_every_quirk_at_once() {
    let reg = FakeRegistry::with_quirks(Quirks {
        refuse_mounts: true,
        omit_manifest_digest: true,
        token_auth: Some(("u".into(), "p".into())),
        challenge_only_on_ping: true,
        no_referrers_api: true,
        ..Quirks::default()
    });
    let (_dir, store, fixture) = generated_store(3);
    let (client, retries) = client_for(&format!("{}/mirror", reg.addr()), Some(basic("u", "p")));
    let report = push(&store, &client).expect("push");
    assert_eq!(report.blobs_mounted, 0, "mounts are refused");
    assert_eq!(retries.load(Ordering::SeqCst), 0);
    for image in &fixture.images {
        let mapped = client.target().map(&image.reference).expect("mapped");
        let tag = mapped.tag.as_deref().expect("tagged");
        let (media_type, bytes) = reg
            .manifest(&mapped.repository, tag)
            .unwrap_or_else(|| panic!("{} is not in the registry", image.reference));
        assert_eq!(media_type, image.descriptor.media_type);
        assert_eq!(Digest::sha256_of(&bytes), image.descriptor.digest);
        for blob in &image.blobs {
            let stored = reg
                .blob(&mapped.repository, &blob.digest.to_string())
                .or_else(|| {
                    reg.manifest(&mapped.repository, &blob.digest.to_string())
                        .map(|(_, b)| b)
                })
                .unwrap_or_else(|| panic!("{} lacks {}", mapped.repository, blob.digest));
            assert_eq!(Digest::sha256_of(&stored), blob.digest);
        }
    }
    let meter = TransferMeter::new();
    let plan = ferry_copy::StoreSource::new(&store)
        .plan(|name| destination(client.target(), name))
        .expect("plan");
    let diff = ferry_copy::compare(
        &plan,
        &RegistrySink::reading(&client, &meter),
        &ferry_copy::DiffOptions {
            jobs: 2,
            deep: true,
            extra: false,
        },
    )
    .expect("diff");
    assert!(diff.in_sync(), "{:?}", diff.images);
    let again = push(&store, &client).expect("second push");
    assert_eq!(
        (again.images_up_to_date, again.blobs_uploaded),
        (fixture.images.len() as u64, 0)
    );
}

/// Uploads `bytes` to `repo` (mounting from `from` if given) with the given
/// sizes; returns how it got there.
fn upload(
    client: &Client,
    repo: &str,
    bytes: &[u8],
    from: Option<&str>,
    opts: UploadOptions,
) -> Result<ferry_registry::upload::UploadOutcome, RegistryError> {
    let desc = Descriptor::new(
        "application/octet-stream",
        Digest::sha256_of(bytes),
        bytes.len() as u64,
    );
    let bytes = bytes.to_vec();
    let open = move |start: u64| -> std::io::Result<Box<dyn std::io::Read + Send>> {
        Ok(Box::new(std::io::Cursor::new(
            bytes[start as usize..].to_vec(),
        )))
    };
    client.upload_blob(
        repo,
        &desc,
        &open,
        from,
        &NoSessionLog,
        &opts,
        &TransferMeter::new(),
    )
}

#[test]
fn upload_request_sequences() {
    use ferry_registry::upload::UploadOutcome::{Mounted, Uploaded};
    let small = UploadOptions::default();
    let chunked = UploadOptions {
        monolithic_max: 4,
        chunk_size: 4,
    };
    let bytes = b"0123456789";
    let d = Digest::sha256_of(bytes);

    let reg = FakeRegistry::start();
    let (client, _) = client_for(&reg.addr(), None);
    assert_eq!(
        upload(&client, "a", bytes, None, small).expect("upload"),
        Uploaded { resumed_from: 0 }
    );
    assert_eq!(
        reg.requests(),
        [
            "POST /v2/a/blobs/uploads/".to_owned(),
            format!("PUT /v2/a/blobs/uploads/u1?digest={d}"),
        ],
        "monolithic: one POST, one PUT"
    );
    reg.clear_requests();
    assert_eq!(
        upload(&client, "b", bytes, Some("a"), small).expect("upload"),
        Mounted
    );
    assert_eq!(
        reg.requests(),
        [format!("POST /v2/b/blobs/uploads/?mount={d}&from=a")]
    );
    reg.clear_requests();
    assert_eq!(
        upload(&client, "c", bytes, None, chunked).expect("upload"),
        Uploaded { resumed_from: 0 }
    );
    assert_eq!(
        reg.requests(),
        [
            "POST /v2/c/blobs/uploads/".to_owned(),
            "PATCH /v2/c/blobs/uploads/u2".to_owned(),
            "PATCH /v2/c/blobs/uploads/u2".to_owned(),
            "PATCH /v2/c/blobs/uploads/u2".to_owned(),
            format!("PUT /v2/c/blobs/uploads/u2?digest={d}"),
        ],
        "chunked: 4 + 4 + 2 bytes, then a PUT without a body"
    );
    assert_eq!(reg.blob("c", &d.to_string()).as_deref(), Some(&bytes[..]));

    let refusing = FakeRegistry::with_quirks(Quirks {
        refuse_mounts: true,
        ..Quirks::default()
    });
    refusing.add_blob("a", bytes);
    let (client, _) = client_for(&refusing.addr(), None);
    assert_eq!(
        upload(&client, "b", bytes, Some("a"), small).expect("upload"),
        Uploaded { resumed_from: 0 }
    );
    assert_eq!(
        refusing.requests(),
        [
            format!("POST /v2/b/blobs/uploads/?mount={d}&from=a"),
            format!("PUT /v2/b/blobs/uploads/u1?digest={d}"),
        ],
        "a refused mount's session takes the upload"
    );
}
