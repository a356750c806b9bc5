//! Imported vulnerability data and the rescans it causes.
//!
//! Rules: an import is one transaction that adds or replaces records by id and raises the data's
//! version when anything changed, so every replica sees the old data or the new, never half of
//! each. A rescan's verdict is written only onto the row it read (same state, same `updated_at`):
//! a verdict, release or rescan that landed meanwhile wins, and the image is matched again later.

use async_trait::async_trait;

use crate::model::{Digest, RepoName, Result, ScanState};

/// The version of the imported data (0 and no time before the first import).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VulnDbState {
    pub version: i64,
    pub imported_at: Option<i64>,
    pub records: u64,
}

/// A record to import: its id, compact JSON body and the body's digest.
#[derive(Debug, Clone)]
pub struct ImportedRecord {
    pub id: String,
    pub body: String,
    pub fingerprint: String,
}

/// What an import changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportCount {
    pub added: u64,
    pub changed: u64,
    pub unchanged: u64,
    /// Stored records removed (they arrived withdrawn).
    pub removed: u64,
    pub state: VulnDbState,
}

/// A passed image due for matching again: what was read, to write the result onto the same row.
#[derive(Debug, Clone)]
pub struct Rematch {
    pub repository_id: i64,
    pub repo: RepoName,
    pub digest: Digest,
    pub findings: Option<String>,
    pub summary: Option<String>,
    pub inventory: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Where a sweep through the due images stands: (created_at, repository id, digest) of the last.
pub type RematchCursor = (i64, i64, String);

#[async_trait]
pub trait VulnStore: Send + Sync {
    /// The version of the imported data.
    async fn vulndb_state(&self) -> Result<VulnDbState>;
    /// Adds or replaces `records` by id and removes the `removed` ids, in one transaction; the
    /// version goes up by one if anything changed.
    async fn import_vulnerabilities(
        &self,
        records: Vec<ImportedRecord>,
        removed: Vec<String>,
        now: i64,
    ) -> Result<ImportCount>;
    /// Every record body, with the version they are (read in one snapshot).
    async fn vulnerability_records(&self) -> Result<(VulnDbState, Vec<String>)>;
    /// Passed images with an inventory whose findings were matched against a version before
    /// `version` or before `stale_before`; oldest push first, after `after`; at most `limit`.
    async fn rematch_due(
        &self,
        version: i64,
        stale_before: i64,
        after: Option<&RematchCursor>,
        limit: u32,
    ) -> Result<Vec<Rematch>>;
    /// How many images [`rematch_due`](Self::rematch_due) would return without a limit.
    async fn count_rematch_due(&self, version: i64, stale_before: i64) -> Result<u64>;
    /// Whether any passed image was matched against a version before `version`, or before
    /// `stale_before` (two index lookups).
    async fn rematch_pending(&self, version: i64, stale_before: i64) -> Result<bool>;
    /// Writes a rematch's verdict if the row is still the one read (passed, same `updated_at` and findings);
    /// false if something else changed it first.
    #[allow(clippy::too_many_arguments)]
    async fn record_rematch(
        &self,
        read: &Rematch,
        state: ScanState,
        findings: &str,
        summary: &str,
        version: i64,
        now: i64,
    ) -> Result<bool>;
    /// Asks for a full rescan (the layers read again) of every passed image scanned before
    /// inventories were kept; returns how many.
    async fn queue_uninventoried(&self, now: i64) -> Result<u64>;
}
