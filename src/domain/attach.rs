//! What the registry itself attaches to images as OCI 1.1 referrers: signed scan verdicts
//! (`attestations`) and SBOMs. Each is pushed through the same path as a client's push (the
//! blob upload, then the manifest `PUT`), so it is stored, counted, scanned and gated like any
//! artifact.
//!
//! Rules: what is attached is an artifact (an empty config, one layer of its own type), never
//! something a runtime would run; it names its subject, so the referrers API lists it and the
//! collector keeps it as long as the image. Each carries a seal (an HMAC under the registry key
//! of the repository, the subject and the layer), and a sealed attachment cannot be deleted
//! through the registry API by anyone, so a newer verdict (a quarantine) cannot be removed to
//! leave an older one (a pass) as the newest an admission controller finds. Admins remove one
//! by rejecting it (`POST /api/v1/scans/reject`); deleting the image leaves its referrers, as
//! for any subject.

use serde_json::{json, Value};

use super::manifest::OCI_MANIFEST;
use super::{Digest, Error, Reference, RepoName, Result};
use crate::metadata::StoredManifest;
use crate::model::audit::RequestContext;
use crate::model::Algorithm;

const EMPTY_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// Who pushes what the registry attaches (upload sessions and audit records name it).
const PUSHER: &str = "system:registry";
/// The annotation that proves the registry attached a referrer (see the module's rules).
const ATTACHMENT_SEAL: &str = "dev.portcullis.attachment";

/// The seal of an attachment of `layer` to `subject` in `repo`.
fn seal(key: &[u8], repo: &RepoName, subject: &str, layer: &str) -> String {
    let text = format!("portcullis-attachment-v1\n{repo}\n{subject}\n{layer}");
    crate::model::webhook::hmac_hex(key, &[text.as_bytes()])
}

/// One document to attach to an image.
pub struct Attachment<'a> {
    /// The manifest's `artifactType`.
    pub artifact_type: &'a str,
    /// The layer's media type and bytes.
    pub media_type: &'a str,
    pub bytes: Vec<u8>,
    pub layer_annotations: Value,
    pub annotations: Value,
}

impl super::Registry {
    /// Pushes `attachment` into `repo` as a referrer of `subject`; the new manifest's digest.
    pub async fn attach(
        &self,
        repo: &RepoName,
        subject: &StoredManifest,
        attachment: Attachment<'_>,
    ) -> Result<Digest> {
        // The registry pushes it, whoever's request caused it (an admin's release, a worker):
        // the audit records of the push name `system:registry`, with the request's id if any.
        let current = RequestContext::current();
        let context = RequestContext::new(
            current.as_ref().map_or_else(|| std::sync::Arc::from("-"), |c| c.id.clone()),
            current.as_ref().map_or(std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), |c| c.client),
        );
        context.set_actor(PUSHER);
        RequestContext::scope(context, self.attach_as_registry(repo, subject, attachment)).await
    }

    async fn attach_as_registry(
        &self,
        repo: &RepoName,
        subject: &StoredManifest,
        attachment: Attachment<'_>,
    ) -> Result<Digest> {
        let empty = b"{}".to_vec();
        for blob in [&attachment.bytes, &empty] {
            let d = Digest::of(Algorithm::Sha256, blob);
            let body: crate::model::ByteStream =
                Box::pin(futures::stream::once(futures::future::ready(Ok(bytes::Bytes::from(blob.clone())))));
            self.upload_monolithic(repo, PUSHER, &d, body).await?;
        }
        let layer = Digest::of(Algorithm::Sha256, &attachment.bytes).to_string();
        let mut annotations = attachment.annotations;
        annotations[ATTACHMENT_SEAL] = json!(seal(&self.registry_key, repo, subject.digest.as_str(), &layer));
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": attachment.artifact_type,
            "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": Digest::of(Algorithm::Sha256, &empty).to_string(), "size": 2},
            "layers": [{"mediaType": attachment.media_type, "digest": layer,
                "size": attachment.bytes.len(), "annotations": attachment.layer_annotations}],
            "subject": {"mediaType": subject.media_type, "digest": subject.digest.to_string(), "size": subject.content.len()},
            "annotations": annotations,
        });
        let bytes = serde_json::to_vec(&manifest).map_err(Error::internal)?;
        let digest = Digest::of(Algorithm::Sha256, &bytes);
        self.put_manifest(repo, &Reference::Digest(digest.clone()), Some(OCI_MANIFEST), bytes).await?;
        Ok(digest)
    }
}

impl super::Registry {
    /// Whether `content` (a manifest in `repo`) is one the registry attached: its seal verifies.
    pub(super) fn is_registry_attachment(&self, repo: &RepoName, content: &[u8]) -> bool {
        let Ok(manifest) = serde_json::from_slice::<Value>(content) else { return false };
        let (Some(theirs), Some(subject), Some(layer)) = (
            manifest["annotations"][ATTACHMENT_SEAL].as_str(),
            manifest["subject"]["digest"].as_str(),
            manifest["layers"][0]["digest"].as_str(),
        ) else {
            return false;
        };
        let ours = seal(&self.registry_key, repo, subject, layer);
        bool::from(subtle::ConstantTimeEq::ct_eq(theirs.as_bytes(), ours.as_bytes()))
    }
}

/// The media type (and artifact type) of an SPDX JSON SBOM.
pub const SPDX_TYPE: &str = "application/spdx+json";
/// The annotation that carries an SBOM's package fingerprint.
const SBOM_FINGERPRINT: &str = "dev.portcullis.sbom.packages";
/// The annotation that proves the registry attached the SBOM: an HMAC under the registry key of
/// the repository, the image and the fingerprint (anyone may push an SBOM referrer; only the
/// registry's own stop it from attaching another).
const SBOM_SEAL: &str = "dev.portcullis.sbom.seal";

impl super::Registry {
    /// Attaches `document` (SPDX JSON) to `repo@digest`, unless an SBOM of the same package list
    /// (`fingerprint`) is attached already; the new SBOM's digest.
    pub async fn attach_sbom(
        &self,
        repo: &RepoName,
        digest: &Digest,
        document: Vec<u8>,
        fingerprint: &str,
    ) -> Result<Option<Digest>> {
        let Some(subject) = self.meta.manifest_by_digest(repo, digest).await? else { return Ok(None) };
        let text = format!("portcullis-sbom-v1\n{repo}\n{digest}\n{fingerprint}");
        let seal = crate::model::webhook::hmac_hex(&self.registry_key, &[text.as_bytes()]);
        for r in self.meta.referrers(repo, digest, Some(SPDX_TYPE)).await? {
            let annotations: Value =
                r.annotations.as_deref().and_then(|a| serde_json::from_str(a).ok()).unwrap_or_default();
            let theirs = annotations[SBOM_SEAL].as_str().unwrap_or("");
            if bool::from(subtle::ConstantTimeEq::ct_eq(theirs.as_bytes(), seal.as_bytes())) {
                return Ok(None);
            }
        }
        let attachment = Attachment {
            artifact_type: SPDX_TYPE,
            media_type: SPDX_TYPE,
            bytes: document,
            layer_annotations: json!({"org.opencontainers.image.title": "sbom.spdx.json"}),
            annotations: json!({SBOM_FINGERPRINT: fingerprint, SBOM_SEAL: seal,
                "org.opencontainers.image.created": crate::model::rfc3339(self.clock.now())}),
        };
        Ok(Some(self.attach(repo, &subject, attachment).await?))
    }
}
