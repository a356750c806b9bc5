//! `/api/v1/repositories`: the repositories of a namespace (or, for admins, all) with their tag,
//! manifest and byte counts and quarantined images; deleting one (its namespace's owners, admins).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;

use super::{audit, page, require_admin, require_owner, ApiError, ApiResult, Caller, Path, Query};
use crate::auth::policy::Need;
use crate::auth::service::Authenticated;
use crate::domain::RepoName;
use crate::domain::TagDetail;
use crate::http::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    namespace: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
    q: Option<String>,
}

/// `GET /api/v1/repositories?namespace=NS[&limit=&after=]`: members of the namespace; without
/// `namespace`, every repository (admins).
#[utoipa::path(
    get,
    path = "/repositories",
    tag = "repositories",
    params(("namespace" = Option<String>, Query, description = "a namespace's repositories (members); without it every repository (admins)"), ("limit" = Option<u32>, Query, description = "at most this many (1-1000, default 100)"), ("after" = Option<String>, Query, description = "the `next` of the page before"), ("q" = Option<String>, Query, description = "only names that contain this, in any case (at most 128 characters)")),
    responses((status = 200, description = "ok", body = super::schema::Page<super::schema::Repository>))
)]
pub async fn list(State(state): State<AppState>, Caller(who): Caller, Query(q): Query<ListQuery>) -> ApiResult {
    match q.namespace.as_deref() {
        Some(ns) => state.auth.authorize(&who, &[], Need::Member(ns)).await?.map_err(ApiError::forbidden)?,
        None => require_admin(&who)?,
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let search = super::search(q.q.as_deref())?;
    let items = state.registry.repository_summaries(q.namespace.as_deref(), q.after.as_deref(), limit, search).await?;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TagsQuery {
    repository: String,
    limit: Option<u32>,
    after: Option<String>,
}

/// A repository's tags, each with the manifest it names, that manifest's size and scan state in
/// effect, and when the tag was pushed.
#[utoipa::path(
    get,
    path = "/tags",
    tag = "repositories",
    params(
        ("repository" = String, Query, description = "the repository (pull right needed; otherwise 404)"),
        ("limit" = Option<u32>, Query, description = "at most this many (1-1000, default 100)"),
        ("after" = Option<String>, Query, description = "the `next` of the page before")
    ),
    responses((status = 200, description = "ok", body = super::schema::Page<super::schema::TagItem>))
)]
pub async fn tags(State(state): State<AppState>, Caller(who): Caller, Query(q): Query<TagsQuery>) -> ApiResult {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let (items, next) = list_tags(&state, &who, &q.repository, limit, q.after.as_deref()).await?;
    super::json(StatusCode::OK, serde_json::json!({"items": items, "next": next}))
}

/// The tags of `repository` the caller may pull from (the API's and the console's listing); a
/// repository the caller may not read is answered as one that does not exist.
pub async fn list_tags(
    state: &AppState,
    who: &Authenticated,
    repository: &str,
    limit: u32,
    after: Option<&str>,
) -> Result<(Vec<TagDetail>, Option<String>), ApiError> {
    let hidden = || ApiError::not_found("repository");
    let repo: RepoName =
        repository.parse().map_err(|_| ApiError::invalid("repository is not a valid repository name"))?;
    if !super::may_pull(state, who, &repo).await? {
        return Err(hidden());
    }
    match state.registry.tag_details(&repo, Some(limit), after).await {
        Err(crate::domain::Error::NameUnknown) => Err(hidden()),
        other => Ok(other?),
    }
}
