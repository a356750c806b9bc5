//! Webhooks and their deliveries (the rules are in `model::webhook`).

use std::sync::Arc;

use async_trait::async_trait;

use crate::model::audit::AuditRecord;
use crate::model::webhook::{Attempt, Delivery, Webhook};
use crate::model::Result;

/// Turns one audit record into deliveries: `(webhook id, event, payload)` for each webhook that
/// wants it.
pub type Plan = Arc<dyn Fn(&AuditRecord, &[Webhook]) -> Vec<(String, String, String)> + Send + Sync>;

#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn create_webhook(&self, hook: &Webhook) -> Result<()>;
    /// Webhooks of `namespace` (`Some`), or every webhook (`None`).
    async fn list_webhooks(&self, namespace: Option<&str>) -> Result<Vec<Webhook>>;
    async fn webhook(&self, id: &str) -> Result<Option<Webhook>>;
    /// Deletes the webhook and its deliveries; false if there was none.
    async fn delete_webhook(&self, id: &str) -> Result<bool>;
    /// Plans deliveries for up to `limit` chained audit records after the cursor and moves the
    /// cursor past them, in one transaction that holds the cursor; how many records it read.
    async fn dispatch_audit(&self, limit: u32, now_ms: i64, plan: Plan) -> Result<u64>;
    /// Queues one delivery of `event` with `payload` for `webhook_id`.
    async fn enqueue_delivery(&self, webhook_id: &str, event: &str, payload: &str, now_ms: i64) -> Result<i64>;
    /// Claims the next due delivery until `lease_until_ms` (counting the attempt).
    async fn claim_delivery(&self, now_ms: i64, lease_until_ms: i64) -> Result<Option<Delivery>>;
    /// Records how an attempt at delivery `id` went (and frees its lease).
    async fn finish_delivery(&self, id: i64, attempt: &Attempt) -> Result<()>;
    /// The newest deliveries of a webhook.
    async fn deliveries(&self, webhook_id: &str, limit: u32) -> Result<Vec<Delivery>>;
}
