//! `/api/v1/gc` and `/api/v1/fsck` (administrators): garbage collection on demand and the
//! consistency check, both answering with their report (`domain::gc`).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::{audit, json, require_admin, ApiError, ApiResult, Caller, Query};
use crate::http::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcQuery {
    dry_run: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsckQuery {
    verify: Option<String>,
}

/// `true`/`false` (or `1`/`0`); absent is false.
fn flag(value: Option<&str>, name: &str) -> Result<bool, ApiError> {
    match value {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(_) => Err(ApiError::invalid(format!("{name} must be true or false"))),
    }
}

/// `POST /api/v1/gc[?dry_run=true]`: runs one collection (503 with Retry-After while another
/// replica's runs) and answers with what it removed, or would remove.
#[utoipa::path(
    post,
    path = "/gc",
    tag = "operations",
    params(("dry_run" = Option<bool>, Query, description = "report without deleting")),
    responses((status = 200, description = "the report", body = Object))
)]
pub async fn collect(State(state): State<AppState>, Caller(who): Caller, Query(q): Query<GcQuery>) -> ApiResult {
    require_admin(&who)?;
    let dry_run = flag(q.dry_run.as_deref(), "dry_run")?;
    let holder = format!("api-{}", uuid::Uuid::new_v4().simple());
    let report = state.registry.collect_garbage(&holder, dry_run).await?;
    if !dry_run {
        audit(&state, &who, "gc.run", &format!("{} blobs, {} bytes", report.blobs_deleted, report.bytes_freed), None)
            .await;
    }
    json(StatusCode::OK, report)
}

/// `GET /api/v1/fsck[?verify=true]`: the database against the blob store; `verify` re-hashes
/// every stored blob.
#[utoipa::path(
    get,
    path = "/fsck",
    tag = "operations",
    params(("verify" = Option<bool>, Query, description = "re-hash every blob")),
    responses((status = 200, description = "the report", body = Object))
)]
pub async fn fsck(State(state): State<AppState>, Caller(who): Caller, Query(q): Query<FsckQuery>) -> ApiResult {
    require_admin(&who)?;
    let verify = flag(q.verify.as_deref(), "verify")?;
    json(StatusCode::OK, state.registry.fsck(verify).await?)
}
