//! Signed scan verdicts: when a scan of an image ends, and when an admin releases one, the
//! registry attaches an in-toto statement about the verdict to the image, signed with its
//! attestation key, so that an admission controller can admit only what Portcullis passed without
//! asking Portcullis.
//!
//! The format (documented in the README, checked by a test that verifies independently):
//! - an in-toto v1 statement (`_type` [`STATEMENT_TYPE`]) whose subject is the image
//!   (`name` the repository, `digest.sha256`), predicate type [`PREDICATE_TYPE`], the predicate
//!   the verdict, the findings' counts, the policy in force, the vulnerability database and the
//!   time (and, for a release, who released it, why and until when);
//! - in a DSSE envelope ([`ENVELOPE_MEDIA_TYPE`]): `payloadType` [`PAYLOAD_TYPE`], the statement
//!   base64-encoded, one ECDSA P-256 SHA-256 signature (ASN.1 DER, base64) over DSSE's
//!   pre-authentication encoding ([`pae`]), `keyid` the SHA-256 of the public key's DER;
//! - pushed by the registry into the image's repository as an OCI 1.1 referrer: an artifact
//!   manifest (`artifactType` [`PAYLOAD_TYPE`]) whose one layer is the envelope, with the
//!   predicate type in the layer's `in-toto.io/predicate-type` annotation.
//!
//! Rules: only images and indexes are attested (an attestation is an artifact; attesting it would
//! never end); a failure to attest is logged and never changes a verdict. The public key is
//! published at `/.well-known/portcullis-attestation.pem` and as a JWKS.

use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::{Digest, Error, RepoName, Result};
use crate::metadata::ManifestKind;
use crate::model::{rfc3339, rfc3339_ms, ScanRecord};

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of a Portcullis scan verdict.
pub const PREDICATE_TYPE: &str = "https://portcullis.dev/attestations/scan-verdict/v1";
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const ENVELOPE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";

/// The registry's attestation key.
pub struct Attestor {
    pair: EcdsaKeyPair,
    public_der: Vec<u8>,
}

// The SubjectPublicKeyInfo DER of a P-256 key, up to its 65-byte point.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// DSSE's pre-authentication encoding: what the signature covers.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

impl Attestor {
    /// From a PEM `PRIVATE KEY` (PKCS#8, ECDSA P-256).
    pub fn from_pem(pem_text: &str) -> anyhow::Result<Attestor> {
        let pem = pem::parse(pem_text.trim())?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pem.contents(), &SystemRandom::new())
            .map_err(|e| anyhow::anyhow!("not an ECDSA P-256 PKCS#8 key: {e}"))?;
        let public_der = [P256_SPKI_PREFIX, pair.public_key().as_ref()].concat();
        Ok(Attestor { pair, public_der })
    }

    /// The public key, PEM `PUBLIC KEY` (what `cosign verify-attestation --key` takes).
    pub fn public_pem(&self) -> String {
        let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
        pem::encode_config(&pem::Pem::new("PUBLIC KEY", self.public_der.clone()), lf)
    }

    /// The key id: the SHA-256 of the public key's DER, hex.
    pub fn keyid(&self) -> String {
        hex::encode(Sha256::digest(&self.public_der))
    }

    /// The public key as a JWK set (`kid` the key id).
    pub fn jwks(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        // No `alg`: the envelope's signatures are ASN.1 DER over DSSE's encoding, not JWS ES256.
        json!({"keys": [{"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            "use": "sig", "kid": self.keyid()}]})
    }

    /// A DSSE envelope of `statement`, signed.
    pub fn envelope(&self, statement: &[u8]) -> Result<Vec<u8>> {
        let signature = self
            .pair
            .sign(&SystemRandom::new(), &pae(PAYLOAD_TYPE, statement))
            .map_err(|_| Error::Internal("signing an attestation failed".into()))?;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        serde_json::to_vec(&json!({"payloadType": PAYLOAD_TYPE, "payload": b64(statement),
            "signatures": [{"keyid": self.keyid(), "sig": b64(signature.as_ref())}]}))
        .map_err(Error::internal)
    }
}

/// What the scan knew besides its record: the rules in force and the vulnerability database.
#[derive(Debug, Clone, Default)]
pub struct ScanContext {
    pub policy: Option<Value>,
    pub vulnerability_database: Option<Value>,
}

/// The findings' counts by severity and by rule (the report has the findings themselves).
fn finding_counts(findings: Option<&str>) -> Value {
    let list: Vec<Value> = findings.and_then(|f| serde_json::from_str(f).ok()).unwrap_or_default();
    let mut by_severity = serde_json::Map::new();
    let mut by_rule = serde_json::Map::new();
    for f in &list {
        for (key, map) in [("severity", &mut by_severity), ("rule", &mut by_rule)] {
            let name = f[key].as_str().unwrap_or("unknown").to_owned();
            let n = map.get(&name).and_then(Value::as_u64).unwrap_or(0);
            map.insert(name, json!(n + 1));
        }
    }
    json!({"total": list.len(), "by_severity": by_severity, "by_rule": by_rule})
}

/// The in-toto statement about `record`'s verdict at `now_ms` (milliseconds: the newest of an
/// image's statements is the verdict in force, and a release can follow its scan within a second).
pub fn statement(record: &ScanRecord, context: &ScanContext, now_ms: i64) -> Result<Vec<u8>> {
    let digest: Digest = record.digest.parse()?;
    // The state in effect (a lapsed release reads quarantined, as the gate treats it).
    let state = record.effective_state(now_ms / 1000);
    let mut predicate = json!({
        "verdict": state.as_str(),
        "summary": record.summary,
        "repository": record.repository,
        "digest": record.digest,
        "findings": finding_counts(record.findings.as_deref()),
        "policy": context.policy,
        "vulnerability_database": context.vulnerability_database,
        "time": rfc3339_ms(now_ms).unwrap_or_default(),
        "scanner": {"name": "portcullis", "version": env!("CARGO_PKG_VERSION")},
    });
    if let (crate::model::ScanState::Released, Some(by)) = (state, &record.released_by) {
        predicate["release"] = json!({"by": by, "reason": record.release_reason,
            "until": record.release_until.map(rfc3339)});
    }
    let subject = json!([{"name": record.repository, "digest": {digest.algorithm().as_str(): digest.hex()}}]);
    serde_json::to_vec(&json!({"_type": STATEMENT_TYPE, "subject": subject, "predicateType": PREDICATE_TYPE,
        "predicate": predicate}))
    .map_err(Error::internal)
}

impl super::Registry {
    /// The attestation key, when one is configured.
    pub fn attestor(&self) -> Option<&Attestor> {
        self.attestor.as_deref()
    }

    /// Attaches a signed statement of the current verdict of `repo@digest` as a referrer; the
    /// attestation's digest, or `None` when there is nothing to attest (no key, no record, or
    /// not an image or index).
    pub async fn attest(&self, repo: &RepoName, digest: &Digest, context: &ScanContext) -> Result<Option<Digest>> {
        let Some(attestor) = self.attestor() else { return Ok(None) };
        let Some(manifest) = self.meta.manifest_by_digest(repo, digest).await? else { return Ok(None) };
        if manifest.kind == Some(ManifestKind::Artifact) || super::signatures::is_signature_manifest(&manifest.content)
        {
            return Ok(None);
        }
        let Some(record) = self.meta.scan(repo, digest).await? else { return Ok(None) };
        let envelope = attestor.envelope(&statement(&record, context, self.clock.now_ms())?)?;
        let attachment = super::attach::Attachment {
            artifact_type: PAYLOAD_TYPE,
            media_type: ENVELOPE_MEDIA_TYPE,
            bytes: envelope,
            layer_annotations: json!({"in-toto.io/predicate-type": PREDICATE_TYPE}),
            annotations: json!({"dev.portcullis.verdict": record.effective_state(self.clock.now()).as_str(),
                "org.opencontainers.image.created": rfc3339(self.clock.now())}),
        };
        Ok(Some(self.attach(repo, &manifest, attachment).await?))
    }

    /// [`Self::attest`], logging a failure instead of returning it (a verdict stands either way).
    pub async fn attest_logged(&self, repo: &RepoName, digest: &Digest, context: &ScanContext) {
        match self.attest(repo, digest, context).await {
            Ok(Some(a)) => tracing::info!(repository = %repo, %digest, attestation = %a, "verdict attested"),
            Ok(None) => {}
            Err(e) => tracing::warn!(repository = %repo, %digest, error = %e, "could not attest the verdict"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};

    #[test]
    fn pae_is_dsse_v1() {
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
    }

    #[test]
    fn the_envelope_verifies_with_the_published_key_and_not_once_changed() {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new()).unwrap();
        let attestor =
            Attestor::from_pem(&pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec()))).unwrap();
        let envelope: Value = serde_json::from_slice(&attestor.envelope(b"{\"a\":1}").unwrap()).unwrap();
        let b64 = |v: &Value| base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap()).unwrap();
        let (payload, sig) = (b64(&envelope["payload"]), b64(&envelope["signatures"][0]["sig"]));
        let public = pem::parse(attestor.public_pem()).unwrap();
        let point = &public.contents()[P256_SPKI_PREFIX.len()..];
        let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point);
        assert!(key.verify(&pae(PAYLOAD_TYPE, &payload), &sig).is_ok());
        assert!(key.verify(&pae(PAYLOAD_TYPE, b"{\"a\":2}"), &sig).is_err());
        assert_eq!(envelope["signatures"][0]["keyid"], attestor.keyid());
        assert_eq!(attestor.jwks()["keys"][0]["kid"], attestor.keyid());
    }
}
