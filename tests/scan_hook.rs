//! The external scan hook: exit 1 quarantines, exit 0 with findings passes, a hook past its timeout
//! ends in `error` and the image stays blocked, garbage on stdout is ignored, and the hook sees the
//! image as an OCI layout, its environment cleaned.

mod common;

use axum::body::Body;
use common::{images, TestRegistry};
use std::time::Duration;

async fn registry_with_hook(script: &str, timeout: Duration) -> TestRegistry {
    let dir = tempfile::tempdir().unwrap();
    let script = script.to_owned();
    TestRegistry::with_config(dir, move |c| {
        c.scan.hook = Some(vec!["/bin/sh".into(), "-c".into(), script]);
        c.scan.hook_timeout = timeout;
        c.scan.max_attempts = 1;
    })
    .await
}

#[tokio::test]
async fn exit_one_quarantines_and_findings_are_kept() {
    let r = registry_with_hook(
        r#"echo '{"findings":[{"message":"CVE-2099-1 in libfoo","severity":"critical"}]}'; exit 1"#,
        Duration::from_secs(30),
    )
    .await;
    let (digest, _) = r.push_image("hooked/app", "v1", "h").await;
    assert_eq!(r.wait_scan("hooked/app", &digest).await, "quarantined");
    let report = r
        .admin_api("GET", &format!("/api/v1/scans?repository=hooked/app&digest={digest}"), serde_json::Value::Null)
        .await;
    let findings = report.json()["findings"].clone();
    assert!(findings.as_array().unwrap().iter().any(|f| f["rule"] == "hook"), "{findings}");
    assert!(
        findings
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["message"] == "CVE-2099-1 in libfoo" && f["severity"] == "critical"),
        "{findings}"
    );
}

#[tokio::test]
async fn the_hook_sees_a_layout_and_a_clean_environment() {
    // Exit 0 only if the layout, the request and the variables are right, and nothing leaked in.
    let script = r#"
        test -f "$PORTCULLIS_LAYOUT/index.json" || exit 3
        test -f "$PORTCULLIS_LAYOUT/oci-layout" || exit 4
        test "$PORTCULLIS_REPOSITORY" = "hooked/app" || exit 5
        test "$PORTCULLIS_TAG" = "v1" || exit 6
        hex=${PORTCULLIS_DIGEST#sha256:}
        test -f "$PORTCULLIS_LAYOUT/blobs/sha256/$hex" || exit 7
        grep -q "$PORTCULLIS_DIGEST" || exit 8
        test -z "$PORTCULLIS_TEST_LEAK" || exit 9
        echo 'this is not JSON at all'
        exit 0"#;
    std::env::set_var("PORTCULLIS_TEST_LEAK", "secret-from-the-parent");
    let r = registry_with_hook(script, Duration::from_secs(30)).await;
    let (digest, _) = r.push_image("hooked/app", "v1", "h").await;
    let state = r.wait_scan("hooked/app", &digest).await;
    let report = r
        .admin_api("GET", &format!("/api/v1/scans?repository=hooked/app&digest={digest}"), serde_json::Value::Null)
        .await;
    assert_eq!(state, "passed", "{}", report.json());
}

#[tokio::test]
async fn a_hook_past_its_timeout_is_an_error_and_the_image_stays_blocked() {
    let r = registry_with_hook("sleep 30; exit 0", Duration::from_millis(500)).await;
    let pw = r.user_with_role("dev", "hooked", "developer").await;
    let (digest, _) = r.push_image("hooked/app", "v1", "h").await;
    let started = std::time::Instant::now();
    assert_eq!(r.wait_scan("hooked/app", &digest).await, "error");
    assert!(started.elapsed() < Duration::from_secs(15), "the timeout did not stop the hook");
    let token = r.login("dev", &pw, &["repository:hooked/app:pull"]).await;
    r.v2_as(&token, "GET", "/v2/hooked/app/manifests/v1", Body::empty()).await.expect(403, Some("SCAN_FAILED"));
    let _ = images::OCI_MANIFEST;
}

#[tokio::test]
async fn other_exit_codes_and_missing_hooks_are_errors() {
    let r = registry_with_hook("exit 2", Duration::from_secs(30)).await;
    let (digest, _) = r.push_image("hooked/app", "v1", "h").await;
    assert_eq!(r.wait_scan("hooked/app", &digest).await, "error");
    let dir = tempfile::tempdir().unwrap();
    let r = TestRegistry::with_config(dir, |c| {
        c.scan.hook = Some(vec!["/nonexistent/scanner".into()]);
        c.scan.max_attempts = 1;
    })
    .await;
    let (digest, _) = r.push_image("hooked/app", "v1", "h").await;
    assert_eq!(r.wait_scan("hooked/app", &digest).await, "error");
}

/// The layout the hook gets is one a real client reads: skopeo finds the image by its tag (the
/// index's `org.opencontainers.image.ref.name`), and copying it out verifies every blob against
/// its digest.
#[tokio::test]
#[ignore = "needs skopeo: scripts/test.sh runs it"]
async fn skopeo_reads_the_hooks_layout() {
    common::process::require_tool("skopeo");
    let script = r#"
        cd "$(mktemp -d)" || exit 3
        skopeo --insecure-policy copy --quiet "oci:$PORTCULLIS_LAYOUT:v1" "dir:$PWD/out" || exit 4
        test "$(skopeo inspect --format '{{.Digest}}' "oci:$PORTCULLIS_LAYOUT:v1")" = "$PORTCULLIS_DIGEST" || exit 5
        exit 0"#;
    let r = registry_with_hook(script, Duration::from_secs(60)).await;
    let (digest, _) = r.push_image("hooked/app", "v1", "layout").await;
    let state = r.wait_scan("hooked/app", &digest).await;
    let report = r
        .admin_api("GET", &format!("/api/v1/scans?repository=hooked/app&digest={digest}"), serde_json::Value::Null)
        .await;
    assert_eq!(state, "passed", "{}", report.json());
}
