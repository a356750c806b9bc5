//! `/api/v1/tokens`: the calling user's personal access tokens (for `docker login` instead of the
//! password). The token is shown once.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json as j;

use super::{audit, future_time, json, parse, ApiError, ApiResult, Caller, Path};
use crate::auth::policy::Need;
use crate::auth::service::Authenticated;
use crate::http::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    expires_at: serde_json::Value,
}

fn user(who: &Authenticated) -> Result<&str, ApiError> {
    super::require(who, &Need::PersonalTokens)?;
    Ok(who.principal.subject())
}

pub async fn create(State(state): State<AppState>, Caller(who): Caller, body: Bytes) -> ApiResult {
    let username = user(&who)?;
    let new: NewToken = parse(&body)?;
    let expires_at = future_time(&new.expires_at, "expires_at", state.registry.clock())?;
    let created = state.auth.create_token(username, &new.name, expires_at, who.pat.clone()).await?;
    audit(&state, &who, "token.create", &created.record.id, None).await;
    let mut body = serde_json::to_value(&created.record).map_err(anyhow::Error::from)?;
    body["token"] = created.secret.into();
    json(StatusCode::CREATED, body)
}

pub async fn list(State(state): State<AppState>, Caller(who): Caller) -> ApiResult {
    let username = user(&who)?;
    json(StatusCode::OK, j!({"items": state.auth.list_tokens(username).await?, "next": null}))
}

pub async fn revoke(State(state): State<AppState>, Caller(who): Caller, Path(id): Path<String>) -> ApiResult {
    let username = user(&who)?;
    state.auth.revoke_token(username, &id).await?;
    audit(&state, &who, "token.revoke", &id, None).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
