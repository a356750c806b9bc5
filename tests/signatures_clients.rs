//! The signature policy with real clients: skopeo pushes two images; the sigstore project's
//! cosign client (sigstore-rs) signs one with a cosign key, as `cosign sign --key` does (the
//! `sha256-<hex>.sig` tag). A namespace that requires that key serves the signed image to a
//! reader, and the cosign client verifies it there with the public key (and not with another);
//! the unsigned image is refused to skopeo with a message that says why.
//!
//! (Debian's skopeo and podman are built with sigstore disabled, "Debian-local change: sigstore
//! disabled", both for signing and for `sigstoreSigned` policies, so they cannot be the signer.)

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::cosign::Key;
use common::images::{self, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use common::process::{require_tool, Server};
use common::sha256;
use serde_json::json;
use sigstore::cosign::constraint::PrivateKeySigner;
use sigstore::cosign::verification_constraint::{PublicKeyVerifier, VerificationConstraint};
use sigstore::cosign::{Constraint, CosignCapabilities, SignatureLayer};
use sigstore::crypto::SigningScheme;
use sigstore::registry::{Auth, Certificate, CertificateEncoding, ClientConfig, ClientProtocol, OciReference};
use zeroize::Zeroizing;

/// An OCI layout with one small image per name, each tagged with its name.
fn layout(dir: &Path, names: &[&str]) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let write = |bytes: &[u8]| {
        let d = sha256(bytes);
        std::fs::write(blobs.join(d.hex()), bytes).unwrap();
        (d, bytes.len())
    };
    let mut entries = Vec::new();
    for name in names {
        let layer = images::layer_tar_gz(&format!("opt/{name}"), name.as_bytes(), 0o644);
        let config = json!({"architecture": "amd64", "os": "linux", "config": {"User": "10001"},
            "rootfs": {"type": "layers", "diff_ids": [images::diff_id(&layer)]}});
        let (config_digest, config_size) = write(config.to_string().as_bytes());
        let (layer_digest, layer_size) = write(&layer);
        let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config_size},
            "layers": [{"mediaType": OCI_LAYER, "digest": layer_digest.to_string(), "size": layer_size}]});
        let (d, s) = write(manifest.to_string().as_bytes());
        entries.push(json!({"mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": s,
            "annotations": {"org.opencontainers.image.ref.name": name}}));
    }
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(dir.join("index.json"), json!({"schemaVersion": 2, "manifests": entries}).to_string()).unwrap();
}

fn skopeo(args: &[&str]) -> Output {
    Command::new("skopeo").args(args).output().expect("skopeo runs")
}

fn succeeded(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The sigstore project's cosign client, trusting the registry's development CA.
fn cosign_client(server: &Server) -> sigstore::cosign::Client {
    let ca = std::fs::read(server.ca_path()).unwrap();
    let config = ClientConfig {
        protocol: ClientProtocol::Https,
        extra_root_certificates: vec![Certificate { encoding: CertificateEncoding::Pem, data: ca }],
        ..ClientConfig::default()
    };
    sigstore::cosign::ClientBuilder::default().with_oci_client_config(config).build().unwrap()
}

/// Signs `image` with `key` as `cosign sign --key` does (as admin); the image's digest.
async fn sign(client: &mut sigstore::cosign::Client, image: &OciReference, key: &Key) -> String {
    let admin = Auth::Basic("admin".into(), common::ADMIN_PASSWORD.into());
    let (signature_ref, digest) = client.triangulate(image, &admin).await.unwrap();
    let expected_tag = format!("{}.sig", digest.replace(':', "-"));
    assert_eq!(signature_ref.tag(), Some(expected_tag.as_str()), "cosign's tag");
    let mut layer = SignatureLayer::new_unsigned(image, &digest).unwrap();
    let private = pem::encode(&pem::Pem::new("PRIVATE KEY", key.pkcs8.clone()));
    let signer = PrivateKeySigner::new_with_raw(
        Zeroizing::new(private.into_bytes()),
        Zeroizing::new(Vec::new()),
        &SigningScheme::ECDSA_P256_SHA256_ASN1,
    )
    .unwrap();
    signer.add_constraint(&mut layer).unwrap();
    client.push_signature(None, &admin, &signature_ref, vec![layer]).await.unwrap();
    digest
}

/// Sets namespace `ns` to require a signature by `key` (named `release`).
async fn require_release_key(server: &Server, ns: &str, key: &Key) {
    let policy = json!({"mode": "require", "keys": [{"name": "release", "pem": key.pem}]});
    server.api(reqwest::Method::PUT, &format!("/api/v1/namespaces/{ns}/signature-policy"), policy).await;
}

/// Waits until the signature manifest of `digest` (cosign's tag in `repo`) has passed its scan.
async fn signature_passes(server: &Server, repo: &str, digest: &str) {
    let api = server.admin_client(&[&format!("repository:{repo}:pull")]).await;
    let tag = format!("{}.sig", digest.replace(':', "-"));
    let path = format!("/v2/{repo}/manifests/{tag}");
    let head = api.head(server.url(&path)).header("accept", OCI_MANIFEST).send().await.unwrap();
    let signature = head.headers()["docker-content-digest"].to_str().unwrap().to_owned();
    assert_eq!(common::docker::wait_scan(server, repo, &signature).await, "passed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs skopeo: scripts/test.sh runs it"]
async fn cosign_signs_portcullis_enforces_and_cosign_verifies() {
    require_tool("skopeo");
    let dir = tempfile::tempdir().unwrap();
    let (server, certs) = Server::start_with_cert_dir(dir.path(), &[]);
    let certs = certs.to_str().unwrap();
    let host = server.host();
    server.member("trust", "reader", "reader").await;

    let (key, stranger) = (Key::new(), Key::new());
    let src = dir.path().join("src");
    layout(&src, &["signed", "unsigned"]);
    let admin = format!("admin:{}", common::ADMIN_PASSWORD);
    for name in ["signed", "unsigned"] {
        let from = format!("oci:{}:{name}", src.display());
        let to = format!("docker://{host}/trust/app:{name}");
        let push = skopeo(&["--insecure-policy", "copy", "--dest-cert-dir", certs, "--dest-creds", &admin, &from, &to]);
        succeeded(&push, "the push");
    }
    let digest_of = |tag: &str| {
        let manifest = std::fs::read_to_string(src.join("index.json")).unwrap();
        let index: serde_json::Value = serde_json::from_str(&manifest).unwrap();
        let entry = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
            .unwrap()
            .clone();
        entry["digest"].as_str().unwrap().parse::<portcullis::domain::Digest>().unwrap()
    };
    let (signed, unsigned) = (digest_of("signed"), digest_of("unsigned"));
    for d in [&signed, &unsigned] {
        assert_eq!(common::docker::wait_scan(&server, "trust/app", d.as_str()).await, "passed");
    }

    // The cosign client signs `trust/app:signed` with the key, as `cosign sign --key` does.
    let mut cosign_client = cosign_client(&server);
    let image: OciReference = format!("{host}/trust/app:signed").parse().unwrap();
    let digest = sign(&mut cosign_client, &image, &key).await;
    assert_eq!(digest, signed.to_string());
    signature_passes(&server, "trust/app", &digest).await;

    require_release_key(&server, "trust", &key).await;

    // The reader: skopeo copies the signed image out; the cosign client verifies it with the key.
    let reader = ("reader:reader-password-long", Auth::Basic("reader".into(), "reader-password-long".into()));
    let out = dir.path().join("out");
    let pull_as_reader = |tag: &str| {
        let (from, to) = (format!("docker://{host}/trust/app:{tag}"), format!("oci:{}:{tag}", out.display()));
        skopeo(&["--insecure-policy", "copy", "--src-cert-dir", certs, "--src-creds", reader.0, &from, &to])
    };
    let pull = pull_as_reader("signed");
    succeeded(&pull, "pulling the signed image");
    let layers = cosign_client.trusted_signature_layers(&reader.1, &image).await.unwrap();
    assert_eq!(layers.len(), 1, "the reader reads the signature");
    let verifier = |pem: &str| -> Vec<Box<dyn VerificationConstraint>> {
        vec![Box::new(PublicKeyVerifier::new(pem.as_bytes(), &SigningScheme::ECDSA_P256_SHA256_ASN1).unwrap())]
    };
    sigstore::cosign::verify_constraints(&layers, verifier(&key.pem).iter()).expect("cosign verifies the signature");
    assert!(
        sigstore::cosign::verify_constraints(&layers, verifier(&stranger.pem).iter()).is_err(),
        "cosign's check is real: another key does not verify"
    );

    // The unsigned one is refused by the registry, with a message that says why.
    let pull = pull_as_reader("unsigned");
    assert!(!pull.status.success(), "an unsigned image was pulled");
    let err = String::from_utf8_lossy(&pull.stderr);
    assert!(err.contains("has no valid signature by a key namespace trust trusts (release)"), "{err}");
    let unsigned_image: OciReference = format!("{host}/trust/app:unsigned").parse().unwrap();
    let none = cosign_client.trusted_signature_layers(&reader.1, &unsigned_image).await.unwrap_or_default();
    assert!(none.is_empty(), "no signature layers for the unsigned image");
}

/// Docker: an image docker pushed to a namespace that requires signatures is refused to a reader
/// with the reason (docker prints it and stops); once cosign has signed it, docker pulls it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs docker: scripts/test.sh runs it"]
async fn docker_pulls_only_once_the_image_is_signed() {
    use common::docker::{build_scratch_image, docker, docker_cmd, login, pushed_digest, trusted_server, wait_scan};
    require_tool("docker");
    let dir = tempfile::tempdir().unwrap();
    let (server, host, certs) = trusted_server(dir.path());
    server.member("trusted", "reader", "reader").await;
    let key = Key::new();
    require_release_key(&server, "trusted", &key).await;

    let tag = format!("{host}/trusted/web:v1");
    build_scratch_image(&dir.path().join("ctx"), &tag, "signed later");
    login(&host, "admin", common::ADMIN_PASSWORD);
    let digest = pushed_digest(&docker(&["push", &tag]));
    assert_eq!(wait_scan(&server, "trusted/web", &digest).await, "passed", "pushing is never refused");
    docker(&["rmi", "-f", &tag]);
    login(&host, "reader", "reader-password-long");
    let refused = docker_cmd(&["pull", &tag]).output().unwrap();
    assert!(!refused.status.success(), "an unsigned image was pulled");
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(said.contains("has no valid signature by a key namespace trusted trusts (release)"), "docker said: {said}");

    let mut client = cosign_client(&server);
    let image: OciReference = tag.parse().unwrap();
    assert_eq!(sign(&mut client, &image, &key).await, digest);
    signature_passes(&server, "trusted/web", &digest).await;
    docker(&["pull", &tag]);
    let _ = docker_cmd(&["rmi", "-f", &tag]).output();
    let _ = std::fs::remove_dir_all(&certs);
}
