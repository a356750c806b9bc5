//! The quarantine gate: the one place that decides whether a manifest or a blob may be handed to
//! an ordinary principal. Every path to the bytes of a manifest or a blob goes through
//! [`Registry::read_manifest`], [`Registry::read_blob`] or [`Registry::mount`], and those decide
//! here, in [`Registry::gate`].
//!
//! Invariant: a non-admin never receives a byte of a blob unless some image that contains it has
//! passed or been released, in a repository the requester may read (the caller checked the pull
//! right on that repository; mounts check it on the source).
//!
//! How it holds:
//! - Every manifest has a scan record from the moment it is stored (images, artifacts and
//!   indexes alike); no record, or any state but `passed` or an unexpired `released`, is blocked.
//! - What is an image is decided from what clients would run ([`crate::domain::manifest`]),
//!   never from `subject` or `artifactType`.
//! - A manifest is open when its own verdict is, and for an index, the verdicts of every manifest
//!   it reaches at any depth.
//! - A blob is open in a repository when an image there that references it is open; or when no
//!   image there has ever referenced it (a sticky mark, which outlives a rejected or deleted image)
//!   and an artifact there that references it is open. A blob no open manifest references is
//!   blocked: a rejected image's layers stay blocked until they are collected.
//! - A cross-repository mount is a read of the source: it is gated there, and a refused mount
//!   becomes an ordinary upload, as the spec asks.
//! - HEAD requests tell that a manifest or blob exists and its size, never its bytes.
//! - After this gate, the signature gate ([`super::signatures`]) applies the namespace's
//!   signature policy on the same paths.

use super::{Blocked, Digest, Error, Reference, RepoName, Result, Target};
use crate::metadata::scans::{ScanState, Verdict};
use crate::metadata::{ManifestKind, StoredManifest};
use crate::model::metrics as m;

/// Who is reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// Admins (audited by the caller) and the registry's own scanner.
    Unrestricted,
    /// Everyone else.
    Ordinary,
}

/// The largest number of manifests an index may reach, itself included, and still be gated
/// (beyond it, blocked). Pushes are held to `limits.max_index_reach` listings, which reach at
/// most one manifest more (the index); this catches what was stored before that limit.
const MAX_CLOSURE: u32 = super::DEFAULT_MAX_INDEX_REACH as u32 + 1;

/// What a HEAD request learns of a manifest.
#[derive(Debug, Clone)]
pub struct ManifestHead {
    pub digest: Digest,
    pub media_type: String,
    pub size: usize,
}

/// The worst of `verdicts` at `now` (a missing record counts as an error), if any blocks.
fn worst(verdicts: &[(Digest, Option<Verdict>)], now: i64) -> Option<(ScanState, Option<String>, Vec<Digest>)> {
    let mut out: Option<(ScanState, Option<String>, Vec<Digest>)> = None;
    for (digest, verdict) in verdicts {
        let (state, summary) = match verdict {
            None => (ScanState::Error, Some(format!("{digest} has no scan record"))),
            Some(v) => {
                let state = v.effective_state(now);
                let summary = if state != v.state { Some("its release expired".to_owned()) } else { v.summary.clone() };
                (state, summary)
            }
        };
        if state.allows_pull() {
            continue;
        }
        match &mut out {
            Some((w, _, digests)) if w.badness() >= state.badness() => digests.push(digest.clone()),
            Some((w, s, digests)) => {
                *w = state;
                *s = summary;
                digests.insert(0, digest.clone());
            }
            None => out = Some((state, summary, vec![digest.clone()])),
        }
    }
    out
}

impl super::Registry {
    /// The manifest `reference` names in `repo`, if `reader` may receive it.
    pub async fn read_manifest(
        &self,
        reader: Reader,
        repo: &RepoName,
        reference: &Reference,
    ) -> Result<StoredManifest> {
        let manifest = self.get_manifest(repo, reference).await?;
        if reader == Reader::Ordinary {
            self.gate_manifest(repo, &manifest).await?;
            self.gate_manifest_signature(repo, &manifest).await?;
        }
        Ok(manifest)
    }

    /// What a HEAD of a manifest tells: that it exists, its digest, type and size.
    pub async fn head_manifest(&self, repo: &RepoName, reference: &Reference) -> Result<ManifestHead> {
        let m = self.get_manifest(repo, reference).await?;
        Ok(ManifestHead { size: m.content.len(), digest: m.digest, media_type: m.media_type })
    }

    /// The gate for a manifest: its own verdict, and for an index every manifest it reaches.
    async fn gate_manifest(&self, repo: &RepoName, manifest: &StoredManifest) -> Result<()> {
        let now = self.clock.now();
        let verdicts = match manifest.kind {
            Some(ManifestKind::Image | ManifestKind::Artifact) => {
                vec![(manifest.digest.clone(), manifest.verdict.clone())]
            }
            // An index (or a manifest stored before kinds were recorded): everything it reaches.
            _ => {
                let reached = self.meta.manifest_closure(repo, &manifest.digest, MAX_CLOSURE + 1).await?;
                if reached.len() > MAX_CLOSURE as usize {
                    return Err(Error::Blocked(Box::new(Blocked {
                        target: Target::Manifest(manifest.digest.clone()),
                        state: ScanState::Error,
                        summary: Some(format!("the index reaches more than {MAX_CLOSURE} manifests")),
                        manifests: vec![manifest.digest.clone()],
                    })));
                }
                reached
            }
        };
        match worst(&verdicts, now) {
            None => Ok(()),
            Some((state, summary, manifests)) => {
                let summary = match (&summary, manifests.first()) {
                    (Some(s), Some(first)) if first != &manifest.digest => {
                        Some(format!("an image in this index ({first}) is blocked: {s}"))
                    }
                    _ => summary,
                };
                Err(Error::Blocked(Box::new(Blocked {
                    target: Target::Manifest(manifest.digest.clone()),
                    state,
                    summary,
                    manifests,
                })))
            }
        }
    }

    /// The gate for a blob: its size if `reader` may read it in `repo`, or why not.
    async fn gate_blob(&self, reader: Reader, repo: &RepoName, digest: &Digest) -> Result<u64> {
        if reader == Reader::Unrestricted {
            return self.stat_blob(repo, digest).await;
        }
        let access = self.meta.blob_access(repo, digest, self.clock.now()).await?.ok_or(Error::BlobUnknown)?;
        if access.readable {
            if access.signatures != crate::model::SignatureMode::Off {
                self.gate_blob_signature(repo, digest, access.image_content).await?;
            }
            return Ok(access.size);
        }
        // Refused: name the manifests that contain the blob, for the error and its report links.
        let referrers = self.meta.blob_referrers(repo, digest, 5).await?;
        let (state, summary, manifests) = worst(&referrers, self.clock.now()).unwrap_or((
            ScanState::Quarantined,
            Some("no image that passed its scan contains this blob".into()),
            Vec::new(),
        ));
        // Name the images (repository@digest), whose reports the HTTP layer links to.
        let summary = match manifests.len() {
            0 => summary,
            n => {
                let named: Vec<String> = manifests.iter().take(3).map(|m| format!("{repo}@{m}")).collect();
                let more = if n > 3 { format!(" and {} more", n - 3) } else { String::new() };
                let (noun, verb) = if n == 1 { ("image", "is") } else { ("images", "are") };
                Some(format!(
                    "it belongs to {noun} {}{more}, which {verb} not open: {}",
                    named.join(", "),
                    summary.unwrap_or_default()
                ))
            }
        };
        Err(Error::Blocked(Box::new(Blocked { target: Target::Blob(digest.clone()), state, summary, manifests })))
    }

    /// Opens a blob readable by `reader` in `repo`, optionally a range of it.
    pub async fn read_blob(
        &self,
        reader: Reader,
        repo: &RepoName,
        digest: &Digest,
        range: Option<super::ByteRange>,
    ) -> Result<super::BlobRead> {
        let size = self.gate_blob(reader, repo, digest).await?;
        self.open_blob(digest, size, range).await
    }

    /// Links `digest` into `repo` from `from` if `reader` may read it there (the source's gate
    /// applies). False means: upload it instead.
    pub async fn mount(&self, reader: Reader, repo: &RepoName, digest: &Digest, from: &RepoName) -> Result<bool> {
        match self.gate_blob(reader, from, digest).await {
            // False: the collector is deleting the bytes, so the client uploads them instead.
            Ok(size) => {
                self.note_push();
                let linked = self.meta.link_blob(repo, digest, size, self.clock.now()).await;
                self.quota_checked(repo, linked).await
            }
            Err(Error::BlobUnknown) => Ok(false),
            Err(Error::Blocked(b)) => {
                metrics::counter!(m::PULLS_BLOCKED, "state" => b.state.as_str()).increment(1);
                tracing::info!(target: "audit", repository = %repo, from = %from, %digest, state = b.state.as_str(), "mount refused by the quarantine gate");
                Ok(false)
            }
            Err(Error::Unsigned(_)) => {
                tracing::info!(target: "audit", repository = %repo, from = %from, %digest, "mount refused by the signature gate");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::digest::Algorithm;

    fn d(s: &str) -> Digest {
        Digest::of(Algorithm::Sha256, s.as_bytes())
    }

    fn v(state: ScanState, until: Option<i64>) -> Option<Verdict> {
        Some(Verdict { state, summary: Some(state.as_str().into()), release_until: until })
    }

    #[test]
    fn the_worst_verdict_decides_and_nothing_is_open_by_default() {
        assert_eq!(worst(&[(d("a"), v(ScanState::Passed, None))], 10), None);
        let (state, _, who) = worst(&[(d("a"), None)], 10).unwrap();
        assert_eq!((state, who), (ScanState::Error, vec![d("a")]), "no record is blocked");
        let mixed = [
            (d("a"), v(ScanState::Passed, None)),
            (d("b"), v(ScanState::Pending, None)),
            (d("c"), v(ScanState::Quarantined, None)),
            (d("r"), v(ScanState::Released, Some(5))),
        ];
        let (state, _, who) = worst(&mixed, 10).unwrap();
        assert_eq!(state, ScanState::Quarantined);
        assert_eq!(who[0], d("c"), "the worst comes first");
        assert!(who.contains(&d("r")), "an expired release blocks again");
        assert_eq!(worst(&[(d("r"), v(ScanState::Released, Some(50)))], 10), None);
    }
}
