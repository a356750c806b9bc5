//! `GET`/`HEAD`/`PUT`/`DELETE /v2/<name>/manifests/<reference>`.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;

use super::{header_str, location, HandlerResult, Request};
use crate::domain::{Error, Gate, Reference, Registry, RepoName};
use crate::http::AppState;
use crate::metadata::StoredManifest;

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

fn manifest_response(m: StoredManifest, head: bool) -> Response {
    let length = m.content.len();
    let mut response = if head { StatusCode::OK.into_response() } else { (StatusCode::OK, m.content).into_response() };
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
    let manifest = registry.get_manifest(repo, reference).await?;
    if !acceptable(&req.headers, &manifest.media_type) {
        return Err(Error::ManifestUnknown.into());
    }
    // The quarantine gate: GET (not HEAD, which re-pushes depend on); admins pass, audited.
    if req.method == Method::GET {
        if let Gate::Blocked { state: scan, summary } = registry.manifest_gate(repo, &manifest).await? {
            let who = req.grants.who.principal.subject();
            if req.grants.who.principal.is_admin() {
                tracing::info!(target: "audit", subject = who, repository = %repo, digest = %manifest.digest, state = scan.as_str(), "quarantine bypassed by an admin");
            } else {
                tracing::info!(target: "audit", subject = who, repository = %repo, digest = %manifest.digest, state = scan.as_str(), "pull blocked by quarantine");
                return Err(super::blocked(state, repo, manifest.digest.as_str(), scan, summary.as_deref()));
            }
        }
    }
    Ok(manifest_response(manifest, req.method == Method::HEAD))
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
    let verdict = match (put.scanned, registry.namespace_scan_sync(repo.namespace()).await?) {
        (true, Some(limit)) => registry.wait_for_verdict(repo, &put.digest, limit).await?,
        _ => None,
    };
    let mut response = StatusCode::CREATED.into_response();
    let h = response.headers_mut();
    h.insert("Location", location(format!("/v2/{repo}/manifests/{}", put.digest)));
    h.insert("Docker-Content-Digest", HeaderValue::from_str(put.digest.as_str()).expect("digest"));
    if let Some(v) = verdict {
        h.insert("Portcullis-Scan-State", HeaderValue::from_static(v.as_str()));
    }
    if put.scanned {
        let status = format!("{}/api/v1/scans?repository={repo}&digest={}", state.public_url, put.digest);
        if let Ok(v) = HeaderValue::from_str(&status) {
            h.insert("Portcullis-Scan-Status", v);
        }
    }
    if let Some(subject) = put.subject {
        h.insert("OCI-Subject", HeaderValue::from_str(subject.as_str()).expect("digest"));
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(0));
    Ok(response)
}

pub async fn delete(registry: &Registry, repo: &RepoName, reference: &Reference) -> HandlerResult {
    registry.delete_manifest(repo, reference).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
