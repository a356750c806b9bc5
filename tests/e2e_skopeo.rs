//! End to end with skopeo: a multi-platform OCI index copied into the registry and back out to an
//! OCI layout is identical byte for byte. skopeo verifies TLS against the development CA.

mod common;

use std::path::Path;
use std::process::Command;

use common::images::{self, OCI_INDEX, OCI_LAYER, OCI_MANIFEST};
use common::process::{require_tool, Server};
use common::sha256;
use serde_json::json;

fn write_blob(layout: &Path, bytes: &[u8]) -> (portcullis::domain::Digest, usize) {
    let digest = sha256(bytes);
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(digest.hex()), bytes).unwrap();
    (digest, bytes.len())
}

/// An OCI layout holding an index of two platform images, tagged `v1`.
fn make_layout(layout: &Path) -> (portcullis::domain::Digest, Vec<portcullis::domain::Digest>) {
    let mut children = Vec::new();
    for arch in ["amd64", "arm64"] {
        let config = serde_json::to_vec(&json!({"architecture": arch, "os": "linux", "config": {"User": "10001"},
            "rootfs": {"type": "layers", "diff_ids": []}}))
        .unwrap();
        let (config_digest, config_size) = write_blob(layout, &config);
        let content: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(7) ^ arch.as_bytes()[1] as u32) as u8).collect();
        let layer = images::layer_tar_gz(&format!("opt/{arch}.bin"), &content, 0o644);
        let (layer_digest, layer_size) = write_blob(layout, &layer);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": images::OCI_CONFIG, "digest": config_digest.to_string(), "size": config_size},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest.to_string(), "size": layer_size}],
        }))
        .unwrap();
        let (d, s) = write_blob(layout, &manifest);
        children.push((d, s, arch));
    }
    let index = images::index(&children);
    let (index_digest, index_size) = write_blob(layout, &index);
    std::fs::write(layout.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let top = json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_INDEX, "digest": index_digest.to_string(),
        "size": index_size, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(layout.join("index.json"), top.to_string()).unwrap();
    (index_digest, children.into_iter().map(|(d, _, _)| d).collect())
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().expect("skopeo runs");
    assert!(out.status.success(), "skopeo {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skopeo_copies_a_multi_platform_index_in_and_out_unchanged() {
    if !require_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let server = Server::start(&data);
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::copy(server.ca_path(), certs.join("ca.crt")).unwrap();
    let certs = certs.to_str().unwrap();

    let src = dir.path().join("src");
    let (index_digest, children) = make_layout(&src);
    let dest_ref = format!("docker://{}/e2e/multi:v1", server.host());
    let admin = format!("admin:{}", common::ADMIN_PASSWORD);
    let layout = format!("oci:{}:v1", src.display());
    // Without credentials, and as a reader, skopeo cannot push.
    let anonymous =
        Command::new("skopeo").args(["copy", "--all", "--dest-cert-dir", certs, &layout, &dest_ref]).output().unwrap();
    assert!(!anonymous.status.success(), "anonymous skopeo push succeeded");
    let client = server.client();
    for (path, body) in [
        ("/api/v1/namespaces", serde_json::json!({"name": "e2e"})),
        ("/api/v1/users", serde_json::json!({"username": "reader", "password": "reader-password-long"})),
    ] {
        let r = client
            .post(server.url(path))
            .basic_auth("admin", Some(common::ADMIN_PASSWORD))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let r = client
        .put(server.url("/api/v1/namespaces/e2e/members/reader"))
        .basic_auth("admin", Some(common::ADMIN_PASSWORD))
        .json(&serde_json::json!({"role": "reader"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let reader = Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--dest-creds",
            "reader:reader-password-long",
            "--dest-cert-dir",
            certs,
            &layout,
            &dest_ref,
        ])
        .output()
        .unwrap();
    assert!(!reader.status.success(), "a reader pushed with skopeo");
    let said = String::from_utf8_lossy(&reader.stderr).to_lowercase();
    assert!(said.contains("denied"), "{said}");
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--dest-creds",
        &admin,
        "--dest-cert-dir",
        certs,
        &layout,
        &dest_ref,
    ]);
    // The reader may pull once both images passed their scans (the index takes the worst child).
    for child in &children {
        let report = client
            .get(server.url(&format!("/api/v1/scans?repository=e2e/multi&digest={child}&wait=60s")))
            .basic_auth("reader", Some("reader-password-long"))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap();
        assert_eq!(report["state"], "passed", "{report}");
    }
    let raw = skopeo(&["inspect", "--raw", "--creds", "reader:reader-password-long", "--cert-dir", certs, &dest_ref]);
    assert_eq!(sha256(raw.as_bytes()), index_digest, "the registry serves the index byte for byte");

    let out = dir.path().join("out");
    let out_layout = format!("oci:{}:v1", out.display());
    skopeo(&[
        "copy",
        "--all",
        "--preserve-digests",
        "--src-creds",
        &admin,
        "--src-cert-dir",
        certs,
        &dest_ref,
        &out_layout,
    ]);
    let mut compared = 0;
    for entry in std::fs::read_dir(src.join("blobs/sha256")).unwrap().flatten() {
        let copied = out.join("blobs/sha256").join(entry.file_name());
        assert_eq!(std::fs::read(entry.path()).unwrap(), std::fs::read(&copied).unwrap(), "{:?}", entry.file_name());
        compared += 1;
    }
    assert_eq!(compared, 7, "index, 2 manifests, 2 configs, 2 layers");

    // Without the CA, verification fails: TLS is checked for real.
    let untrusted = Command::new("skopeo").args(["inspect", "--raw", "--creds", &admin, &dest_ref]).output().unwrap();
    assert!(!untrusted.status.success());
    assert!(
        String::from_utf8_lossy(&untrusted.stderr).contains("certificate"),
        "{}",
        String::from_utf8_lossy(&untrusted.stderr)
    );
}
