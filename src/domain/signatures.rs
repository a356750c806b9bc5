//! The signature gate: in a namespace whose policy is `require`, an image is served to ordinary
//! readers only when it carries a valid signature by one of the namespace's trusted keys.
//!
//! Invariant: with `require`, a non-admin receives neither the manifest of an image (or index)
//! nor a byte of its layers unless a signature by a trusted key names that image's digest, or the
//! digest of an index in the same repository that lists it. Signatures are read from what
//! clients write today: cosign's tag (`sha256-<hex>.sig`) and OCI 1.1 referrers whose subject is
//! the image; either holds simple-signing payloads (`critical.image.docker-manifest-digest`)
//! signed in the `dev.cosignproject.cosign/signature` annotation (ECDSA P-256 over SHA-256, or
//! Ed25519).
//!
//! How it holds:
//! - The gate runs after the quarantine gate ([`super::gate`]) on the same paths, so a signature
//!   never opens what the scan closed; admins read unrestricted, as they do there.
//! - A payload counts only when its bytes hash to the layer's digest, it is JSON with cosign's
//!   `critical.type`, its signature verifies with a trusted key, and the digest it names is the
//!   image's: a signature moved to another image's tag or subject names the wrong digest.
//! - What needs no signature: artifacts (nothing runs them) and signature manifests, so that
//!   clients can read signatures to verify them. A manifest is a signature by what it holds, not by
//!   what its descriptors say ([`Registry::is_verified_signature`](super::Registry)): every layer's
//!   bytes are a payload (small, cosign's JSON, never a valid tar header, which a runtime could
//!   unpack), and its config lists no diff id but those payloads. So relabelling an image's layers
//!   or config as "signatures" opens nothing, and such a manifest carries nothing that runs.
//! - A verified result is remembered by (signature manifest, image, repository, keys): the first
//!   two are content-addressed and the keys are exact text, so it never goes stale while the
//!   blobs stay linked; which signatures exist is read anew on every request, so deleting one
//!   takes effect at once.
//! - Bounds, each failing closed (an image past them reads as unsigned): 32 signature candidates
//!   per image (cosign's tag, then referrers that may be signatures, attestations and SBOMs not
//!   counted), 64 payloads per signature, 16 indexes listing an image (direct parents only: an
//!   image reached through nested indexes needs a signature of its own or of its direct index).
//! - Pushing is never refused for a missing signature: signatures come after the image.
//! - Not checked: the payload's `docker-reference` (cosign's own `verify` does not by default;
//!   images copied from another registry keep their signatures).

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use ring::signature::{UnparsedPublicKey, VerificationAlgorithm, ECDSA_P256_SHA256_ASN1, ED25519};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use super::{Digest, Error, RepoName, Result, Tag, Target};
use crate::metadata::{ManifestKind, StoredManifest};
use crate::model::{Algorithm, SignatureMode, TrustedKey, Unsigned};

/// The media type of a cosign simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The `artifactType` of cosign's OCI 1.1 referrer signatures.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// The layer annotation that holds the base64 signature of the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The largest payload read (cosign's are a few hundred bytes).
pub const MAX_PAYLOAD: u64 = 64 << 10;
/// At most this many trusted keys per namespace.
pub const MAX_KEYS: usize = 16;
/// Signature manifests examined per image (the tag and referrers), and payloads per manifest.
const MAX_CANDIDATES: usize = 32;
const MAX_PAYLOADS: usize = 64;
/// Indexes examined for a signature that covers an image they list.
const MAX_PARENTS: u32 = 16;
/// Manifests examined for one that opens a blob.
const MAX_BLOB_MANIFESTS: u32 = 64;
/// Remembered verification results (cleared whole when full).
const CACHE_CAPACITY: usize = 10_000;

/// A namespace's signature policy.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SignaturePolicy {
    pub mode: SignatureMode,
    pub keys: Vec<TrustedKey>,
    /// When it was last set (Unix seconds); 0 if never.
    pub updated_at: i64,
}

/// A trusted key, parsed.
pub struct PublicKey {
    pub name: String,
    algorithm: &'static dyn VerificationAlgorithm,
    bytes: Vec<u8>,
}

// The DER of a SubjectPublicKeyInfo is fixed up to the key for these two algorithms (DER is
// canonical): id-ecPublicKey with prime256v1 and a 65-byte uncompressed point, and id-Ed25519
// with a 32-byte key.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const ED25519_SPKI_PREFIX: &[u8] = &[0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} {})", self.name, self.algorithm(), self.fingerprint())
    }
}

impl PublicKey {
    /// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) of ECDSA P-256 or Ed25519.
    pub fn parse(key: &TrustedKey) -> std::result::Result<PublicKey, String> {
        let name = &key.name;
        let pem = pem::parse(key.pem.trim()).map_err(|e| format!("key {name}: not a PEM document ({e})"))?;
        if pem.tag() != "PUBLIC KEY" {
            return Err(format!("key {name}: a PEM \"PUBLIC KEY\" is needed, not \"{}\"", pem.tag()));
        }
        let der = pem.contents();
        let (algorithm, bytes): (&'static dyn VerificationAlgorithm, &[u8]) = if let Some(point) =
            der.strip_prefix(P256_SPKI_PREFIX).filter(|p| p.len() == 65 && p[0] == 4)
        {
            (&ECDSA_P256_SHA256_ASN1, point)
        } else if let Some(k) = der.strip_prefix(ED25519_SPKI_PREFIX).filter(|k| k.len() == 32) {
            (&ED25519, k)
        } else {
            return Err(format!("key {name}: only ECDSA P-256 (uncompressed) and Ed25519 public keys are supported"));
        };
        Ok(PublicKey { name: name.clone(), algorithm, bytes: bytes.to_vec() })
    }

    pub fn algorithm(&self) -> &'static str {
        if self.bytes.len() == 32 {
            "ed25519"
        } else {
            "ecdsa-p256"
        }
    }

    /// The SHA-256 of the key's bytes, hex: how the key is told apart in listings and logs.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.bytes))
    }

    fn verifies(&self, payload: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(self.algorithm, &self.bytes).verify(payload, signature).is_ok()
    }
}

/// Checks a policy before it is stored: names unique and plain, keys parseable, and `require`
/// with at least one key (with none, nothing could ever be pulled).
pub fn check_policy(mode: SignatureMode, keys: &[TrustedKey]) -> std::result::Result<Vec<PublicKey>, String> {
    if keys.len() > MAX_KEYS {
        return Err(format!("at most {MAX_KEYS} keys"));
    }
    let mut parsed: Vec<PublicKey> = Vec::new();
    for key in keys {
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if key.name.is_empty() || key.name.len() > 64 || !key.name.chars().all(plain) {
            return Err("a key's name is 1 to 64 letters, digits, '.', '_' or '-'".into());
        }
        if parsed.iter().any(|p| p.name == key.name) {
            return Err(format!("two keys are named {}", key.name));
        }
        parsed.push(PublicKey::parse(key)?);
    }
    if mode == SignatureMode::Require && parsed.is_empty() {
        return Err("mode require needs at least one key".into());
    }
    Ok(parsed)
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
struct LayersOnly {
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// The simple-signing layers of a manifest that carry a signature: (payload digest, signature).
fn signed_payloads(content: &[u8]) -> Vec<(Digest, String)> {
    let Ok(m) = serde_json::from_slice::<LayersOnly>(content) else { return Vec::new() };
    m.layers
        .into_iter()
        .filter(|l| l.media_type == SIMPLE_SIGNING && l.size <= MAX_PAYLOAD)
        .filter_map(|l| Some((l.digest.parse().ok()?, l.annotations.get(SIGNATURE_ANNOTATION)?.clone())))
        .take(MAX_PAYLOADS)
        .collect()
}

/// A signature manifest: at least one layer, every layer a simple-signing payload no larger than
/// [`MAX_PAYLOAD`].
pub fn is_signature_manifest(content: &[u8]) -> bool {
    let Ok(m) = serde_json::from_slice::<LayersOnly>(content) else { return false };
    !m.layers.is_empty() && m.layers.iter().all(|l| l.media_type == SIMPLE_SIGNING && l.size <= MAX_PAYLOAD)
}

#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}
#[derive(Deserialize)]
struct Critical {
    image: PayloadImage,
    #[serde(rename = "type")]
    kind: String,
}
#[derive(Deserialize)]
struct PayloadImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// The `critical.type` of a cosign (and containers/image) image signature.
const SIGNATURE_TYPE: &str = "cosign container image signature";

/// The digest a simple-signing payload names, if it is one: JSON with cosign's `critical.type`,
/// and never bytes a runtime could unpack as a tar layer (a JSON text can be made to carry a
/// valid tar header; a runtime would then extract it).
fn payload_digest(payload: &[u8]) -> Option<String> {
    if looks_like_tar(payload) {
        return None;
    }
    let p = serde_json::from_slice::<Payload>(payload).ok()?;
    (p.critical.kind == SIGNATURE_TYPE).then_some(p.critical.image.digest)
}

/// Whether the first 512 bytes are a tar header whose checksum holds (every tar format, V7 to
/// PAX, has one; runtimes check it before anything else).
fn looks_like_tar(bytes: &[u8]) -> bool {
    let Some(block) = bytes.get(..512) else { return false };
    // The stored checksum as Go's archive/tar reads it: octal digits between spaces or NULs.
    let field = &block[148..156];
    let trimmed: Vec<u8> =
        field.iter().copied().skip_while(|b| matches!(b, b' ' | 0)).take_while(|b| !matches!(b, b' ' | 0)).collect();
    if trimmed.is_empty() || !trimmed.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return false;
    }
    let Ok(stored) = i64::from_str_radix(std::str::from_utf8(&trimmed).unwrap_or(""), 8) else { return false };
    // Readers accept the sum of the bytes taken as unsigned or as signed (old tars), with the
    // checksum field counted as spaces.
    let byte = |i: usize, b: u8| if (148..156).contains(&i) { b' ' } else { b };
    let unsigned: i64 = block.iter().enumerate().map(|(i, &b)| i64::from(byte(i, b))).sum();
    let signed: i64 = block.iter().enumerate().map(|(i, &b)| i64::from(byte(i, b) as i8)).sum();
    stored == unsigned || stored == signed
}

/// The trusted key that signed `payload` for `image`, if any.
pub fn verify<'k>(payload: &[u8], signature_b64: &str, image: &Digest, keys: &'k [PublicKey]) -> Option<&'k str> {
    if payload_digest(payload)? != image.as_str() {
        return None;
    }
    let signature = base64::engine::general_purpose::STANDARD.decode(signature_b64.trim()).ok()?;
    keys.iter().find(|k| k.verifies(payload, &signature)).map(|k| k.name.as_str())
}

/// Verification results by (signature manifest, image, keys).
#[derive(Default)]
pub struct SignatureCache(Mutex<HashMap<[u8; 32], Option<String>>>);

impl SignatureCache {
    fn key(signature: &Digest, image: &Digest, keys_text: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [signature.as_str(), image.as_str(), keys_text] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        h.finalize().into()
    }

    fn get(&self, key: &[u8; 32]) -> Option<Option<String>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    fn put(&self, key: [u8; 32], signer: Option<String>) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= CACHE_CAPACITY {
            map.clear();
        }
        map.insert(key, signer);
    }
}

/// A policy in force: the mode, the parsed keys and their stored text (part of the cache key).
struct InForce {
    mode: SignatureMode,
    keys: Vec<PublicKey>,
    keys_text: String,
}

impl super::Registry {
    /// The namespace's signature policy (`off` with no keys when it has none).
    pub async fn signature_policy(&self, namespace: &str) -> Result<SignaturePolicy> {
        let Some(stored) = self.meta.signature_policy(namespace).await? else { return Ok(SignaturePolicy::default()) };
        let mode = SignatureMode::parse(&stored.mode)
            .ok_or_else(|| Error::Internal(format!("stored signature mode {:?} of {namespace}", stored.mode)))?;
        let keys: Vec<TrustedKey> = serde_json::from_str(&stored.keys)
            .map_err(|e| Error::Internal(format!("stored signature keys of {namespace}: {e}")))?;
        Ok(SignaturePolicy { mode, keys, updated_at: stored.updated_at })
    }

    /// Sets the namespace's policy after checking it ([`check_policy`]); false if the namespace
    /// does not exist.
    pub async fn set_signature_policy(
        &self,
        namespace: &str,
        mode: SignatureMode,
        keys: &[TrustedKey],
    ) -> Result<bool> {
        check_policy(mode, keys).map_err(Error::Invalid)?;
        let text = serde_json::to_string(keys).map_err(Error::internal)?;
        self.meta.set_signature_policy(namespace, mode.as_str(), &text, self.clock.now()).await
    }

    async fn policy_in_force(&self, namespace: &str) -> Result<Option<InForce>> {
        let Some(stored) = self.meta.signature_policy(namespace).await? else { return Ok(None) };
        let mode = SignatureMode::parse(&stored.mode).unwrap_or(SignatureMode::Require);
        if mode == SignatureMode::Off {
            return Ok(None);
        }
        // Stored policies were checked; one that no longer parses trusts no key (fail closed).
        let trusted: Vec<TrustedKey> = serde_json::from_str(&stored.keys).unwrap_or_default();
        let keys = trusted.iter().filter_map(|k| PublicKey::parse(k).ok()).collect();
        Ok(Some(InForce { mode, keys, keys_text: stored.keys }))
    }

    /// The signature gate for a manifest an ordinary reader asked for (after the quarantine gate).
    pub(super) async fn gate_manifest_signature(&self, repo: &RepoName, manifest: &StoredManifest) -> Result<()> {
        if manifest.signatures == SignatureMode::Off {
            return Ok(());
        }
        let Some(policy) = self.policy_in_force(repo.namespace()).await? else { return Ok(()) };
        if manifest.kind == Some(ManifestKind::Artifact) || self.is_verified_signature(repo, manifest).await? {
            return Ok(());
        }
        if self.covering_signer(repo, &manifest.digest, &policy).await?.is_some() {
            return Ok(());
        }
        let names: Vec<&str> = policy.keys.iter().map(|k| k.name.as_str()).collect();
        if policy.mode == SignatureMode::Warn {
            tracing::warn!(target: "audit", repository = %repo, digest = %manifest.digest, "unsigned image served (signature policy: warn)");
            metrics::counter!(crate::model::metrics::UNSIGNED_PULLS, "mode" => "warn").increment(1);
            return Ok(());
        }
        metrics::counter!(crate::model::metrics::UNSIGNED_PULLS, "mode" => "require").increment(1);
        Err(Error::Unsigned(Box::new(Unsigned {
            target: Target::Manifest(manifest.digest.clone()),
            manifests: vec![manifest.digest.clone()],
            reason: format!(
                "image {repo}@{} has no valid signature by a key namespace {} trusts ({}); sign it with \
                 cosign sign --key, or skopeo/podman --sign-by-sigstore-private-key",
                manifest.digest,
                repo.namespace(),
                names.join(", "),
            ),
        })))
    }

    /// The signature gate for a blob an ordinary reader may read by the quarantine gate:
    /// `image_content` when an image of the repository has ever listed it.
    pub(super) async fn gate_blob_signature(
        &self,
        repo: &RepoName,
        digest: &Digest,
        image_content: bool,
    ) -> Result<()> {
        let Some(policy) = self.policy_in_force(repo.namespace()).await? else { return Ok(()) };
        if policy.mode != SignatureMode::Require || !image_content {
            // Artifact content (no image lists it) needs no signature: nothing runs it.
            return Ok(());
        }
        let now = self.clock.now();
        for (m, verdict) in self.meta.blob_referrers(repo, digest, MAX_BLOB_MANIFESTS).await? {
            if !verdict.is_some_and(|v| v.effective_state(now).allows_pull()) {
                continue;
            }
            let Some(manifest) = self.meta.manifest_by_digest(repo, &m).await? else { continue };
            if self.is_verified_signature(repo, &manifest).await? {
                return Ok(());
            }
            if manifest.kind == Some(ManifestKind::Artifact) {
                continue;
            }
            if self.covering_signer(repo, &m, &policy).await?.is_some() {
                return Ok(());
            }
        }
        Err(Error::Unsigned(Box::new(Unsigned {
            target: Target::Blob(digest.clone()),
            manifests: Vec::new(),
            reason: format!(
                "blob {repo}@{digest} belongs to no image with a valid signature by a key namespace {} trusts",
                repo.namespace()
            ),
        })))
    }

    /// Whether a blob reads as a simple-signing payload (and is small enough to be one).
    async fn is_payload(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        match self.read_small(repo, digest, MAX_PAYLOAD).await {
            Ok(bytes) => Ok(bytes.is_some_and(|b| payload_digest(&b).is_some())),
            Err(Error::BlobUnknown) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Whether a manifest is a signature by what it holds, not only by what it says: every
    /// layer's bytes are a simple-signing payload, and its config (if not the empty one) lists
    /// no diff id but those payloads. Such a manifest carries nothing a runtime can run, so
    /// readers may have it, its config and its payloads without a signature of its own.
    async fn is_verified_signature(&self, repo: &RepoName, manifest: &StoredManifest) -> Result<bool> {
        if manifest.kind == Some(ManifestKind::Index) || !is_signature_manifest(&manifest.content) {
            return Ok(false);
        }
        let key = SignatureCache::key(&manifest.digest, &manifest.digest, &format!("signature manifest in {repo}"));
        if let Some(known) = self.signature_cache.get(&key) {
            return Ok(known.is_some());
        }
        let verdict = self.check_signature_manifest(repo, &manifest.content).await?;
        self.signature_cache.put(key, verdict.then(String::new));
        Ok(verdict)
    }

    async fn check_signature_manifest(&self, repo: &RepoName, content: &[u8]) -> Result<bool> {
        #[derive(Deserialize)]
        struct Shape {
            config: Option<Descriptor>,
            layers: Vec<Descriptor>,
        }
        let Ok(shape) = serde_json::from_slice::<Shape>(content) else { return Ok(false) };
        if shape.layers.len() > MAX_PAYLOADS {
            return Ok(false);
        }
        let mut payloads = Vec::new();
        for layer in &shape.layers {
            let Ok(d) = layer.digest.parse::<Digest>() else { return Ok(false) };
            if !self.is_payload(repo, &d).await? {
                return Ok(false);
            }
            payloads.push(layer.digest.clone());
        }
        let Some(config) = shape.config else { return Ok(true) };
        // The empty config is `{}` itself, by digest: its descriptor's words alone prove nothing.
        if config.digest == Digest::of(Algorithm::Sha256, b"{}").as_str() {
            return Ok(true);
        }
        let Ok(config_digest) = config.digest.parse::<Digest>() else { return Ok(false) };
        let bytes = match self.read_small(repo, &config_digest, MAX_PAYLOAD).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) | Err(Error::BlobUnknown) => return Ok(false),
            Err(e) => return Err(e),
        };
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return Ok(false) };
        let diff_ids = value.pointer("/rootfs/diff_ids").and_then(|v| v.as_array()).cloned().unwrap_or_default();
        Ok(diff_ids.iter().all(|d| d.as_str().is_some_and(|d| payloads.iter().any(|p| p == d))))
    }

    /// The key whose signature names `digest`, or names an index of `repo` that lists it.
    async fn covering_signer(&self, repo: &RepoName, digest: &Digest, policy: &InForce) -> Result<Option<String>> {
        if let Some(signer) = self.signer(repo, digest, policy).await? {
            return Ok(Some(signer));
        }
        for parent in self.meta.manifest_parents(repo, digest, MAX_PARENTS).await? {
            if let Some(signer) = self.signer(repo, &parent, policy).await? {
                return Ok(Some(signer));
            }
        }
        Ok(None)
    }

    /// The trusted key of the first valid signature of `digest` in `repo` (cosign's tag, then
    /// referrers).
    async fn signer(&self, repo: &RepoName, digest: &Digest, policy: &InForce) -> Result<Option<String>> {
        let mut candidates: Vec<StoredManifest> = Vec::new();
        let tag: Option<Tag> = digest.as_str().replacen(':', "-", 1).parse::<Tag>().ok();
        if let Some(tag) = tag.and_then(|t| format!("{t}.sig").parse::<Tag>().ok()) {
            candidates.extend(self.meta.manifest_by_tag(repo, &tag).await?);
        }
        // Only referrers that may be signatures count towards the cap (attestations and SBOMs
        // pile up beside them).
        let may_sign = |t: &Option<String>| {
            t.as_deref()
                .is_none_or(|t| matches!(t, SIGNATURE_ARTIFACT_TYPE | "application/vnd.oci.image.config.v1+json"))
        };
        let referrers = self.meta.referrers(repo, digest, None).await?;
        for r in referrers.into_iter().filter(|r| may_sign(&r.artifact_type)).take(MAX_CANDIDATES) {
            if candidates.iter().any(|c| c.digest == r.digest) {
                continue;
            }
            candidates.extend(self.meta.manifest_by_digest(repo, &r.digest).await?);
        }
        for candidate in candidates {
            let key = SignatureCache::key(&candidate.digest, digest, &format!("{repo}\n{}", policy.keys_text));
            let signer = match self.signature_cache.get(&key) {
                Some(known) => known,
                None => {
                    let found = self.verify_candidate(repo, &candidate, digest, &policy.keys).await?;
                    self.signature_cache.put(key, found.clone());
                    found
                }
            };
            if signer.is_some() {
                return Ok(signer);
            }
        }
        Ok(None)
    }

    async fn verify_candidate(
        &self,
        repo: &RepoName,
        candidate: &StoredManifest,
        image: &Digest,
        keys: &[PublicKey],
    ) -> Result<Option<String>> {
        for (payload_digest, signature) in signed_payloads(&candidate.content) {
            let payload = match self.read_small(repo, &payload_digest, MAX_PAYLOAD).await {
                Ok(Some(payload)) => payload,
                Ok(None) | Err(Error::BlobUnknown) => continue,
                Err(e) => return Err(e),
            };
            // The store is content-addressed; checked again, as every byte a decision rests on is.
            if Digest::of(payload_digest.algorithm(), &payload) != payload_digest {
                continue;
            }
            if let Some(name) = verify(&payload, &signature, image, keys) {
                return Ok(Some(name.to_owned()));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Algorithm;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

    fn pem_of(prefix: &[u8], public: &[u8]) -> String {
        pem::encode(&pem::Pem::new("PUBLIC KEY", [prefix, public].concat()))
    }

    fn p256() -> (EcdsaKeyPair, String) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let pem = pem_of(P256_SPKI_PREFIX, pair.public_key().as_ref());
        (pair, pem)
    }

    fn payload(digest: &Digest) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"critical": {"identity": {"docker-reference": "r/x"},
            "image": {"docker-manifest-digest": digest.as_str()}, "type": "cosign container image signature"},
            "optional": null}))
        .unwrap()
    }

    fn key(name: &str, pem: &str) -> TrustedKey {
        TrustedKey { name: name.into(), pem: pem.into() }
    }

    #[test]
    fn a_payload_counts_only_for_its_digest_and_a_trusted_key() {
        let image = Digest::of(Algorithm::Sha256, b"image");
        let other = Digest::of(Algorithm::Sha256, b"other");
        let (pair, pem) = p256();
        let (_, stranger) = p256();
        let body = payload(&image);
        let sig =
            base64::engine::general_purpose::STANDARD.encode(pair.sign(&SystemRandom::new(), &body).unwrap().as_ref());
        let trusted = check_policy(SignatureMode::Require, &[key("ci", &pem)]).unwrap();
        assert_eq!(verify(&body, &sig, &image, &trusted), Some("ci"));
        assert_eq!(verify(&body, &sig, &other, &trusted), None, "moved to another image");
        let untrusted = check_policy(SignatureMode::Require, &[key("other", &stranger)]).unwrap();
        assert_eq!(verify(&body, &sig, &image, &untrusted), None, "signed by a key not trusted");
        let mut changed = body.clone();
        let at = changed.len() - 3;
        changed[at] ^= 1;
        assert_eq!(verify(&changed, &sig, &image, &trusted), None, "a changed byte");
        assert_eq!(verify(&body, "not base64!", &image, &trusted), None);
    }

    #[test]
    fn ed25519_keys_verify_raw_payloads() {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let pem = pem_of(ED25519_SPKI_PREFIX, pair.public_key().as_ref());
        let image = Digest::of(Algorithm::Sha256, b"image");
        let body = payload(&image);
        let sig = base64::engine::general_purpose::STANDARD.encode(pair.sign(&body).as_ref());
        let keys = check_policy(SignatureMode::Require, &[key("ed", &pem)]).unwrap();
        assert_eq!(keys[0].algorithm(), "ed25519");
        assert_eq!(verify(&body, &sig, &image, &keys), Some("ed"));
    }

    #[test]
    fn policies_are_checked_before_they_are_stored() {
        let (_, pem) = p256();
        assert!(check_policy(SignatureMode::Require, &[]).unwrap_err().contains("at least one key"));
        assert!(check_policy(SignatureMode::Off, &[]).is_ok());
        assert!(check_policy(SignatureMode::Warn, &[key("a", &pem), key("a", &pem)]).unwrap_err().contains("two keys"));
        assert!(check_policy(SignatureMode::Warn, &[key("a b", &pem)]).unwrap_err().contains("name"));
        let rsa_like = pem::encode(&pem::Pem::new("PUBLIC KEY", vec![0x30, 0x03, 0x02, 0x01, 0x00]));
        assert!(check_policy(SignatureMode::Warn, &[key("r", &rsa_like)]).unwrap_err().contains("only ECDSA P-256"));
        let private = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        assert!(check_policy(SignatureMode::Warn, &[key("p", &private)]).unwrap_err().contains("PUBLIC KEY"));
        assert!(check_policy(SignatureMode::Warn, &[key("g", "garbage")]).unwrap_err().contains("PEM"));
        let many: Vec<TrustedKey> = (0..=MAX_KEYS).map(|i| key(&format!("k{i}"), &pem)).collect();
        assert!(check_policy(SignatureMode::Warn, &many).unwrap_err().contains("at most"));
    }

    #[test]
    fn a_payload_is_cosign_json_and_never_a_tar_header() {
        let image = Digest::of(Algorithm::Sha256, b"image");
        assert_eq!(payload_digest(&payload(&image)), Some(image.to_string()));
        let other_type = br#"{"critical":{"image":{"docker-manifest-digest":"sha256:00"},"type":"something else"}}"#;
        assert_eq!(payload_digest(other_type), None, "another type of document");
        // A real tar header block, then the same bytes made to parse as JSON too, if they can.
        let mut header = tar::Header::new_old();
        header.set_path("run.sh").unwrap();
        header.set_size(0);
        header.set_cksum();
        let mut block = header.as_bytes().to_vec();
        block.resize(1024, 0);
        assert!(looks_like_tar(&block));
        assert_eq!(payload_digest(&block), None);
        // The signed sum (what old tars wrote, and what readers still accept) over bytes >= 0x80.
        let mut high = vec![b' '; 512];
        high[..5].copy_from_slice("\u{e9}t\u{e9}".as_bytes());
        high[156] = b'0';
        let signed: i64 = high.iter().map(|&b| i64::from(b as i8)).sum();
        let unsigned: i64 = high.iter().map(|&b| i64::from(b)).sum();
        assert_ne!(signed, unsigned);
        high[148..156].copy_from_slice(format!("{signed:06o}\0 ").as_bytes());
        assert!(looks_like_tar(&high), "a header with a signed checksum is a tar header too");
        let mut json = payload(&image);
        json.resize(600, b' ');
        assert!(!looks_like_tar(&json), "a plain payload padded past 512 bytes is not a tar header");
        assert!(payload_digest(&json).is_some());
    }

    #[test]
    fn signature_manifests_are_told_by_every_layer() {
        let layer = |t: &str, size: u64| serde_json::json!({"mediaType": t, "digest": format!("sha256:{}", "a".repeat(64)), "size": size});
        let m = |layers: Vec<serde_json::Value>| serde_json::to_vec(&serde_json::json!({"layers": layers})).unwrap();
        assert!(is_signature_manifest(&m(vec![layer(SIMPLE_SIGNING, 300)])));
        assert!(!is_signature_manifest(&m(vec![])));
        assert!(!is_signature_manifest(&m(vec![
            layer(SIMPLE_SIGNING, 300),
            layer("application/vnd.oci.image.layer.v1.tar+gzip", 9)
        ])));
        assert!(!is_signature_manifest(&m(vec![layer(SIMPLE_SIGNING, MAX_PAYLOAD + 1)])), "too large to be a payload");
    }
}
