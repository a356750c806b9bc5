//! Manifests through the router: push by tag and digest, content negotiation, reference checks,
//! schema 1 refusal, size limit, delete by tag and by digest, indexes, subjects.

mod common;

use axum::body::Body;
use common::images::{self, DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST};
use common::{sha256, TestRegistry};

#[tokio::test]
async fn push_and_fetch_by_tag_and_digest() {
    let r = TestRegistry::new().await;
    let (digest, bytes) = r.push_image("team/app", "v1", "one").await;
    for reference in ["v1", digest.as_str()] {
        let got = r.get(&format!("/v2/team/app/manifests/{reference}")).await;
        got.expect(200, None);
        assert_eq!(&got.body[..], &bytes[..], "byte for byte as pushed");
        assert_eq!(got.header("content-type"), OCI_MANIFEST);
        assert_eq!(got.header("docker-content-digest"), digest.as_str());
        let head = r.send("HEAD", &format!("/v2/team/app/manifests/{reference}"), &[], Body::empty()).await;
        head.expect(200, None);
        assert_eq!(head.header("content-length"), bytes.len().to_string());
        assert_eq!(head.header("docker-content-digest"), digest.as_str());
    }
}

#[tokio::test]
async fn put_answers_location_and_digest() {
    let r = TestRegistry::new().await;
    let config = r.push_blob("x", images::config_json("c").as_bytes()).await;
    let manifest = images::oci_manifest(&config, images::config_json("c").len(), &[], None);
    let reply = r.put_manifest("x", "latest", OCI_MANIFEST, &manifest).await;
    reply.expect(201, None);
    let digest = sha256(&manifest);
    assert_eq!(reply.header("docker-content-digest"), digest.as_str());
    assert_eq!(reply.header("location"), format!("/v2/x/manifests/{digest}"));
    // By digest: the digest must match the body.
    r.put_manifest("x", digest.as_str(), OCI_MANIFEST, &manifest).await.expect(201, None);
    let wrong = sha256(b"other");
    r.put_manifest("x", wrong.as_str(), OCI_MANIFEST, &manifest).await.expect(400, Some("DIGEST_INVALID"));
}

#[tokio::test]
async fn missing_references_are_refused() {
    let r = TestRegistry::new().await;
    let config = r.push_blob("x", b"{}").await;
    let absent = sha256(b"absent layer");
    let manifest = images::oci_manifest(&config, 2, &[(absent.clone(), 12)], None);
    let reply = r.put_manifest("x", "v1", OCI_MANIFEST, &manifest).await;
    reply.expect(404, Some("MANIFEST_BLOB_UNKNOWN"));
    assert!(reply.json()["errors"][0]["message"].as_str().unwrap().contains(absent.as_str()));
    // A blob in another repository does not count.
    let layer = r.push_blob("elsewhere", b"layer").await;
    let manifest = images::oci_manifest(&config, 2, &[(layer, 5)], None);
    r.put_manifest("x", "v1", OCI_MANIFEST, &manifest).await.expect(404, Some("MANIFEST_BLOB_UNKNOWN"));
    // An index whose child is not in the repository.
    let index = images::index(&[(sha256(b"no such manifest"), 10, "amd64")]);
    r.put_manifest("x", "multi", OCI_INDEX, &index).await.expect(404, Some("MANIFEST_BLOB_UNKNOWN"));
    // Nothing was tagged.
    r.get("/v2/x/manifests/v1").await.expect(404, Some("MANIFEST_UNKNOWN"));
}

#[tokio::test]
async fn index_with_children_and_docker_types() {
    let r = TestRegistry::new().await;
    let (amd, amd_bytes) = r.push_image("multi", "amd", "amd").await;
    let (arm, arm_bytes) = r.push_image("multi", "arm", "arm").await;
    let index = images::index(&[(amd, amd_bytes.len(), "amd64"), (arm, arm_bytes.len(), "arm64")]);
    r.put_manifest("multi", "latest", OCI_INDEX, &index).await.expect(201, None);
    assert_eq!(r.get("/v2/multi/manifests/latest").await.header("content-type"), OCI_INDEX);
    // Docker schema 2, with the media type only in the header.
    let config = r.push_blob("docker", b"{\"os\":\"linux\"}").await;
    let docker = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config.to_string(), "size": 14},
        "layers": []
    }))
    .unwrap();
    r.put_manifest("docker", "v1", DOCKER_MANIFEST, &docker).await.expect(201, None);
    assert_eq!(r.get("/v2/docker/manifests/v1").await.header("content-type"), DOCKER_MANIFEST);
}

#[tokio::test]
async fn content_negotiation() {
    let r = TestRegistry::new().await;
    r.push_image("neg", "v1", "n").await;
    let ok = r.send("GET", "/v2/neg/manifests/v1", &[("accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json;q=0.9")], Body::empty()).await;
    ok.expect(200, None);
    r.send("GET", "/v2/neg/manifests/v1", &[("accept", "*/*")], Body::empty()).await.expect(200, None);
    r.send("GET", "/v2/neg/manifests/v1", &[("accept", DOCKER_MANIFEST)], Body::empty())
        .await
        .expect(404, Some("MANIFEST_UNKNOWN"));
}

#[tokio::test]
async fn invalid_manifests_are_refused() {
    let r = TestRegistry::new().await;
    let schema1 = br#"{"schemaVersion":1,"name":"x","tag":"v1","architecture":"amd64","fsLayers":[],"history":[]}"#;
    r.put_manifest("x", "v1", "application/vnd.docker.distribution.manifest.v1+prettyjws", schema1)
        .await
        .expect(400, Some("MANIFEST_INVALID"));
    r.put_manifest("x", "v1", "application/json", schema1).await.expect(400, Some("MANIFEST_INVALID"));
    r.put_manifest("x", "v1", OCI_MANIFEST, b"{not json").await.expect(400, Some("MANIFEST_INVALID"));
    r.put_manifest("x", "v1", OCI_MANIFEST, b"").await.expect(400, Some("MANIFEST_INVALID"));
    r.put_manifest(
        "x",
        "v1",
        OCI_MANIFEST,
        br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
    )
    .await
    .expect(400, Some("MANIFEST_INVALID"));
    r.put_manifest("x", "-badtag", OCI_MANIFEST, b"{}").await.expect(400, Some("TAG_INVALID"));
    r.put_manifest("x", "sha256:abc", OCI_MANIFEST, b"{}").await.expect(400, Some("DIGEST_INVALID"));
}

#[tokio::test]
async fn size_limit_4mib_accepted_larger_413() {
    let r = TestRegistry::new().await;
    let config = r.push_blob("big", b"{}").await;
    // Pad with an annotation to just under 4 MiB: accepted.
    let base = images::oci_manifest(&config, 2, &[], None);
    let mut value: serde_json::Value = serde_json::from_slice(&base).unwrap();
    let pad = 4 * 1024 * 1024 - base.len() - 64;
    value["annotations"] = serde_json::json!({"pad": "p".repeat(pad)});
    let near_limit = serde_json::to_vec(&value).unwrap();
    assert!(near_limit.len() <= 4 * 1024 * 1024);
    r.put_manifest("big", "ok", OCI_MANIFEST, &near_limit).await.expect(201, None);
    value["annotations"] = serde_json::json!({"pad": "p".repeat(pad + 200)});
    let over = serde_json::to_vec(&value).unwrap();
    r.put_manifest("big", "over", OCI_MANIFEST, &over).await.expect(413, Some("SIZE_INVALID"));
    let length = over.len().to_string();
    r.send("PUT", "/v2/big/manifests/over2", &[("content-type", OCI_MANIFEST), ("content-length", &length)], over)
        .await
        .expect(413, Some("SIZE_INVALID"));
}

#[tokio::test]
async fn delete_tag_keeps_manifest_delete_digest_removes_all() {
    let r = TestRegistry::new().await;
    let (digest, _) = r.push_image("d", "v1", "d").await;
    r.put_manifest("d", "v2", OCI_MANIFEST, &r.get(&format!("/v2/d/manifests/{digest}")).await.body)
        .await
        .expect(201, None);
    r.send("DELETE", "/v2/d/manifests/v1", &[], Body::empty()).await.expect(202, None);
    r.get("/v2/d/manifests/v1").await.expect(404, Some("MANIFEST_UNKNOWN"));
    r.get(&format!("/v2/d/manifests/{digest}")).await.expect(200, None);
    r.get("/v2/d/manifests/v2").await.expect(200, None);
    r.send("DELETE", &format!("/v2/d/manifests/{digest}"), &[], Body::empty()).await.expect(202, None);
    r.get(&format!("/v2/d/manifests/{digest}")).await.expect(404, Some("MANIFEST_UNKNOWN"));
    r.get("/v2/d/manifests/v2").await.expect(404, Some("MANIFEST_UNKNOWN"));
    r.send("DELETE", "/v2/d/manifests/v1", &[], Body::empty()).await.expect(404, Some("MANIFEST_UNKNOWN"));
    r.get("/v2/nowhere/manifests/v1").await.expect(404, Some("NAME_UNKNOWN"));
}

#[tokio::test]
async fn subject_may_be_absent_and_is_echoed() {
    let r = TestRegistry::new().await;
    let empty = r.push_blob("s", b"{}").await;
    let future_subject = sha256(b"not pushed yet");
    let sig = images::artifact("application/vnd.example.sig", &empty, &future_subject, 100);
    let reply = r.put_manifest("s", sha256(&sig).as_str(), OCI_MANIFEST, &sig).await;
    reply.expect(201, None);
    assert_eq!(reply.header("oci-subject"), future_subject.as_str());
}

#[tokio::test]
async fn blob_delete_unlinks() {
    let r = TestRegistry::new().await;
    let digest = r.push_blob("del", b"bytes").await;
    r.send("DELETE", &format!("/v2/del/blobs/{digest}"), &[], Body::empty()).await.expect(202, None);
    r.get(&format!("/v2/del/blobs/{digest}")).await.expect(404, Some("BLOB_UNKNOWN"));
    r.send("DELETE", &format!("/v2/del/blobs/{digest}"), &[], Body::empty()).await.expect(404, Some("BLOB_UNKNOWN"));
}

#[tokio::test]
async fn blob_range_requests() {
    let r = TestRegistry::new().await;
    let digest = r.push_blob("rg", b"0123456789").await;
    let uri = format!("/v2/rg/blobs/{digest}");
    let part = r.send("GET", &uri, &[("range", "bytes=2-5")], Body::empty()).await;
    part.expect(206, None);
    assert_eq!(&part.body[..], b"2345");
    assert_eq!(part.header("content-range"), "bytes 2-5/10");
    let tail = r.send("GET", &uri, &[("range", "bytes=-3")], Body::empty()).await;
    assert_eq!(&tail.body[..], b"789");
    let open = r.send("GET", &uri, &[("range", "bytes=8-")], Body::empty()).await;
    assert_eq!(&open.body[..], b"89");
    let bad = r.send("GET", &uri, &[("range", "bytes=10-20")], Body::empty()).await;
    bad.expect(416, Some("RANGE_INVALID"));
    assert_eq!(bad.header("content-range"), "bytes */10");
    // A Range header that is not a valid range is ignored: the whole blob (RFC 9110).
    for ignored in ["bytes=a-b", "bytes=5-2", "pages=1-2"] {
        let whole = r.send("GET", &uri, &[("range", ignored)], Body::empty()).await;
        whole.expect(200, None);
        assert_eq!(&whole.body[..], b"0123456789", "{ignored}");
    }
}
