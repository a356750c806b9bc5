//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;

use super::{header_str, location, refused, HandlerResult, Request};
use crate::domain::{Error, ManifestHead, Reader, Reference, Registry, RepoName};
use crate::http::AppState;
use crate::model::audit::{self, NewAudit};
use crate::model::metrics as m;

/// Whether the client's `Accept` headers allow `media_type`. No `Accept` allows everything.
fn acceptable(headers: &HeaderMap, media_type: &str) -> bool {
    let mut offered = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.split(';').next().unwrap_or("").trim())
        .filter(|v| !v.is_empty())
        .peekable();
    if offered.peek().is_none() {
        return true;
    }
    offered.any(|v| v == media_type || v == "*/*")
}

fn manifest_response(m: ManifestHead, content: Option<Vec<u8>>) -> Response {
    let length = m.size;
    let mut response = match content {
        None => StatusCode::OK.into_response(),
        Some(c) => (StatusCode::OK, c).into_response(),
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&m.media_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    h.insert("Docker-Content-Digest", HeaderValue::from_str(m.digest.as_str()).expect("digest"));
    h.insert(header::ETAG, HeaderValue::from_str(&format!("\"{}\"", m.digest)).expect("digest"));
    response
}

pub async fn get(state: &AppState, repo: &RepoName, reference: &Reference, req: &Request) -> HandlerResult {
    let registry = &state.registry;
    // HEAD tells that the manifest exists (re-pushes depend on it), never its content.
    if req.method == Method::HEAD {
        let head = registry.head_manifest(repo, reference).await?;
        if !acceptable(&req.headers, &head.media_type) {
            return Err(Error::ManifestUnknown.into());
        }
        return Ok(manifest_response(head, None));
    }
    let who = req.grants.who.principal.subject();
    let manifest = match registry.read_manifest(Reader::Ordinary, repo, reference).await {
        Ok(m) => m,
        Err(Error::Blocked(b)) if req.grants.reader() == Reader::Unrestricted => {
            tracing::info!(target: "audit", subject = who, repository = %repo, state = b.state.as_str(), "quarantine bypassed by an admin");
            metrics::counter!(m::GATE_BYPASSES).increment(1);
            let object = blocked_object(repo, &b);
            let record =
                NewAudit::new("gate.bypass", object).namespace(repo.namespace()).detail("state", b.state.as_str());
            registry.audit(record).await;
            registry.read_manifest(Reader::Unrestricted, repo, reference).await?
        }
        Err(Error::Unsigned(u)) if req.grants.reader() == Reader::Unrestricted => {
            tracing::info!(target: "audit", subject = who, repository = %repo, "signature policy bypassed by an admin");
            metrics::counter!(m::GATE_BYPASSES).increment(1);
            let record = NewAudit::new("gate.bypass", unsigned_object(repo, &u))
                .namespace(repo.namespace())
                .detail("state", "unsigned");
            registry.audit(record).await;
            registry.read_manifest(Reader::Unrestricted, repo, reference).await?
        }
        Err(e) => {
            if let Error::Unsigned(u) = &e {
                tracing::info!(target: "audit", subject = who, repository = %repo, "pull refused by the signature policy");
                let record = NewAudit::new("pull.blocked", unsigned_object(repo, u))
                    .namespace(repo.namespace())
                    .outcome(audit::DENIED)
                    .detail("state", "unsigned");
                registry.audit(record).await;
            }
            if let Error::Blocked(b) = &e {
                tracing::info!(target: "audit", subject = who, repository = %repo, state = b.state.as_str(), "pull blocked by quarantine");
                metrics::counter!(m::PULLS_BLOCKED, "state" => b.state.as_str()).increment(1);
                let record = NewAudit::new("pull.blocked", blocked_object(repo, b))
                    .namespace(repo.namespace())
                    .outcome(audit::DENIED)
                    .detail("state", b.state.as_str());
                registry.audit(record).await;
            }
            return Err(refused(state, repo, e));
        }
    };
    metrics::counter!(m::MANIFEST_PULLS).increment(1);
    if !acceptable(&req.headers, &manifest.media_type) {
        return Err(Error::ManifestUnknown.into());
    }
    let head = ManifestHead { digest: manifest.digest, media_type: manifest.media_type, size: manifest.content.len() };
    Ok(manifest_response(head, Some(manifest.content)))
}

pub async fn put(state: &AppState, repo: &RepoName, reference: &Reference, req: &Request, body: Body) -> HandlerResult {
    let registry = &state.registry;
    let limit = registry.limits().max_manifest_bytes;
    let too_large = || Error::ManifestTooLarge { limit };
    if super::headers::content_length(&req.headers).is_some_and(|n| n > limit as u64) {
        return Err(too_large().into());
    }
    // Read at most `limit` bytes, whatever the client declared.
    let mut stream = body.into_data_stream();
    let mut body = Vec::new();
    while let Some(chunk) =
        stream.try_next().await.map_err(|e| Error::ManifestInvalid(format!("manifest body could not be read: {e}")))?
    {
        if body.len() + chunk.len() > limit {
            return Err(too_large().into());
        }
        body.extend_from_slice(&chunk);
    }
    let content_type = header_str(&req.headers, header::CONTENT_TYPE);
    let put = registry.put_manifest(repo, reference, content_type, body).await?;
    // Synchronous mode: the namespace asked to wait for the verdict inside the PUT (still a 201).
    let verdict = match registry.namespace_scan_sync(repo.namespace()).await? {
        Some(limit) => registry.wait_for_verdict(repo, &put.digest, limit).await?,
        None => None,
    };
    let mut response = StatusCode::CREATED.into_response();
    let h = response.headers_mut();
    h.insert("Location", location(format!("/v2/{repo}/manifests/{}", put.digest)));
    h.insert("Docker-Content-Digest", HeaderValue::from_str(put.digest.as_str()).expect("digest"));
    if let Some(v) = verdict {
        h.insert("Portcullis-Scan-State", HeaderValue::from_static(v.as_str()));
    }
    let status = format!("{}/api/v1/scans?repository={repo}&digest={}", state.public_url, put.digest);
    if let Ok(v) = HeaderValue::from_str(&status) {
        h.insert("Portcullis-Scan-Status", v);
    }
    if let Some(subject) = put.subject {
        h.insert("OCI-Subject", HeaderValue::from_str(subject.as_str()).expect("digest"));
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    Ok(response)
}

pub async fn delete(registry: &Registry, repo: &RepoName, reference: &Reference) -> HandlerResult {
    registry.delete_manifest(repo, reference).await?;
    let object = match reference {
        Reference::Tag(t) => format!("{repo}:{t}"),
        Reference::Digest(d) => format!("{repo}@{d}"),
    };
    registry.audit(NewAudit::new("delete", object).namespace(repo.namespace())).await;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `repository@digest` of what the quarantine gate refused.
pub(super) fn blocked_object(repo: &RepoName, b: &crate::model::Blocked) -> String {
    target_object(repo, &b.target)
}

/// `repository@digest` of what the signature gate refused.
pub(super) fn unsigned_object(repo: &RepoName, u: &crate::model::Unsigned) -> String {
    target_object(repo, &u.target)
}

fn target_object(repo: &RepoName, target: &crate::domain::Target) -> String {
    match target {
        crate::domain::Target::Manifest(d) | crate::domain::Target::Blob(d) => format!("{repo}@{d}"),
    }
}
