//! The quarantine gate and the scan records behind it.
//!
//! Rules: state is per (repository, manifest digest), never per tag. An image may be pulled by
//! ordinary principals only once it passed or was released; an index takes the worst state of its
//! children; artifacts (with a `subject`, or a non-image config) are not scanned and not gated. A
//! blob is gated when every manifest of the repository that references it is blocked.

use super::{now, Digest, RepoName, Result};
use crate::metadata::scans::{ScanJob, ScanRecord, ScanState};
use crate::metadata::StoredManifest;

/// Whether a pull may proceed.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    Open,
    Blocked { state: ScanState, summary: Option<String> },
}

impl super::Registry {
    /// The gate for a manifest about to be served.
    pub async fn manifest_gate(&self, repo: &RepoName, manifest: &StoredManifest) -> Result<Gate> {
        let mut worst: Option<(ScanState, Option<String>)> = None;
        let mut consider = |state: ScanState, summary: Option<String>| {
            if !state.allows_pull() && worst.as_ref().is_none_or(|(w, _)| state.badness() > w.badness()) {
                worst = Some((state, summary));
            }
        };
        let now = now();
        let lapsed = |r: &ScanRecord| {
            if r.effective_state(now) != r.state {
                Some("its release expired".to_owned())
            } else {
                r.summary.clone()
            }
        };
        if let Some(record) = self.meta.scan(repo, &manifest.digest).await? {
            consider(record.effective_state(now), lapsed(&record));
        }
        if manifest.media_type == super::manifest::OCI_INDEX || manifest.media_type == super::manifest::DOCKER_LIST {
            for child in self.meta.child_scans(repo, &manifest.digest).await? {
                let summary =
                    lapsed(&child).map(|s| format!("an image in this index ({}) is blocked: {s}", child.digest));
                consider(child.effective_state(now), summary);
            }
        }
        Ok(match worst {
            Some((state, summary)) => Gate::Blocked { state, summary },
            None => Gate::Open,
        })
    }

    /// Whether a blob may be fetched by ordinary principals.
    pub async fn blob_gate(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        self.meta.blob_pull_allowed(repo, digest, now()).await
    }

    pub async fn scan_record(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ScanRecord>> {
        self.meta.scan(repo, digest).await
    }

    pub async fn scan_tag(&self, repo: &RepoName, digest: &Digest) -> Result<Option<String>> {
        self.meta.scan_tag(repo, digest).await
    }

    pub async fn list_scans(&self, state: Option<ScanState>, limit: u32) -> Result<Vec<ScanRecord>> {
        self.meta.list_scans(state, limit).await
    }

    /// An admin's release of a blocked image, recorded with who, why and until when.
    pub async fn release_scan(
        &self,
        repo: &RepoName,
        digest: &Digest,
        by: &str,
        reason: &str,
        until: Option<i64>,
    ) -> Result<bool> {
        self.meta.release_scan(repo, digest, by, reason, until, now()).await
    }

    /// A namespace's scan rule overrides as JSON (`{"root_user": "warn", ...}`).
    pub async fn namespace_scan_rules(&self, namespace: &str) -> Result<Option<String>> {
        self.meta.namespace_scan_rules(namespace).await
    }

    pub async fn set_namespace_scan_rules(
        &self,
        namespace: &str,
        rules: &str,
        sync: Option<std::time::Duration>,
    ) -> Result<bool> {
        self.meta.set_namespace_scan_rules(namespace, rules, sync.map(|d| d.as_millis() as u64), now()).await
    }

    /// Synchronous mode: how long a push into `namespace` waits for its verdict.
    pub async fn namespace_scan_sync(&self, namespace: &str) -> Result<Option<std::time::Duration>> {
        Ok(self.meta.namespace_scan_sync(namespace).await?.map(std::time::Duration::from_millis))
    }

    /// Waits up to `limit` for a verdict; returns the state at the end.
    pub async fn wait_for_verdict(
        &self,
        repo: &RepoName,
        digest: &Digest,
        limit: std::time::Duration,
    ) -> Result<Option<ScanState>> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let state = self.meta.scan(repo, digest).await?.map(|r| r.effective_state(now()));
            match state {
                Some(ScanState::Pending | ScanState::Scanning) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await
                }
                other => return Ok(other),
            }
        }
    }

    pub async fn request_rescan(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        self.meta.request_rescan(repo, digest, now()).await
    }

    pub async fn claim_scan(&self, lease: std::time::Duration) -> Result<Option<ScanJob>> {
        let now = now();
        self.meta.claim_scan(now, now + lease.as_secs() as i64).await
    }

    pub async fn finish_scan(&self, job: &ScanJob, state: ScanState, findings: &str, summary: &str) -> Result<()> {
        self.meta.finish_scan(job, state, findings, summary, now()).await
    }

    pub async fn fail_scan(&self, job: &ScanJob, retry_at: Option<i64>, summary: &str) -> Result<()> {
        self.meta.fail_scan(job, retry_at, summary, now()).await
    }
}
