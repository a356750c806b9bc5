//! `/api/v1/namespaces`: create (admins), show, make public (admins), members (admins and owners).

use super::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json as j;

use super::{audit, json, page, parse, require_admin, require_owner, ApiError, ApiResult, Caller, Paging, Path, Query};
use crate::auth::accounts::NamespaceRecord;
use crate::auth::policy::Need;
use crate::auth::service::Authenticated;
use crate::auth::Role;
use crate::http::AppState;

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewNamespace {
    name: String,
    #[serde(default)]
    public: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NamespacePatch {
    public: bool,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct Membership {
    role: String,
}

/// Creates a namespace (admins).
#[utoipa::path(
    post,
    path = "/namespaces",
    tag = "namespaces",
    request_body = NewNamespace,
    responses((status = 201, description = "ok", body = super::schema::Namespace))
)]
pub async fn create(State(state): State<AppState>, Caller(who): Caller, Body(body): Body) -> ApiResult {
    let new: NewNamespace = parse(&body)?;
    json(StatusCode::CREATED, create_namespace(&state, &who, &new.name, new.public).await?)
}

/// Creates a namespace (admins); audited. The one implementation behind the API and the console.
pub async fn create_namespace(
    state: &AppState,
    who: &Authenticated,
    name: &str,
    public: bool,
) -> Result<NamespaceRecord, ApiError> {
    require_admin(who)?;
    let ns = state.auth.create_namespace(name, public).await?;
    audit(state, who, "namespace.create", name, Some(name)).await;
    Ok(ns)
}

/// A page of namespaces (admins).
pub async fn list_namespaces(
    state: &AppState,
    who: &Authenticated,
    after: Option<&str>,
    limit: u32,
    search: Option<&str>,
) -> Result<Vec<NamespaceRecord>, ApiError> {
    require_admin(who)?;
    Ok(state.auth.list_namespaces(after, limit, super::search(search)?).await?)
}

/// The members of `ns` with their roles (owners and admins).
pub async fn list_members(state: &AppState, who: &Authenticated, ns: &str) -> Result<Vec<(String, Role)>, ApiError> {
    require_owner(state, who, ns).await?;
    Ok(state.auth.members(ns).await?)
}

/// Gives `username` `role` in `ns` (owners and admins); audited.
pub async fn set_member_role(
    state: &AppState,
    who: &Authenticated,
    ns: &str,
    username: &str,
    role: &str,
) -> Result<Role, ApiError> {
    require_owner(state, who, ns).await?;
    let role =
        Role::parse(role).ok_or_else(|| ApiError::invalid("role must be owner, maintainer, developer or reader"))?;
    state.auth.set_member(ns, username, role).await?;
    audit(state, who, "member.set", &format!("{ns}/{username}={}", role.as_str()), Some(ns)).await;
    Ok(role)
}

/// Removes `username` from `ns` (owners and admins); audited.
pub async fn remove_member_of(state: &AppState, who: &Authenticated, ns: &str, username: &str) -> Result<(), ApiError> {
    require_owner(state, who, ns).await?;
    state.auth.remove_member(ns, username).await?;
    audit(state, who, "member.remove", &format!("{ns}/{username}"), Some(ns)).await;
    Ok(())
}

/// Lists namespaces by name (admins).
#[utoipa::path(
    get,
    path = "/namespaces",
    tag = "namespaces",
    params(("limit" = Option<u32>, Query, description = "at most this many (1-1000, default 100)"), ("after" = Option<String>, Query, description = "the `next` of the page before"), ("q" = Option<String>, Query, description = "only names that contain this, in any case (at most 128 characters)")),
    responses((status = 200, description = "ok", body = super::schema::Page<super::schema::Namespace>))
)]
pub async fn list(State(state): State<AppState>, Caller(who): Caller, Query(paging): Query<Paging>) -> ApiResult {
    let items = list_namespaces(&state, &who, paging.after.as_deref(), paging.limit(), paging.q.as_deref()).await?;
    page(items, paging.limit(), |n| n.name.clone())
}

/// A namespace (its members and admins).
#[utoipa::path(
    get,
    path = "/namespaces/{ns}",
    tag = "namespaces",
    params(("ns" = String, Path, description = "the namespace")),
    responses((status = 200, description = "ok", body = super::schema::Namespace))
)]
pub async fn show(State(state): State<AppState>, Caller(who): Caller, Path(ns): Path<String>) -> ApiResult {
    state.auth.authorize(&who, &[], Need::Member(&ns)).await?.map_err(ApiError::forbidden)?;
    json(StatusCode::OK, state.auth.namespace(&ns).await?)
}

/// Makes a namespace public or private (admins).
#[utoipa::path(
    patch,
    path = "/namespaces/{ns}",
    tag = "namespaces",
    params(("ns" = String, Path, description = "the namespace")),
    request_body = NamespacePatch,
    responses((status = 200, description = "ok", body = super::schema::Namespace))
)]
pub async fn update(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(ns): Path<String>,
    Body(body): Body,
) -> ApiResult {
    require_admin(&who)?;
    let patch: NamespacePatch = parse(&body)?;
    let record = state.auth.set_public(&ns, patch.public).await?;
    audit(&state, &who, if patch.public { "namespace.make_public" } else { "namespace.make_private" }, &ns, Some(&ns))
        .await;
    json(StatusCode::OK, record)
}

/// The members and their roles (owners and admins).
#[utoipa::path(
    get,
    path = "/namespaces/{ns}/members",
    tag = "namespaces",
    params(("ns" = String, Path, description = "the namespace")),
    responses((status = 200, description = "ok", body = super::schema::Page<super::schema::Member>))
)]
pub async fn members(State(state): State<AppState>, Caller(who): Caller, Path(ns): Path<String>) -> ApiResult {
    let items: Vec<_> =
        list_members(&state, &who, &ns).await?.into_iter().map(|(u, r)| j!({"username": u, "role": r})).collect();
    json(StatusCode::OK, j!({"items": items, "next": null}))
}

/// Gives a user a role in the namespace (owners and admins).
#[utoipa::path(
    put,
    path = "/namespaces/{ns}/members/{username}",
    tag = "namespaces",
    params(("ns" = String, Path, description = "the namespace"), ("username" = String, Path, description = "the user")),
    request_body = Membership,
    responses((status = 200, description = "ok", body = super::schema::Membership))
)]
pub async fn set_member(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((ns, username)): Path<(String, String)>,
    Body(body): Body,
) -> ApiResult {
    let m: Membership = parse(&body)?;
    let role = set_member_role(&state, &who, &ns, &username, &m.role).await?;
    json(StatusCode::OK, j!({"namespace": ns, "username": username, "role": role}))
}

/// Removes a member (owners and admins).
#[utoipa::path(
    delete,
    path = "/namespaces/{ns}/members/{username}",
    tag = "namespaces",
    params(("ns" = String, Path, description = "the namespace"), ("username" = String, Path, description = "the user")),
    responses((status = 204, description = "done"))
)]
pub async fn remove_member(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path((ns, username)): Path<(String, String)>,
) -> ApiResult {
    remove_member_of(&state, &who, &ns, &username).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Deletes a namespace (admins).
#[utoipa::path(
    delete,
    path = "/namespaces/{ns}",
    tag = "namespaces",
    params(("ns" = String, Path, description = "the namespace")),
    responses((status = 204, description = "done"))
)]
pub async fn remove(State(state): State<AppState>, Caller(who): Caller, Path(ns): Path<String>) -> ApiResult {
    require_admin(&who)?;
    state.auth.delete_namespace(&ns).await?;
    audit(&state, &who, "namespace.delete", &ns, Some(&ns)).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
