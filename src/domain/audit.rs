//! The audit log: security events stored in the database, chained so that tampering shows.
//!
//! Rules (the chain itself is defined in `model::audit`):
//! - What is audited: logins (ok, failed, throttled), registry tokens issued to robots, every
//!   change through the admin API, pushes (in the push's own transaction), deletes, scan
//!   verdicts, pulls refused by the quarantine gate and administrators' reads past it, releases
//!   and rejections, and access denials. Allowed pulls are not audited one by one (they are
//!   counted in the metrics and in the access log).
//! - A record is written at once and chained by a background pass shortly after (every replica
//!   runs one; they take turns on the head's row). Listing and verifying chain what is pending
//!   first, so they see every record written before they were asked.
//! - [`Registry::verify_audit`] recomputes the chain from its start and names the first record
//!   where it breaks: a changed field, a record deleted or moved, an end that is not the head, or
//!   a head whose seal does not hold (moved without the registry's key).
//! - Writing a record never fails the request that caused it: a database error is logged and
//!   counted, and the request's answer stands (it has already happened).

use std::time::Duration;

use serde::Serialize;

use super::{Registry, Result};
use crate::model::audit::{chain_hash, AuditFilter, AuditRecord, NewAudit};

/// Records chained per transaction.
const CHAIN_BATCH: u32 = 500;
/// Records read per page while verifying or exporting.
const PAGE: u32 = 1000;

/// The outcome of [`Registry::verify_audit`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuditVerification {
    pub ok: bool,
    /// Records checked.
    pub records: u64,
    /// The place of the first record where the chain breaks (for a missing end: the head's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_broken: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The place and hash of the last record (the chain's head).
    pub head: i64,
    pub head_hash: String,
}

impl Registry {
    /// Writes `record` (unchained; the chaining pass takes it within a second).
    pub async fn audit(&self, record: NewAudit) {
        if let Err(e) = self.meta.append_audit(&record).await {
            tracing::error!(error = %e, action = ?record.action, "could not write an audit record");
        }
    }

    /// Passes `result` through, recording a quota refusal of a change to `repo` on the way.
    pub(super) async fn quota_checked<T>(&self, repo: &super::RepoName, result: Result<T>) -> Result<T> {
        if let Err(crate::model::Error::OverQuota { namespace, message }) = &result {
            let record = NewAudit::new("quota.exceeded", repo.as_str())
                .namespace(namespace)
                .outcome(crate::model::audit::DENIED)
                .detail("message", message.as_str());
            self.audit(record).await;
        }
        result
    }

    /// Chains every record written so far; how many it chained.
    pub async fn chain_audit(&self) -> Result<u64> {
        let mut total = 0;
        loop {
            let n = self.meta.chain_audit(CHAIN_BATCH, self.registry_key.to_vec()).await?;
            total += n;
            if n < CHAIN_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// Chained records matching `filter`, newest first (pending records are chained first).
    pub async fn list_audit(&self, filter: &AuditFilter, limit: u32) -> Result<Vec<AuditRecord>> {
        self.chain_audit().await?;
        self.meta.list_audit(filter, limit).await
    }

    /// Every chained record from place `from` on, in chain order, a page at a time.
    pub async fn audit_page(&self, from: i64) -> Result<Vec<AuditRecord>> {
        self.meta.audit_range(from, i64::MAX, PAGE).await
    }

    /// Where the chain starts now (records before were dropped by retention).
    pub async fn audit_start(&self) -> Result<i64> {
        Ok(self.meta.audit_head().await?.first_seq)
    }

    /// Recomputes the whole chain and compares it with what is stored.
    pub async fn verify_audit(&self) -> Result<AuditVerification> {
        self.chain_audit().await?;
        let head = self.meta.audit_head().await?;
        let mut prev = head.first_prev.clone();
        let mut expected = head.first_seq;
        let mut checked = 0u64;
        let broken = |at: i64, reason: String, checked: u64| AuditVerification {
            ok: false,
            records: checked,
            first_broken: Some(at),
            reason: Some(reason),
            head: head.seq,
            head_hash: head.hash.clone(),
        };
        loop {
            // Up to the head read above: records chained meanwhile are the next check's.
            let page = self.meta.audit_range(expected, head.seq, PAGE).await?;
            let full = page.len() as u32 == PAGE;
            for r in &page {
                if r.id != expected {
                    let reason = format!("records {expected} to {} are missing", r.id - 1);
                    return Ok(broken(r.id, reason, checked));
                }
                if chain_hash(&prev, r.id, &r.content) != r.hash {
                    let reason = "the record's content or place does not match its hash".to_owned();
                    return Ok(broken(r.id, reason, checked));
                }
                prev = r.hash.clone();
                expected += 1;
                checked += 1;
            }
            if !full {
                break;
            }
        }
        if expected - 1 != head.seq || prev != head.hash {
            let reason = if expected - 1 < head.seq {
                format!("records {expected} to {} are missing", head.seq)
            } else {
                "the chain's last record is not the head".to_owned()
            };
            return Ok(broken(expected.min(head.seq.max(1)), reason, checked));
        }
        if !head.sealed_by(&self.registry_key) {
            let reason = "the head (the chain's last record or its start) was changed without the registry's key";
            return Ok(broken(head.seq, reason.to_owned(), checked));
        }
        Ok(AuditVerification {
            ok: true,
            records: checked,
            first_broken: None,
            reason: None,
            head: head.seq,
            head_hash: head.hash,
        })
    }

    /// [`Registry::expire_audit`] if this replica (`holder`) takes the `audit-retention` lease.
    pub async fn expire_audit_leased(&self, holder: &str, keep: Duration) -> Result<u64> {
        let now = self.clock.now();
        if !self.meta.take_lease("audit-retention", holder, now, now + 3600).await? {
            return Ok(0);
        }
        self.expire_audit(keep).await
    }

    /// Drops records older than `keep` from the start of the chain; what remains verifies from
    /// the new start. How many were dropped.
    pub async fn expire_audit(&self, keep: Duration) -> Result<u64> {
        let cutoff = crate::model::now_ms() - keep.as_millis() as i64;
        let mut total = 0;
        loop {
            let n = self.meta.drop_audit_before(cutoff, PAGE, self.registry_key.to_vec()).await?;
            total += n;
            if n < PAGE as u64 {
                return Ok(total);
            }
        }
    }
}
