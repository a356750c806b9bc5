//! Scan-on-push and the quarantine gate: images that fail the built-in policy cannot be pulled
//! (manifest GET or blob GET) by anyone but admins until released; HEAD stays open; artifacts are
//! scanned for secrets; an index takes the worst state of what it reaches; the scans API reports
//! and long-polls. (The ways around the gate that were tried are in `quarantine_bypass.rs`.)

mod common;

use axum::body::Body;
use common::images::{self, OCI_INDEX, OCI_MANIFEST};
use common::{sha256, TestRegistry};
use portcullis::domain::Digest;
use serde_json::json;

/// Pushes an image whose config and single layer are given; returns (manifest digest, layer digest).
async fn push(r: &TestRegistry, repo: &str, tag: &str, config: serde_json::Value, layer: Vec<u8>) -> (Digest, Digest) {
    let config = images::with_diff_ids(&serde_json::to_vec(&config).unwrap(), &[&layer]);
    let config_digest = r.push_blob(repo, &config).await;
    let layer_digest = r.push_blob(repo, &layer).await;
    let manifest = images::oci_manifest(&config_digest, config.len(), &[(layer_digest.clone(), layer.len())], None);
    let reply = r.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await;
    reply.expect(201, None);
    let digest = sha256(&manifest);
    assert_eq!(
        reply.header("portcullis-scan-status"),
        format!("{}/api/v1/scans?repository={repo}&digest={digest}", r.app.config.public_url())
    );
    (digest, layer_digest)
}

fn root_config() -> serde_json::Value {
    json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/app"]}, "rootfs": {"type": "layers", "diff_ids": []}})
}

fn clean_config() -> serde_json::Value {
    json!({"architecture": "amd64", "os": "linux", "config": {"User": "10001"}, "rootfs": {"type": "layers", "diff_ids": []}})
}

#[tokio::test]
async fn a_root_image_is_quarantined_until_released() {
    let r = TestRegistry::new().await;
    let pw = r.user_with_role("dev", "team", "developer").await;
    let (digest, layer) =
        push(&r, "team/app", "v1", root_config(), images::layer_tar_gz("app/run", b"#!/bin/sh", 0o755)).await;
    let token = r.login("dev", &pw, &["repository:team/app:pull,push"]).await;
    assert_eq!(r.wait_scan("team/app", &digest).await, "quarantined");

    let blocked = r.v2_as(&token, "GET", "/v2/team/app/manifests/v1", Body::empty()).await;
    blocked.expect(403, Some("QUARANTINED"));
    let message = blocked.json()["errors"][0]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("runs as root") && message.contains("/api/v1/scans?repository=team/app"), "{message}");
    r.v2_as(&token, "GET", &format!("/v2/team/app/manifests/{digest}"), Body::empty())
        .await
        .expect(403, Some("QUARANTINED"));
    r.v2_as(&token, "GET", &format!("/v2/team/app/blobs/{layer}"), Body::empty())
        .await
        .expect(403, Some("QUARANTINED"));
    // HEAD stays open: re-pushes depend on it.
    r.v2_as(&token, "HEAD", "/v2/team/app/manifests/v1", Body::empty()).await.expect(200, None);
    r.v2_as(&token, "HEAD", &format!("/v2/team/app/blobs/{layer}"), Body::empty()).await.expect(200, None);
    // Admins pass the gate.
    r.get("/v2/team/app/manifests/v1").await.expect(200, None);

    // The report, for someone who may pull.
    let report =
        r.api_as("dev", &pw, "GET", &format!("/api/v1/scans?repository=team/app&digest={digest}"), json!(null)).await;
    report.expect(200, None);
    assert_eq!(report.json()["state"], "quarantined");
    assert_eq!(report.json()["findings"][0]["rule"], "root_user");
    // Only admins release, and only with a reason.
    let target = json!({"repository": "team/app", "digest": digest.to_string(), "reason": "accepted for the demo"});
    r.api_as("dev", &pw, "POST", "/api/v1/scans/release", target.clone()).await.expect(403, None);
    r.admin_api("POST", "/api/v1/scans/release", json!({"repository": "team/app", "digest": digest.to_string()}))
        .await
        .expect(400, None);
    let released = r.admin_api("POST", "/api/v1/scans/release", target).await;
    released.expect(200, None);
    assert_eq!(released.json()["state"], "released");
    assert_eq!(released.json()["released_by"], "admin");
    r.v2_as(&token, "GET", "/v2/team/app/manifests/v1", Body::empty()).await.expect(200, None);
    r.v2_as(&token, "GET", &format!("/v2/team/app/blobs/{layer}"), Body::empty()).await.expect(200, None);
    let listed = r.admin_api("GET", "/api/v1/scans?state=released", json!(null)).await;
    assert_eq!(listed.json()["items"][0]["digest"], digest.to_string());
    r.api_as("dev", &pw, "GET", "/api/v1/scans?state=quarantined", json!(null)).await.expect(403, None);

    // Rejecting deletes the image (with its tags); only admins, with a reason.
    let (other, _) = push(&r, "team/app", "v2", root_config(), images::layer_tar_gz("b", b"b", 0o644)).await;
    assert_eq!(r.wait_scan("team/app", &other).await, "quarantined");
    let reject = json!({"repository": "team/app", "digest": other.to_string(), "reason": "runs as root"});
    r.api_as("dev", &pw, "POST", "/api/v1/scans/reject", reject.clone()).await.expect(403, None);
    r.admin_api("POST", "/api/v1/scans/reject", json!({"repository": "team/app", "digest": other.to_string()}))
        .await
        .expect(400, None);
    r.admin_api("POST", "/api/v1/scans/reject", reject.clone()).await.expect(200, None);
    r.get("/v2/team/app/manifests/v2").await.expect(404, Some("MANIFEST_UNKNOWN"));
    r.admin_api("POST", "/api/v1/scans/reject", reject).await.expect(404, None);
}

#[tokio::test]
async fn secrets_in_lower_layers_and_env_are_quarantined_clean_images_pass() {
    let r = TestRegistry::new().await;
    let pw = r.user_with_role("dev", "team", "developer").await;
    let token = r
        .login("dev", &pw, &["repository:team/clean:pull", "repository:team/env:pull", "repository:team/file:pull"])
        .await;
    let (clean, _) =
        push(&r, "team/clean", "v1", clean_config(), images::layer_tar_gz("app/server", b"\x7fELF", 0o755)).await;
    assert_eq!(r.wait_scan("team/clean", &clean).await, "passed");
    r.v2_as(&token, "GET", "/v2/team/clean/manifests/v1", Body::empty()).await.expect(200, None);

    let mut env = clean_config();
    env["config"]["Env"] = json!(["SSH_KEY=-----BEGIN OPENSSH PRIVATE KEY-----b3BlbnNzaC1rZXk"]);
    let (d, _) = push(&r, "team/env", "v1", env, images::layer_tar_gz("app/server", b"\x7fELF", 0o755)).await;
    assert_eq!(r.wait_scan("team/env", &d).await, "quarantined");
    let reply = r.v2_as(&token, "GET", "/v2/team/env/manifests/v1", Body::empty()).await;
    reply.expect(403, Some("QUARANTINED"));
    assert!(reply.json()["errors"][0]["message"].as_str().unwrap().contains("SSH_KEY"));

    let key = images::layer_tar_gz("root/.aws/credentials", b"aws_access_key_id = AKIAIOSFODNN7EXAMPLE", 0o600);
    let (d, _) = push(&r, "team/file", "v1", clean_config(), key).await;
    assert_eq!(r.wait_scan("team/file", &d).await, "quarantined");
    r.v2_as(&token, "GET", "/v2/team/file/manifests/v1", Body::empty()).await.expect(403, Some("QUARANTINED"));
}

#[tokio::test]
async fn signatures_are_scanned_as_artifacts_and_indexes_take_the_worst_child() {
    let r = TestRegistry::new().await;
    let pw = r.user_with_role("dev", "team", "developer").await;
    let token = r.login("dev", &pw, &["repository:team/multi:pull,push"]).await;
    let (good, _) = push(&r, "team/multi", "good", clean_config(), images::layer_tar_gz("a", b"a", 0o644)).await;
    let (bad, _) = push(&r, "team/multi", "bad", root_config(), images::layer_tar_gz("b", b"b", 0o644)).await;
    // A signature can be pushed onto an image before its scan finished; it is an artifact, scanned
    // for secrets (not for the image rules), and readable by anyone allowed once it passed.
    let empty = r.push_blob("team/multi", b"{}").await;
    let sig = images::artifact("application/vnd.dev.cosign.artifact.sig.v1+json", &empty, &bad, 100);
    let sig_digest = sha256(&sig);
    let pushed = r.v2_as(&token, "PUT", &format!("/v2/team/multi/manifests/{sig_digest}"), sig.clone()).await;
    assert_eq!(pushed.status, 201, "{:?}", pushed.body);
    assert!(pushed.header("portcullis-scan-status").contains(&sig_digest.to_string()), "artifacts are scanned too");
    assert_eq!(r.wait_scan("team/multi", &sig_digest).await, "passed");
    r.v2_as(&token, "GET", &format!("/v2/team/multi/manifests/{sig_digest}"), Body::empty()).await.expect(200, None);
    r.v2_as(&token, "GET", &format!("/v2/team/multi/blobs/{empty}"), Body::empty()).await.expect(200, None);
    assert_eq!(r.wait_scan("team/multi", &good).await, "passed");
    assert_eq!(r.wait_scan("team/multi", &bad).await, "quarantined");
    let good_len = r.get(&format!("/v2/team/multi/manifests/{good}")).await.body.len();
    let bad_len = r.get(&format!("/v2/team/multi/manifests/{bad}")).await.body.len();
    let index = images::index(&[(good.clone(), good_len, "amd64"), (bad.clone(), bad_len, "arm64")]);
    r.put_manifest("team/multi", "all", OCI_INDEX, &index).await.expect(201, None);
    assert_eq!(r.wait_scan("team/multi", &sha256(&index)).await, "passed", "the index document itself is clean");
    r.v2_as(&token, "GET", "/v2/team/multi/manifests/all", Body::empty()).await.expect(403, Some("QUARANTINED"));
    let only_good = images::index(&[(good, good_len, "amd64")]);
    r.put_manifest("team/multi", "good-only", OCI_INDEX, &only_good).await.expect(201, None);
    assert_eq!(r.wait_scan("team/multi", &sha256(&only_good)).await, "passed");
    r.v2_as(&token, "GET", "/v2/team/multi/manifests/good-only", Body::empty()).await.expect(200, None);
}

#[tokio::test]
async fn pending_answers_retry_after_and_the_scans_api_long_polls() {
    let r = TestRegistry::new().await;
    let pw = r.user_with_role("dev", "team", "developer").await;
    // Hold the job: claim it with a lease that has already lapsed, as a crashed worker would leave it.
    let (digest, _) = push(&r, "team/slow", "v1", clean_config(), images::layer_tar_gz("a", b"a", 0o644)).await;
    let token = r.login("dev", &pw, &["repository:team/slow:pull"]).await;
    let first = r.v2_as(&token, "GET", "/v2/team/slow/manifests/v1", Body::empty()).await;
    if first.status == 403 {
        assert_eq!(first.code(), "SCAN_PENDING");
        assert_eq!(first.header("retry-after"), "10");
    }
    let waited = r
        .api_as("dev", &pw, "GET", &format!("/api/v1/scans?repository=team/slow&digest={digest}&wait=20s"), json!(null))
        .await;
    waited.expect(200, None);
    assert_eq!(waited.json()["state"], "passed");
    // A rescan keeps serving the current verdict until the new one lands.
    let rescan = r
        .admin_api("POST", "/api/v1/scans/rescan", json!({"repository": "team/slow", "digest": digest.to_string()}))
        .await;
    rescan.expect(202, None);
    r.v2_as(&token, "GET", "/v2/team/slow/manifests/v1", Body::empty()).await.expect(200, None);
    assert_eq!(r.wait_scan("team/slow", &digest).await, "passed");
    // Someone without pull rights learns nothing.
    let other = r.user_with_role("other", "elsewhere", "developer").await;
    r.api_as("other", &other, "GET", &format!("/api/v1/scans?repository=team/slow&digest={digest}"), json!(null))
        .await
        .expect(404, None);
    r.admin_api("GET", "/api/v1/scans?repository=team/slow&digest=sha256:bad", json!(null)).await.expect(400, None);
}

#[tokio::test]
async fn a_lapsed_lease_is_picked_up_again() {
    let r = TestRegistry::new().await;
    let (digest, _) = push(&r, "team/lease", "v1", clean_config(), images::layer_tar_gz("a", b"a", 0o644)).await;
    // Whoever claims first: if our claim wins, it is a worker that died with the job (lease 0 s).
    let claimed = r.app.registry.claim_scan(std::time::Duration::ZERO, 5).await.unwrap();
    if let Some(job) = claimed {
        assert_eq!(job.digest, digest);
    }
    assert_eq!(r.wait_scan("team/lease", &digest).await, "passed");
}

#[tokio::test]
async fn a_release_can_expire_and_namespaces_can_relax_rules() {
    let r = TestRegistry::new().await;
    let pw = r.user_with_role("dev", "team", "owner").await;
    let token = r.login("dev", &pw, &["repository:team/app:pull", "repository:relaxed/app:pull"]).await;
    let (digest, layer) = push(&r, "team/app", "v1", root_config(), images::layer_tar_gz("a", b"a", 0o644)).await;
    assert_eq!(r.wait_scan("team/app", &digest).await, "quarantined");
    let clock = r.app.registry.clock().clone();
    let soon = clock.now() + 3600;
    let released = r
        .admin_api(
            "POST",
            "/api/v1/scans/release",
            json!({"repository": "team/app", "digest": digest.to_string(), "reason": "until the fix ships", "expires_at": soon}),
        )
        .await;
    released.expect(200, None);
    // Times in the admin API are RFC 3339.
    let until = released.json()["release_until"].as_str().unwrap().to_owned();
    let parsed = time::OffsetDateTime::parse(&until, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(parsed.unix_timestamp(), soon);
    r.v2_as(&token, "GET", "/v2/team/app/manifests/v1", Body::empty()).await.expect(200, None);
    r.advance_clocks(std::time::Duration::from_secs(3600));
    let lapsed = r.v2_as(&token, "GET", "/v2/team/app/manifests/v1", Body::empty()).await;
    lapsed.expect(403, Some("QUARANTINED"));
    assert!(lapsed.json()["errors"][0]["message"].as_str().unwrap().contains("release expired"));
    r.v2_as(&token, "GET", &format!("/v2/team/app/blobs/{layer}"), Body::empty())
        .await
        .expect(403, Some("QUARANTINED"));
    // The report says what the gate does (CI's wait-scan exits on it): quarantined again.
    let report = r.verdict("team/app", &digest).await;
    assert_eq!((report["state"].as_str(), report["stored_state"].as_str()), (Some("quarantined"), Some("released")));

    // A namespace where running as root only warns.
    r.admin_api("POST", "/api/v1/namespaces", json!({"name": "relaxed"})).await.expect(201, None);
    r.api_as("dev", &pw, "PUT", "/api/v1/namespaces/relaxed/scan-policy", json!({"root_user": "warn"}))
        .await
        .expect(403, None);
    r.admin_api("PUT", "/api/v1/namespaces/relaxed/scan-policy", json!({"root_user": "sometimes"}))
        .await
        .expect(400, None);
    r.admin_api("PUT", "/api/v1/namespaces/relaxed/scan-policy", json!({"hook": "off"})).await.expect(400, None);
    r.admin_api("PUT", "/api/v1/namespaces/nowhere/scan-policy", json!({"root_user": "warn"})).await.expect(404, None);
    let set = r.admin_api("PUT", "/api/v1/namespaces/relaxed/scan-policy", json!({"root_user": "warn"})).await;
    set.expect(200, None);
    assert_eq!(
        r.admin_api("GET", "/api/v1/namespaces/relaxed/scan-policy", json!(null)).await.json()["overrides"],
        json!({"root_user": "warn"})
    );
    let (relaxed, _) = push(&r, "relaxed/app", "v1", root_config(), images::layer_tar_gz("a", b"a", 0o644)).await;
    assert_eq!(r.wait_scan("relaxed/app", &relaxed).await, "passed");
    r.v2_as(&token, "GET", "/v2/relaxed/app/manifests/v1", Body::empty()).await.expect(403, Some("DENIED"));
}

#[tokio::test]
async fn synchronous_mode_answers_the_put_with_the_verdict() {
    let r = TestRegistry::new().await;
    r.admin_api("POST", "/api/v1/namespaces", json!({"name": "sync"})).await.expect(201, None);
    r.admin_api("PUT", "/api/v1/namespaces/sync/scan-policy", json!({"sync_timeout": "forever"}))
        .await
        .expect(400, None);
    r.admin_api("PUT", "/api/v1/namespaces/sync/scan-policy", json!({"sync_timeout": "1h"})).await.expect(400, None);
    let set = r.admin_api("PUT", "/api/v1/namespaces/sync/scan-policy", json!({"sync_timeout": "20s"})).await;
    set.expect(200, None);
    assert_eq!(set.json()["sync_timeout"], "20s");
    let layer = images::layer_tar_gz("a", b"a", 0o644);
    let config = images::with_diff_ids(&serde_json::to_vec(&root_config()).unwrap(), &[&layer]);
    let config_digest = r.push_blob("sync/app", &config).await;
    let layer_digest = r.push_blob("sync/app", &layer).await;
    let manifest = images::oci_manifest(&config_digest, config.len(), &[(layer_digest, layer.len())], None);
    let reply = r.put_manifest("sync/app", "v1", OCI_MANIFEST, &manifest).await;
    reply.expect(201, None);
    assert_eq!(reply.header("portcullis-scan-state"), "quarantined", "the verdict arrives with the PUT");
    // Elsewhere pushes do not wait.
    let (_, _) = push(&r, "team/app", "v1", clean_config(), images::layer_tar_gz("b", b"b", 0o644)).await;
}

/// With the database looked at only once an hour, a push still wakes the scan worker, and the
/// verdict wakes the synchronous PUT and the long-poll that wait for it. Each scan takes a second
/// (in a hook), so both are waiting when the verdict lands.
#[tokio::test]
async fn pushes_and_verdicts_wake_their_waiters_without_polling() {
    // Across replicas a request learns of another replica's verdict only by looking again.
    let poll = if common::backends::scaleout() { 1 } else { 3600 };
    let r = TestRegistry::with_config(tempfile::tempdir().unwrap(), |c| {
        c.scan.poll = std::time::Duration::from_secs(poll);
        c.scan.hook = Some(vec!["/bin/sh".into(), "-c".into(), "cat > /dev/null; exec /bin/sleep 1".into()]);
    })
    .await;
    r.admin_api("POST", "/api/v1/namespaces", json!({"name": "sync"})).await.expect(201, None);
    r.admin_api("PUT", "/api/v1/namespaces/sync/scan-policy", json!({"sync_timeout": "30s"})).await.expect(200, None);
    let layer = images::layer_tar_gz("a", b"a", 0o644);
    let config = images::with_diff_ids(&serde_json::to_vec(&clean_config()).unwrap(), &[&layer]);
    let config_digest = r.push_blob("sync/app", &config).await;
    let layer_digest = r.push_blob("sync/app", &layer).await;
    let manifest = images::oci_manifest(&config_digest, config.len(), &[(layer_digest, layer.len())], None);
    // Unwoken, each wait would last its whole 30 s and then read the verdict that landed meanwhile.
    let woken_in_time = |started: std::time::Instant| started.elapsed() < std::time::Duration::from_secs(20);
    let started = std::time::Instant::now();
    let reply = r.put_manifest("sync/app", "v1", OCI_MANIFEST, &manifest).await;
    reply.expect(201, None);
    assert_eq!(reply.header("portcullis-scan-state"), "passed");
    assert!(woken_in_time(started), "the PUT was not woken by its verdict: {:?}", started.elapsed());

    let (digest, _) = push(&r, "team/app", "v1", clean_config(), images::layer_tar_gz("b", b"b", 0o644)).await;
    let started = std::time::Instant::now();
    let waited =
        r.admin_api("GET", &format!("/api/v1/scans?repository=team/app&digest={digest}&wait=30s"), json!(null)).await;
    waited.expect(200, None);
    assert_eq!(waited.json()["state"], "passed");
    assert!(woken_in_time(started), "the long-poll was not woken by the verdict: {:?}", started.elapsed());
}
