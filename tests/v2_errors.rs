//! The base endpoint, route parsing, names, methods and the error envelope.

mod common;

use axum::body::Body;
use common::TestRegistry;

#[tokio::test]
async fn base_endpoint() {
    let r = TestRegistry::new().await;
    for uri in ["/v2/", "/v2"] {
        let reply = r.get(uri).await;
        reply.expect(200, None);
        assert_eq!(reply.header("docker-distribution-api-version"), "registry/2.0");
        assert!(reply.header("strict-transport-security").contains("max-age="));
    }
}

#[tokio::test]
async fn invalid_names_get_name_invalid() {
    let r = TestRegistry::new().await;
    let long = "a/".repeat(130) + "b";
    for uri in [
        "/v2/UPPER/tags/list".to_owned(),
        "/v2/team-a/../team-b/x/manifests/latest".to_owned(),
        "/v2/a%2Fb/tags/list".to_owned(),
        "/v2/a/%2e%2e/b/tags/list".to_owned(),
        "/v2/a//b/tags/list".to_owned(),
        format!("/v2/{long}/tags/list"),
    ] {
        let reply = r.get(&uri).await;
        reply.expect(400, Some("NAME_INVALID"));
        assert!(reply.json()["errors"][0]["message"].is_string());
    }
    // Many segments are fine.
    let deep = "/v2/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/tags/list";
    r.get(deep).await.expect(404, Some("NAME_UNKNOWN"));
}

#[tokio::test]
async fn unknown_endpoints_and_methods() {
    let r = TestRegistry::new().await;
    r.get("/v2/a/unknown/x").await.expect(404, Some("NOT_FOUND"));
    r.get("/v3/").await.expect(404, Some("NOT_FOUND"));
    // `/` answers what this is (tests/first_hour.rs); anything else unknown is 404.
    r.get("/").await.expect(200, None);
    r.get("/nothing-here").await.expect(404, Some("NOT_FOUND"));
    r.send("POST", "/v2/a/tags/list", &[], Body::empty()).await.expect(405, Some("UNSUPPORTED"));
    r.send(
        "PUT",
        "/v2/a/blobs/sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        &[],
        Body::empty(),
    )
    .await
    .expect(405, Some("UNSUPPORTED"));
    r.send("DELETE", "/v2/_catalog", &[], Body::empty()).await.expect(405, Some("UNSUPPORTED"));
}

#[tokio::test]
async fn references_and_digests_are_validated() {
    let r = TestRegistry::new().await;
    // A read of a reference that is neither a tag nor a digest finds nothing (as the OCI
    // conformance suite expects); a write of one is refused with the reason.
    for bad in ["-tag".to_owned(), "t".repeat(129), "sha256:123".to_owned()] {
        r.get(&format!("/v2/a/manifests/{bad}")).await.expect(404, Some("MANIFEST_UNKNOWN"));
    }
    for (bad, code) in [
        ("-tag".to_owned(), "TAG_INVALID"),
        ("t".repeat(129), "TAG_INVALID"),
        ("sha256:123".to_owned(), "DIGEST_INVALID"),
    ] {
        r.put_manifest("a", &bad, common::images::OCI_MANIFEST, b"{}").await.expect(400, Some(code));
    }
    r.get("/v2/a/blobs/sha256:xyz").await.expect(400, Some("DIGEST_INVALID"));
    r.get("/v2/a/blobs/latest").await.expect(400, Some("DIGEST_INVALID"));
}

#[tokio::test]
async fn error_envelope_shape() {
    let r = TestRegistry::new().await;
    let reply = r.get("/v2/a/blobs/sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855").await;
    reply.expect(404, Some("BLOB_UNKNOWN"));
    assert_eq!(reply.header("content-type"), "application/json");
    let e = &reply.json()["errors"][0];
    assert!(e["message"].is_string());
    assert!(e.get("detail").is_some());
}
