//! `/api/v1/audit` (administrators, and owners for their namespace's records) and
//! `/api/v1/audit/verify` (administrators): the stored audit log (`domain::audit`).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::{json, require_admin, require_owner, ApiError, ApiResult, Caller, Query};
use crate::auth::service::Authenticated;
use crate::http::AppState;
use crate::model::audit::{AuditFilter, AuditRecord};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    /// A prefix: `team/app` finds `team/app@sha256:...` and `team/app:v1`.
    pub object: Option<String>,
    pub namespace: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<u32>,
    /// The `next` of the page before: records older than it.
    pub after: Option<i64>,
}

/// Unix milliseconds from an RFC 3339 time or Unix seconds.
fn time_ms(value: Option<&str>, field: &str) -> Result<Option<i64>, ApiError> {
    let Some(v) = value else { return Ok(None) };
    if let Ok(secs) = v.parse::<i64>() {
        return Ok(Some(secs.saturating_mul(1000)));
    }
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map(|t| Some((t.unix_timestamp_nanos() / 1_000_000) as i64))
        .map_err(|_| ApiError::invalid(format!("{field} must be an RFC 3339 time or Unix seconds")))
}

fn item(r: AuditRecord) -> serde_json::Value {
    let c = r.content;
    let time = crate::model::rfc3339_ms(c.time_ms);
    let details: serde_json::Value = serde_json::from_str(&c.details).unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "id": r.id, "time": time, "time_ms": c.time_ms, "actor": c.actor, "client": c.client,
        "action": c.action, "object": c.object, "namespace": c.namespace, "outcome": c.outcome,
        "request_id": c.request_id, "details": details, "hash": r.hash,
    })
}

/// `GET /api/v1/audit?actor=&action=&object=&namespace=&since=&until=&limit=&after=`: newest
/// first, `{"items": [...], "next": <id>}`. Administrators read every record; anyone else must
/// name a namespace they own and reads that namespace's records.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    params(("actor" = Option<String>, Query), ("action" = Option<String>, Query), ("object" = Option<String>, Query, description = "a prefix"), ("namespace" = Option<String>, Query, description = "owners must give their namespace"), ("since" = Option<String>, Query, description = "RFC 3339 or Unix seconds"), ("until" = Option<String>, Query), ("limit" = Option<u32>, Query), ("after" = Option<i64>, Query, description = "the `next` of the page before")),
    responses((status = 200, description = "ok", body = super::schema::AuditPage))
)]
pub async fn list(State(state): State<AppState>, Caller(who): Caller, Query(q): Query<AuditQuery>) -> ApiResult {
    let (records, next) = list_records(&state, &who, q).await?;
    let items: Vec<serde_json::Value> = records.into_iter().map(item).collect();
    json(StatusCode::OK, serde_json::json!({"items": items, "next": next}))
}

/// Audit records newest first, and the `after` of the next page: every record for admins, a
/// namespace's for its owners (who must name it). The API's and the console's one reading.
pub async fn list_records(
    state: &AppState,
    who: &Authenticated,
    q: AuditQuery,
) -> Result<(Vec<AuditRecord>, Option<i64>), ApiError> {
    match q.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(ns) => require_owner(state, who, ns).await?,
        None => require_admin(who)?,
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let some = |v: Option<String>| v.filter(|v| !v.is_empty());
    let filter = AuditFilter {
        actor: some(q.actor),
        action: some(q.action),
        object: some(q.object),
        namespace: some(q.namespace),
        since_ms: time_ms(q.since.as_deref(), "since")?,
        until_ms: time_ms(q.until.as_deref(), "until")?,
        before: q.after,
    };
    let records = state.registry.list_audit(&filter, limit).await?;
    let next = (records.len() as u32 == limit).then(|| records.last().map(|r| r.id)).flatten();
    Ok((records, next))
}

/// `GET /api/v1/audit/verify`: `{"ok": true, "records": N, ...}` or `{"ok": false,
/// "first_broken": <id>, "reason": "...", ...}`.
#[utoipa::path(
    get,
    path = "/audit/verify",
    tag = "audit",
    responses((status = 200, description = "the report", body = Object))
)]
pub async fn verify(State(state): State<AppState>, Caller(who): Caller) -> ApiResult {
    require_admin(&who)?;
    json(StatusCode::OK, state.registry.verify_audit().await?)
}
