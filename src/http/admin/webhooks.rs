//! `/api/v1/webhooks` (administrators: every namespace's events) and
//! `/api/v1/namespaces/{ns}/webhooks` (owners: their namespace's): register (the secret shown
//! once), list, delete, delivery history and a test event (`domain::webhooks`).

use super::Body;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;

use super::{audit, json, parse, require_admin, require_owner, ApiError, ApiResult, Caller, Path};
use crate::auth::service::Authenticated;
use crate::http::AppState;
use crate::model::webhook::Webhook;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewWebhook {
    url: String,
    events: Vec<String>,
}

async fn register(state: &AppState, who: &Authenticated, namespace: Option<&str>, body: &[u8]) -> ApiResult {
    let new: NewWebhook = parse(body)?;
    let (hook, secret) = state
        .registry
        .create_webhook(&new.url, &new.events, namespace, who.principal.subject(), state.webhooks_allow_private)
        .await?;
    audit(state, who, "webhook.create", &format!("{} {}", hook.id, origin(&hook.url)), namespace).await;
    let mut body = serde_json::to_value(&hook).map_err(anyhow::Error::from)?;
    body["secret"] = secret.into();
    json(StatusCode::CREATED, body)
}

/// The scheme, host and port of a target (its path or query may hold a receiver's token, which
/// the audit log must not keep).
fn origin(url: &str) -> String {
    url::Url::parse(url).map(|u| u.origin().ascii_serialization()).unwrap_or_else(|_| "-".into())
}

/// `POST /api/v1/webhooks` `{"url": "https://...", "events": [...]}` → 201 `{"id", "secret", ...}`.
#[utoipa::path(
    post,
    path = "/webhooks",
    tag = "webhooks",
    request_body = NewWebhook,
    responses((status = 201, description = "ok", body = super::schema::WebhookWithSecret))
)]
pub async fn create(State(state): State<AppState>, Caller(who): Caller, Body(body): Body) -> ApiResult {
    require_admin(&who)?;
    register(&state, &who, None, &body).await
}

/// `POST /api/v1/namespaces/{ns}/webhooks`: the namespace's events only.
#[utoipa::path(
    post,
    path = "/namespaces/{ns}/webhooks",
    tag = "webhooks",
    params(("ns" = String, Path, description = "the namespace")),
    request_body = NewWebhook,
    responses((status = 201, description = "ok", body = super::schema::WebhookWithSecret))
)]
pub async fn create_in(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(ns): Path<String>,
    Body(body): Body,
) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    register(&state, &who, Some(&ns), &body).await
}

/// `GET /api/v1/webhooks`: every webhook (administrators).
#[utoipa::path(
    get,
    path = "/webhooks",
    tag = "webhooks",
    responses((status = 200, description = "ok", body = super::schema::Page<super::schema::Webhook>))
)]
pub async fn list(State(state): State<AppState>, Caller(who): Caller) -> ApiResult {
    require_admin(&who)?;
    json(StatusCode::OK, serde_json::json!({"items": state.registry.list_webhooks(None).await?, "next": null}))
}

/// `GET /api/v1/namespaces/{ns}/webhooks`.
#[utoipa::path(
    get,
    path = "/namespaces/{ns}/webhooks",
    tag = "webhooks",
    params(("ns" = String, Path, description = "the namespace")),
    responses((status = 200, description = "ok", body = super::schema::Page<super::schema::Webhook>))
)]
pub async fn list_in(State(state): State<AppState>, Caller(who): Caller, Path(ns): Path<String>) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    json(StatusCode::OK, serde_json::json!({"items": state.registry.list_webhooks(Some(&ns)).await?, "next": null}))
}

/// The webhook `id`, if the caller may manage it: administrators any, owners their namespace's.
async fn managed(state: &AppState, who: &Authenticated, id: &str) -> Result<Webhook, ApiError> {
    let hook = state.registry.webhook(id).await?;
    match hook.as_ref().and_then(|h| h.namespace.as_deref()) {
        Some(ns) => require_owner(state, who, ns).await?,
        None => require_admin(who)?,
    }
    hook.ok_or_else(|| ApiError::not_found("webhook"))
}

/// A webhook (who may manage it).
#[utoipa::path(
    get,
    path = "/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "the webhook's id")),
    responses((status = 200, description = "ok", body = super::schema::Webhook))
)]
pub async fn show(State(state): State<AppState>, Caller(who): Caller, Path(id): Path<String>) -> ApiResult {
    json(StatusCode::OK, managed(&state, &who, &id).await?)
}

/// Deletes a webhook.
#[utoipa::path(
    delete,
    path = "/webhooks/{id}",
    tag = "webhooks",
    params(("id" = String, Path, description = "the webhook's id")),
    responses((status = 204, description = "done"))
)]
pub async fn remove(State(state): State<AppState>, Caller(who): Caller, Path(id): Path<String>) -> ApiResult {
    let hook = managed(&state, &who, &id).await?;
    state.registry.delete_webhook(&hook.id).await?;
    audit(&state, &who, "webhook.delete", &format!("{} {}", hook.id, origin(&hook.url)), hook.namespace.as_deref())
        .await;
    Ok(axum::response::IntoResponse::into_response(StatusCode::NO_CONTENT))
}

/// `GET /api/v1/webhooks/{id}/deliveries`: the newest 100, with attempts, status and error.
#[utoipa::path(
    get,
    path = "/webhooks/{id}/deliveries",
    tag = "webhooks",
    params(("id" = String, Path, description = "the webhook's id")),
    responses((status = 200, description = "ok", body = super::schema::DeliveryPage))
)]
pub async fn deliveries(State(state): State<AppState>, Caller(who): Caller, Path(id): Path<String>) -> ApiResult {
    let hook = managed(&state, &who, &id).await?;
    json(
        StatusCode::OK,
        serde_json::json!({"items": state.registry.webhook_deliveries(&hook.id, 100).await?, "next": null}),
    )
}

/// `POST /api/v1/webhooks/{id}/test`: queues a `test` event → 202 `{"delivery": id}`.
#[utoipa::path(
    post,
    path = "/webhooks/{id}/test",
    tag = "webhooks",
    params(("id" = String, Path, description = "the webhook's id")),
    responses((status = 202, description = "ok", body = super::schema::TestDelivery))
)]
pub async fn test(State(state): State<AppState>, Caller(who): Caller, Path(id): Path<String>) -> ApiResult {
    let hook = managed(&state, &who, &id).await?;
    let delivery = state.registry.send_test_event(&hook, &state.public_url, who.principal.subject()).await?;
    json(StatusCode::ACCEPTED, serde_json::json!({"delivery": delivery}))
}
