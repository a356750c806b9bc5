//! What a person or a tool finds without reading the docs first: `GET /` (what this is and where
//! the API is), `GET /api/v1` (the admin API's sections), `GET /ca.crt` (the development CA's
//! certificate, while one is in use), `GET /health` (an alias of `/healthz`) and the public key
//! that verifies signed scan verdicts (`/.well-known/portcullis-attestation.pem`, `.jwks`).
//!
//! Rule: everything here is public and says nothing a client could not learn from the endpoints it
//! names; the CA certificate is served, never its key (which lives in another directory).

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;

/// `GET /`: a short description of the registry and where to go next.
pub async fn root(State(state): State<AppState>) -> Response {
    let base = &state.public_url;
    let body = json!({
        "name": "Portcullis",
        "description": "a hardened private OCI container registry",
        "registry_api": format!("{base}/v2/"),
        "admin_api": format!("{base}/api/v1"),
        "token": format!("{base}/token"),
        "jwks": format!("{base}/.well-known/jwks.json"),
        "attestation_key": format!("{base}/.well-known/portcullis-attestation.pem"),
        "health": format!("{base}/healthz"),
        "ready": format!("{base}/readyz"),
        "ca_certificate": state.dev_ca.is_some().then(|| format!("{base}/ca.crt")),
        "login": format!("docker login {}", crate::model::authority_of(base)),
        "docs": "README.md in the source: quick start, configuration, the admin API, troubleshooting",
    });
    axum::Json(body).into_response()
}

/// `GET /api/v1`: the sections of the admin API.
#[utoipa::path(
    get,
    path = "/",
    tag = "meta",
    security(()),
    responses((status = 200, description = "where the sections are", body = Object))
)]
pub async fn api_index(State(state): State<AppState>) -> Response {
    let base = format!("{}/api/v1", state.public_url);
    let sections = ["users", "namespaces", "repositories", "scans", "tokens", "webhooks", "audit", "gc", "fsck"];
    let links: serde_json::Map<String, serde_json::Value> =
        sections.iter().map(|s| (s.to_string(), json!(format!("{base}/{s}")))).collect();
    let body = json!({
        "authentication": "HTTP Basic with a password, a personal access token or a robot secret; JSON bodies with Content-Type: application/json",
        "errors": "{\"error\": {\"code\": \"...\", \"message\": \"...\"}}",
        "endpoints": links,
    });
    axum::Json(body).into_response()
}

/// `GET /ca.crt`: the development CA certificate (PEM) while the registry uses its own CA; 404
/// when a certificate is configured.
pub async fn ca_certificate(State(state): State<AppState>) -> Response {
    let Some(path) = &state.dev_ca else {
        return (StatusCode::NOT_FOUND, "no development CA is in use: this registry's certificate is configured\n")
            .into_response();
    };
    match tokio::fs::read(path.as_ref()).await {
        Ok(pem) => {
            let mut response = pem.into_response();
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-pem-file"));
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"ca.crt\""));
            response
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "reading the development CA certificate");
            (StatusCode::NOT_FOUND, "the development CA certificate is not readable\n").into_response()
        }
    }
}

/// `GET /.well-known/portcullis-attestation.pem`: the public key that verifies the registry's
/// signed scan verdicts (PEM `PUBLIC KEY`, for `cosign verify-attestation --key`).
pub async fn attestation_pem(State(state): State<AppState>) -> Response {
    match state.registry.attestor() {
        Some(a) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/x-pem-file"))], a.public_pem())
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no attestation key is configured\n").into_response(),
    }
}

/// `GET /.well-known/portcullis-attestation.jwks`: the same key as a JWK set.
pub async fn attestation_jwks(State(state): State<AppState>) -> Response {
    match state.registry.attestor() {
        Some(a) => axum::Json(a.jwks()).into_response(),
        None => (StatusCode::NOT_FOUND, "no attestation key is configured\n").into_response(),
    }
}
