//! Scan records and jobs: queueing, claiming, verdicts, releases, and waiting for a verdict.
//! (The gate that acts on the verdicts is [`super::gate`].)
//!
//! Rules: state is per (repository, manifest digest), never per tag; every manifest has one.
//!
//! Waiting: a push wakes this process's scan worker and a recorded verdict wakes whoever waits for
//! one ([`ScanSignals`]), so neither a synchronous push nor a long-poll sleeps through a verdict.
//! The signals are hints only: the database stays the truth, and every waiter still looks at it
//! every `poll`, because on a shared database another replica may queue the job or record the verdict.

use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::{Digest, RepoName, Result, DEFAULT_SCAN_POLL};
use crate::metadata::scans::{GiveUp, ScanJob, ScanRecord, ScanState};

/// This process's wake-ups between pushes, its scan worker and the requests waiting for verdicts.
pub(crate) struct ScanSignals {
    /// A job was queued (notify_one: the worker finds a stored permit if it was busy).
    queued: Notify,
    /// A verdict was recorded (notify_waiters: every waiter looks at its own record again).
    pub(super) verdict: Notify,
    /// Vulnerability data was imported here (notify_one: the rescanner reloads at once).
    pub(super) vulndb: Notify,
    /// How often a waiter looks at the database without having been woken.
    poll: Duration,
}

impl Default for ScanSignals {
    fn default() -> Self {
        ScanSignals { queued: Notify::new(), verdict: Notify::new(), vulndb: Notify::new(), poll: DEFAULT_SCAN_POLL }
    }
}

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

    pub async fn scan_record(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ScanRecord>> {
        self.meta.scan(repo, digest).await
    }

    pub async fn scan_tag(&self, repo: &RepoName, digest: &Digest) -> Result<Option<String>> {
        self.meta.scan_tag(repo, digest).await
    }

    /// How many images are in each scan state (for the metrics' gauges).
    pub async fn count_scans(&self) -> Result<Vec<(ScanState, u64)>> {
        self.meta.count_scans().await
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
        self.meta.release_scan(repo, digest, by, reason, until, self.clock.now()).await
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
        self.meta.set_namespace_scan_rules(namespace, rules, sync.map(|d| d.as_millis() as u64), self.clock.now()).await
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
        let open = |r: &ScanRecord| r.effective_state(self.clock.now());
        let record =
            self.wait_for_scan(repo, digest, limit, |r| !matches!(open(r), ScanState::Pending | ScanState::Scanning));
        Ok(record.await?.map(|r| open(&r)))
    }

    pub async fn request_rescan(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let requested = self.meta.request_rescan(repo, digest, self.clock.now()).await?;
        if requested {
            self.scan_queued();
        }
        Ok(requested)
    }

    /// Claims a job for `lease`; a job claimed `max_attempts` times already ends in `error` instead.
    pub async fn claim_scan(&self, lease: std::time::Duration, max_attempts: u32) -> Result<Option<ScanJob>> {
        let now = self.clock.now();
        self.meta.claim_scan(now, now + lease.as_secs() as i64, max_attempts).await
    }

    /// Records what a manifest is (for manifests stored before kinds were recorded).
    pub async fn record_kind(
        &self,
        repo: &RepoName,
        digest: &Digest,
        kind: crate::metadata::ManifestKind,
    ) -> Result<()> {
        self.meta.record_kind(repo, digest, kind).await
    }

    /// Records a verdict; `false` when it was not (see `ScanStore::finish_scan`) and the job is queued again.
    pub async fn finish_scan(&self, job: &ScanJob, verdict: &crate::metadata::scans::NewVerdict<'_>) -> Result<bool> {
        let recorded = self.meta.finish_scan(job, verdict, self.clock.now()).await?;
        if recorded {
            self.scan_signals.verdict.notify_waiters();
        } else {
            self.scan_queued();
        }
        Ok(recorded)
    }

    pub async fn fail_scan(&self, job: &ScanJob, retry_at: Option<i64>, give_up: GiveUp, summary: &str) -> Result<()> {
        self.meta.fail_scan(job, retry_at, give_up, summary, self.clock.now()).await?;
        self.scan_signals.verdict.notify_waiters();
        Ok(())
    }
}
