//! `/api/v1/namespaces/{ns}/robots`: create (secret shown once), list, rotate, revoke. Admins and
//! owners of the namespace.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json as j;

use super::{audit, future_time, json, parse, require_owner, ApiResult, Caller, Path};
use crate::http::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRobot {
    name: String,
    actions: Vec<String>,
    expires_at: serde_json::Value,
    repositories: Option<Patterns>,
}

/// `"apps/*"` or `["apps/*", "base"]`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Patterns {
    One(String),
    Many(Vec<String>),
}

/// A robot as the API shows it: `repositories` as a list of patterns.
fn present(record: &impl serde::Serialize) -> Result<serde_json::Value, super::ApiError> {
    let mut body = serde_json::to_value(record).map_err(anyhow::Error::from)?;
    if let Some(patterns) = body["repositories"].as_str() {
        body["repositories"] = crate::auth::robot_patterns(patterns).collect::<Vec<_>>().into();
    }
    Ok(body)
}

pub async fn create(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(ns): Path<String>,
    body: Bytes,
) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    let new: NewRobot = parse(&body)?;
    let expires_at = future_time(&new.expires_at, "expires_at", state.registry.clock())?;
    let patterns = new.repositories.map(|p| match p {
        Patterns::One(p) => vec![p],
        Patterns::Many(list) => list,
    });
    let created = state.auth.create_robot(&ns, &new.name, &new.actions, patterns, expires_at).await?;
    audit(&state, &who, "robot.create", &created.record.username, Some(&ns)).await;
    let mut body = present(&created.record)?;
    body["secret"] = created.secret.into();
    json(StatusCode::CREATED, body)
}

pub async fn list(State(state): State<AppState>, Caller(who): Caller, Path(ns): Path<String>) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    let items = state.auth.list_robots(&ns).await?.iter().map(present).collect::<Result<Vec<_>, _>>()?;
    json(StatusCode::OK, j!({"items": items, "next": null}))
}

pub async fn rotate(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    let rotated = state.auth.rotate_robot(&ns, &name).await?;
    audit(&state, &who, "robot.rotate", &rotated.record.username, Some(&ns)).await;
    let mut body = present(&rotated.record)?;
    body["secret"] = rotated.secret.into();
    json(StatusCode::OK, body)
}

pub async fn revoke(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    state.auth.revoke_robot(&ns, &name).await?;
    audit(&state, &who, "robot.revoke", &format!("{ns}+{name}"), Some(&ns)).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
