//! The fake registry speaks the distribution API (raw HTTP/1.1 requests here,
//! so that these tests do not depend on the client they exist to test).

use super::*;

/// One request on a fresh connection: (status, lowercased headers, body).
fn send(
    reg: &FakeRegistry,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, HashMap<String, String>, Vec<u8>) {
    let mut stream = TcpStream::connect(reg.addr()).expect("connect to the fake");
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        reg.addr(),
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("send the head");
    stream.write_all(body).expect("send the body");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the answer");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("head");
    let text = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

fn enc(digest: &str) -> String {
    digest.replace(':', "%3A")
}

#[test]
fn a_chunked_upload_then_a_manifest_and_its_tag() {
    let reg = FakeRegistry::start();
    let blob = b"hello, layer";
    let digest = Digest::sha256_of(blob).to_string();
    let (status, h, _) = send(&reg, "POST", "/v2/a/b/blobs/uploads/", &[], b"");
    assert_eq!(
        (status, h["location"].as_str()),
        (202, "/v2/a/b/blobs/uploads/u1")
    );
    let (status, h, _) = send(
        &reg,
        "PATCH",
        "/v2/a/b/blobs/uploads/u1",
        &[("Content-Range", "0-4")],
        &blob[..5],
    );
    assert_eq!((status, h["range"].as_str()), (202, "0-4"));
    let (status, _, _) = send(
        &reg,
        "PATCH",
        "/v2/a/b/blobs/uploads/u1",
        &[("Content-Range", "3-9")],
        b"xx",
    );
    assert_eq!(status, 416, "a range that does not continue the upload");
    let (status, h, _) = send(&reg, "GET", "/v2/a/b/blobs/uploads/u1", &[], b"");
    assert_eq!((status, h["range"].as_str()), (204, "0-4"));
    let wrong = Digest::sha256_of(b"other").to_string();
    let (status, _, body) = send(
        &reg,
        "PUT",
        &format!("/v2/a/b/blobs/uploads/u1?digest={}", enc(&wrong)),
        &[],
        &blob[5..],
    );
    assert_eq!(status, 400);
    assert!(String::from_utf8_lossy(&body).contains("DIGEST_INVALID"));
    // The failed PUT ended the session; a new one completes.
    let (status, _, _) = send(&reg, "POST", "/v2/a/b/blobs/uploads/", &[], b"");
    assert_eq!(status, 202);
    let (status, h, _) = send(
        &reg,
        "PUT",
        &format!("/v2/a/b/blobs/uploads/u2?digest={}", enc(&digest)),
        &[],
        blob,
    );
    assert_eq!(
        (status, h["docker-content-digest"].as_str()),
        (201, digest.as_str())
    );
    assert_eq!(reg.blob("a/b", &digest).as_deref(), Some(&blob[..]));
    let (status, h, body) = send(&reg, "GET", &format!("/v2/a/b/blobs/{digest}"), &[], b"");
    assert_eq!(
        (status, h["content-length"].as_str(), body.as_slice()),
        (200, "12", &blob[..])
    );

    let manifest = format!(
        r#"{{"schemaVersion":2,"config":{{"digest":"{digest}","size":12}},"layers":[{{"digest":"{digest}","size":12}}]}}"#
    );
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let (status, _, body) = send(
        &reg,
        "PUT",
        "/v2/other/manifests/1.0",
        &[("Content-Type", mt)],
        manifest.as_bytes(),
    );
    assert_eq!(status, 400, "blobs of another repository do not count");
    assert!(String::from_utf8_lossy(&body).contains("MANIFEST_BLOB_UNKNOWN"));
    let (status, h, _) = send(
        &reg,
        "PUT",
        "/v2/a/b/manifests/1.0",
        &[("Content-Type", mt)],
        manifest.as_bytes(),
    );
    let mdigest = Digest::sha256_of(manifest.as_bytes()).to_string();
    assert_eq!(
        (status, h["docker-content-digest"].as_str()),
        (201, mdigest.as_str())
    );
    assert_eq!(reg.tags("a/b"), ["1.0"]);
    assert_eq!(
        reg.manifest("a/b", &mdigest),
        Some((mt.to_owned(), manifest.clone().into_bytes()))
    );
    let (status, _, body) = send(&reg, "GET", "/v2/a/b/tags/list", &[], b"");
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8_lossy(&body),
        r#"{"name":"a/b","tags":["1.0"]}"#
    );
    assert_eq!(
        reg.requests(),
        [
            "POST /v2/a/b/blobs/uploads/".to_owned(),
            "PATCH /v2/a/b/blobs/uploads/u1".to_owned(),
            "PATCH /v2/a/b/blobs/uploads/u1".to_owned(),
            "GET /v2/a/b/blobs/uploads/u1".to_owned(),
            format!("PUT /v2/a/b/blobs/uploads/u1?digest={wrong}"),
            "POST /v2/a/b/blobs/uploads/".to_owned(),
            format!("PUT /v2/a/b/blobs/uploads/u2?digest={digest}"),
            format!("GET /v2/a/b/blobs/{digest}"),
            "PUT /v2/other/manifests/1.0".to_owned(),
            "PUT /v2/a/b/manifests/1.0".to_owned(),
            "GET /v2/a/b/tags/list".to_owned(),
        ]
    );
}

#[test]
fn mounts_and_refused_mounts() {
    let reg = FakeRegistry::start();
    let digest = reg.add_blob("a", b"shared");
    let (status, _, _) = send(
        &reg,
        "POST",
        &format!("/v2/b/blobs/uploads/?mount={}&from=a", enc(&digest)),
        &[],
        b"",
    );
    assert_eq!(status, 201);
    assert_eq!(reg.blob("b", &digest).as_deref(), Some(&b"shared"[..]));
    assert_eq!(
        reg.requests(),
        [format!("POST /v2/b/blobs/uploads/?mount={digest}&from=a")]
    );

    let refusing = FakeRegistry::with_quirks(Quirks {
        refuse_mounts: true,
        ..Quirks::default()
    });
    let digest = refusing.add_blob("a", b"shared");
    let (status, h, _) = send(
        &refusing,
        "POST",
        &format!("/v2/b/blobs/uploads/?mount={}&from=a", enc(&digest)),
        &[],
        b"",
    );
    assert_eq!(
        (status, h["location"].as_str()),
        (202, "/v2/b/blobs/uploads/u1")
    );
    assert_eq!(refusing.blob("b", &digest), None);
}

#[test]
fn quirks_and_scripted_answers() {
    let reg = FakeRegistry::with_quirks(Quirks {
        basic_auth: Some(("u".into(), "p".into())),
        challenge_only_on_ping: true,
        omit_manifest_digest: true,
        max_repo_depth: Some(2),
        ..Quirks::default()
    });
    let (status, h, _) = send(&reg, "GET", "/v2/", &[], b"");
    assert_eq!(
        (status, h["www-authenticate"].as_str()),
        (401, r#"Basic realm="fake""#)
    );
    let (status, h, _) = send(&reg, "HEAD", "/v2/a/manifests/x", &[], b"");
    assert_eq!(status, 401);
    assert!(!h.contains_key("www-authenticate"), "{h:?}");
    let auth = [("Authorization", "Basic dTpw")];
    reg.add_manifest("a", "x", "application/json", b"{}");
    let (status, h, _) = send(&reg, "HEAD", "/v2/a/manifests/x", &auth, b"");
    assert_eq!((status, h.get("docker-content-digest")), (200, None));
    let (status, _, body) = send(&reg, "POST", "/v2/a/b/c/blobs/uploads/", &auth, b"");
    assert_eq!(
        (status, body.as_slice()),
        (404, &b"404 page not found\n"[..])
    );
    reg.script(Rule {
        method: "GET".into(),
        path_contains: "/v2/a/tags".into(),
        status: 503,
        times: 1,
        body: String::new(),
        headers: vec![("Retry-After".into(), "1".into())],
    });
    let (status, h, _) = send(&reg, "GET", "/v2/a/tags/list", &auth, b"");
    assert_eq!((status, h["retry-after"].as_str()), (503, "1"));
    let (status, _, _) = send(&reg, "GET", "/v2/a/tags/list", &auth, b"");
    assert_eq!(status, 200, "the rule answered once");
}

#[test]
fn a_lying_registry_and_referrers() {
    let reg = FakeRegistry::with_quirks(Quirks {
        serve_wrong_manifest_bytes: true,
        ..Quirks::default()
    });
    let subject = br#"{"schemaVersion":2}"#;
    let sd = Digest::sha256_of(subject).to_string();
    reg.add_manifest(
        "a",
        "1",
        "application/vnd.oci.image.manifest.v1+json",
        subject,
    );
    let referrer = format!(
        r#"{{"schemaVersion":2,"artifactType":"application/x-sig","subject":{{"digest":"{sd}","size":19}}}}"#
    );
    reg.add_manifest(
        "a",
        &Digest::sha256_of(referrer.as_bytes()).to_string(),
        "application/vnd.oci.image.manifest.v1+json",
        referrer.as_bytes(),
    );
    let (status, h, body) = send(&reg, "GET", &format!("/v2/a/manifests/{sd}"), &[], b"");
    assert_eq!(
        (status, h["docker-content-digest"].as_str(), body.as_slice()),
        (200, sd.as_str(), WRONG_MANIFEST_BYTES)
    );
    let (_, _, body) = send(&reg, "GET", "/v2/a/manifests/1", &[], b"");
    assert_eq!(body, subject, "by tag, the real bytes");
    let (status, _, body) = send(&reg, "GET", &format!("/v2/a/referrers/{sd}"), &[], b"");
    assert_eq!(status, 200);
    let index: serde_json::Value = serde_json::from_slice(&body).expect("an index");
    assert_eq!(
        index["manifests"].as_array().map(Vec::len),
        Some(1),
        "{index}"
    );
    assert_eq!(index["manifests"][0]["artifactType"], "application/x-sig");
    let none = FakeRegistry::with_quirks(Quirks {
        no_referrers_api: true,
        ..Quirks::default()
    });
    assert_eq!(
        send(&none, "GET", &format!("/v2/a/referrers/{sd}"), &[], b"").0,
        404
    );
}

#[test]
fn a_dropped_registry_closes_its_keep_alive_connections() {
    let reg = FakeRegistry::start();
    let mut stream = TcpStream::connect(reg.addr()).expect("connect to the fake");
    stream
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.ends_with(b"\r\n\r\n{}") {
        let n = stream.read(&mut buf).expect("read the answer");
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    drop(reg);
    assert_eq!(
        stream.read(&mut buf).expect("read after drop"),
        0,
        "still open"
    );
}
