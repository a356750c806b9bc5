//! Manifests: push with reference checks, fetch by tag or digest, delete, referrers.

use super::digest::Algorithm;
use super::manifest::{kind_by_config, parse, Classified, ParsedManifest, MAX_CLASSIFIED_CONFIG};
use super::{Digest, Error, Reader, Reference, RepoName, Result};
use crate::metadata::{ManifestKind, NewManifest, PutManifestRefused, Referrer, StoredManifest};

/// The outcome of a manifest push.
#[derive(Debug, Clone)]
pub struct PutManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
    /// What the manifest is; every kind is scanned before ordinary principals may pull it.
    pub kind: ManifestKind,
}

use crate::model::audit::NewAudit;

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
        if parsed.is_index() {
            self.check_reach(repo, &parsed).await?;
        }
        let kind = self.manifest_kind(repo, &parsed).await?;
        self.note_push();
        let annotations = parsed.annotations.as_ref().map(|a| serde_json::Value::Object(a.clone()).to_string());
        let audit = NewAudit::new("push", format!("{repo}@{digest}")).namespace(repo.namespace());
        let audit = match &tag {
            Some(t) => audit.detail("tag", t.as_str()),
            None => audit,
        };
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
            kind,
            pushed_at: self.clock.now(),
            audit: Some(audit),
        };
        match self.quota_checked(repo, self.meta.put_manifest(&new).await).await? {
            Ok(()) => {
                self.scan_queued();
                metrics::counter!(crate::model::metrics::MANIFEST_PUSHES).increment(1);
                Ok(PutManifest { digest, kind, subject: parsed.subject })
            }
            Err(PutManifestRefused::MissingBlob(d)) => Err(Error::ManifestBlobUnknown { kind: "blob", digest: d }),
            Err(PutManifestRefused::MissingManifest(d)) => {
                Err(Error::ManifestBlobUnknown { kind: "manifest", digest: d })
            }
        }
    }

    /// Refuses an index that reaches more than `limits.max_index_reach` manifests through the
    /// indexes it lists, a manifest counted once for each index that lists it (the edges the gate
    /// walks on every pull): nested indexes sharing children would otherwise make one small
    /// manifest cost millions of rows.
    /// The walk itself stops at the limit. Stored manifests never change, so the bound holds.
    async fn check_reach(&self, repo: &RepoName, parsed: &ParsedManifest) -> Result<()> {
        let limit = self.limits.max_index_reach;
        let refuse = |reach: usize| {
            Error::ManifestInvalid(format!(
                "the index reaches at least {reach} manifests through the indexes it lists; this registry \
                 accepts at most {limit} (limits.max_index_reach)"
            ))
        };
        let mut reach = parsed.children.len();
        let mut seen: std::collections::HashSet<Digest> = std::collections::HashSet::new();
        let mut frontier: Vec<Digest> =
            parsed.children.iter().filter(|c| seen.insert(c.digest.clone())).map(|c| c.digest.clone()).collect();
        while !frontier.is_empty() && reach <= limit {
            let left = u32::try_from(limit - reach + 1).unwrap_or(u32::MAX);
            let next = self.meta.manifest_children(repo, &frontier, left).await?;
            reach += next.len();
            frontier = next.into_iter().filter(|d| seen.insert(d.clone())).collect();
        }
        if reach > limit {
            return Err(refuse(reach));
        }
        Ok(())
    }

    /// What a manifest of `repo` is to the gate ([`ParsedManifest::classify`]), reading its config
    /// when only the config can tell.
    pub async fn manifest_kind(&self, repo: &RepoName, parsed: &ParsedManifest) -> Result<ManifestKind> {
        let config = match (parsed.classify(), &parsed.config) {
            (Classified::Known(kind), _) => return Ok(kind),
            (Classified::ByConfig, Some(config)) => config,
            (Classified::ByConfig, None) => return Ok(ManifestKind::Image),
        };
        // Too large to read here: the scan of an image decides what it holds.
        if config.size > MAX_CLASSIFIED_CONFIG {
            return Ok(ManifestKind::Image);
        }
        match self.read_small(repo, &config.digest, MAX_CLASSIFIED_CONFIG).await {
            Ok(Some(bytes)) => Ok(kind_by_config(&bytes)),
            Ok(None) => Ok(ManifestKind::Image),
            Err(Error::BlobUnknown) => Err(Error::ManifestBlobUnknown { kind: "blob", digest: config.digest.clone() }),
            Err(e) => Err(e),
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
            Reference::Digest(d) => {
                // What the registry attached (signed verdicts, SBOMs) is not deleted through the
                // registry API; an admin rejects it (POST /api/v1/scans/reject).
                if let Some(m) = self.meta.manifest_by_digest(repo, d).await? {
                    if self.is_registry_attachment(repo, &m.content) {
                        return Err(Error::Denied(format!(
                            "{repo}@{d} was attached by the registry (a signed scan verdict or an SBOM) and cannot \
                             be deleted through the registry API; an admin removes it with POST /api/v1/scans/reject"
                        )));
                    }
                }
                self.meta.delete_manifest(repo, d).await?
            }
        };
        if deleted {
            Ok(())
        } else {
            Err(Error::ManifestUnknown)
        }
    }

    /// Deletes a manifest and its tags for an admin who rejects it, immutable tags included.
    pub async fn reject_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        if self.meta.reject_manifest(repo, digest).await? {
            Ok(())
        } else {
            Err(Error::ManifestUnknown)
        }
    }

    /// Manifests in `repo` whose subject is `digest`, optionally of one artifact type. An
    /// ordinary reader sees a referrer's annotations and artifact type (text of that manifest or
    /// its config) only when its verdict is open; its digest, media type and size are listed
    /// either way, as HEAD would tell them. Filtered by type, blocked referrers are left out
    /// (being listed would tell their type).
    pub async fn referrers(
        &self,
        reader: Reader,
        repo: &RepoName,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let mut found = self.meta.referrers(repo, digest, artifact_type).await?;
        if reader == Reader::Ordinary {
            let now = self.clock.now();
            let open = |r: &Referrer| r.verdict.as_ref().is_some_and(|v| v.effective_state(now).allows_pull());
            if artifact_type.is_some() {
                found.retain(open);
            }
            for r in &mut found {
                if !open(r) {
                    r.annotations = None;
                    r.artifact_type = None;
                }
            }
        }
        Ok(found)
    }
}
