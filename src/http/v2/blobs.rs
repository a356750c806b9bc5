//! `GET`/`HEAD`/`DELETE /v2/<name>/blobs/<digest>`.

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{headers, HandlerResult, Request};
use crate::domain::Registry;
use crate::domain::{Digest, RepoName};
use crate::http::AppState;
use crate::model::audit::{self, NewAudit};
use crate::model::metrics as m;

fn blob_headers(response: &mut Response, digest: &Digest, length: u64) {
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(digest.as_str()) {
        h.insert("Docker-Content-Digest", v.clone());
        if let Ok(etag) = HeaderValue::from_str(&format!("\"{digest}\"")) {
            h.insert(header::ETAG, etag);
        }
    }
}

pub async fn get(state: &AppState, repo: &RepoName, digest: &Digest, req: &Request) -> HandlerResult {
    let registry = &state.registry;
    if req.method == Method::HEAD {
        let size = registry.stat_blob(repo, digest).await?;
        let mut response = StatusCode::OK.into_response();
        blob_headers(&mut response, digest, size);
        return Ok(response);
    }
    // HEAD stays open (re-pushes depend on it); a GET passes the quarantine gate.
    let range = headers::byte_range(&req.headers)?;
    let read = match registry.read_blob(req.grants.reader(), repo, digest, range).await {
        Ok(read) => {
            metrics::counter!(m::BLOB_PULLS).increment(1);
            read
        }
        Err(e) => {
            if let crate::domain::Error::Unsigned(u) = &e {
                let who = req.grants.who.principal.subject();
                tracing::info!(target: "audit", subject = who, repository = %repo, %digest, "blob pull refused by the signature policy");
                let record = NewAudit::new("pull.blocked", super::manifests::unsigned_object(repo, u))
                    .namespace(repo.namespace())
                    .outcome(audit::DENIED)
                    .detail("state", "unsigned");
                registry.audit(record).await;
            }
            if let crate::domain::Error::Blocked(b) = &e {
                let who = req.grants.who.principal.subject();
                tracing::info!(target: "audit", subject = who, repository = %repo, %digest, state = b.state.as_str(), "blob pull blocked by quarantine");
                metrics::counter!(m::PULLS_BLOCKED, "state" => b.state.as_str()).increment(1);
                let record = NewAudit::new("pull.blocked", super::manifests::blocked_object(repo, b))
                    .namespace(repo.namespace())
                    .outcome(audit::DENIED)
                    .detail("state", b.state.as_str());
                registry.audit(record).await;
            }
            return Err(super::refused(state, repo, e));
        }
    };
    let (status, length) = match &read.range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, read.size),
    };
    let mut response = (status, Body::from_stream(read.body)).into_response();
    blob_headers(&mut response, digest, length);
    if let Some(r) = read.range {
        let value = format!("bytes {}-{}/{}", r.start, r.end - 1, read.size);
        response.headers_mut().insert(header::CONTENT_RANGE, HeaderValue::from_str(&value).expect("ascii"));
    }
    Ok(response)
}

pub async fn delete(registry: &Registry, repo: &RepoName, digest: &Digest) -> HandlerResult {
    registry.delete_blob(repo, digest).await?;
    registry.audit(NewAudit::new("delete", format!("{repo}@{digest}")).namespace(repo.namespace())).await;
    Ok(StatusCode::ACCEPTED.into_response())
}
