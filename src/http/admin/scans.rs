//! `/api/v1/scans`: read a scan report (with pull rights on the repository; long-poll with
//! `wait`), list scans by state (admins), release or rescan an image (admins).

use std::time::Duration;

use super::Body;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json as j;

use super::{audit, audit_with, json, parse, require_admin, ApiError, ApiResult, Caller, Query};
use crate::auth::service::Authenticated;
use crate::domain::{Digest, RepoName};
use crate::http::AppState;
use crate::model::{ScanRecord, ScanState};

/// The longest a `wait` may hold a request.
const MAX_WAIT: Duration = Duration::from_secs(120);

#[derive(Deserialize)]
pub struct ScanQuery {
    repository: Option<String>,
    digest: Option<String>,
    state: Option<String>,
    wait: Option<String>,
    limit: Option<u32>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    repository: String,
    digest: String,
    reason: Option<String>,
    /// Releases only: when the release lapses (RFC 3339 or Unix seconds).
    expires_at: Option<serde_json::Value>,
}

fn target(repository: &str, digest: &str) -> Result<(RepoName, Digest), ApiError> {
    let repo = repository.parse().map_err(|_| ApiError::invalid("repository is not a valid repository name"))?;
    let digest = digest.parse().map_err(|_| ApiError::invalid("digest is not a valid digest"))?;
    Ok((repo, digest))
}

/// A report as the API shows it: `state` is the state in effect now (a lapsed release reads
/// `quarantined`, as the gate treats it), `stored_state` what the record holds.
pub(super) fn report(r: &ScanRecord, now: i64) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["stored_state"] = v["state"].clone();
    v["state"] = r.effective_state(now).as_str().into();
    v["findings"] = r.findings.as_deref().and_then(|f| serde_json::from_str(f).ok()).unwrap_or_else(|| j!([]));
    v
}

/// One image's scan report, or (admins) scans by state.
#[utoipa::path(
    get,
    path = "/scans",
    tag = "scans",
    params(("repository" = Option<String>, Query, description = "with `digest`: one image's report (pull right needed)"), ("digest" = Option<String>, Query, description = "the image's digest"), ("wait" = Option<String>, Query, description = "long-poll until a verdict, up to this long (60s; at most 2m)"), ("state" = Option<String>, Query, description = "without `repository`: list scans in this state (admins)"), ("limit" = Option<u32>, Query, description = "at most this many")),
    responses((status = 200, description = "a report, or a page of them", body = super::schema::ScanOrPage))
)]
pub async fn get(State(state): State<AppState>, Caller(who): Caller, Query(q): Query<ScanQuery>) -> ApiResult {
    let now = state.registry.clock().now();
    let (Some(repository), Some(digest)) = (q.repository.as_deref(), q.digest.as_deref()) else {
        require_admin(&who)?;
        let filter = match q.state.as_deref() {
            Some(s) => Some(ScanState::parse(s).ok_or_else(|| ApiError::invalid("unknown state"))?),
            None => None,
        };
        let items: Vec<_> = state
            .registry
            .list_scans(filter, q.limit.unwrap_or(100).clamp(1, 1000))
            .await?
            .iter()
            .map(|r| report(r, now))
            .collect();
        return json(StatusCode::OK, j!({"items": items, "next": null}));
    };
    let (repo, digest) = target(repository, digest)?;
    if !super::may_pull(&state, &who, &repo).await? {
        return Err(ApiError::not_found("scan"));
    }
    let wait = match q.wait.as_deref() {
        Some(w) => humantime::parse_duration(w)
            .map_err(|_| ApiError::invalid("wait must be a duration such as 60s"))?
            .min(MAX_WAIT),
        None => Duration::ZERO,
    };
    let settled = |r: &ScanRecord| !matches!(r.state, ScanState::Pending | ScanState::Scanning) && !r.rescan_requested;
    let record = state.registry.wait_for_scan(&repo, &digest, wait, settled).await?;
    json(StatusCode::OK, report(&record.ok_or_else(|| ApiError::not_found("scan"))?, state.registry.clock().now()))
}

/// Releases a blocked image with a reason and an optional expiry (admins); audited and attested.
#[utoipa::path(
    post,
    path = "/scans/release",
    tag = "scans",
    request_body = Target,
    responses((status = 200, description = "ok", body = super::schema::ScanReport))
)]
pub async fn release(State(state): State<AppState>, Caller(who): Caller, Body(body): Body) -> ApiResult {
    let t: Target = parse(&body)?;
    let record = release_image(&state, &who, &t.repository, &t.digest, t.reason, t.expires_at).await?;
    json(StatusCode::OK, report(&record, state.registry.clock().now()))
}

/// Releases a quarantined image (admins), with a reason and an optional expiry: audited and
/// attested. The one implementation behind the API and the console.
pub async fn release_image(
    state: &AppState,
    who: &Authenticated,
    repository: &str,
    digest: &str,
    reason: Option<String>,
    expires_at: Option<serde_json::Value>,
) -> Result<ScanRecord, ApiError> {
    require_admin(who)?;
    let reason =
        reason.filter(|r| !r.trim().is_empty()).ok_or_else(|| ApiError::invalid("a reason is required to release"))?;
    let (repo, digest) = target(repository, digest)?;
    let until = expires_at.as_ref().map(|v| super::future_time(v, "expires_at", state.registry.clock())).transpose()?;
    if !state.registry.release_scan(&repo, &digest, who.principal.subject(), &reason, until).await? {
        return Err(ApiError::not_found("scan"));
    }
    audit_with(
        state,
        who,
        "scan.release",
        &format!("{repo}@{digest}"),
        Some(repo.namespace()),
        &[("reason", reason.as_str())],
    )
    .await;
    // A release is a verdict too: signed, with who released it, why and until when.
    state.registry.attest_logged(&repo, &digest, &Default::default()).await;
    state.registry.scan_record(&repo, &digest).await?.ok_or_else(|| ApiError::not_found("scan"))
}

/// Scans an image again (admins).
#[utoipa::path(
    post,
    path = "/scans/rescan",
    tag = "scans",
    request_body = Target,
    responses((status = 202, description = "ok", body = super::schema::ScanReport))
)]
pub async fn rescan(State(state): State<AppState>, Caller(who): Caller, Body(body): Body) -> ApiResult {
    let t: Target = parse(&body)?;
    let record = rescan_image(&state, &who, &t.repository, &t.digest).await?;
    json(StatusCode::ACCEPTED, report(&record, state.registry.clock().now()))
}

/// Asks for a new scan of an image (admins); audited.
pub async fn rescan_image(
    state: &AppState,
    who: &Authenticated,
    repository: &str,
    digest: &str,
) -> Result<ScanRecord, ApiError> {
    require_admin(who)?;
    let (repo, digest) = target(repository, digest)?;
    if !state.registry.request_rescan(&repo, &digest).await? {
        return Err(ApiError::not_found("scan"));
    }
    audit(state, who, "scan.rescan", &format!("{repo}@{digest}"), Some(repo.namespace())).await;
    state.registry.scan_record(&repo, &digest).await?.ok_or_else(|| ApiError::not_found("scan"))
}

/// `GET /api/v1/namespaces/{ns}/scan-policy`: the namespace's overrides and the rules in effect.
#[utoipa::path(
    get,
    path = "/namespaces/{ns}/scan-policy",
    tag = "policies",
    params(("ns" = String, Path, description = "the namespace")),
    responses((status = 200, description = "ok", body = super::schema::ScanPolicy))
)]
pub async fn get_policy(
    State(state): State<AppState>,
    Caller(who): Caller,
    super::Path(ns): super::Path<String>,
) -> ApiResult {
    super::require_owner(&state, &who, &ns).await?;
    state.auth.namespace(&ns).await?;
    let overrides: serde_json::Value = state
        .registry
        .namespace_scan_rules(&ns)
        .await?
        .and_then(|r| serde_json::from_str(&r).ok())
        .unwrap_or_else(|| j!({}));
    let sync = state.registry.namespace_scan_sync(&ns).await?.map(|d| humantime::format_duration(d).to_string());
    json(StatusCode::OK, j!({"namespace": ns, "overrides": overrides, "sync_timeout": sync}))
}

/// `PUT /api/v1/namespaces/{ns}/scan-policy` with `{"root_user": "warn", ...}` (admins): overrides of
/// the global rules for images pushed to the namespace from now on (and rescans).
#[utoipa::path(
    put,
    path = "/namespaces/{ns}/scan-policy",
    tag = "policies",
    params(("ns" = String, Path, description = "the namespace")),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, description = "ok", body = super::schema::ScanPolicy))
)]
pub async fn set_policy(
    State(state): State<AppState>,
    Caller(who): Caller,
    super::Path(ns): super::Path<String>,
    Body(body): Body,
) -> ApiResult {
    let body: serde_json::Map<String, serde_json::Value> = parse(&body)?;
    let (rules, sync) = set_scan_policy(&state, &who, &ns, body).await?;
    let sync = sync.map(|d| humantime::format_duration(d).to_string());
    json(StatusCode::OK, j!({"namespace": ns, "overrides": rules, "sync_timeout": sync}))
}

/// Sets a namespace's rule overrides (admins) from the API's body, `{"root_user": "warn", ...,
/// "sync_timeout": "30s"}`; audited. The one implementation behind the API and the console.
pub async fn set_scan_policy(
    state: &AppState,
    who: &Authenticated,
    ns: &str,
    mut body: serde_json::Map<String, serde_json::Value>,
) -> Result<(std::collections::BTreeMap<crate::model::Rule, crate::model::RuleAction>, Option<Duration>), ApiError> {
    require_admin(who)?;
    // `sync_timeout` ("30s"; at most 10 min) turns on scanning inside the PUT; the rest are rules.
    let sync = match body.remove("sync_timeout") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(
            humantime::parse_duration(&s)
                .ok()
                .filter(|d| !d.is_zero() && *d <= Duration::from_secs(600))
                .ok_or_else(|| ApiError::invalid("sync_timeout must be a duration up to 10m, such as 30s"))?,
        ),
        Some(_) => return Err(ApiError::invalid("sync_timeout must be a duration string such as 30s")),
    };
    let rules: std::collections::BTreeMap<crate::model::Rule, crate::model::RuleAction> =
        serde_json::from_value(serde_json::Value::Object(body))
            .map_err(|e| ApiError::invalid(format!("invalid rules: {e}")))?;
    if rules.keys().any(|r| matches!(r, crate::model::Rule::Hook | crate::model::Rule::HookFinding)) {
        return Err(ApiError::invalid("the hook's verdict cannot be overridden"));
    }
    let text = serde_json::to_string(&rules).map_err(anyhow::Error::from)?;
    if !state.registry.set_namespace_scan_rules(ns, &text, sync).await? {
        return Err(ApiError::not_found("namespace"));
    }
    audit(state, who, "scan.policy", &format!("{ns}: {text}"), Some(ns)).await;
    Ok((rules, sync))
}

/// `POST /api/v1/scans/reject` `{"repository","digest","reason"}` (admins): deletes the image from the
/// repository (its tags too, immutable ones included); the verdict goes with it.
#[utoipa::path(
    post,
    path = "/scans/reject",
    tag = "scans",
    request_body = Target,
    responses((status = 200, description = "ok", body = super::schema::Rejected))
)]
pub async fn reject(State(state): State<AppState>, Caller(who): Caller, Body(body): Body) -> ApiResult {
    let t: Target = parse(&body)?;
    let (repo, digest, reason) = reject_image(&state, &who, &t.repository, &t.digest, t.reason).await?;
    json(
        StatusCode::OK,
        j!({"repository": repo.as_str(), "digest": digest.to_string(), "state": "rejected", "reason": reason}),
    )
}

/// Deletes a blocked image (admins), with a reason; audited.
pub async fn reject_image(
    state: &AppState,
    who: &Authenticated,
    repository: &str,
    digest: &str,
    reason: Option<String>,
) -> Result<(RepoName, Digest, String), ApiError> {
    require_admin(who)?;
    let reason =
        reason.filter(|r| !r.trim().is_empty()).ok_or_else(|| ApiError::invalid("a reason is required to reject"))?;
    let (repo, digest) = target(repository, digest)?;
    match state.registry.reject_manifest(&repo, &digest).await {
        Ok(()) => {}
        Err(crate::domain::Error::ManifestUnknown) => return Err(ApiError::not_found("manifest")),
        Err(e) => return Err(e.into()),
    }
    audit_with(
        state,
        who,
        "scan.reject",
        &format!("{repo}@{digest}"),
        Some(repo.namespace()),
        &[("reason", reason.as_str())],
    )
    .await;
    Ok((repo, digest, reason))
}
