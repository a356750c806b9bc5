//! `GET /metrics`: the Prometheus text format, on the TLS port.
//!
//! Rule: who may read it is decided by `policy::decide` with [`Need::Metrics`]: administrators
//! (HTTP Basic, as on the admin API) and the scrape credential. The scrape credential is a bearer
//! token whose SHA-256 is configured (`metrics.scrape_token_sha256`); it authenticates as
//! [`Principal::Scraper`], which the policy lets read metrics and nothing else. The token is
//! compared by its digest in constant time and never stored.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq;

use super::admin::{ApiError, Caller};
use super::credentials;
use super::observe::RequestFacts;
use super::AppState;
use crate::auth::policy::{self, NamespaceFacts, Need};
use crate::auth::Principal;
use crate::model::metrics as m;
use crate::model::ScanState;

pub async fn get(State(state): State<AppState>, req: Request) -> Response {
    match serve(&state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve(state: &AppState, req: Request) -> Result<Response, ApiError> {
    let Some(handle) = &state.metrics else {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not_found", "metrics are turned off (metrics.enabled)"));
    };
    let (mut parts, _) = req.into_parts();
    let principal = match credentials::bearer(&parts.headers) {
        Some(token) => scraper(state, token)?,
        None => Caller::from_request_parts(&mut parts, state).await?.0.principal,
    };
    if let Some(facts) = RequestFacts::of(&parts.extensions) {
        facts.set_principal(principal.subject());
    }
    policy::decide(&principal, &[], &Need::Metrics, &NamespaceFacts::default()).map_err(ApiError::forbidden)?;
    // Gauges read from the database at each scrape: they hold across replicas and restarts. A
    // database that does not answer leaves the last values (and counts an error).
    if let Ok(counts) = state.registry.count_scans().await {
        let mut waiting = 0;
        for &s in ScanState::ALL {
            let n = counts.iter().find(|(state, _)| *state == s).map_or(0, |(_, n)| *n);
            metrics::gauge!(m::IMAGES, "state" => s.as_str()).set(n as f64);
            if matches!(s, ScanState::Pending | ScanState::Scanning) {
                waiting += n;
            }
        }
        metrics::gauge!(m::SCAN_QUEUE).set(waiting as f64);
    }
    let mut response = handle.render().into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The scrape credential, when the bearer token is it; any other bearer token is refused (registry
/// tokens do not read metrics).
fn scraper(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "metrics take the scrape token (metrics.scrape_token_sha256) or an administrator's Basic credentials",
        )
    };
    let expected = state.scrape_token.as_ref().ok_or_else(unauthorized)?;
    let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    if bool::from(presented.ct_eq(&**expected)) {
        Ok(Principal::Scraper)
    } else {
        tracing::info!("refused a metrics scrape token");
        Err(unauthorized())
    }
}
