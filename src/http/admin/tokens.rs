//! `/api/v1/tokens`: the calling user's personal access tokens (for `docker login` instead of the
//! password). The token is shown once.

use super::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json as j;

use super::{audit, future_time, json, parse, ApiError, ApiResult, Caller, Path};
use crate::auth::accounts::{NewSecret, TokenRecord};
use crate::auth::policy::Need;
use crate::auth::service::Authenticated;
use crate::http::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    expires_at: serde_json::Value,
}

fn user(who: &Authenticated) -> Result<&str, ApiError> {
    super::require(who, &Need::PersonalTokens)?;
    Ok(who.principal.subject())
}

/// Creates a personal access token of the calling user; shown once.
#[utoipa::path(
    post,
    path = "/tokens",
    tag = "tokens",
    request_body = NewToken,
    responses((status = 201, description = "ok", body = super::schema::TokenWithSecret))
)]
pub async fn create(State(state): State<AppState>, Caller(who): Caller, Body(body): Body) -> ApiResult {
    let new: NewToken = parse(&body)?;
    let created = create_token(&state, &who, &new.name, &new.expires_at).await?;
    let mut body = serde_json::to_value(&created.record).map_err(anyhow::Error::from)?;
    body["token"] = created.secret.into();
    json(StatusCode::CREATED, body)
}

/// The calling user's personal access tokens.
#[utoipa::path(
    get,
    path = "/tokens",
    tag = "tokens",
    responses((status = 200, description = "ok", body = super::schema::Page<super::schema::Token>))
)]
pub async fn list(State(state): State<AppState>, Caller(who): Caller) -> ApiResult {
    json(StatusCode::OK, j!({"items": list_tokens(&state, &who).await?, "next": null}))
}

/// Creates a personal access token of the caller (a user); audited. The one implementation
/// behind the API and the console.
pub async fn create_token(
    state: &AppState,
    who: &Authenticated,
    name: &str,
    expires_at: &serde_json::Value,
) -> Result<NewSecret<TokenRecord>, ApiError> {
    let username = user(who)?;
    let expires_at = future_time(expires_at, "expires_at", state.registry.clock())?;
    let created = state.auth.create_token(username, name, expires_at, who.pat.clone()).await?;
    audit(state, who, "token.create", &created.record.id, None).await;
    Ok(created)
}

/// The caller's personal access tokens.
pub async fn list_tokens(state: &AppState, who: &Authenticated) -> Result<Vec<TokenRecord>, ApiError> {
    let username = user(who)?;
    Ok(state.auth.list_tokens(username).await?)
}

/// Revokes one of the caller's tokens (and those created with it); audited.
pub async fn revoke_token(state: &AppState, who: &Authenticated, id: &str) -> Result<(), ApiError> {
    let username = user(who)?;
    state.auth.revoke_token(username, id).await?;
    audit(state, who, "token.revoke", id, None).await;
    Ok(())
}

/// Revokes a token and those created with it.
#[utoipa::path(
    delete,
    path = "/tokens/{id}",
    tag = "tokens",
    params(("id" = String, Path, description = "the token's id")),
    responses((status = 204, description = "done"))
)]
pub async fn revoke(State(state): State<AppState>, Caller(who): Caller, Path(id): Path<String>) -> ApiResult {
    revoke_token(&state, &who, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
