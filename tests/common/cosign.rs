//! Cosign's signature format, made the way cosign makes it, for tests that sign images: a P-256
//! key (PEM `PUBLIC KEY` as cosign writes it), the simple-signing payload, and the signature
//! manifest (payload layer, base64 signature in its annotation, under cosign's tag or with a
//! `subject`).

use base64::Engine as _;
use portcullis::domain::Digest;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde_json::json;

use super::images::{OCI_CONFIG, OCI_MANIFEST};

pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const SIG_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";

pub struct Key {
    pub pair: EcdsaKeyPair,
    pub pkcs8: Vec<u8>,
    pub pem: String,
}

impl Key {
    pub fn new() -> Key {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let prefix = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", [prefix.as_slice(), pair.public_key().as_ref()].concat()));
        Key { pair, pkcs8: pkcs8.as_ref().to_vec(), pem }
    }

    /// ECDSA over SHA-256, ASN.1, base64: the annotation's value.
    pub fn sign(&self, payload: &[u8]) -> String {
        let sig = self.pair.sign(&SystemRandom::new(), payload).unwrap();
        base64::engine::general_purpose::STANDARD.encode(sig.as_ref())
    }
}

/// The simple-signing payload naming `image` as `reference` (`host/repository[:tag]`).
pub fn payload(reference: &str, image: &Digest) -> Vec<u8> {
    serde_json::to_vec(&json!({"critical": {"identity": {"docker-reference": reference},
        "image": {"docker-manifest-digest": image.to_string()}, "type": "cosign container image signature"},
        "optional": null}))
    .unwrap()
}

/// The config of a signature manifest (cosign's: no platform, the payloads as diff ids).
pub fn config(payload: &Digest) -> Vec<u8> {
    json!({"architecture": "", "os": "", "config": {}, "rootfs": {"type": "layers", "diff_ids": [payload.to_string()]}})
        .to_string()
        .into_bytes()
}

/// A signature manifest: one payload layer with its signature; a referrer of `subject` if given.
pub fn manifest(config: &[u8], payload: &[u8], signature: &str, subject: Option<&Digest>) -> Vec<u8> {
    let sha = |b: &[u8]| super::sha256(b).to_string();
    let mut m = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha(config), "size": config.len()},
        "layers": [{"mediaType": SIMPLE_SIGNING, "digest": sha(payload), "size": payload.len(),
            "annotations": {SIGNATURE_ANNOTATION: signature}}]});
    if let Some(s) = subject {
        m["artifactType"] = json!(SIG_ARTIFACT_TYPE);
        m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": s.to_string(), "size": 1});
    }
    serde_json::to_vec(&m).unwrap()
}

/// Cosign's tag for the signatures of `image`: `sha256-<hex>.sig`.
pub fn tag(image: &Digest) -> String {
    format!("{}.sig", image.to_string().replace(':', "-"))
}
