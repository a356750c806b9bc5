//! `/api/v1/namespaces/{ns}/…`: a namespace's quota and usage, immutable tags and retention rules.
//!
//! Who may: the quota is set by admins (an owner could otherwise lift their own limit) and read by
//! members, as is the usage; immutable tags and retention rules are read and set by owners and
//! admins. The rules themselves are enforced by the domain and the metadata, never here.

use super::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{json as j, Value};

use super::{audit, json, parse, require_admin, require_owner, ApiError, ApiResult, Caller, Path};
use crate::auth::policy::Need;
use crate::http::AppState;
use crate::model::{human_bytes, Quota, Retention, TagPatterns};

async fn require_member(state: &AppState, who: &crate::auth::service::Authenticated, ns: &str) -> Result<(), ApiError> {
    state.auth.authorize(who, &[], Need::Member(ns)).await?.map_err(ApiError::forbidden)
}

fn quota_json(q: &Quota) -> Value {
    j!({"bytes": q.bytes, "repositories": q.repositories, "tags": q.tags})
}

/// `GET /api/v1/namespaces/{ns}/quota` (members).
#[utoipa::path(
    get,
    path = "/namespaces/{ns}/quota",
    tag = "lifecycle",
    params(("ns" = String, Path, description = "the namespace")),
    responses((status = 200, description = "ok", body = super::schema::QuotaAnswer))
)]
pub async fn get_quota(State(state): State<AppState>, Caller(who): Caller, Path(ns): Path<String>) -> ApiResult {
    require_member(&state, &who, &ns).await?;
    state.auth.namespace(&ns).await?;
    let rules = state.registry.namespace_rules(&ns).await?;
    json(StatusCode::OK, j!({"namespace": ns, "quota": quota_json(&rules.quota)}))
}

/// `PUT /api/v1/namespaces/{ns}/quota` with `{"bytes": N, "repositories": N, "tags": N}` (admins):
/// a field set to `null` removes that limit, an absent field keeps it.
#[utoipa::path(
    put,
    path = "/namespaces/{ns}/quota",
    tag = "lifecycle",
    params(("ns" = String, Path, description = "the namespace")),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, description = "ok", body = super::schema::QuotaAnswer))
)]
pub async fn set_quota(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(ns): Path<String>,
    Body(body): Body,
) -> ApiResult {
    require_admin(&who)?;
    let body: serde_json::Map<String, Value> = parse(&body)?;
    let mut quota = state.registry.namespace_rules(&ns).await?.quota;
    for (key, value) in body {
        let field = match key.as_str() {
            "bytes" => &mut quota.bytes,
            "repositories" => &mut quota.repositories,
            "tags" => &mut quota.tags,
            other => {
                return Err(ApiError::invalid(format!(
                    "unknown field {other:?}; a quota has bytes, repositories and tags"
                )))
            }
        };
        *field = match &value {
            Value::Null => None,
            v => Some(v.as_u64().filter(|n| i64::try_from(*n).is_ok()).ok_or_else(|| {
                ApiError::invalid(format!("{key} must be a whole number of at least 0, or null for no limit"))
            })?),
        };
    }
    if !state.registry.set_quota(&ns, quota).await? {
        return Err(ApiError::not_found("namespace"));
    }
    audit(&state, &who, "namespace.quota", &format!("{ns}: {}", quota_json(&quota)), Some(&ns)).await;
    json(StatusCode::OK, j!({"namespace": ns, "quota": quota_json(&quota)}))
}

/// `GET /api/v1/namespaces/{ns}/usage` (members): bytes and blobs (each blob once), repositories,
/// tags, manifests and quarantined images, with the quota.
#[utoipa::path(
    get,
    path = "/namespaces/{ns}/usage",
    tag = "lifecycle",
    params(("ns" = String, Path, description = "the namespace")),
    responses((status = 200, description = "the report", body = Object))
)]
pub async fn usage(State(state): State<AppState>, Caller(who): Caller, Path(ns): Path<String>) -> ApiResult {
    require_member(&state, &who, &ns).await?;
    state.auth.namespace(&ns).await?;
    let usage = state.registry.usage(&ns).await?;
    let quota = state.registry.namespace_rules(&ns).await?.quota;
    json(
        StatusCode::OK,
        j!({
            "namespace": ns,
            "bytes": usage.bytes,
            "blobs": usage.blobs,
            "repositories": usage.repositories,
            "tags": usage.tags,
            "manifests": usage.manifests,
            "quarantined": usage.quarantined,
            "human": human_bytes(usage.bytes),
            "quota": quota_json(&quota),
        }),
    )
}

/// `GET /api/v1/namespaces/{ns}/immutable-tags` (owners).
#[utoipa::path(
    get,
    path = "/namespaces/{ns}/immutable-tags",
    tag = "lifecycle",
    params(("ns" = String, Path, description = "the namespace")),
    responses((status = 200, description = "ok", body = super::schema::ImmutableTags))
)]
pub async fn get_immutable(State(state): State<AppState>, Caller(who): Caller, Path(ns): Path<String>) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    state.auth.namespace(&ns).await?;
    let rules = state.registry.namespace_rules(&ns).await?;
    json(StatusCode::OK, j!({"namespace": ns, "patterns": rules.immutable}))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Patterns {
    patterns: TagPatterns,
}

/// `PUT /api/v1/namespaces/{ns}/immutable-tags` with `{"patterns": ["v*", "release-*"]}` (owners):
/// `["*"]` makes every tag immutable, `[]` none.
#[utoipa::path(
    put,
    path = "/namespaces/{ns}/immutable-tags",
    tag = "lifecycle",
    params(("ns" = String, Path, description = "the namespace")),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, description = "ok", body = super::schema::ImmutableTags))
)]
pub async fn set_immutable(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(ns): Path<String>,
    Body(body): Body,
) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    let Patterns { patterns } = parse(&body)?;
    if !state.registry.set_immutable_tags(&ns, &patterns).await? {
        return Err(ApiError::not_found("namespace"));
    }
    audit(&state, &who, "namespace.immutable_tags", &format!("{ns}: {:?}", patterns.patterns()), Some(&ns)).await;
    json(StatusCode::OK, j!({"namespace": ns, "patterns": patterns}))
}

fn retention_body(body: &[u8]) -> Result<Retention, ApiError> {
    let rules: Retention = parse(body)?;
    rules.validate().map_err(ApiError::invalid)?;
    Ok(rules)
}

/// `GET /api/v1/namespaces/{ns}/retention` (owners): the rules, or `null`.
#[utoipa::path(
    get,
    path = "/namespaces/{ns}/retention",
    tag = "lifecycle",
    params(("ns" = String, Path, description = "the namespace")),
    responses((status = 200, description = "ok", body = super::schema::RetentionAnswer))
)]
pub async fn get_retention(State(state): State<AppState>, Caller(who): Caller, Path(ns): Path<String>) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    state.auth.namespace(&ns).await?;
    let rules = state.registry.namespace_rules(&ns).await?;
    json(StatusCode::OK, j!({"namespace": ns, "rules": rules.retention}))
}

/// `PUT /api/v1/namespaces/{ns}/retention` with the rules (owners). The collector applies them on
/// each run; `POST …/retention/dry-run` shows what they remove first.
#[utoipa::path(
    put,
    path = "/namespaces/{ns}/retention",
    tag = "lifecycle",
    params(("ns" = String, Path, description = "the namespace")),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, description = "ok", body = super::schema::RetentionAnswer))
)]
pub async fn set_retention(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(ns): Path<String>,
    Body(body): Body,
) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    let rules = retention_body(&body)?;
    if !state.registry.set_retention(&ns, Some(&rules)).await? {
        return Err(ApiError::not_found("namespace"));
    }
    audit(
        &state,
        &who,
        "namespace.retention",
        &format!("{ns}: {}", serde_json::to_string(&rules).unwrap_or_default()),
        Some(&ns),
    )
    .await;
    json(StatusCode::OK, j!({"namespace": ns, "rules": rules}))
}

/// `DELETE /api/v1/namespaces/{ns}/retention` (owners): 204; nothing is removed by rule any more.
#[utoipa::path(
    delete,
    path = "/namespaces/{ns}/retention",
    tag = "lifecycle",
    params(("ns" = String, Path, description = "the namespace")),
    responses((status = 204, description = "done"))
)]
pub async fn delete_retention(State(state): State<AppState>, Caller(who): Caller, Path(ns): Path<String>) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    if !state.registry.set_retention(&ns, None).await? {
        return Err(ApiError::not_found("namespace"));
    }
    audit(&state, &who, "namespace.retention", &format!("{ns}: removed"), Some(&ns)).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /api/v1/namespaces/{ns}/retention/dry-run` (owners), with rules to try or an empty body
/// (or `null`) for the stored ones: every tag and manifest they would remove, with the reason. Nothing changes.
#[utoipa::path(
    post,
    path = "/namespaces/{ns}/retention/dry-run",
    tag = "lifecycle",
    params(("ns" = String, Path, description = "the namespace")),
    responses((status = 200, description = "the report", body = Object))
)]
pub async fn dry_run(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(ns): Path<String>,
    Body(body): Body,
) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    state.auth.namespace(&ns).await?;
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::invalid("the body must be JSON (UTF-8)"))?.trim();
    let rules = if text.is_empty() || text == "null" { None } else { Some(retention_body(&body)?) };
    let report = state.registry.apply_retention(&ns, rules.as_ref(), true).await?;
    json(StatusCode::OK, report)
}

/// `POST /api/v1/namespaces/{ns}/retention/run` (owners): applies the stored rules now (the
/// collector frees the bytes after the grace period).
#[utoipa::path(
    post,
    path = "/namespaces/{ns}/retention/run",
    tag = "lifecycle",
    params(("ns" = String, Path, description = "the namespace")),
    responses((status = 200, description = "the report", body = Object))
)]
pub async fn run(State(state): State<AppState>, Caller(who): Caller, Path(ns): Path<String>) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    state.auth.namespace(&ns).await?;
    let report = state.registry.apply_retention(&ns, None, false).await?;
    audit(
        &state,
        &who,
        "namespace.retention.run",
        &format!("{ns}: {} tags, {} manifests removed", report.tags_removed, report.manifests_removed),
        Some(&ns),
    )
    .await;
    json(StatusCode::OK, report)
}
