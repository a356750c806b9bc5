//! `/api/v1/repositories`: the repositories of a namespace (or, for admins, all) with their tag,
//! manifest and byte counts and quarantined images; deleting one (its namespace's owners, admins).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::{audit, page, require_admin, require_owner, ApiError, ApiResult, Caller, Path, Query};
use crate::auth::policy::Need;
use crate::domain::RepoName;
use crate::http::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    namespace: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

/// `GET /api/v1/repositories?namespace=NS[&limit=&after=]`: members of the namespace; without
/// `namespace`, every repository (admins).
#[utoipa::path(
    get,
    path = "/repositories",
    tag = "repositories",
    params(("namespace" = Option<String>, Query, description = "a namespace's repositories (members); without it every repository (admins)"), ("limit" = Option<u32>, Query, description = "at most this many (1-1000, default 100)"), ("after" = Option<String>, Query, description = "the `next` of the page before")),
    responses((status = 200, description = "ok", body = super::schema::Page<super::schema::Repository>))
)]
pub async fn list(State(state): State<AppState>, Caller(who): Caller, Query(q): Query<ListQuery>) -> ApiResult {
    match q.namespace.as_deref() {
        Some(ns) => state.auth.authorize(&who, &[], Need::Member(ns)).await?.map_err(ApiError::forbidden)?,
        None => require_admin(&who)?,
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let items = state.registry.repository_summaries(q.namespace.as_deref(), q.after.as_deref(), limit).await?;
    page(items, limit, |r| r.name.clone())
}

/// `DELETE /api/v1/repositories/{name}` (the name may hold slashes): 204, or 404 if there is none.
#[utoipa::path(
    delete,
    path = "/repositories/{*name}",
    tag = "repositories",
    params(("name" = String, Path, description = "the repository name (may hold slashes)")),
    responses((status = 204, description = "done"))
)]
pub async fn remove(State(state): State<AppState>, Caller(who): Caller, Path(name): Path<String>) -> ApiResult {
    let repo: RepoName = name.parse().map_err(|_| ApiError::invalid("not a valid repository name"))?;
    require_owner(&state, &who, repo.namespace()).await?;
    state.registry.delete_repository(&repo).await?;
    audit(&state, &who, "repository.delete", repo.as_str(), Some(repo.namespace())).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}
