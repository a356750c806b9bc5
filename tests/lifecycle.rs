//! Quotas, usage, immutable tags and retention against a real registry (SQLite + local disk by
//! default, PostgreSQL + Garage with three replicas under `TESTBED_BACKEND=scaleout`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use common::{images, sha256, TestRegistry};
use serde_json::json;

const GRACE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(86_400);

async fn registry() -> TestRegistry {
    let dir = tempfile::tempdir().unwrap();
    let r = TestRegistry::with_config(dir, |c| {
        c.gc.grace = GRACE;
        c.gc.interval = Duration::ZERO;
    })
    .await;
    for ns in ["team", "other"] {
        r.admin_api("POST", "/api/v1/namespaces", json!({"name": ns})).await.expect(201, None);
    }
    r
}

/// Bytes that compress poorly, so sizes are what the test says.
fn noise(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut x = sha256(seed.as_bytes()).hex().as_bytes().to_vec();
    while out.len() < len {
        x = sha256(&x).hex().as_bytes().to_vec();
        out.extend_from_slice(&x);
    }
    out.truncate(len);
    out
}

fn message(reply: &common::Reply) -> String {
    reply.json()["errors"][0]["message"].as_str().unwrap_or_default().to_owned()
}

async fn usage(r: &TestRegistry, ns: &str) -> serde_json::Value {
    let reply = r.admin_api("GET", &format!("/api/v1/namespaces/{ns}/usage"), json!(null)).await;
    reply.expect(200, None);
    reply.json()
}

#[tokio::test]
async fn immutable_tags_cannot_move_or_go() {
    let r = registry().await;
    let (first, first_body) = r.push_image("team/app", "v1", "first").await;
    let (second, second_body) = r.push_image("team/app", "latest", "second").await;
    // Owners set the patterns; a developer may not.
    let dev = r.user_with_role("dev", "team", "developer").await;
    r.api_as("dev", &dev, "PUT", "/api/v1/namespaces/team/immutable-tags", json!({"patterns": ["v*"]}))
        .await
        .expect(403, None);
    for bad in [json!({"patterns": ["v["]}), json!({"patterns": "v*"}), json!({"pattern": ["v*"]})] {
        r.admin_api("PUT", "/api/v1/namespaces/team/immutable-tags", bad).await.expect(400, None);
    }
    r.admin_api("PUT", "/api/v1/namespaces/nope/immutable-tags", json!({"patterns": ["v*"]})).await.expect(404, None);
    let set =
        r.admin_api("PUT", "/api/v1/namespaces/team/immutable-tags", json!({"patterns": ["v*", "release-*"]})).await;
    set.expect(200, None);
    assert_eq!(set.json()["patterns"], json!(["v*", "release-*"]));

    // Moving v1 is refused with a message naming the tag and the rule; the same digest is no move.
    let moved = r.put_manifest("team/app", "v1", images::OCI_MANIFEST, &second_body).await;
    moved.expect(403, Some("DENIED"));
    let text = message(&moved);
    assert!(text.contains("team/app:v1") && text.contains("\"v*\"") && text.contains("immutable"), "{text}");
    r.put_manifest("team/app", "v1", images::OCI_MANIFEST, &first_body).await.expect(201, None);
    let got = r.get("/v2/team/app/manifests/v1").await;
    got.expect(200, None);
    assert_eq!(sha256(&got.body), first, "v1 still holds the first image");
    // A new immutable tag may be created once; other tags still move.
    r.put_manifest("team/app", "release-2", images::OCI_MANIFEST, &second_body).await.expect(201, None);
    r.put_manifest("team/app", "release-2", images::OCI_MANIFEST, &first_body).await.expect(403, Some("DENIED"));
    r.put_manifest("team/app", "latest", images::OCI_MANIFEST, &first_body).await.expect(201, None);

    // Deleting the tag, its manifest, or the repository holding it is refused too.
    let del = r.send("DELETE", "/v2/team/app/manifests/v1", &[], Body::empty()).await;
    del.expect(403, Some("DENIED"));
    assert!(message(&del).contains("deleting the tag v1"), "{}", message(&del));
    let del = r.send("DELETE", &format!("/v2/team/app/manifests/{first}"), &[], Body::empty()).await;
    del.expect(403, Some("DENIED"));
    assert!(message(&del).contains(&format!("deleting the manifest {first}")), "{}", message(&del));
    let del = r.admin_api("DELETE", "/api/v1/repositories/team/app", json!(null)).await;
    del.expect(403, None);
    assert!(del.json()["error"]["message"].as_str().unwrap().contains("deleting the repository"), "{}", del.json());
    r.get("/v2/team/app/manifests/v1").await.expect(200, None);
    // A manifest no immutable tag holds can go.
    r.put_manifest("team/app", "scratch", images::OCI_MANIFEST, &second_body).await.expect(201, None);
    r.send("DELETE", "/v2/team/app/manifests/scratch", &[], Body::empty()).await.expect(202, None);
    // An admin rejecting a quarantined image is not stopped by its immutable tag.
    let (doomed, _) = r.push_image("team/app", "v-doomed", "doomed").await;
    let reject = json!({"repository": "team/app", "digest": doomed.to_string(), "reason": "malware"});
    r.admin_api("POST", "/api/v1/scans/reject", reject).await.expect(200, None);
    r.get("/v2/team/app/manifests/v-doomed").await.expect(404, None);
    // The rules belong to the namespace: another namespace moves its v1 freely.
    r.push_image("other/app", "v1", "first").await;
    r.push_image("other/app", "v1", "second").await;
    // Lifting the rule lifts the refusal.
    r.admin_api("PUT", "/api/v1/namespaces/team/immutable-tags", json!({"patterns": []})).await.expect(200, None);
    r.put_manifest("team/app", "v1", images::OCI_MANIFEST, &second_body).await.expect(201, None);
    assert_eq!(
        r.admin_api("GET", "/api/v1/namespaces/team/immutable-tags", json!(null)).await.json()["patterns"],
        json!([])
    );
    let _ = second;
}

/// Eight pushes create the same new immutable tag with different images at once: exactly one
/// wins, the others are refused, and the tag holds the winner's image.
#[tokio::test]
async fn concurrent_creations_of_an_immutable_tag_leave_exactly_one_winner() {
    let r = Arc::new(registry().await);
    r.admin_api("PUT", "/api/v1/namespaces/team/immutable-tags", json!({"patterns": ["v*"]})).await.expect(200, None);
    let mut bodies = Vec::new();
    for i in 0..8 {
        // Each image stored by digest first, so the race is only the tag's.
        let (digest, body) = r.push_image("team/race", &format!("seed-{i}"), &format!("race-{i}")).await;
        bodies.push((digest, body));
    }
    let mut tasks = Vec::new();
    for (digest, body) in bodies {
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let reply = r.put_manifest("team/race", "v9", images::OCI_MANIFEST, &body).await;
            (reply.status.as_u16(), digest)
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        let (status, digest) = t.await.unwrap();
        match status {
            201 => winners.push(digest),
            403 => {}
            other => panic!("a racing push answered {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one push creates the tag");
    let got = r.get("/v2/team/race/manifests/v9").await;
    assert_eq!(sha256(&got.body), winners[0]);
}

#[tokio::test]
async fn quota_counts_each_blob_once_per_namespace_and_refuses_what_overflows() {
    let r = registry().await;
    let dev = r.user_with_role("dev2", "team", "developer").await;
    // Only admins set quotas; members read them.
    r.api_as("dev2", &dev, "PUT", "/api/v1/namespaces/team/quota", json!({"bytes": 1})).await.expect(403, None);
    r.api_as("dev2", &dev, "GET", "/api/v1/namespaces/team/usage", json!(null)).await.expect(200, None);
    r.api_as("dev2", &dev, "GET", "/api/v1/namespaces/other/usage", json!(null)).await.expect(403, None);
    for bad in [json!({"bytes": -1}), json!({"bytes": "10GiB"}), json!({"byte": 1}), json!({"bytes": 1.5})] {
        r.admin_api("PUT", "/api/v1/namespaces/team/quota", bad).await.expect(400, None);
    }
    r.admin_api("PUT", "/api/v1/namespaces/nope/quota", json!({"bytes": 1})).await.expect(404, None);

    let (a, b, c) = (noise("a", 40_000), noise("b", 40_000), noise("c", 40_000));
    r.admin_api("PUT", "/api/v1/namespaces/team/quota", json!({"bytes": 100_000})).await.expect(200, None);
    r.push_blob("team/one", &a).await;
    r.push_blob("team/one", &b).await;
    // The same bytes in another repository of the namespace add nothing, by upload or by mount.
    r.push_blob("team/two", &a).await;
    let mount = r
        .send("POST", &format!("/v2/team/three/blobs/uploads/?mount={}&from=team/one", sha256(&b)), &[], Body::empty())
        .await;
    mount.expect(201, None);
    let used = usage(&r, "team").await;
    assert_eq!((used["bytes"].as_u64(), used["blobs"].as_u64()), (Some(80_000), Some(2)), "{used}");
    assert_eq!(used["repositories"], 3);
    assert_eq!(used["quota"]["bytes"], 100_000);

    // A third distinct blob would pass the quota: refused, by upload and by mount, with the figures.
    let refused = r.send("POST", &format!("/v2/team/one/blobs/uploads/?digest={}", sha256(&c)), &[], c.clone()).await;
    refused.expect(403, Some("DENIED"));
    let text = message(&refused);
    assert!(text.starts_with("quota exceeded: namespace team uses 78.1 KiB of 97.7 KiB"), "{text}");
    r.push_blob("other/x", &c).await;
    let mount = r
        .send("POST", &format!("/v2/team/one/blobs/uploads/?mount={}&from=other/x", sha256(&c)), &[], Body::empty())
        .await;
    mount.expect(403, Some("DENIED"));
    assert!(message(&mount).contains("quota exceeded"), "{}", message(&mount));
    // Both refusals are audited (and so are `quota.exceeded` webhook events).
    let audited = r.admin_api("GET", "/api/v1/audit?action=quota.exceeded", json!(null)).await;
    let items = audited.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2, "{items:?}");
    for item in &items {
        assert_eq!((item["namespace"].as_str(), item["outcome"].as_str()), (Some("team"), Some("denied")));
        assert_eq!(item["object"], "team/one");
        assert!(item["details"]["message"].as_str().unwrap().starts_with("quota exceeded: namespace team"));
    }
    // Nothing half-recorded: the refused blob is in no repository of the namespace.
    r.send("HEAD", &format!("/v2/team/one/blobs/{}", sha256(&c)), &[], Body::empty()).await.expect(404, None);
    assert_eq!(usage(&r, "team").await["bytes"], 80_000);
    // A blob shared with another namespace counts in each.
    assert_eq!(usage(&r, "other").await["bytes"], 40_000);

    // Removing the limit lets it in; deleting a repository gives back what only it used.
    r.admin_api("PUT", "/api/v1/namespaces/team/quota", json!({"bytes": null})).await.expect(200, None);
    r.push_blob("team/one", &c).await;
    assert_eq!(usage(&r, "team").await["bytes"], 120_000);
    r.admin_api("DELETE", "/api/v1/repositories/team/one", json!(null)).await.expect(204, None);
    let used = usage(&r, "team").await;
    assert_eq!((used["bytes"].as_u64(), used["repositories"].as_u64()), (Some(80_000), Some(2)), "{used}");
    // fsck recomputes usage from the links and finds it exact.
    let fsck = r.admin_api("GET", "/api/v1/fsck", json!(null)).await;
    fsck.expect(200, None);
    assert_eq!(fsck.json()["usage_drift"], json!([]), "{}", fsck.json());
}

#[tokio::test]
async fn repository_and_tag_quotas_refuse_the_one_too_many() {
    let r = registry().await;
    r.push_image("team/a", "one", "x").await;
    let set = r.admin_api("PUT", "/api/v1/namespaces/team/quota", json!({"repositories": 1, "tags": 2})).await;
    set.expect(200, None);
    assert_eq!(set.json()["quota"], json!({"bytes": null, "repositories": 1, "tags": 2}));
    // A second repository is refused at its first blob.
    let refused = r
        .send(
            "POST",
            "/v2/team/b/blobs/uploads/?digest=sha256:0000000000000000000000000000000000000000000000000000000000000000",
            &[],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(refused.status, 400, "a wrong digest is still refused first");
    let refused =
        r.send("POST", &format!("/v2/team/b/blobs/uploads/?digest={}", sha256(b"x")), &[], b"x".to_vec()).await;
    refused.expect(403, Some("DENIED"));
    assert!(message(&refused).contains("1 of 1 repositories"), "{}", message(&refused));
    // A second tag fits, a third does not; moving an existing tag is not a new one.
    let (_, body) = r.push_image("team/a", "two", "y").await;
    let third = r.put_manifest("team/a", "three", images::OCI_MANIFEST, &body).await;
    third.expect(403, Some("DENIED"));
    assert!(message(&third).contains("2 of 2 tags"), "{}", message(&third));
    r.put_manifest("team/a", "one", images::OCI_MANIFEST, &body).await.expect(201, None);
    // Pushing by digest needs no tag.
    r.put_manifest("team/a", &sha256(&body).to_string(), images::OCI_MANIFEST, &body).await.expect(201, None);
    let used = usage(&r, "team").await;
    assert_eq!((used["tags"].as_u64(), used["repositories"].as_u64()), (Some(2), Some(1)), "{used}");
}

#[tokio::test]
async fn concurrent_uploads_never_pass_the_byte_quota() {
    let r = Arc::new(registry().await);
    const SIZE: usize = 30_000;
    r.admin_api("PUT", "/api/v1/namespaces/team/quota", json!({"bytes": SIZE * 3 + SIZE / 2})).await.expect(200, None);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let r = r.clone();
        tasks.push(tokio::spawn(async move {
            let bytes = noise(&format!("parallel-{i}"), SIZE);
            let uri = format!("/v2/team/p{}/blobs/uploads/?digest={}", i % 3, sha256(&bytes));
            r.send("POST", &uri, &[], bytes).await.status.as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    statuses.sort();
    assert_eq!(statuses, [201, 201, 201, 403, 403, 403, 403, 403], "exactly three fit");
    assert_eq!(usage(&r, "team").await["bytes"], (SIZE * 3) as u64);
}

/// Pushes an image whose config is unique to `seed`, after moving the clock by `after`.
async fn push_at(
    r: &TestRegistry,
    repo: &str,
    tag: &str,
    seed: &str,
    after: Duration,
) -> (portcullis::domain::Digest, Vec<u8>) {
    r.advance_clocks(after);
    r.push_image(repo, tag, seed).await
}

#[tokio::test]
async fn retention_keeps_what_its_rules_say_and_referrers_follow_their_subject() {
    let r = registry().await;
    // v1..v5 a day apart, `latest` on v5, an old untagged manifest, an index with two children.
    let mut v = Vec::new();
    for i in 1..=5 {
        v.push(push_at(&r, "team/app", &format!("v{i}"), &format!("v{i}"), DAY).await);
    }
    r.put_manifest("team/app", "latest", images::OCI_MANIFEST, &v[4].1).await.expect(201, None);
    let (untagged, untagged_body) = r.push_image("team/app", "tmp", "untagged").await;
    r.send("DELETE", "/v2/team/app/manifests/tmp", &[], Body::empty()).await.expect(202, None);
    // Referrers: one of v1 (goes with it), one of v5 (stays); a cosign-style signature tag of v1.
    let empty = r.push_blob("team/app", b"{}").await;
    let sig1 = images::artifact("application/vnd.example.sig", &empty, &v[0].0, v[0].1.len());
    let sig5 = images::artifact("application/vnd.example.sig", &empty, &v[4].0, v[4].1.len());
    for body in [&sig1, &sig5] {
        r.put_manifest("team/app", &sha256(body).to_string(), images::OCI_MANIFEST, body).await.expect(201, None);
    }
    let cosign_tag = format!("sha256-{}.sig", v[0].0.hex());
    let (cosign, _) = r.push_image("team/app", &cosign_tag, "cosign-payload").await;
    r.advance_clocks(DAY * 3);
    let _ = untagged_body;

    let rules = json!({"keep_last": [{"tags": "v*", "count": 2}], "always_keep": ["latest"], "untagged_days": 2});
    // Owners only; bad rules are refused by name.
    let dev = r.user_with_role("dev3", "team", "developer").await;
    r.api_as("dev3", &dev, "POST", "/api/v1/namespaces/team/retention/dry-run", rules.clone()).await.expect(403, None);
    let bad = r
        .admin_api("PUT", "/api/v1/namespaces/team/retention", json!({"keep_last": [{"tags": "v*", "count": 0}]}))
        .await;
    bad.expect(400, None);
    assert!(bad.json()["error"]["message"].as_str().unwrap().contains("keep_last[0].count"), "{}", bad.json());

    // The dry run names every removal with its reason and changes nothing.
    let dry = r.admin_api("POST", "/api/v1/namespaces/team/retention/dry-run", rules.clone()).await;
    dry.expect(200, None);
    let plan = dry.json();
    let tags: Vec<&str> = plan["tags"].as_array().unwrap().iter().map(|t| t["tag"].as_str().unwrap()).collect();
    assert_eq!(tags, ["v1", "v2", "v3", cosign_tag.as_str()], "{plan}");
    assert!(
        plan["tags"][0]["reason"].as_str().unwrap().contains("beyond the 2 most recently pushed tags matching \"v*\""),
        "{plan}"
    );
    let removed: std::collections::BTreeSet<String> =
        plan["manifests"].as_array().unwrap().iter().map(|m| m["digest"].as_str().unwrap().to_owned()).collect();
    let expected: std::collections::BTreeSet<String> =
        [&v[0].0, &v[1].0, &v[2].0, &untagged, &sha256(&sig1), &cosign].iter().map(|d| d.to_string()).collect();
    assert_eq!(removed, expected, "{plan}");
    let reason_of = |d: &portcullis::domain::Digest| {
        plan["manifests"].as_array().unwrap().iter().find(|m| m["digest"] == d.to_string()).unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(reason_of(&sha256(&sig1)).contains(&format!("its subject {} is removed", v[0].0)));
    assert!(reason_of(&untagged).contains("untagged_days"));
    r.get("/v2/team/app/manifests/v1").await.expect(200, None);
    assert_eq!(r.admin_api("GET", "/api/v1/namespaces/team/retention", json!(null)).await.json()["rules"], json!(null));

    // Saved, the collector applies them; the dry run of the stored rules agrees with the run.
    r.admin_api("PUT", "/api/v1/namespaces/team/retention", rules.clone()).await.expect(200, None);
    let stored_dry = r.admin_api("POST", "/api/v1/namespaces/team/retention/dry-run", json!(null)).await;
    assert_eq!(stored_dry.json()["manifests"], plan["manifests"]);
    let gc = r.admin_api("POST", "/api/v1/gc", json!(null)).await;
    gc.expect(200, None);
    assert_eq!(gc.json()["manifests_deleted"], 6, "{}", gc.json());
    for gone in ["v1", "v2", "v3", cosign_tag.as_str()] {
        r.get(&format!("/v2/team/app/manifests/{gone}")).await.expect(404, Some("MANIFEST_UNKNOWN"));
    }
    for kept in ["v4", "v5", "latest"] {
        r.get(&format!("/v2/team/app/manifests/{kept}")).await.expect(200, None);
    }
    let referrers = r.get(&format!("/v2/team/app/referrers/{}", v[4].0)).await;
    assert_eq!(referrers.json()["manifests"][0]["digest"], sha256(&sig5).to_string(), "v5's referrer stays");
    // A second run removes nothing more; after the grace period the collector frees the bytes.
    let again = r.admin_api("POST", "/api/v1/namespaces/team/retention/run", json!(null)).await;
    assert_eq!((again.json()["tags_removed"].as_u64(), again.json()["manifests_removed"].as_u64()), (Some(0), Some(0)));
    let before = usage(&r, "team").await["bytes"].as_u64().unwrap();
    r.advance_clocks(GRACE + Duration::from_secs(1));
    let gc = r.admin_api("POST", "/api/v1/gc", json!(null)).await;
    assert!(gc.json()["bytes_freed"].as_u64().unwrap() > 0, "{}", gc.json());
    assert!(usage(&r, "team").await["bytes"].as_u64().unwrap() < before);
    r.get("/v2/team/app/manifests/v5").await.expect(200, None);
    r.admin_api("DELETE", "/api/v1/namespaces/team/retention", json!(null)).await.expect(204, None);
}

#[tokio::test]
async fn retention_never_removes_immutable_tags_nor_what_a_kept_index_lists() {
    let r = registry().await;
    let (amd, amd_body) = push_at(&r, "team/multi", "amd-only", "amd", DAY).await;
    let (arm, arm_body) = push_at(&r, "team/multi", "arm-only", "arm", DAY).await;
    r.send("DELETE", "/v2/team/multi/manifests/amd-only", &[], Body::empty()).await.expect(202, None);
    r.send("DELETE", "/v2/team/multi/manifests/arm-only", &[], Body::empty()).await.expect(202, None);
    let index = images::index(&[(amd.clone(), amd_body.len(), "amd64"), (arm.clone(), arm_body.len(), "arm64")]);
    r.put_manifest("team/multi", "v1", images::OCI_INDEX, &index).await.expect(201, None);
    push_at(&r, "team/multi", "release-1", "release", DAY).await;
    r.admin_api("PUT", "/api/v1/namespaces/team/immutable-tags", json!({"patterns": ["release-*"]}))
        .await
        .expect(200, None);
    r.advance_clocks(DAY * 10);
    let rules = json!({"keep_days": 1, "untagged_days": 1});
    r.admin_api(
        "PUT",
        "/api/v1/namespaces/team/retention",
        json!({"keep_last": [{"tags": "v*", "count": 1}], "untagged_days": 1}),
    )
    .await
    .expect(200, None);
    let dry = r.admin_api("POST", "/api/v1/namespaces/team/retention/dry-run", rules).await.json();
    // keep_days alone removes v1 (pushed 10 days ago) and with it the index's children; never release-1.
    let tags: Vec<&str> = dry["tags"].as_array().unwrap().iter().map(|t| t["tag"].as_str().unwrap()).collect();
    assert_eq!(tags, ["v1"], "{dry}");
    assert_eq!(dry["manifests"].as_array().unwrap().len(), 3, "{dry}");
    assert_eq!(dry["manifests"][0]["digest"], sha256(&index).to_string(), "the index goes before its children: {dry}");
    // The stored rules keep the newest v*: the index and both children stay.
    let run = r.admin_api("POST", "/api/v1/namespaces/team/retention/run", json!(null)).await.json();
    assert_eq!(run["manifests_removed"], 0, "{run}");
    r.get(&format!("/v2/team/multi/manifests/{amd}")).await.expect(200, None);
    r.get("/v2/team/multi/manifests/release-1").await.expect(200, None);
}
