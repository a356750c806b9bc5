//! Blob uploads: `POST` (start, monolithic, mount), `PATCH`, `PUT`, `GET` status, `DELETE`.

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{StreamExt, TryStreamExt};

use super::{headers, location, HandlerResult, Request};
use crate::auth::policy::Need;
use crate::auth::{Action, ActionSet, Scope};
use crate::domain::{Digest, Error, Registry, RepoName, UploadState};
use crate::model::{ByteStream, UploadId};

pub fn body_stream(body: Body) -> ByteStream {
    body.into_data_stream().map_err(std::io::Error::other).boxed()
}

fn digest_param(req: &Request) -> Result<Option<Digest>, Error> {
    req.query.get("digest").map(str::parse).transpose()
}

/// `202 Accepted` describing an upload in progress.
fn in_progress(status: StatusCode, repo: &RepoName, state: &UploadState, min_chunk: Option<u64>) -> Response {
    let mut response = status.into_response();
    let h = response.headers_mut();
    h.insert("Location", location(format!("/v2/{repo}/blobs/uploads/{}", state.id)));
    // The spec's `Range` is inclusive; an empty upload reports 0-0 as distribution does.
    h.insert("Range", HeaderValue::from_str(&format!("0-{}", state.size.saturating_sub(1))).expect("ascii"));
    h.insert("Docker-Upload-UUID", HeaderValue::from_str(state.id.as_str()).expect("uuid"));
    h.insert("Content-Length", HeaderValue::from(0));
    if let Some(n) = min_chunk {
        h.insert("OCI-Chunk-Min-Length", HeaderValue::from(n));
    }
    response
}

/// `201 Created` for a blob now in the repository.
fn created(repo: &RepoName, digest: &Digest) -> Response {
    let mut response = StatusCode::CREATED.into_response();
    let h = response.headers_mut();
    h.insert("Location", location(format!("/v2/{repo}/blobs/{digest}")));
    h.insert("Docker-Content-Digest", HeaderValue::from_str(digest.as_str()).expect("digest"));
    h.insert("Content-Length", HeaderValue::from(0));
    response
}

pub async fn start(registry: &Registry, repo: &RepoName, req: &Request, body: Body) -> HandlerResult {
    if let Some(mount) = req.query.get("mount") {
        let digest: Digest = mount.parse()?;
        if let Some(from) = req.query.get("from") {
            let from: RepoName = from.parse()?;
            // Mounting reads the source: it needs pull there too, or it quietly becomes an upload.
            let source = Scope::Repository(from.clone(), ActionSet::of(&[Action::Pull]));
            if req.grants.allows(&Need::Scope(&source)).is_ok()
                && registry.mount(req.grants.reader(), repo, &digest, &from).await?
            {
                return Ok(created(repo, &digest));
            }
        }
        // Not mountable: fall back to a regular upload session, as the spec asks.
    } else if let Some(digest) = digest_param(req)? {
        registry.upload_monolithic(repo, req.grants.who.principal.subject(), &digest, body_stream(body)).await?;
        return Ok(created(repo, &digest));
    }
    let state = registry.start_upload(repo, req.grants.who.principal.subject()).await?;
    Ok(in_progress(StatusCode::ACCEPTED, repo, &state, registry.chunk_min_length()))
}

pub async fn status(registry: &Registry, repo: &RepoName, id: &UploadId) -> HandlerResult {
    let state = registry.upload_status(repo, id).await?;
    Ok(in_progress(StatusCode::NO_CONTENT, repo, &state, None))
}

pub async fn patch(registry: &Registry, repo: &RepoName, id: &UploadId, req: &Request, body: Body) -> HandlerResult {
    let range = headers::content_range(&req.headers)?;
    if let (Some((start, end)), Some(len)) = (range, headers::content_length(&req.headers)) {
        if len != end - start + 1 {
            return Err(Error::RangeInvalid("Content-Length does not match Content-Range".into()).into());
        }
    }
    let state = registry.append_chunk(repo, id, range, body_stream(body)).await?;
    Ok(in_progress(StatusCode::ACCEPTED, repo, &state, None))
}

pub async fn put(registry: &Registry, repo: &RepoName, id: &UploadId, req: &Request, body: Body) -> HandlerResult {
    let digest = digest_param(req)?
        .ok_or_else(|| Error::DigestInvalid("the digest query parameter is required to finish an upload".into()))?;
    let last_chunk = if headers::has_no_body(&req.headers) {
        None
    } else {
        Some((headers::content_range(&req.headers)?, body_stream(body)))
    };
    registry.complete_upload(repo, id, &digest, last_chunk).await?;
    Ok(created(repo, &digest))
}

pub async fn cancel(registry: &Registry, repo: &RepoName, id: &UploadId) -> HandlerResult {
    registry.cancel_upload(repo, id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
