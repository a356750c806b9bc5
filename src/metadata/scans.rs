//! Scan state per (repository, manifest digest): the jobs, their leases and the verdicts.

use async_trait::async_trait;

use crate::model::{Digest, RepoName, Result};

pub use crate::model::{ScanRecord, ScanState, Verdict};

/// How a failed attempt ends once it is not retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The content could not be read (or the sandbox kept dying on it): `error`, whatever the
    /// verdict was, except an admin's release.
    Fail,
    /// Something around the scan failed (storage, database): a first scan ends in `error`, a
    /// rescan keeps the verdict it had.
    KeepVerdict,
}

/// What a finished scan records.
#[derive(Debug, Clone, Copy)]
pub struct NewVerdict<'a> {
    pub state: ScanState,
    /// The findings, JSON.
    pub findings: &'a str,
    pub summary: &'a str,
    /// An image's packages and distribution (JSON), what a rescan matches again.
    pub inventory: Option<&'a str>,
    /// The version of the vulnerability data the findings were matched against.
    pub matched_version: i64,
}

/// A claimed job.
#[derive(Debug, Clone)]
pub struct ScanJob {
    pub repo: RepoName,
    pub digest: Digest,
    pub attempts: u32,
}

#[async_trait]
pub trait ScanStore: Send + Sync {
    /// The scan record of a manifest.
    async fn scan(&self, repo: &RepoName, digest: &Digest) -> Result<Option<ScanRecord>>;
    /// Claims a job (pending and due, a lapsed lease, or a requested rescan) with a lease until
    /// `lease_until`, taking namespaces in turn (the one served longest ago first) and, within one,
    /// the oldest job. Every claim counts an attempt; a job already claimed `max_attempts` times
    /// is not claimed again but ends in `error`, so a job that kills its worker cannot loop.
    async fn claim_scan(&self, now: i64, lease_until: i64, max_attempts: u32) -> Result<Option<ScanJob>>;
    /// Records what a manifest is (for manifests stored before kinds were); an image's blobs
    /// become image content in the repository.
    async fn record_kind(&self, repo: &RepoName, digest: &Digest, kind: super::ManifestKind) -> Result<()>;
    /// Records a verdict; a released image stays released unless the new verdict passes. An
    /// image's `inventory` (packages and distribution, JSON) is kept for rescans, with the
    /// vulnerability data `version` its findings were matched against. A passing verdict matched
    /// against older data than the quarantine it would replace (a rescan's, which landed while
    /// this scan ran) is not recorded: the job is queued again and `false` returned.
    async fn finish_scan(&self, job: &ScanJob, verdict: &NewVerdict<'_>, now: i64) -> Result<bool>;
    /// A failed attempt: retried at `retry_at`, or given up as `give_up` says.
    async fn fail_scan(
        &self,
        job: &ScanJob,
        retry_at: Option<i64>,
        give_up: GiveUp,
        summary: &str,
        now: i64,
    ) -> Result<()>;
    /// Releases a blocked image, optionally until a time. False if there is no scan record.
    async fn release_scan(
        &self,
        repo: &RepoName,
        digest: &Digest,
        by: &str,
        reason: &str,
        until: Option<i64>,
        now: i64,
    ) -> Result<bool>;
    /// Asks for a new verdict; the current one keeps serving until it lands.
    async fn request_rescan(&self, repo: &RepoName, digest: &Digest, now: i64) -> Result<bool>;
    /// How many images are in each scan state (states with none are left out).
    async fn count_scans(&self) -> Result<Vec<(ScanState, u64)>>;
    /// Scans in a state (all when `None`), most recent first.
    async fn list_scans(&self, state: Option<ScanState>, limit: u32) -> Result<Vec<ScanRecord>>;
    /// Every manifest `digest` reaches in `repo` (itself, and through indexes their manifests, at
    /// any depth), with its verdict; at most `limit` of them.
    async fn manifest_closure(
        &self,
        repo: &RepoName,
        digest: &Digest,
        limit: u32,
    ) -> Result<Vec<(Digest, Option<Verdict>)>>;
    /// The manifests of `repo` that reference the blob, with their verdicts; at most `limit`.
    async fn blob_referrers(
        &self,
        repo: &RepoName,
        blob: &Digest,
        limit: u32,
    ) -> Result<Vec<(Digest, Option<Verdict>)>>;
    /// A namespace's rule overrides (JSON object of rule → action), if it has any.
    async fn namespace_scan_rules(&self, namespace: &str) -> Result<Option<String>>;
    /// Sets a namespace's rule overrides and synchronous-scan limit. False if the namespace does not exist.
    async fn set_namespace_scan_rules(
        &self,
        namespace: &str,
        rules: &str,
        sync_timeout_ms: Option<u64>,
        now: i64,
    ) -> Result<bool>;
    /// How long a manifest PUT in the namespace waits for its verdict (synchronous mode), if at all.
    async fn namespace_scan_sync(&self, namespace: &str) -> Result<Option<u64>>;
    /// A tag that points at the manifest (the first in lexical order), for the scan hook.
    async fn scan_tag(&self, repo: &RepoName, digest: &Digest) -> Result<Option<String>>;
}
