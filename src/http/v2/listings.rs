//! Listings: `_catalog`, `tags/list` (both paged with `n`, `last` and `Link`), and referrers.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use oci_spec::image::MediaType;
use serde_json::{json, Map, Value};

use super::{HandlerResult, Request};
use crate::auth::policy::Need;
use crate::auth::{Action, ActionSet};
use crate::domain::index;
use crate::domain::manifest::OCI_INDEX;
use crate::domain::{Digest, Error, Page, Registry, RepoName};
use crate::http::AppState;

fn paging(req: &Request) -> Result<(Option<u32>, Option<&str>), Error> {
    let n = req
        .query
        .get("n")
        .map(|n| n.parse::<u32>().map_err(|_| Error::PaginationInvalid(format!("invalid page size {n:?}"))))
        .transpose()?;
    Ok((n, req.query.get("last")))
}

/// Adds `Link: <path?n=N&last=X>; rel="next"` when a next page may exist.
fn with_link(mut response: Response, path: &str, n: Option<u32>, page: &Page) -> Response {
    if let (Some(next), Some(n)) = (&page.next, n) {
        let last: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
        let link = format!("<{path}?n={n}&last={last}>; rel=\"next\"");
        if let Ok(v) = HeaderValue::from_str(&link) {
            response.headers_mut().insert(header::LINK, v);
        }
    }
    response
}

/// The catalog shows only repositories the caller may pull: pages are filled from the database
/// until `n` visible names are found or the list ends.
pub async fn catalog(state: &AppState, req: &Request) -> HandlerResult {
    let registry = &state.registry;
    let (n, last) = paging(req)?;
    let limit = n.unwrap_or(registry.limits().max_page).min(registry.limits().max_page);
    let mut visible = Vec::new();
    let mut cursor = last.map(str::to_owned);
    let mut exhausted = false;
    while (visible.len() as u32) < limit && !exhausted {
        let batch = registry.catalog(Some(limit.max(100)), cursor.as_deref()).await?;
        exhausted = batch.next.is_none();
        for name in batch.items {
            cursor = Some(name.clone());
            let repo: RepoName = match name.parse() {
                Ok(r) => r,
                Err(_) => continue,
            };
            let need = Need::Repository(&repo, ActionSet::of(&[Action::Pull]));
            if state.auth.authorize(&req.grants.who, &[], need).await?.is_ok() {
                visible.push(name);
                if visible.len() as u32 == limit {
                    break;
                }
            }
        }
    }
    let page = Page {
        next: (limit > 0 && visible.len() as u32 == limit).then(|| visible.last().cloned()).flatten(),
        items: visible,
    };
    let body = axum::Json(json!({ "repositories": page.items })).into_response();
    Ok(with_link(body, "/v2/_catalog", Some(limit), &page))
}

pub async fn tags(registry: &Registry, repo: &RepoName, req: &Request) -> HandlerResult {
    let (n, last) = paging(req)?;
    let page = registry.list_tags(repo, n, last).await?;
    let body = axum::Json(json!({ "name": repo.as_str(), "tags": page.items })).into_response();
    Ok(with_link(body, &format!("/v2/{repo}/tags/list"), n.or(Some(registry.limits().max_page)), &page))
}

pub async fn referrers(registry: &Registry, repo: &RepoName, digest: &Digest, req: &Request) -> HandlerResult {
    let filter = req.query.get("artifactType").filter(|s| !s.is_empty());
    let found = registry.referrers(req.grants.reader(), repo, digest, filter).await?;
    let mut manifests = Vec::with_capacity(found.len());
    for r in found {
        let mut d = index::descriptor(&r.media_type, &r.digest, r.size)?;
        d.set_artifact_type(r.artifact_type.as_deref().map(MediaType::from));
        let pushed = r.annotations.and_then(|a| serde_json::from_str::<Map<String, Value>>(&a).ok());
        d.set_annotations(pushed.as_ref().map(index::annotations));
        manifests.push(d);
    }
    // Through a JSON value, whose maps are sorted: annotations come out in a stable order.
    let body = serde_json::to_value(index::image_index(manifests)?).map_err(|e| Error::Internal(e.to_string()))?;
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(OCI_INDEX));
    if filter.is_some() {
        response.headers_mut().insert("OCI-Filters-Applied", HeaderValue::from_static("artifactType"));
    }
    Ok(response)
}
