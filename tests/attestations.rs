//! Signed scan verdicts: every verdict on an image (and an admin's release) is attached to it as
//! an in-toto statement in a DSSE envelope, an OCI 1.1 referrer signed with the registry's
//! attestation key. Verified here without the registry's code: the published PEM key, DSSE's
//! pre-authentication encoding written out, `ring` for ECDSA; and with `openssl` exactly as the
//! README shows.

mod common;

use axum::body::Body;
use base64::Engine as _;
use common::images;
use common::{layers, sha256, TestRegistry};
use portcullis::domain::Digest;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use serde_json::{json, Value};

const IN_TOTO: &str = "application/vnd.in-toto+json";
const PREDICATE: &str = "https://portcullis.dev/attestations/scan-verdict/v1";

/// The attestations of `digest` in `repo` (the referrers API, filtered by type), oldest first.
async fn attestations(reg: &TestRegistry, repo: &str, digest: &Digest, at_least: usize) -> Vec<Value> {
    for _ in 0..200 {
        let reply =
            reg.get(&format!("/v2/{repo}/referrers/{digest}?artifactType=application/vnd.in-toto%2Bjson")).await;
        let found = reply.json()["manifests"].as_array().cloned().unwrap_or_default();
        if found.len() >= at_least {
            let mut envelopes = Vec::new();
            for m in &found {
                let d: Digest = m["digest"].as_str().unwrap().parse().unwrap();
                assert_eq!(reg.wait_scan(repo, &d).await, "passed", "an attestation is readable");
                let manifest = reg.get(&format!("/v2/{repo}/manifests/{d}")).await.json();
                assert_eq!(manifest["subject"]["digest"], digest.to_string());
                assert_eq!(manifest["layers"][0]["annotations"]["in-toto.io/predicate-type"], PREDICATE);
                let layer = manifest["layers"][0]["digest"].as_str().unwrap();
                let envelope = reg.get(&format!("/v2/{repo}/blobs/{layer}")).await;
                envelopes.push(serde_json::from_slice::<Value>(&envelope.body).unwrap());
            }
            let time = |e: &Value| {
                let text = statement_of(e)["predicate"]["time"].as_str().unwrap_or("").to_owned();
                time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).unwrap()
            };
            envelopes.sort_by_key(time);
            return envelopes;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no attestation of {repo}@{digest}");
}

fn b64(v: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap()
}

fn statement_of(envelope: &Value) -> Value {
    serde_json::from_slice(&b64(&envelope["payload"])).unwrap()
}

/// Whether the envelope's signature verifies with the PEM key, by DSSE v1 written out here.
fn verifies(envelope: &Value, public_pem: &str) -> bool {
    let payload = b64(&envelope["payload"]);
    let payload_type = envelope["payloadType"].as_str().unwrap();
    let mut pae = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    pae.extend_from_slice(&payload);
    let spki = pem::parse(public_pem).unwrap();
    let point = &spki.contents()[spki.contents().len() - 65..];
    let sig = b64(&envelope["signatures"][0]["sig"]);
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point).verify(&pae, &sig).is_ok()
}

async fn push(reg: &TestRegistry, repo: &str, user: Option<&str>) -> Digest {
    let layer = images::layer_tar_gz("app/run", b"#!/bin/sh\n", 0o755);
    let (digest, _, _, _) = reg.push_layers(repo, "v1", &layers::config(user), &[&layer]).await;
    digest
}

#[tokio::test]
async fn a_verdict_is_attested_signed_and_a_changed_byte_fails() {
    let reg = TestRegistry::attaching().await;
    let digest = push(&reg, "team/app", Some("10001")).await;
    assert_eq!(reg.wait_scan("team/app", &digest).await, "passed");
    let key = reg.get("/.well-known/portcullis-attestation.pem").await;
    key.expect(200, None);
    let public_pem = String::from_utf8(key.body.to_vec()).unwrap();
    assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"), "{public_pem}");

    let found = attestations(&reg, "team/app", &digest, 1).await;
    assert_eq!(found.len(), 1, "one verdict, one attestation");
    let envelope = &found[0];
    assert_eq!(envelope["payloadType"], IN_TOTO);
    assert!(verifies(envelope, &public_pem), "the signature verifies with the published key");
    let statement = statement_of(envelope);
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(statement["predicateType"], PREDICATE);
    assert_eq!(statement["subject"][0]["name"], "team/app");
    assert_eq!(statement["subject"][0]["digest"]["sha256"], digest.hex());
    let predicate = &statement["predicate"];
    assert_eq!(predicate["verdict"], "passed");
    assert!(predicate["policy"]["digest"].as_str().unwrap().starts_with("sha256:"), "{predicate}");
    assert!(predicate["vulnerability_database"]["records"].is_number(), "{predicate}");
    assert!(predicate["time"].as_str().unwrap().ends_with('Z'), "{predicate}");

    // One byte of the statement changed: the signature no longer verifies.
    let mut forged = envelope.clone();
    let mut payload = b64(&envelope["payload"]);
    let at = payload.iter().position(|&b| b == b'p').unwrap();
    payload[at] = b'q';
    forged["payload"] = json!(base64::engine::general_purpose::STANDARD.encode(&payload));
    assert!(!verifies(&forged, &public_pem), "a changed byte is caught");

    // The key as a JWK set names the same key id as the envelope.
    let jwks = reg.get("/.well-known/portcullis-attestation.jwks").await.json();
    assert_eq!(jwks["keys"][0]["kid"], envelope["signatures"][0]["keyid"]);
    // An attestation is an artifact: it is not attested itself (no loop).
    let attestation_digest = {
        let list = reg
            .get(&format!("/v2/team/app/referrers/{digest}?artifactType=application/vnd.in-toto%2Bjson"))
            .await
            .json();
        list["manifests"][0]["digest"].as_str().unwrap().parse::<Digest>().unwrap()
    };
    let nested = reg.get(&format!("/v2/team/app/referrers/{attestation_digest}")).await.json();
    assert_eq!(nested["manifests"].as_array().unwrap().len(), 0, "{nested}");
}

#[tokio::test]
async fn a_quarantine_and_its_release_are_both_attested() {
    let reg = TestRegistry::attaching().await;
    let password = reg.user_with_role("reader", "team", "reader").await;
    let digest = push(&reg, "team/root", None).await;
    assert_eq!(reg.wait_scan("team/root", &digest).await, "quarantined");
    let public_pem = String::from_utf8(reg.get("/.well-known/portcullis-attestation.pem").await.body.to_vec()).unwrap();
    let first = attestations(&reg, "team/root", &digest, 1).await;
    let quarantined = statement_of(&first[0]);
    assert_eq!(quarantined["predicate"]["verdict"], "quarantined");
    assert!(quarantined["predicate"]["findings"]["by_rule"]["root_user"].as_u64() >= Some(1), "{quarantined}");

    // A reader cannot pull the image, but can read why, signed.
    let token = reg.login("reader", &password, &["repository:team/root:pull"]).await;
    let refused = reg.v2_as(&token, "GET", "/v2/team/root/manifests/v1", Body::empty()).await;
    refused.expect(403, Some("QUARANTINED"));
    let uri = format!("/v2/team/root/referrers/{digest}?artifactType=application/vnd.in-toto%2Bjson");
    let list = reg.v2_as(&token, "GET", &uri, Body::empty()).await;
    assert_eq!(list.json()["manifests"].as_array().unwrap().len(), 1, "the reader sees the attestation");
    let attestation = list.json()["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let manifest = reg.v2_as(&token, "GET", &format!("/v2/team/root/manifests/{attestation}"), Body::empty()).await;
    manifest.expect(200, None);
    let layer = manifest.json()["layers"][0]["digest"].as_str().unwrap().to_owned();
    let envelope = reg.v2_as(&token, "GET", &format!("/v2/team/root/blobs/{layer}"), Body::empty()).await;
    envelope.expect(200, None);
    assert!(verifies(&serde_json::from_slice(&envelope.body).unwrap(), &public_pem), "the reader verifies it");

    let release = json!({"repository": "team/root", "digest": digest.to_string(), "reason": "accepted: CI base image"});
    reg.admin_api("POST", "/api/v1/scans/release", release).await.expect(200, None);
    let both = attestations(&reg, "team/root", &digest, 2).await;
    assert_eq!(both.len(), 2);
    let released = both.iter().map(statement_of).find(|s| s["predicate"]["verdict"] == "released").unwrap();
    assert_eq!(statement_of(&both[1]), released, "the newest is the verdict in force");
    assert_eq!(released["predicate"]["verdict"], "released");
    assert_eq!(released["predicate"]["release"]["by"], "admin");
    assert_eq!(released["predicate"]["release"]["reason"], "accepted: CI base image");
    assert!(both.iter().all(|e| verifies(e, &public_pem)));
    assert_ne!(sha256(&b64(&both[0]["payload"])), sha256(&b64(&both[1]["payload"])));
}

/// The README's verification example, run as written with `openssl` on a real attestation.
#[tokio::test]
#[ignore = "needs openssl and jq: scripts/test.sh runs it"]
async fn the_readme_openssl_example_verifies_an_attestation() {
    common::process::require_tool("openssl");
    common::process::require_tool("jq");
    let reg = TestRegistry::attaching().await;
    let digest = push(&reg, "team/app", Some("10001")).await;
    assert_eq!(reg.wait_scan("team/app", &digest).await, "passed");
    let dir = tempfile::tempdir().unwrap();
    let envelope = attestations(&reg, "team/app", &digest, 1).await.remove(0);
    std::fs::write(dir.path().join("envelope.json"), envelope.to_string()).unwrap();
    std::fs::write(dir.path().join("portcullis.pub"), &reg.get("/.well-known/portcullis-attestation.pem").await.body)
        .unwrap();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("<!-- attestation-verify:begin -->").expect("the README's example");
    let end = readme.find("<!-- attestation-verify:end -->").unwrap();
    let block = &readme[start..end];
    let script: String = block
        .lines()
        .skip_while(|l| !l.starts_with("```sh"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .filter(|l| !l.starts_with("curl"))
        .map(|l| format!("{l}\n"))
        .collect();
    let run_for = |script: &str, digest: &Digest| {
        let mut sh = std::process::Command::new("sh");
        sh.arg("-ec").arg(script).current_dir(dir.path()).env("DIGEST", digest.as_str());
        sh.output().unwrap()
    };
    let run = |script: &str| run_for(script, &digest);
    let out = run(&script);
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.contains("Verified OK"), "{script}\n{said}");
    // The same script on an envelope with one byte changed fails.
    let mut forged = envelope.clone();
    let mut payload = b64(&envelope["payload"]);
    let last = payload.len() - 2;
    payload[last] ^= 1;
    forged["payload"] = json!(base64::engine::general_purpose::STANDARD.encode(&payload));
    std::fs::write(dir.path().join("envelope.json"), forged.to_string()).unwrap();
    assert!(!run(&script).status.success(), "openssl accepted a changed statement");
    // The genuine envelope, checked as the attestation of another image: the subject check fails.
    std::fs::write(dir.path().join("envelope.json"), envelope.to_string()).unwrap();
    let other = common::sha256(b"another image");
    assert!(!run_for(&script, &other).status.success(), "an envelope about another image passed");
    assert!(run(&script).status.success());
}

/// What the registry attached cannot be deleted through the registry API, not even by a
/// maintainer or an admin's token (a deleted quarantine verdict would leave an older pass as the
/// newest); an admin rejects it. A referrer a client pushed, or one copying the seal, stays
/// deletable.
#[tokio::test]
async fn registry_attachments_cannot_be_deleted_through_the_registry_api() {
    let reg = TestRegistry::attaching().await;
    let password = reg.user_with_role("keeper", "team", "maintainer").await;
    let digest = push(&reg, "team/app", Some("10001")).await;
    assert_eq!(reg.wait_scan("team/app", &digest).await, "passed");
    attestations(&reg, "team/app", &digest, 1).await;
    let uri = format!("/v2/team/app/referrers/{digest}?artifactType=application/vnd.in-toto%2Bjson");
    let attestation = reg.get(&uri).await.json()["manifests"][0]["digest"].as_str().unwrap().to_owned();
    // The registry pushed it, and the audit log says so.
    let audit_uri = format!("/api/v1/audit?action=push&object=team/app@{attestation}");
    let pushed = reg.admin_api("GET", &audit_uri, json!(null)).await.json();
    assert_eq!(pushed["items"][0]["actor"], "system:registry", "{pushed}");
    let token = reg.login("keeper", &password, &["repository:team/app:pull,push,delete"]).await;
    let refused = reg.v2_as(&token, "DELETE", &format!("/v2/team/app/manifests/{attestation}"), Body::empty()).await;
    refused.expect(403, Some("DENIED"));
    assert!(refused.json()["errors"][0]["message"].as_str().unwrap().contains("attached by the registry"));
    let admin = reg.login("admin", common::ADMIN_PASSWORD, &["repository:team/app:pull,push,delete"]).await;
    let uri_delete = format!("/v2/team/app/manifests/{attestation}");
    reg.v2_as(&admin, "DELETE", &uri_delete, Body::empty()).await.expect(403, Some("DENIED"));

    // A copy with the seal but another layer is the pusher's own: deletable.
    let original = reg.get(&format!("/v2/team/app/manifests/{attestation}")).await.json();
    let mut forged = original.clone();
    let other = reg.push_blob("team/app", b"not the envelope").await;
    forged["layers"][0]["digest"] = json!(other.to_string());
    forged["layers"][0]["size"] = json!(16);
    let forged = serde_json::to_vec(&forged).unwrap();
    let forged_digest = sha256(&forged);
    reg.put_manifest("team/app", forged_digest.as_str(), "application/vnd.oci.image.manifest.v1+json", &forged)
        .await
        .expect(201, None);
    let uri_forged = format!("/v2/team/app/manifests/{forged_digest}");
    reg.v2_as(&token, "DELETE", &uri_forged, Body::empty()).await.expect(202, None);

    // The admin rejects the attestation: gone.
    let reject = json!({"repository": "team/app", "digest": attestation, "reason": "re-signed with a new key"});
    reg.admin_api("POST", "/api/v1/scans/reject", reject).await.expect(200, None);
    reg.get(&uri_delete).await.expect(404, Some("MANIFEST_UNKNOWN"));
}
