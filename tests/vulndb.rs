//! Continuous scanning: vulnerability data imported without a restart (`POST /api/v1/vulndb`,
//! `portcullis vulndb import`) quarantines a passed image whose packages it names, for the
//! image's own distribution release only; a rescan never releases an image; bad imports are
//! refused with their reason; only admins import.

mod common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use axum::body::Body;
use common::{images, Reply, TestRegistry, ADMIN_PASSWORD};

fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}
use serde_json::{json, Value};

/// A Debian image of `release` with openssl at `version`.
fn debian(release: &str, version: &str) -> Vec<u8> {
    let status = format!(
        "Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: {version}\n\n\
         Package: base-files\nStatus: install ok installed\nVersion: {release}.4\n"
    );
    let os_release = format!("PRETTY_NAME=\"Debian GNU/Linux {release}\"\nID=debian\nVERSION_ID=\"{release}\"\n");
    images::layer_files_tar_gz(&[("usr/lib/os-release", &os_release), ("var/lib/dpkg/status", &status)])
}

fn record(id: &str, ecosystem: &str) -> Value {
    json!({"id": id, "aliases": [format!("CVE-2099-{}", &id[4..8])], "summary": "openssl: remote code execution",
           "modified": "2026-12-01T00:00:00Z",
           "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
           "affected": [{"package": {"ecosystem": ecosystem, "name": "openssl"},
                         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]}]}]})
}

async fn push(r: &TestRegistry, repo: &str, tag: &str, layer: Vec<u8>) -> portcullis::model::Digest {
    let config =
        serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "config": {"User": "10001"}})).unwrap();
    r.push_layers(repo, tag, &config, &[&layer]).await.0
}

async fn upload(r: &TestRegistry, content_type: &str, body: impl Into<Body>) -> Reply {
    let auth = common::auth::basic("admin", ADMIN_PASSWORD);
    r.send_raw("POST", "/api/v1/vulndb", &[("authorization", &auth), ("content-type", content_type)], body).await
}

async fn state(r: &TestRegistry, repo: &str, digest: &portcullis::model::Digest) -> String {
    let report = r.admin_api("GET", &format!("/api/v1/scans?repository={repo}&digest={digest}"), json!(null)).await;
    report.json()["state"].as_str().unwrap_or_default().to_owned()
}

/// Waits until no passed image is behind the data's version; returns the status document.
async fn settled(r: &TestRegistry) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = r.admin_api("GET", "/api/v1/vulndb", json!(null)).await;
        status.expect(200, None);
        let doc = status.json();
        if doc["rescans_due"] == 0 {
            return doc;
        }
        assert!(Instant::now() < deadline, "rescans still due: {doc}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn imported_data_quarantines_a_passed_image_of_that_release_only() {
    let r = TestRegistry::new().await;
    let dev = r.user_with_role("dev", "team", "developer").await;
    let token = r.login("dev", &dev, &["repository:team/app:pull"]).await;
    let bookworm = push(&r, "team/app", "bookworm", debian("12", "3.0.11-1~deb12u1")).await;
    let bullseye = push(&r, "team/app", "bullseye", debian("11", "3.0.11-1~deb12u1")).await;
    let fixed = push(&r, "team/app", "fixed", debian("12", "3.0.11-1~deb12u2")).await;
    let made_up = push(&r, "team/app", "made-up", debian("99", "3.0.11-1~deb12u1")).await;
    for d in [&bookworm, &bullseye, &fixed, &made_up] {
        assert_eq!(r.wait_scan("team/app", d).await, "passed");
    }
    let empty = r.admin_api("GET", "/api/v1/vulndb", json!(null)).await;
    empty.expect(200, None);
    assert_eq!((empty.json()["version"].as_i64(), empty.json()["imported_at"].is_null()), (Some(0), true));

    // A record for Debian 11 only (with one for Debian 12's zlib, so that the data covers Debian
    // 12, as OSV's Debian export does): the Debian 12 image with the same version is not
    // affected; an image claiming a release the data does not know is judged by every release.
    let zlib = json!({"id": "DSA-9000-1", "affected": [{"package": {"ecosystem": "Debian:12", "name": "zlib"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1"}]}]}]});
    let first = r.admin_api("POST", "/api/v1/vulndb", json!([zlib, record("DSA-9001-1", "Debian:11")])).await;
    first.expect(200, None);
    assert_eq!((first.json()["version"].as_i64(), first.json()["added"].as_i64()), (Some(1), Some(2)));
    settled(&r).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while state(&r, "team/app", &bullseye).await != "quarantined" {
        assert!(Instant::now() < deadline, "the Debian 11 image was not quarantined");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state(&r, "team/app", &bookworm).await, "passed", "a Debian:11 record does not apply to Debian 12");
    assert_eq!(state(&r, "team/app", &made_up).await, "quarantined", "a release the data does not know: all apply");
    r.v2_as(&token, "GET", "/v2/team/app/manifests/bookworm", Body::empty()).await.expect(200, None);

    // The same import again changes nothing.
    let again = r.admin_api("POST", "/api/v1/vulndb", json!([record("DSA-9001-1", "Debian:11")])).await;
    assert_eq!((again.json()["version"].as_i64(), again.json()["unchanged"].as_i64()), (Some(1), Some(1)));

    // Now Debian 12, as one record (not an array), without a restart.
    let started = Instant::now();
    let second = r.admin_api("POST", "/api/v1/vulndb", record("DSA-9002-1", "Debian:12")).await;
    second.expect(200, None);
    assert_eq!(second.json()["version"].as_i64(), Some(2));
    while state(&r, "team/app", &bookworm).await != "quarantined" {
        assert!(started.elapsed() < Duration::from_secs(20), "not quarantined after the import");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let blocked = r.v2_as(&token, "GET", "/v2/team/app/manifests/bookworm", Body::empty()).await;
    blocked.expect(403, Some("QUARANTINED"));
    assert!(blocked.json()["errors"][0]["message"].as_str().unwrap().contains("DSA-9002-1"), "{:?}", blocked.json());
    // Not one byte of it: its layer is refused too.
    let report = r.admin_api("GET", &format!("/api/v1/scans?repository=team/app&digest={bookworm}"), json!(null)).await;
    assert_eq!(report.json()["findings"][0]["rule"], "vulnerability");
    let (repo, reference) = ("team/app".parse().unwrap(), portcullis::model::Reference::Digest(bookworm.clone()));
    let manifest = r.app.registry.read_manifest(portcullis::domain::Reader::Unrestricted, &repo, &reference);
    let manifest: Value = serde_json::from_slice(&manifest.await.unwrap().content).unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap();
    r.v2_as(&token, "GET", &format!("/v2/team/app/blobs/{layer}"), Body::empty())
        .await
        .expect(403, Some("QUARANTINED"));
    // The fixed version still passes and is served.
    assert_eq!(state(&r, "team/app", &fixed).await, "passed");
    r.v2_as(&token, "GET", "/v2/team/app/manifests/fixed", Body::empty()).await.expect(200, None);
    let doc = settled(&r).await;
    assert_eq!((doc["version"].as_i64(), doc["records"].as_i64()), (Some(2), Some(3)));

    // The audit log says why, naming the vulnerability (webhooks send it as scan.quarantined).
    let audit = r.admin_api("GET", "/api/v1/audit?action=scan.verdict", json!(null)).await;
    let records = audit.json();
    let list = records["items"].as_array().cloned().unwrap_or_default();
    let rescan = list
        .iter()
        .find(|a| a["object"].as_str() == Some(&format!("team/app@{bookworm}")) && a["outcome"] == "quarantined")
        .unwrap_or_else(|| panic!("no quarantine record for the rescan: {records}"));
    let details = &rescan["details"];
    assert_eq!(details["rescan"], true, "{rescan}");
    assert_eq!(details["vulnerabilities"], json!(["DSA-9002-1"]), "{rescan}");
    assert_eq!(details["cves"], json!(["CVE-2099-9002"]), "{rescan}");
    assert!(details["summary"].as_str().unwrap().contains("DSA-9002-1 (CVE-2099-9002) in libssl3"), "{rescan}");
    assert_eq!(details["vulnerability_data_version"], 2, "{rescan}");
    let imports = r.admin_api("GET", "/api/v1/audit?action=vulndb.import", json!(null)).await.json();
    assert!(imports["items"][0]["actor"].as_str().unwrap_or_default().contains("admin"), "{imports}");
    assert_eq!(imports["items"][0]["details"]["version"], "2", "{imports}");
    assert_eq!(imports["items"].as_array().map(Vec::len), Some(3), "the unchanged import is recorded too: {imports}");

    // New data never releases an image: an empty-matching record leaves the quarantine alone.
    r.admin_api("POST", "/api/v1/vulndb", record("DSA-9003-1", "Debian:13")).await.expect(200, None);
    settled(&r).await;
    assert_eq!(state(&r, "team/app", &bookworm).await, "quarantined");
}

#[tokio::test]
async fn zip_exports_import_and_bad_ones_are_refused_with_their_reason() {
    let r = TestRegistry::new().await;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, body) in [
        ("DSA-9101-1.json", record("DSA-9101-1", "Debian:12").to_string()),
        (
            "GHSA-npm.json",
            json!({"id": "GHSA-0000-0000-0000", "affected": [{"package": {"ecosystem": "npm", "name": "x"}}]})
                .to_string(),
        ),
    ] {
        zip.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
        zip.write_all(body.as_bytes()).unwrap();
    }
    let bytes = zip.finish().unwrap().into_inner();
    let imported = upload(&r, "application/zip", bytes).await;
    imported.expect(200, None);
    assert_eq!((imported.json()["added"].as_i64(), imported.json()["skipped"].as_i64()), (Some(1), Some(1)));

    let before = r.admin_api("GET", "/api/v1/vulndb", json!(null)).await.json();
    // Not JSON, not a record, not a zip, not a type we read: 4xx naming why, and nothing changes.
    let bad = upload(&r, "application/json", "[{\"id\": \"DSA-1\"}, {\"nope\": 1}]").await;
    bad.expect(400, None);
    assert!(text(&bad).contains("[1]") && text(&bad).contains("not an OSV record"), "{}", text(&bad));
    let bad = upload(&r, "application/json", "{").await;
    bad.expect(400, None);
    assert!(text(&bad).contains("not JSON"), "{}", text(&bad));
    let bad = upload(&r, "application/zip", "PK but not a zip").await;
    bad.expect(400, None);
    assert!(text(&bad).contains("not a readable zip"), "{}", text(&bad));
    let bad = upload(&r, "text/plain", "x").await;
    bad.expect(415, None);
    assert!(text(&bad).contains("application/zip"), "{}", text(&bad));
    let bad =
        upload(&r, "application/json", json!({"id": "<img src=x onerror=alert(1)>", "affected": []}).to_string()).await;
    bad.expect(400, None);
    assert_eq!(r.admin_api("GET", "/api/v1/vulndb", json!(null)).await.json(), before);

    // Only admins read or import.
    let pw = r.user_with_role("owner", "team", "owner").await;
    let denied = r.api_as("owner", &pw, "POST", "/api/v1/vulndb", record("DSA-9102-1", "Debian:12")).await;
    denied.expect(403, None);
    r.api_as("owner", &pw, "GET", "/api/v1/vulndb", json!(null)).await.expect(403, None);
    r.send_raw("GET", "/api/v1/vulndb", &[], Body::empty()).await.expect(401, None);
}

#[tokio::test]
async fn the_size_limit_is_enforced_and_named() {
    let r = TestRegistry::with_config(tempfile::tempdir().unwrap(), |c| c.scan.vulndb_max_bytes = 1000).await;
    let big = json!([
        record("DSA-9201-1", "Debian:12"),
        record("DSA-9202-1", "Debian:12"),
        record("DSA-9203-1", "Debian:12")
    ]);
    let refused = upload(&r, "application/json", big.to_string()).await;
    refused.expect(413, None);
    assert!(text(&refused).contains("scan.vulndb_max_bytes"), "{}", text(&refused));
}

#[tokio::test]
async fn the_cli_imports_into_a_running_registry_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::process::Server::start(dir.path());
    let env = common::backends::for_data_dir(dir.path()).map(|n| common::backends::env(&n)).unwrap_or_default();
    let cli = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .arg("vulndb")
            .args(args)
            .env("PORTCULLIS_DATA_DIR", dir.path())
            .env("PORTCULLIS_LOG", "warn")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    };
    let records = dir.path().join("osv");
    std::fs::create_dir_all(records.join("debian")).unwrap();
    std::fs::write(records.join("debian/DSA-9301-1.json"), record("DSA-9301-1", "Debian:12").to_string()).unwrap();
    std::fs::write(records.join("more.json"), json!([record("DSA-9302-1", "Debian:12")]).to_string()).unwrap();
    let out = cli(&["import".as_ref(), records.as_os_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["version"].as_i64(), report["added"].as_i64()), (Some(1), Some(2)), "{report}");
    // The running registry reads the new version (no restart).
    assert_eq!(server.api(reqwest::Method::GET, "/api/v1/vulndb", json!(null)).await["records"], 2);
    let out = cli(&["status".as_ref()]);
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap()["version"], 1);
    // A broken file fails the whole import, naming the file; nothing changes.
    let broken = dir.path().join("broken.json");
    std::fs::write(&broken, "{ not json").unwrap();
    let out = cli(&["import".as_ref(), records.as_os_str(), broken.as_os_str()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.json") && err.contains("not JSON"), "{err}");
    assert_eq!(server.api(reqwest::Method::GET, "/api/v1/vulndb", json!(null)).await["version"], 1);
}

/// An image scanned before inventories were kept (as an older registry left it) is scanned again
/// in full when new data arrives, and quarantined if the data names one of its packages.
#[tokio::test]
async fn images_scanned_before_inventories_are_rescanned_in_full() {
    let r = TestRegistry::new().await;
    let old = push(&r, "team/app", "old", debian("12", "3.0.11-1~deb12u1")).await;
    assert_eq!(r.wait_scan("team/app", &old).await, "passed");
    let cleared = r.app.metadata().execute_for_tests("UPDATE scans SET inventory = NULL, matched_version = 0").await;
    assert!(cleared.unwrap() >= 1);
    r.admin_api("POST", "/api/v1/vulndb", record("DSA-9401-1", "Debian:12")).await.expect(200, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while state(&r, "team/app", &old).await != "quarantined" {
        assert!(Instant::now() < deadline, "the image without an inventory was not rescanned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
