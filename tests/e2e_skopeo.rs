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
        let content: Vec<u8> = (0..200_000u32).map(|i| (i.wrapping_mul(7) ^ arch.as_bytes()[1] as u32) as u8).collect();
        let layer = images::layer_tar_gz(&format!("opt/{arch}.bin"), &content, 0o644);
        let config = serde_json::to_vec(&json!({"architecture": arch, "os": "linux", "config": {"User": "10001"},
            "rootfs": {"type": "layers", "diff_ids": [images::diff_id(&layer)]}}))
        .unwrap();
        let (config_digest, config_size) = write_blob(layout, &config);
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
#[ignore = "needs skopeo: scripts/test.sh runs it"]
async fn skopeo_copies_a_multi_platform_index_in_and_out_unchanged() {
    require_tool("skopeo");
    let dir = tempfile::tempdir().unwrap();
    let (server, certs) = Server::start_with_cert_dir(dir.path(), &[]);
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
    server.member("e2e", "reader", "reader").await;
    let client = server.client();
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

/// skopeo pushes (zstd layers are copied as they are) an image whose layer is two zstd frames:
/// a harmless first frame, and a second one with a private key and a setuid binary. containerd,
/// podman and skopeo unpack both frames; so does the scanner, and the image stays unpullable.
/// The same image dressed as an artifact (a made-up subject) stays unpullable too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs skopeo: scripts/test.sh runs it"]
async fn skopeo_cannot_pull_a_two_frame_zstd_image_or_its_disguise() {
    require_tool("skopeo");
    use common::layers::{config, tar, tar_unterminated, zstd, Entry, PRIVATE_KEY};
    let dir = tempfile::tempdir().unwrap();
    let (server, certs) = Server::start_with_cert_dir(dir.path(), &[]);
    let certs = certs.to_str().unwrap();
    use reqwest::Method;
    server.api(Method::POST, "/api/v1/namespaces", json!({"name": "team"})).await;
    for (user, role) in [("dev", "developer"), ("eve", "reader")] {
        let body = json!({"username": user, "password": format!("{user}-password-long")});
        server.api(Method::POST, "/api/v1/users", body).await;
        server.api(Method::PUT, &format!("/api/v1/namespaces/team/members/{user}"), json!({"role": role})).await;
    }

    let src = dir.path().join("src");
    let mut layer = zstd(&tar_unterminated(&[Entry::File("app/readme", b"nothing here", 0o644)]));
    layer.extend(zstd(&tar(&[
        Entry::File("root/.ssh/id_rsa", PRIVATE_KEY, 0o600),
        Entry::File("bin/su", b"x", 0o4755),
    ])));
    let (layer_digest, layer_size) = write_blob(&src, &layer);
    let config = images::with_diff_ids(&config(Some("1000")), &[&layer]);
    let (config_digest, config_size) = write_blob(&src, &config);
    let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": images::OCI_CONFIG, "digest": config_digest.to_string(), "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": layer_digest.to_string(), "size": layer_size}]}))
    .unwrap();
    let (manifest_digest, manifest_size) = write_blob(&src, &manifest);
    std::fs::write(src.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let top = json!({"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": manifest_digest.to_string(),
        "size": manifest_size, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]});
    std::fs::write(src.join("index.json"), top.to_string()).unwrap();
    let host = server.host();
    skopeo(&[
        "copy",
        "--dest-cert-dir",
        certs,
        "--dest-creds",
        "dev:dev-password-long",
        &format!("oci:{}:v1", src.display()),
        &format!("docker://{host}/team/zst:v1"),
    ]);
    let report = server.scan_state("team/zst", manifest_digest.as_str(), "60s").await;
    assert_eq!(report, "quarantined", "the second frame's key and setuid binary were found");

    // The same manifest with a made-up subject, pushed by the developer: still an image.
    let mut disguised: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    disguised["subject"] =
        json!({"mediaType": OCI_MANIFEST, "digest": manifest_digest.to_string(), "size": manifest_size});
    disguised["artifactType"] = "application/vnd.example.sbom".into();
    let disguised = serde_json::to_vec(&disguised).unwrap();
    let disguised_digest = sha256(&disguised);
    let dev =
        server.client_with_token(&server.token("dev", "dev-password-long", &["repository:team/zst:pull,push"]).await);
    let put = dev
        .put(server.url(&format!("/v2/team/zst/manifests/{disguised_digest}")))
        .header("content-type", OCI_MANIFEST)
        .body(disguised)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    assert_eq!(server.scan_state("team/zst", disguised_digest.as_str(), "60s").await, "quarantined");

    for reference in [format!("docker://{host}/team/zst:v1"), format!("docker://{host}/team/zst@{disguised_digest}")] {
        let out = dir.path().join(format!("out-{}", sha256(reference.as_bytes()).hex()));
        let pulled = Command::new("skopeo")
            .args(["copy", "--src-cert-dir", certs, "--src-creds", "eve:eve-password-long", &reference])
            .arg(format!("oci:{}:x", out.display()))
            .output()
            .unwrap();
        assert!(!pulled.status.success(), "eve pulled {reference}");
        let said = String::from_utf8_lossy(&pulled.stderr);
        assert!(said.contains("quarantined"), "skopeo said: {said}");
    }
}
