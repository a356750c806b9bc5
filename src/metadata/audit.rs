//! The audit log's rows (the chain's rules are in `model::audit`).

use async_trait::async_trait;

use crate::model::audit::{AuditFilter, AuditHead, AuditRecord, NewAudit};
use crate::model::Result;

#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Writes a record, not yet chained (insert-only: no lock, no wait for other writers).
    async fn append_audit(&self, record: &NewAudit) -> Result<()>;
    /// Chains up to `limit` unchained records in the order they were inserted, holding the head
    /// for the whole transaction, and seals the new head with `key` if the old seal was good
    /// (a new log's head is sealed even with nothing to chain); how many it chained.
    async fn chain_audit(&self, limit: u32, key: Vec<u8>) -> Result<u64>;
    async fn audit_head(&self) -> Result<AuditHead>;
    /// Chained records from place `from` to `until`, in chain order (verification and export).
    async fn audit_range(&self, from: i64, until: i64, limit: u32) -> Result<Vec<AuditRecord>>;
    /// Chained records that match `filter`, newest first.
    async fn list_audit(&self, filter: &AuditFilter, limit: u32) -> Result<Vec<AuditRecord>>;
    /// Drops the chained records older than `before_ms` that come first in the chain (at most
    /// `limit`), and moves the chain's start past them: what remains still verifies. How many.
    async fn drop_audit_before(&self, before_ms: i64, limit: u32, key: Vec<u8>) -> Result<u64>;
}
