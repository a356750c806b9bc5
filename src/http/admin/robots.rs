//! `/api/v1/namespaces/{ns}/robots`: create (secret shown once), list, rotate, revoke. Admins and
//! owners of the namespace.

use super::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json as j;

use super::{audit, future_time, json, parse, require_owner, ApiError, ApiResult, Caller, Path};
use crate::auth::accounts::{NewSecret, RobotRecord};
use crate::auth::service::Authenticated;
use crate::http::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewRobot {
    name: String,
    actions: Vec<String>,
    expires_at: serde_json::Value,
    repositories: Option<Patterns>,
}

/// `"apps/*"` or `["apps/*", "base"]`.
#[derive(Deserialize, utoipa::ToSchema)]
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

/// Creates a robot; its secret is in this answer only (owners and admins).
#[utoipa::path(
    post,
    path = "/namespaces/{ns}/robots",
    tag = "robots",
    params(("ns" = String, Path, description = "the namespace")),
    request_body = NewRobot,
    responses((status = 201, description = "ok", body = super::schema::RobotWithSecret))
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(ns): Path<String>,
    Body(body): Body,
) -> ApiResult {
    let new: NewRobot = parse(&body)?;
    let patterns = new.repositories.map(|p| match p {
        Patterns::One(p) => vec![p],
        Patterns::Many(list) => list,
    });
    let created = create_robot(&state, &who, &ns, &new.name, &new.actions, patterns, &new.expires_at).await?;
    let mut body = present(&created.record)?;
    body["secret"] = created.secret.into();
    json(StatusCode::CREATED, body)
}

/// Creates a robot in `ns` (its owners, admins); audited. The secret is in the answer only.
pub async fn create_robot(
    state: &AppState,
    who: &Authenticated,
    ns: &str,
    name: &str,
    actions: &[String],
    patterns: Option<Vec<String>>,
    expires_at: &serde_json::Value,
) -> Result<NewSecret<RobotRecord>, ApiError> {
    require_owner(state, who, ns).await?;
    let expires_at = future_time(expires_at, "expires_at", state.registry.clock())?;
    let created = state.auth.create_robot(ns, name, actions, patterns, expires_at).await?;
    audit(state, who, "robot.create", &created.record.username, Some(ns)).await;
    Ok(created)
}

/// The namespace's robots (owners and admins).
#[utoipa::path(
    get,
    path = "/namespaces/{ns}/robots",
    tag = "robots",
    params(("ns" = String, Path, description = "the namespace")),
    responses((status = 200, description = "ok", body = super::schema::Page<super::schema::Robot>))
)]
pub async fn list(State(state): State<AppState>, Caller(who): Caller, Path(ns): Path<String>) -> ApiResult {
    let items = list_robots(&state, &who, &ns).await?.iter().map(present).collect::<Result<Vec<_>, _>>()?;
    json(StatusCode::OK, j!({"items": items, "next": null}))
}

/// The robots of `ns` (its owners, admins).
pub async fn list_robots(state: &AppState, who: &Authenticated, ns: &str) -> Result<Vec<RobotRecord>, ApiError> {
    require_owner(state, who, ns).await?;
    Ok(state.auth.list_robots(ns).await?)
}

/// A new secret; the old one stops at once (owners and admins).
#[utoipa::path(
    post,
    path = "/namespaces/{ns}/robots/{name}/rotate",
    tag = "robots",
    params(("ns" = String, Path, description = "the namespace"), ("name" = String, Path, description = "the robot's name")),
    responses((status = 200, description = "ok", body = super::schema::RobotWithSecret))
)]
pub async fn rotate(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((ns, name)): Path<(String, String)>,
) -> ApiResult {
    let rotated = rotate_robot(&state, &who, &ns, &name).await?;
    let mut body = present(&rotated.record)?;
    body["secret"] = rotated.secret.into();
    json(StatusCode::OK, body)
}

/// Gives a robot a new secret (its namespace's owners, admins); the old one stops at once.
pub async fn rotate_robot(
    state: &AppState,
    who: &Authenticated,
    ns: &str,
    name: &str,
) -> Result<NewSecret<RobotRecord>, ApiError> {
    require_owner(state, who, ns).await?;
    let rotated = state.auth.rotate_robot(ns, name).await?;
    audit(state, who, "robot.rotate", &rotated.record.username, Some(ns)).await;
    Ok(rotated)
}

/// Revokes a robot (owners and admins).
#[utoipa::path(
    delete,
    path = "/namespaces/{ns}/robots/{name}",
    tag = "robots",
    params(("ns" = String, Path, description = "the namespace"), ("name" = String, Path, description = "the robot's name")),
    responses((status = 204, description = "done"))
)]
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
