//! The admin API under `/api/v1`: JSON in and out, one error shape
//! (`{"error": {"code", "message"}}`). Who may do what is decided by `auth::policy::decide`, through
//! [`require_admin`] and [`require_owner`].
//!
//! Rules:
//! - It takes only credentials meant for it: HTTP Basic with a password, a personal access token or
//!   a robot secret. Registry tokens (bearer) are refused, so a pull token cannot change a password.
//! - A `401` carries no `Basic` challenge, so a browser never caches credentials for it.

pub(super) mod audit;
mod gc;
pub(super) mod images;
mod lifecycle;
pub(super) mod namespaces;
mod openapi;
pub(super) mod repositories;
pub(super) mod robots;
pub(super) mod scans;
mod schema;
mod signatures;
pub(super) mod tokens;
pub(super) mod users;
mod vulndb;
mod webhooks;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::credentials::{self, ClientAddr};
use super::observe::RequestFacts;
use super::oci_error::{Code, OciError};
use super::AppState;
use crate::auth::accounts::AccountError;
use crate::auth::policy::{self, NamespaceFacts, Need};
use crate::auth::service::Authenticated;
use crate::auth::{AuthError, Principal};
use crate::domain::{Clock, Error};
use crate::model::audit::NewAudit;

pub fn router() -> Router<AppState> {
    let routes = OpenApiRouter::new()
        .routes(routes!(super::discovery::api_index))
        .routes(routes!(openapi::document))
        .routes(routes!(users::create, users::list))
        .routes(routes!(users::show, users::update, users::remove))
        .routes(routes!(namespaces::create, namespaces::list))
        .routes(routes!(namespaces::show, namespaces::update, namespaces::remove))
        .routes(routes!(namespaces::members))
        .routes(routes!(namespaces::set_member, namespaces::remove_member))
        .routes(routes!(robots::create, robots::list))
        .routes(routes!(robots::revoke))
        .routes(routes!(robots::rotate))
        .routes(routes!(scans::get_policy, scans::set_policy))
        .routes(routes!(signatures::get_policy, signatures::set_policy))
        .routes(routes!(lifecycle::get_quota, lifecycle::set_quota))
        .routes(routes!(lifecycle::usage))
        .routes(routes!(lifecycle::get_immutable, lifecycle::set_immutable))
        .routes(routes!(lifecycle::get_retention, lifecycle::set_retention, lifecycle::delete_retention))
        .routes(routes!(lifecycle::dry_run))
        .routes(routes!(lifecycle::run))
        .routes(routes!(repositories::list))
        .routes(routes!(repositories::tags))
        .routes(routes!(images::show))
        .routes(routes!(repositories::remove))
        .routes(routes!(webhooks::create, webhooks::list))
        .routes(routes!(webhooks::show, webhooks::remove))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::test))
        .routes(routes!(webhooks::create_in, webhooks::list_in))
        .routes(routes!(audit::list))
        .routes(routes!(audit::verify))
        .routes(routes!(gc::collect))
        .routes(routes!(gc::fsck))
        .routes(routes!(vulndb::status, vulndb::import))
        .routes(routes!(scans::get))
        .routes(routes!(scans::release))
        .routes(routes!(scans::rescan))
        .routes(routes!(scans::reject))
        .routes(routes!(tokens::create, tokens::list))
        .routes(routes!(tokens::revoke));
    openapi::router(routes)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "unsupported",
                "this method is not supported on this endpoint",
            )
        })
}

/// The admin API's one error shape: `{"error": {"code", "message"}}`, `code` in snake case.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: std::borrow::Cow<'static, str>,
    message: String,
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code: code.into(), message: message.into(), headers: Vec::new() }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    /// A refusal by the policy, naming what was needed (`policy::Deny`'s text).
    pub fn forbidden(deny: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", deny.to_string())
    }
    /// The status and the message (for the console, which shows them as a page).
    pub fn parts(self) -> (StatusCode, String) {
        (self.status, self.message)
    }
}

/// A domain error answers as it does on `/v2` (the one mapping, in `oci_error`): the same status,
/// message and headers (a database outage is 503 with `Retry-After`), the code in snake case.
impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let oci = OciError::from(e);
        let (code, status, _) = oci.code.spec();
        let code = match oci.code {
            Code::TooManyRequests => "too_many_requests".into(),
            Code::RequestInvalid => "invalid_request".into(),
            Code::Unknown => "internal".into(),
            _ => code.to_ascii_lowercase().into(),
        };
        ApiError { status, code, message: oci.message, headers: oci.headers }
    }
}

/// `axum`'s query extractor, answering a malformed query in the API's error shape.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(Query(q.0)),
            Err(e) => Err(ApiError::invalid(format!("invalid query: {}", e.body_text()))),
        }
    }
}

/// The request body, refused in the API's error shape: `413 too_large` past [`MAX_BODY`],
/// `400` when it cannot be read. (axum's own rejection is plain text.)
pub struct Body(pub axum::body::Bytes);

/// The largest JSON body the admin API reads (axum's default limit, which this names).
pub const MAX_BODY: usize = 2 * 1024 * 1024;

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = ApiError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match <axum::body::Bytes as axum::extract::FromRequest<S>>::from_request(req, state).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the request body is larger than {} MiB", MAX_BODY / (1024 * 1024)),
            )),
            Err(e) => Err(ApiError::invalid(format!("the request body could not be read: {}", e.body_text()))),
        }
    }
}

/// `axum`'s path extractor, answering an undecodable path in the API's error shape.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(p) => Ok(Path(p.0)),
            Err(e) => Err(ApiError::invalid(format!("invalid path: {}", e.body_text()))),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::Invalid(m) => ApiError::invalid(m),
            AccountError::NotFound(what) => ApiError::not_found(what),
            AccountError::Conflict(m) => ApiError::conflict(m),
            AccountError::Internal(e) => e.into(),
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        tracing::error!(error = %e, "admin API error");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r =
            (self.status, axum::Json(json!({"error": {"code": self.code, "message": self.message}}))).into_response();
        for (name, value) in self.headers {
            r.headers_mut().insert(name, value);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // Not `Basic`: a browser would prompt and cache the credentials for every later request.
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Portcullis realm=\"admin\""));
        }
        r
    }
}

pub type ApiResult = Result<Response, ApiError>;

/// Parses a JSON body, answering malformed input with a structured 400.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

/// Every admin answer: times (`*_at`, `*_until`, Unix seconds inside) are written as RFC 3339
/// UTC strings, as registry APIs write them; an audit record's `time_ms` (part of its hashed
/// content) stays and gains a `time` beside it.
pub fn json(status: StatusCode, value: impl serde::Serialize) -> ApiResult {
    let mut value = serde_json::to_value(value).map_err(anyhow::Error::from)?;
    rfc3339_times(&mut value);
    Ok((status, axum::Json(value)).into_response())
}

/// Times kept in milliseconds (part of hashed content, or of the webhook schema), and the RFC 3339
/// field added beside each.
const MS_TIMES: &[(&str, &str)] =
    &[("time_ms", "time"), ("created_ms", "created_at"), ("next_attempt_ms", "next_attempt_at")];

fn rfc3339_times(value: &mut serde_json::Value) {
    use serde_json::Value;
    let format = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).ok();
    match value {
        Value::Array(items) => items.iter_mut().for_each(rfc3339_times),
        Value::Object(map) => {
            let mut added = Vec::new();
            for (key, v) in map.iter_mut() {
                if let (true, Some(secs)) = (key.ends_with("_at") || key.ends_with("_until"), v.as_i64()) {
                    if let Some(text) = time::OffsetDateTime::from_unix_timestamp(secs).ok().and_then(format) {
                        *v = Value::String(text);
                    }
                } else if let (Some(sibling), Some(ms)) = (MS_TIMES.iter().find(|(k, _)| k == key), v.as_i64()) {
                    added.extend(
                        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
                            .ok()
                            .and_then(format)
                            .map(|text| (sibling.1, text)),
                    );
                } else if key != "details" && key != "findings" {
                    // (An audit record's details are hashed content, and findings come from
                    // scanners: neither is ours to rewrite.)
                    rfc3339_times(v);
                }
            }
            for (name, text) in added {
                map.entry(name).or_insert(Value::String(text));
            }
        }
        _ => {}
    }
}

/// The authenticated caller of an admin request.
pub struct Caller(pub Authenticated);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let Some((user, secret)) = credentials::basic(&parts.headers) else {
            if credentials::bearer(&parts.headers).is_some() {
                return Err(unauthorized(
                    "the admin API takes HTTP Basic credentials (a password, personal access token or robot secret), not registry tokens",
                ));
            }
            return Err(unauthorized("authentication required"));
        };
        match state.auth.login(&user, &secret, ClientAddr::of(&parts.extensions)).await {
            Ok(w) if w.principal != Principal::Anonymous => match state.limits.check_principal(w.principal.subject()) {
                Ok(()) => {
                    if let Some(facts) = RequestFacts::of(&parts.extensions) {
                        facts.set_principal(w.principal.subject());
                    }
                    Ok(Caller(w))
                }
                Err(limited) => Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_requests",
                    format!("too many {}; retry in {} s", limited.what, limited.retry_after_secs()),
                )),
            },
            Ok(_) | Err(AuthError::BadCredentials | AuthError::InvalidToken(_)) => {
                Err(unauthorized("authentication required"))
            }
            Err(AuthError::Throttled(_)) => {
                Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "too many failed logins"))
            }
            Err(AuthError::Busy) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "too many logins are being checked at once; retry shortly",
            )),
            Err(AuthError::Internal(e)) => Err(e.into()),
        }
    }
}

/// Records a change made through the admin API in the audit log (and the log, target `audit`);
/// never a secret. `namespace`: the namespace it concerns, whose owners may read the record.
pub async fn audit(state: &AppState, who: &Authenticated, action: &str, object: &str, namespace: Option<&str>) {
    audit_with(state, who, action, object, namespace, &[]).await
}

/// [`audit`] with details (`key`, text) in the record.
pub async fn audit_with(
    state: &AppState,
    who: &Authenticated,
    action: &str,
    object: &str,
    namespace: Option<&str>,
    details: &[(&str, &str)],
) {
    tracing::info!(target: "audit", actor = who.principal.subject(), action, object, "admin change");
    let mut record = NewAudit::new(action, object).actor(who.principal.subject());
    if let Some(ns) = namespace {
        record = record.namespace(ns);
    }
    for (key, value) in details {
        record = record.detail(key, *value);
    }
    state.registry.audit(record).await;
}

/// Administrators ([`policy::decide`] with [`Need::Admin`]).
pub fn require_admin(who: &Authenticated) -> Result<(), ApiError> {
    require(who, &Need::Admin)
}

/// A need that depends on the caller alone (no namespace facts).
pub fn require(who: &Authenticated, need: &Need<'_>) -> Result<(), ApiError> {
    policy::decide(&who.principal, &[], need, &NamespaceFacts::default()).map_err(ApiError::forbidden)
}

/// Whether `who` may pull from `repo` (the policy's decision, as for `/v2`). Reads answer a
/// repository the caller may not pull from as one that does not exist.
pub async fn may_pull(state: &AppState, who: &Authenticated, repo: &crate::domain::RepoName) -> Result<bool, Error> {
    let need = Need::Repository(repo, crate::auth::ActionSet::of(&[crate::auth::Action::Pull]));
    Ok(state.auth.authorize(who, &[], need).await?.is_ok())
}

/// Admins, and owners of the namespace.
pub async fn require_owner(state: &AppState, who: &Authenticated, ns: &str) -> Result<(), ApiError> {
    state.auth.authorize(who, &[], Need::Owner(ns)).await?.map_err(ApiError::forbidden)
}

/// `limit`, `after` and `q` query parameters.
#[derive(serde::Deserialize)]
pub struct Paging {
    pub limit: Option<u32>,
    pub after: Option<String>,
    /// Only names that contain this (any case).
    pub q: Option<String>,
}

impl Paging {
    pub fn limit(&self) -> u32 {
        self.limit.unwrap_or(100).clamp(1, 1000)
    }
}

/// The longest `q` a list takes.
pub const MAX_SEARCH: usize = 128;

/// A list's `q`: empty is none; longer than [`MAX_SEARCH`] characters is refused.
pub fn search(q: Option<&str>) -> Result<Option<&str>, ApiError> {
    match q.map(str::trim).filter(|q| !q.is_empty()) {
        Some(q) if q.chars().count() > MAX_SEARCH => {
            Err(ApiError::invalid(format!("q is longer than {MAX_SEARCH} characters")))
        }
        other => Ok(other),
    }
}

/// `{"items": [...], "next": "<after value>"}`.
pub fn page<T: serde::Serialize>(items: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> ApiResult {
    let next = (items.len() as u32 == limit).then(|| items.last().map(&key)).flatten();
    json(StatusCode::OK, json!({"items": items, "next": next}))
}

/// Unix seconds from an RFC 3339 time, a duration from now (`30d`, `12h`, `90m`) or Unix
/// seconds; must lie in the future of `clock`.
pub fn future_time(value: &serde_json::Value, field: &str, clock: &Clock) -> Result<i64, ApiError> {
    let t = match value {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(|t| t.unix_timestamp())
            .or_else(|| {
                humantime::parse_duration(s)
                    .ok()
                    .and_then(|d| i64::try_from(d.as_secs()).ok())
                    .and_then(|d| clock.now().checked_add(d))
            }),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::invalid(format!(
            "{field} must be an RFC 3339 time (2027-01-31T00:00:00Z), a duration from now (30d, 12h) or Unix seconds"
        ))
    })?;
    if t <= clock.now() {
        return Err(ApiError::invalid(format!("{field} must be in the future")));
    }
    // 9999-12-31T23:59:59Z: every time the API writes back is a four-digit-year RFC 3339 string.
    if t > 253_402_300_799 {
        return Err(ApiError::invalid(format!("{field} is too far in the future")));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_errors_answer_as_the_one_mapping_says() {
        let outage = ApiError::from(Error::Unavailable("database timed out".into())).into_response();
        assert_eq!(outage.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(outage.headers().contains_key(header::RETRY_AFTER));
        let unknown = ApiError::from(Error::ManifestUnknown);
        assert_eq!((unknown.status, unknown.code.as_ref()), (StatusCode::NOT_FOUND, "manifest_unknown"));
        let internal = ApiError::from(Error::Internal("secret path /var/lib/x".into()));
        assert_eq!(internal.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!internal.message.contains("/var/lib"), "{}", internal.message);
    }
}
