//! Tags, catalog and referrers through the router, with paging and filters.

mod common;

use common::images::{self, OCI_INDEX, OCI_MANIFEST};
use common::{sha256, TestRegistry};

#[tokio::test]
async fn tags_are_paged_with_link() {
    let r = TestRegistry::new().await;
    let (digest, bytes) = r.push_image("p", "t00", "p").await;
    for i in 1..25 {
        r.put_manifest("p", &format!("t{i:02}"), OCI_MANIFEST, &bytes).await.expect(201, None);
    }
    let all = r.get("/v2/p/tags/list").await;
    all.expect(200, None);
    assert_eq!(all.json()["name"], "p");
    assert_eq!(all.json()["tags"].as_array().unwrap().len(), 25);
    assert_eq!(all.header("link"), "");
    let mut seen = Vec::new();
    let mut uri = "/v2/p/tags/list?n=10".to_owned();
    loop {
        let page = r.get(&uri).await;
        page.expect(200, None);
        seen.extend(page.json()["tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_owned()));
        let link = page.header("link").to_owned();
        if link.is_empty() {
            break;
        }
        assert!(link.ends_with("; rel=\"next\""), "{link}");
        uri = link[1..link.find('>').unwrap()].to_owned();
    }
    let expected: Vec<String> = (0..25).map(|i| format!("t{i:02}")).collect();
    assert_eq!(seen, expected, "lexical order, every tag once");
    let after = r.get("/v2/p/tags/list?n=2&last=t22").await;
    assert_eq!(after.json()["tags"], serde_json::json!(["t23", "t24"]));
    assert_eq!(r.get("/v2/p/tags/list?n=0").await.json()["tags"], serde_json::json!([]));
    r.get("/v2/p/tags/list?n=-1").await.expect(400, Some("PAGINATION_NUMBER_INVALID"));
    r.get("/v2/p/tags/list?n=abc").await.expect(400, Some("PAGINATION_NUMBER_INVALID"));
    r.get("/v2/unknown/tags/list").await.expect(404, Some("NAME_UNKNOWN"));
    let _ = digest;
}

#[tokio::test]
async fn catalog_is_paged() {
    let r = TestRegistry::new().await;
    for name in ["c/one", "a/deep/er/name/with/many/segments/x", "b"] {
        r.push_image(name, "v1", name).await;
    }
    let all = r.get("/v2/_catalog").await;
    assert_eq!(all.json()["repositories"], serde_json::json!(["a/deep/er/name/with/many/segments/x", "b", "c/one"]));
    let first = r.get("/v2/_catalog?n=2").await;
    assert_eq!(first.json()["repositories"].as_array().unwrap().len(), 2);
    assert_eq!(first.header("link"), "</v2/_catalog?n=2&last=b>; rel=\"next\"");
    let rest = r.get("/v2/_catalog?n=2&last=b").await;
    assert_eq!(rest.json()["repositories"], serde_json::json!(["c/one"]));
    assert_eq!(rest.header("link"), "");
}

#[tokio::test]
async fn referrers_listing_and_filter() {
    let r = TestRegistry::new().await;
    let (subject, subject_bytes) = r.push_image("ref", "v1", "subject").await;
    // None yet: an empty index, never a 404.
    let none = r.get(&format!("/v2/ref/referrers/{subject}")).await;
    none.expect(200, None);
    assert_eq!(none.header("content-type"), OCI_INDEX);
    assert_eq!(none.json()["manifests"], serde_json::json!([]));
    let empty = r.push_blob("ref", b"{}").await;
    let sig = images::artifact("application/vnd.example.signature", &empty, &subject, subject_bytes.len());
    let sbom = images::artifact("application/vnd.example.sbom", &empty, &subject, subject_bytes.len());
    for m in [&sig, &sbom] {
        r.put_manifest("ref", sha256(m).as_str(), OCI_MANIFEST, m).await.expect(201, None);
    }
    let all = r.get(&format!("/v2/ref/referrers/{subject}")).await;
    let listed = all.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 2);
    assert_eq!(all.header("oci-filters-applied"), "");
    let sig_entry = listed.iter().find(|m| m["digest"] == sha256(&sig).as_str()).unwrap();
    assert_eq!(sig_entry["artifactType"], "application/vnd.example.signature");
    assert_eq!(sig_entry["size"], sig.len());
    assert_eq!(sig_entry["annotations"]["org.example.kind"], "application/vnd.example.signature");
    let filtered = r.get(&format!("/v2/ref/referrers/{subject}?artifactType=application/vnd.example.sbom")).await;
    assert_eq!(filtered.header("oci-filters-applied"), "artifactType");
    let only = filtered.json()["manifests"].as_array().unwrap().clone();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["digest"], sha256(&sbom).as_str());
    r.get("/v2/ref/referrers/sha256:bad").await.expect(400, Some("DIGEST_INVALID"));
    // Referrers do not leak across repositories.
    let elsewhere = r.get(&format!("/v2/other/referrers/{subject}")).await;
    assert_eq!(elsewhere.json()["manifests"], serde_json::json!([]));
}
