//! The SBOM on push: the packages the scan found, as an SPDX 2.3 document the registry attaches
//! to the image (`application/spdx+json` referrer), readable while the image is quarantined by
//! those who may pull it, attached once per package list, and pulled back with oras-py.

mod common;

use axum::body::Body;
use common::images;
use common::process::Server;
use common::TestRegistry;
use portcullis::domain::Digest;
use serde_json::{json, Value};

const SPDX_QUERY: &str = "artifactType=application/spdx%2Bjson";

/// A Debian 12 layer: its os-release, and dpkg's status file with three packages.
fn debian_layer() -> Vec<u8> {
    let status = "Package: libssl3\nStatus: install ok installed\nSource: openssl\nVersion: 3.0.11-1~deb12u2\nArchitecture: amd64\n\n\
                  Package: base-files\nStatus: install ok installed\nVersion: 12.4+deb12u2\n\n\
                  Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b2\n";
    let os_release = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n";
    images::layer_files_tar_gz(&[("etc/os-release", os_release), ("var/lib/dpkg/status", status)])
}

fn config(user: Option<&str>) -> Vec<u8> {
    let mut c = json!({"architecture": "amd64", "os": "linux", "config": {}});
    if let Some(u) = user {
        c["config"]["User"] = json!(u);
    }
    serde_json::to_vec(&c).unwrap()
}

/// The SBOM documents attached to `repo@digest`, once there are `n`.
async fn sboms(reg: &TestRegistry, token: &str, repo: &str, digest: &Digest, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let list = reg.v2_as(token, "GET", &format!("/v2/{repo}/referrers/{digest}?{SPDX_QUERY}"), Body::empty()).await;
        let found = list.json()["manifests"].as_array().cloned().unwrap_or_default();
        if found.len() >= n {
            let mut docs = Vec::new();
            for m in found {
                let d: Digest = m["digest"].as_str().unwrap().parse().unwrap();
                reg.wait_scan(repo, &d).await;
                let manifest = reg.v2_as(token, "GET", &format!("/v2/{repo}/manifests/{d}"), Body::empty()).await;
                manifest.expect(200, None);
                let layer = manifest.json()["layers"][0]["digest"].as_str().unwrap().to_owned();
                let doc = reg.v2_as(token, "GET", &format!("/v2/{repo}/blobs/{layer}"), Body::empty()).await;
                doc.expect(200, None);
                docs.push(serde_json::from_slice(&doc.body).unwrap());
            }
            return docs;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no SBOM of {repo}@{digest}");
}

fn package<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["packages"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name} in {doc}"))
}

#[tokio::test]
async fn the_sbom_lists_the_dpkg_packages_and_is_attached_once() {
    let reg = TestRegistry::attaching().await;
    let password = reg.user_with_role("reader", "team", "reader").await;
    let token = reg.login("reader", &password, &["repository:team/app:pull"]).await;
    let layer = debian_layer();
    let (digest, _, _, _) = reg.push_layers("team/app", "v1", &config(Some("10001")), &[&layer]).await;
    assert_eq!(reg.wait_scan("team/app", &digest).await, "passed");
    let docs = sboms(&reg, &token, "team/app", &digest, 1).await;
    assert_eq!(docs.len(), 1);
    let doc = &docs[0];
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert_eq!(doc["packages"].as_array().unwrap().len(), 4, "the image and its three packages: {doc}");
    let ssl = package(doc, "libssl3");
    assert_eq!(ssl["versionInfo"], "3.0.11-1~deb12u2");
    assert_eq!(ssl["externalRefs"][0]["referenceLocator"], "pkg:deb/debian/libssl3@3.0.11-1~deb12u2?distro=debian-12");
    assert_eq!(package(doc, "bash")["versionInfo"], "5.2.15-2+b2");
    assert_eq!(package(doc, "team/app")["checksums"][0]["checksumValue"], digest.hex());

    // A rescan that finds the same packages attaches no second SBOM.
    let rescan = json!({"repository": "team/app", "digest": digest.to_string()});
    reg.admin_api("POST", "/api/v1/scans/rescan", rescan).await.expect(202, None);
    let attestation_type = "artifactType=application/vnd.in-toto%2Bjson";
    for _ in 0..200 {
        let list = reg.get(&format!("/v2/team/app/referrers/{digest}?{attestation_type}")).await.json();
        if list["manifests"].as_array().unwrap().len() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let list = reg.get(&format!("/v2/team/app/referrers/{digest}?{attestation_type}")).await.json();
    assert_eq!(list["manifests"].as_array().unwrap().len(), 2, "the rescan's verdict is attested: {list}");
    assert_eq!(sboms(&reg, &token, "team/app", &digest, 1).await.len(), 1, "and its SBOM is not repeated");
}

#[tokio::test]
async fn the_sbom_of_a_quarantined_image_is_readable_by_its_readers() {
    let reg = TestRegistry::attaching().await;
    let password = reg.user_with_role("reader", "team", "reader").await;
    let token = reg.login("reader", &password, &["repository:team/root:pull"]).await;
    let layer = debian_layer();
    let (digest, _, _, _) = reg.push_layers("team/root", "v1", &config(None), &[&layer]).await;
    assert_eq!(reg.wait_scan("team/root", &digest).await, "quarantined");
    reg.v2_as(&token, "GET", "/v2/team/root/manifests/v1", Body::empty()).await.expect(403, Some("QUARANTINED"));
    let docs = sboms(&reg, &token, "team/root", &digest, 1).await;
    assert_eq!(package(&docs[0], "base-files")["versionInfo"], "12.4+deb12u2");
    // Someone who may not pull from the namespace reads nothing of it.
    let other = reg.user_with_role("outsider", "elsewhere", "reader").await;
    let outsider = reg.login("outsider", &other, &["repository:team/root:pull"]).await;
    let list = reg.v2_as(&outsider, "GET", &format!("/v2/team/root/referrers/{digest}"), Body::empty()).await;
    assert!(list.status.is_client_error(), "{}", list.status);
}

/// oras-py (the ORAS project's Python client) pulls the SBOM by its digest, as a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs oras-py: scripts/test.sh installs it"]
async fn oras_py_pulls_the_sbom() {
    let python = std::env::var("TESTBED_ORAS_PYTHON").unwrap_or_else(|_| {
        format!("{}/.cache/portcullis-test-venv/bin/python", std::env::var("HOME").unwrap_or_default())
    });
    let has_oras = std::process::Command::new(&python).args(["-c", "import oras.client"]).output();
    assert!(
        has_oras.is_ok_and(|o| o.status.success()),
        "oras-py is not installed for {python}: run the tests through scripts/test.sh, which installs it"
    );
    let dir = tempfile::tempdir().unwrap();
    let (server, _certs) = Server::start_with_cert_dir(dir.path(), &[("PORTCULLIS_SCAN_SBOM".into(), "true".into())]);
    let password = server.member("team", "reader", "reader").await;
    let api = server.admin_client(&["repository:team/app:pull,push"]).await;
    let layer = debian_layer();
    let config = images::with_diff_ids(&config(Some("10001")), &[&layer]);
    for blob in [&layer, &config] {
        let url = server.url(&format!("/v2/team/app/blobs/uploads/?digest={}", common::sha256(blob)));
        assert_eq!(api.post(url).body(blob.clone()).send().await.unwrap().status(), 201);
    }
    let manifest =
        images::oci_manifest(&common::sha256(&config), config.len(), &[(common::sha256(&layer), layer.len())], None);
    let put = api
        .put(server.url("/v2/team/app/manifests/v1"))
        .header("content-type", images::OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let digest = common::sha256(&manifest);
    assert_eq!(common::docker::wait_scan(&server, "team/app", digest.as_str()).await, "passed");
    let mut sbom = None;
    for _ in 0..200 {
        let url = server.url(&format!("/v2/team/app/referrers/{digest}?{SPDX_QUERY}"));
        let list: Value = api.get(url).send().await.unwrap().json().await.unwrap();
        if let Some(d) = list["manifests"][0]["digest"].as_str() {
            sbom = Some(d.to_owned());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let sbom = sbom.expect("an SBOM referrer");
    assert_eq!(common::docker::wait_scan(&server, "team/app", &sbom).await, "passed");
    let out = dir.path().join("out");
    let script = r#"
import sys, oras.client
host, user, password, target, outdir = sys.argv[1:6]
client = oras.client.OrasClient(hostname=host, tls_verify=True)
client.login(username=user, password=password, hostname=host)
for path in client.pull(target=target, outdir=outdir):
    print(path)
"#;
    let pulled = std::process::Command::new(&python)
        .args(["-c", script, &server.host(), "reader", &password])
        .arg(format!("{}/team/app@{sbom}", server.host()))
        .arg(&out)
        .env("REQUESTS_CA_BUNDLE", server.ca_path())
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&pulled.stdout), String::from_utf8_lossy(&pulled.stderr));
    assert!(pulled.status.success(), "oras-py pull failed: {said}");
    let doc: Value = serde_json::from_slice(&std::fs::read(out.join("sbom.spdx.json")).unwrap()).unwrap();
    assert_eq!(package(&doc, "libssl3")["versionInfo"], "3.0.11-1~deb12u2", "{said}");
}
