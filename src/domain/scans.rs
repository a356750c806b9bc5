//! The quarantine gate and the scan records behind it.
//!
//! Rules: state is per (repository, manifest digest), never per tag. An image may be pulled by
//! ordinary principals only once it passed or was released; an index takes the worst state of its
//! children; artifacts (with a `subject`, or a non-image config) are not scanned and not gated. A
//! blob is gated when every manifest of the repository that references it is blocked.
//!
//! Waiting: a push wakes this process's scan worker and a recorded verdict wakes whoever waits for
//! one ([`ScanSignals`]), so neither a synchronous push nor a long-poll sleeps through a verdict.
//! The signals are hints only: the database stays the truth, and every waiter still looks at it
//! every `poll`, because on a shared database another replica may queue the job or record the verdict.

use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{now, Digest, RepoName, Result};
use crate::metadata::scans::{ScanJob, ScanRecord, ScanState};
use crate::metadata::StoredManifest;

/// Whether a pull may proceed.
#[derive(Debug, Clone, PartialEq)]
pub enum Gate {
    Open,
    Blocked { state: ScanState, summary: Option<String> },
}

/// This process's wake-ups between pushes, its scan worker and the requests waiting for verdicts.
pub(crate) struct ScanSignals {
    /// A job was queued (notify_one: the worker finds a stored permit if it was busy).
    queued: Notify,
    /// A verdict was recorded (notify_waiters: every waiter looks at its own record again).
    verdict: Notify,
    /// How often a waiter looks at the database without having been woken.
    poll: Duration,
}

impl Default for ScanSignals {
    fn default() -> Self {
        ScanSignals { queued: Notify::new(), verdict: Notify::new(), poll: DEFAULT_SCAN_POLL }
    }
}

/// The default of `scan.poll`.
pub const DEFAULT_SCAN_POLL: Duration = Duration::from_secs(1);

impl super::Registry {
    /// Sets how often an idle scan worker and a waiting request look at the database unwoken.
    pub fn with_scan_poll(mut self, poll: Duration) -> Self {
        let signals = ScanSignals { poll: poll.max(Duration::from_millis(10)), ..Default::default() };
        self.scan_signals = std::sync::Arc::new(signals);
        self
    }

    /// Tells this process's scan worker that a job may be waiting.
    pub(super) fn scan_queued(&self) {
        self.scan_signals.queued.notify_one();
    }

    /// For the scan worker with nothing to do: returns when a job was queued here, or after `poll`.
    pub async fn wait_for_scan_work(&self) {
        let _ = tokio::time::timeout(self.scan_signals.poll, self.scan_signals.queued.notified()).await;
    }

    /// Reads the scan record of `repo@digest` until `settled` holds for it or `limit` has passed;
    /// returns the last record read (`None`: there is none).
    pub async fn wait_for_scan(
        &self,
        repo: &RepoName,
        digest: &Digest,
        limit: Duration,
        settled: impl Fn(&ScanRecord) -> bool,
    ) -> Result<Option<ScanRecord>> {
        let deadline = Instant::now() + limit;
        loop {
            // Registered before the read, so a verdict recorded in between still wakes us.
            let verdict = self.scan_signals.verdict.notified();
            tokio::pin!(verdict);
            verdict.as_mut().enable();
            let record = self.meta.scan(repo, digest).await?;
            let left = deadline.saturating_duration_since(Instant::now());
            match record {
                Some(r) if !settled(&r) && !left.is_zero() => {
                    let _ = tokio::time::timeout(left.min(self.scan_signals.poll), verdict).await;
                }
                other => return Ok(other),
            }
        }
    }

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
        limit: Duration,
    ) -> Result<Option<ScanState>> {
        let open = |r: &ScanRecord| r.effective_state(now());
        let record =
            self.wait_for_scan(repo, digest, limit, |r| !matches!(open(r), ScanState::Pending | ScanState::Scanning));
        Ok(record.await?.map(|r| open(&r)))
    }

    pub async fn request_rescan(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let requested = self.meta.request_rescan(repo, digest, now()).await?;
        if requested {
            self.scan_queued();
        }
        Ok(requested)
    }

    pub async fn claim_scan(&self, lease: std::time::Duration) -> Result<Option<ScanJob>> {
        let now = now();
        self.meta.claim_scan(now, now + lease.as_secs() as i64).await
    }

    pub async fn finish_scan(&self, job: &ScanJob, state: ScanState, findings: &str, summary: &str) -> Result<()> {
        self.meta.finish_scan(job, state, findings, summary, now()).await?;
        self.scan_signals.verdict.notify_waiters();
        Ok(())
    }

    pub async fn fail_scan(&self, job: &ScanJob, retry_at: Option<i64>, summary: &str) -> Result<()> {
        self.meta.fail_scan(job, retry_at, summary, now()).await?;
        self.scan_signals.verdict.notify_waiters();
        Ok(())
    }
}
