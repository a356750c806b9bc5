//! `/api/v1/namespaces`: create (admins), show, make public (admins), members (admins and owners).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json as j;

use super::{audit, json, page, parse, require_admin, require_owner, ApiError, ApiResult, Caller, Paging, Path, Query};
use crate::auth::policy::Need;
use crate::auth::Role;
use crate::http::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewNamespace {
    name: String,
    #[serde(default)]
    public: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NamespacePatch {
    public: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Membership {
    role: String,
}

pub async fn create(State(state): State<AppState>, Caller(who): Caller, body: Bytes) -> ApiResult {
    require_admin(&who)?;
    let new: NewNamespace = parse(&body)?;
    let ns = state.auth.create_namespace(&new.name, new.public).await?;
    audit(&state, &who, "namespace.create", &new.name, Some(&new.name)).await;
    json(StatusCode::CREATED, ns)
}

pub async fn list(State(state): State<AppState>, Caller(who): Caller, Query(paging): Query<Paging>) -> ApiResult {
    require_admin(&who)?;
    let items = state.auth.list_namespaces(paging.after.as_deref(), paging.limit()).await?;
    page(items, paging.limit(), |n| n.name.clone())
}

pub async fn show(State(state): State<AppState>, Caller(who): Caller, Path(ns): Path<String>) -> ApiResult {
    state.auth.authorize(&who, &[], Need::Member(&ns)).await?.map_err(ApiError::forbidden)?;
    json(StatusCode::OK, state.auth.namespace(&ns).await?)
}

pub async fn update(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(ns): Path<String>,
    body: Bytes,
) -> ApiResult {
    require_admin(&who)?;
    let patch: NamespacePatch = parse(&body)?;
    let record = state.auth.set_public(&ns, patch.public).await?;
    audit(&state, &who, if patch.public { "namespace.make_public" } else { "namespace.make_private" }, &ns, Some(&ns))
        .await;
    json(StatusCode::OK, record)
}

pub async fn members(State(state): State<AppState>, Caller(who): Caller, Path(ns): Path<String>) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    let items: Vec<_> =
        state.auth.members(&ns).await?.into_iter().map(|(u, r)| j!({"username": u, "role": r})).collect();
    json(StatusCode::OK, j!({"items": items, "next": null}))
}

pub async fn set_member(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((ns, username)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    let m: Membership = parse(&body)?;
    let role =
        Role::parse(&m.role).ok_or_else(|| ApiError::invalid("role must be owner, maintainer, developer or reader"))?;
    state.auth.set_member(&ns, &username, role).await?;
    audit(&state, &who, "member.set", &format!("{ns}/{username}={}", role.as_str()), Some(&ns)).await;
    json(StatusCode::OK, j!({"namespace": ns, "username": username, "role": role}))
}

pub async fn remove_member(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((ns, username)): Path<(String, String)>,
) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    state.auth.remove_member(&ns, &username).await?;
    audit(&state, &who, "member.remove", &format!("{ns}/{username}"), Some(&ns)).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn remove(State(state): State<AppState>, Caller(who): Caller, Path(ns): Path<String>) -> ApiResult {
    require_admin(&who)?;
    state.auth.delete_namespace(&ns).await?;
    audit(&state, &who, "namespace.delete", &ns, Some(&ns)).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
