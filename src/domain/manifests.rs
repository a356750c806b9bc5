//! Manifests: push with reference checks, fetch by tag or digest, delete, referrers.

use super::digest::Algorithm;
use super::manifest::parse;
use super::{Digest, Error, Reference, RepoName, Result};
use crate::metadata::{ManifestKind, NewManifest, PutManifestRefused, Referrer, StoredManifest};

/// The outcome of a manifest push.
#[derive(Debug, Clone)]
pub struct PutManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
    /// What the manifest is; every kind is scanned before ordinary principals may pull it.
    pub kind: ManifestKind,
}

impl super::Registry {
    /// Stores a manifest under a tag or its digest. Every blob and child manifest it references must
    /// already be in `repo`; its `subject` need not be.
    pub async fn put_manifest(
        &self,
        repo: &RepoName,
        reference: &Reference,
        content_type: Option<&str>,
        bytes: Vec<u8>,
    ) -> Result<PutManifest> {
        if bytes.len() > self.limits.max_manifest_bytes {
            return Err(Error::ManifestTooLarge { limit: self.limits.max_manifest_bytes });
        }
        let parsed = parse(&bytes, content_type)?;
        if parsed.references() > self.limits.max_references {
            return Err(Error::ManifestInvalid(format!(
                "the manifest references {} blobs or manifests; this registry accepts at most {} (limits.max_references)",
                parsed.references(),
                self.limits.max_references
            )));
        }
        let (digest, tag) = match reference {
            Reference::Digest(d) => {
                let actual = Digest::of(d.algorithm(), &bytes);
                if &actual != d {
                    return Err(Error::DigestInvalid(format!("manifest has digest {actual}, not {d}")));
                }
                (actual, None)
            }
            Reference::Tag(t) => (Digest::of(Algorithm::Sha256, &bytes), Some(t.clone())),
        };
        let annotations = parsed.annotations.as_ref().map(|a| serde_json::Value::Object(a.clone()).to_string());
        let new = NewManifest {
            repo: repo.clone(),
            digest: digest.clone(),
            media_type: parsed.media_type.clone(),
            artifact_type: parsed.artifact_type.clone(),
            subject: parsed.subject.clone(),
            annotations,
            content: bytes,
            blobs: parsed.blobs.clone(),
            children: parsed.children.iter().map(|c| c.digest.clone()).collect(),
            tag,
            kind: parsed.kind(),
        };
        match self.meta.put_manifest(&new).await? {
            Ok(()) => {
                self.scan_queued();
                Ok(PutManifest { digest, kind: parsed.kind(), subject: parsed.subject })
            }
            Err(PutManifestRefused::MissingBlob(d)) => Err(Error::ManifestBlobUnknown { kind: "blob", digest: d }),
            Err(PutManifestRefused::MissingManifest(d)) => {
                Err(Error::ManifestBlobUnknown { kind: "manifest", digest: d })
            }
        }
    }

    /// The manifest a tag or digest names in `repo`, ungated: only the gate and HEAD use it.
    pub(super) async fn get_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<StoredManifest> {
        let found = match reference {
            Reference::Tag(t) => self.meta.manifest_by_tag(repo, t).await?,
            Reference::Digest(d) => self.meta.manifest_by_digest(repo, d).await?,
        };
        match found {
            Some(m) => Ok(m),
            None if !self.meta.repository_exists(repo).await? => Err(Error::NameUnknown),
            None => Err(Error::ManifestUnknown),
        }
    }

    /// Deletes a tag (the manifest stays reachable by digest) or a manifest with all its tags.
    pub async fn delete_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<()> {
        let deleted = match reference {
            Reference::Tag(t) => self.meta.delete_tag(repo, t).await?,
            Reference::Digest(d) => self.meta.delete_manifest(repo, d).await?,
        };
        if deleted {
            Ok(())
        } else {
            Err(Error::ManifestUnknown)
        }
    }

    /// Manifests in `repo` whose subject is `digest`, optionally of one artifact type.
    pub async fn referrers(
        &self,
        repo: &RepoName,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        self.meta.referrers(repo, digest, artifact_type).await
    }
}
