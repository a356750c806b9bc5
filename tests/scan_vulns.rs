//! Offline vulnerability matching: packages read from dpkg, apk and Python metadata in layers,
//! matched against small OSV fixtures with each ecosystem's version order, CVSS severities, a
//! threshold and an allowlist with expiry; and a pushed image with a vulnerable dpkg package
//! quarantined end to end through the router.

mod common;

use std::path::Path;

use axum::body::Body;
use common::{images, sha256, TestRegistry};
use portcullis::model::osv::Record;
use portcullis::scan::osv::{Allow, OsvDb};
use portcullis::scan::packages::{os_release, Ecosystem, Package};
use portcullis::scan::{Rule, Severity};
use serde_json::json;

const CRITICAL: &str = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H";

fn fixtures() -> [serde_json::Value; 3] {
    [
        json!({"id": "DSA-0001-1", "aliases": ["CVE-2099-0001"], "summary": "openssl: remote code execution",
               "severity": [{"type": "CVSS_V3", "score": CRITICAL}],
               "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
                             "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]}]}]}),
        json!({"id": "ALPINE-0002", "aliases": ["CVE-2099-0002"],
               "affected": [{"package": {"ecosystem": "Alpine:v3.19", "name": "openssl"},
                             "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "3.1.0-r0"}, {"fixed": "3.1.4-r5"}]}]}],
               "database_specific": {"severity": "HIGH"}}),
        json!({"id": "GHSA-0003", "summary": "requests leaks headers",
               "affected": [{"package": {"ecosystem": "PyPI", "name": "Requests"},
                             "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.0.0"}, {"last_affected": "2.31.0"}]}],
                             "ecosystem_specific": {"severity": "MODERATE"}}]}),
    ]
}

fn write_fixtures(dir: &Path) {
    let records = fixtures();
    std::fs::create_dir_all(dir.join("debian")).unwrap();
    for (i, r) in records.iter().enumerate() {
        std::fs::write(dir.join("debian").join(format!("{i}.json")), r.to_string()).unwrap();
    }
}

fn pkg(ecosystem: Ecosystem, name: &str, source: Option<&str>, version: &str) -> Package {
    Package { ecosystem, name: name.into(), source: source.map(str::to_owned), version: version.into() }
}

#[test]
fn matches_versions_severities_threshold_and_allowlist() {
    let db = OsvDb::new(fixtures().iter().map(|r| Record::from_value(r).unwrap()), 1);
    assert_eq!(db.records, 3);
    let packages = [
        pkg(Ecosystem::Debian, "libssl3", Some("openssl"), "3.0.11-1~deb12u1"),
        pkg(Ecosystem::Debian, "openssl", None, "3.0.11-1~deb12u2"),
        pkg(Ecosystem::Alpine, "libcrypto3", Some("openssl"), "3.1.4-r4"),
        pkg(Ecosystem::Alpine, "libssl3", Some("openssl"), "3.1.4-r5"),
        pkg(Ecosystem::PyPI, "requests", None, "2.31.0"),
        pkg(Ecosystem::PyPI, "requests", None, "2.32.0"),
    ];
    let found = db.scan(&packages, None, Severity::High, &[], 0);
    let ids: Vec<(&str, Severity, Rule)> =
        found.iter().map(|f| (f.message.split(' ').next().unwrap(), f.severity, f.rule)).collect();
    assert_eq!(
        ids,
        [
            ("DSA-0001-1", Severity::Critical, Rule::Vulnerability),
            ("ALPINE-0002", Severity::High, Rule::Vulnerability),
            ("GHSA-0003", Severity::Medium, Rule::VulnerabilityLow),
        ]
    );
    assert!(found[0].message.contains("libssl3 3.0.11-1~deb12u1, fixed in 3.0.11-1~deb12u2"), "{}", found[0].message);
    // Allowlisted by CVE alias while the entry lasts; expired entries no longer apply.
    let allow = [Allow { id: "CVE-2099-0001".into(), until: Some(100) }];
    assert_eq!(db.scan(&packages[..1], None, Severity::High, &allow, 50).len(), 0);
    assert_eq!(db.scan(&packages[..1], None, Severity::High, &allow, 100).len(), 1);
}

/// Two records for openssl: one for Debian 11 only, one with an entry per release (11 fixed in
/// 1.1, 12 fixed in 3.0.11-1~deb12u2); and one for Alpine v3.19.
fn release_records() -> OsvDb {
    let range = |fixed: &str| json!([{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]);
    let records = [
        json!({"id": "DSA-11-ONLY", "affected": [{"package": {"ecosystem": "Debian:11", "name": "openssl"}, "ranges": range("9")}]}),
        json!({"id": "DEBIAN-CVE-2099-1", "affected": [
            {"package": {"ecosystem": "Debian:11", "name": "openssl"}, "ranges": range("1.1")},
            {"package": {"ecosystem": "Debian:12", "name": "openssl"}, "ranges": range("3.0.11-1~deb12u2")}]}),
        json!({"id": "ALPINE-319", "affected": [{"package": {"ecosystem": "Alpine:v3.19", "name": "openssl"}, "ranges": range("3.1.4-r5")}]}),
    ];
    OsvDb::new(records.iter().map(|r| Record::from_value(r).unwrap()), 1)
}

#[test]
fn release_specific_records_apply_to_their_release_only_when_the_image_proves_it() {
    let db = release_records();
    let ids = |packages: &[Package], os: Option<&str>| {
        let distro = os.and_then(os_release);
        let found = db.scan(packages, distro.as_ref(), Severity::High, &[], 0);
        let mut ids: Vec<String> = found.iter().map(|f| f.message.split(' ').next().unwrap().to_owned()).collect();
        ids.sort();
        ids
    };
    let ssl = pkg(Ecosystem::Debian, "libssl3", Some("openssl"), "3.0.11-1~deb12u1");
    let bookworm = [pkg(Ecosystem::Debian, "base-files", None, "12.4+deb12u2"), ssl.clone()];
    let debian = |version: &str| format!("ID=debian\nVERSION_ID=\"{version}\"\n");
    // Proven Debian 12 (os-release, base-files, and the data knows Debian:12): only 12's entries.
    assert_eq!(ids(&bookworm, Some(&debian("12"))), ["DEBIAN-CVE-2099-1"]);
    // Every other case falls back to every release's entries, never to fewer records.
    let all = ["DEBIAN-CVE-2099-1", "DSA-11-ONLY"];
    assert_eq!(ids(&bookworm, None), all, "no os-release");
    assert_eq!(ids(&bookworm, Some("ID=debian\n")), all, "testing/sid: no VERSION_ID");
    assert_eq!(ids(&bookworm, Some(&debian("99"))), all, "a release the data does not know");
    assert_eq!(ids(&bookworm, Some(&debian("11"))), all, "os-release says 11, base-files says 12");
    assert_eq!(ids(std::slice::from_ref(&ssl), Some(&debian("12"))), all, "no base-files to confirm the release");
    assert_eq!(ids(&bookworm, Some("ID=ubuntu\nVERSION_ID=\"22.04\"\n")), all, "another distribution");
    // A record with an entry per release is judged by each entry until one matches: the Debian 11
    // entry (fixed in 1.1) does not hide the Debian 12 one.
    assert_eq!(ids(&[ssl], None), all);
    // Proven Debian 11: its own entries.
    let bullseye = [
        pkg(Ecosystem::Debian, "base-files", None, "11.1+deb11u9"),
        pkg(Ecosystem::Debian, "libssl1.1", Some("openssl"), "1.1.1w-0+deb11u1"),
    ];
    assert_eq!(
        ids(&bullseye, Some(&debian("11"))),
        ["DSA-11-ONLY"],
        "1.1.1w is past 11's fix (1.1) in DEBIAN-CVE-2099-1"
    );
    // Alpine: alpine-release confirms v3.19; a v3.18 image is not affected by a v3.19 record.
    let crypto = pkg(Ecosystem::Alpine, "libcrypto3", Some("openssl"), "3.1.4-r4");
    let alpine = |v: &str| [pkg(Ecosystem::Alpine, "alpine-release", None, v), crypto.clone()];
    assert_eq!(ids(&alpine("3.19.1-r0"), Some("ID=alpine\nVERSION_ID=3.19.1\n")), ["ALPINE-319"]);
    assert_eq!(
        ids(&alpine("3.18.4-r0"), Some("ID=alpine\nVERSION_ID=3.18.4\n")),
        ["ALPINE-319"],
        "v3.18 is a release the data does not know: every release's records apply"
    );
}

fn dpkg_layer(version: &str) -> Vec<u8> {
    let status = format!(
        "Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: {version}\nArchitecture: amd64\n\n\
         Package: base-files\nStatus: install ok installed\nVersion: 12.4+deb12u2\n"
    );
    images::layer_tar_gz("var/lib/dpkg/status", status.as_bytes(), 0o644)
}

#[tokio::test]
async fn a_vulnerable_dpkg_package_quarantines_the_image() {
    let osv = tempfile::tempdir().unwrap();
    write_fixtures(osv.path());
    let osv_dir = osv.path().to_path_buf();
    let r = TestRegistry::with_config(tempfile::tempdir().unwrap(), move |c| c.scan.osv_dir = Some(osv_dir)).await;
    let pw = r.user_with_role("dev", "team", "developer").await;
    let token = r.login("dev", &pw, &["repository:team/app:pull"]).await;
    let config =
        serde_json::to_vec(&json!({"architecture": "amd64", "os": "linux", "config": {"User": "10001"}})).unwrap();
    let mut digests = Vec::new();
    for (tag, version) in [("vulnerable", "3.0.11-1~deb12u1"), ("fixed", "3.0.11-1~deb12u2")] {
        let layer = dpkg_layer(version);
        let config = images::with_diff_ids(&config, &[&layer]);
        let config_digest = r.push_blob("team/app", &config).await;
        let layer_digest = r.push_blob("team/app", &layer).await;
        let manifest = images::oci_manifest(&config_digest, config.len(), &[(layer_digest, layer.len())], None);
        r.put_manifest("team/app", tag, images::OCI_MANIFEST, &manifest).await.expect(201, None);
        digests.push(sha256(&manifest));
    }
    assert_eq!(r.wait_scan("team/app", &digests[0]).await, "quarantined");
    assert_eq!(r.wait_scan("team/app", &digests[1]).await, "passed");
    let blocked = r.v2_as(&token, "GET", "/v2/team/app/manifests/vulnerable", Body::empty()).await;
    blocked.expect(403, Some("QUARANTINED"));
    assert!(blocked.json()["errors"][0]["message"].as_str().unwrap().contains("DSA-0001-1"));
    r.v2_as(&token, "GET", "/v2/team/app/manifests/fixed", Body::empty()).await.expect(200, None);
    let report =
        r.admin_api("GET", &format!("/api/v1/scans?repository=team/app&digest={}", digests[0]), json!(null)).await;
    let finding = &report.json()["findings"][0];
    assert_eq!((finding["rule"].as_str(), finding["severity"].as_str()), (Some("vulnerability"), Some("critical")));
}
