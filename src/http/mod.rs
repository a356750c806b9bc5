//! HTTP: the axum router and the layers every response passes through.
//!
//! Rule: this layer knows axum, headers, status codes and JSON shapes; it reaches data only through
//! the domain's [`Registry`].

mod admin;
pub mod credentials;
mod discovery;
mod guards;
mod metrics;
pub mod observe;
pub mod oci_error;
pub mod rate;
pub mod token;
mod ui;
pub mod v2;

use std::sync::Arc;

use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::{any, get};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::auth::AuthService;
use crate::domain::Registry;
use oci_error::{Code, OciError};

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub auth: Arc<AuthService>,
    /// The configured public URL (no trailing slash): the token realm is built from it alone.
    pub public_url: String,
    pub limits: Arc<rate::RateLimits>,
    /// The Prometheus recorder's handle; `None` when `metrics.enabled` is false.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The SHA-256 of the metrics scrape token, if one is configured.
    pub scrape_token: Option<Arc<[u8; 32]>>,
    /// Whether each request writes an access-log line.
    pub access_log: bool,
    /// `webhooks.allow_private_targets`: registration refuses private IP targets unless set.
    pub webhooks_allow_private: bool,
    /// `scan.vulndb_max_bytes`: the largest vulnerability data import accepted.
    pub vulndb_max_bytes: u64,
    /// Where uploads are spooled (the private data directory; the files are unnamed).
    pub spool_dir: Arc<std::path::Path>,
    /// One vulnerability data import at a time (each may hold a large export in memory).
    pub vulndb_imports: Arc<tokio::sync::Semaphore>,
    /// The development CA certificate served at `/ca.crt`, when the registry uses its own CA.
    pub dev_ca: Option<Arc<std::path::Path>>,
}

/// `GET /healthz`: the process serves requests (no dependency is asked). Unauthenticated.
async fn healthz() -> axum::response::Response {
    (axum::http::StatusCode::OK, axum::Json(serde_json::json!({"status": "ok"}))).into_response()
}

/// `GET /readyz`: 200 when the database and the blob store each answer within
/// [`READY_BOUND`](crate::domain::health::READY_BOUND), 503 naming the one that did not.
/// Unauthenticated; says nothing a client could not learn from a failing push.
async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> axum::response::Response {
    let r = state.registry.readiness().await;
    let (status, word) = if r.ready() {
        (axum::http::StatusCode::OK, "ready")
    } else {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "not ready")
    };
    let body = serde_json::json!({"status": word, "database": r.database, "storage": r.storage});
    let mut response = (status, axum::Json(body)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// One year, the usual HSTS lifetime; the registry never speaks plaintext anyway.
const HSTS: &str = "max-age=31536000; includeSubDomains";

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v2", any(v2::handle))
        .route("/v2/", any(v2::handle))
        .route("/v2/{*rest}", any(v2::handle))
        .route("/token", get(token::get).post(token::post).fallback(token::unsupported))
        .route("/.well-known/jwks.json", get(token::jwks))
        .route("/.well-known/portcullis-attestation.pem", get(discovery::attestation_pem))
        .route("/.well-known/portcullis-attestation.jwks", get(discovery::attestation_jwks))
        .route("/", get(discovery::root))
        .route("/docs", get(discovery::root))
        .route("/ca.crt", get(discovery::ca_certificate))
        .route("/healthz", get(healthz))
        .route("/health", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::get))
        .nest(
            "/api/v1",
            admin::router().layer(axum::middleware::from_fn_with_state(state.clone(), guards::same_origin_json)),
        )
        .merge(ui::router(state.clone()))
        .fallback(|| async { OciError::new(Code::NotFound, "no such endpoint").into_response() })
        .layer(axum::middleware::from_fn_with_state(state.clone(), guards::limit_addresses))
        // A handler bug must cost one request, never the connection task or a stack trace to the
        // client: the panic is logged (without the request's text) and answered with an opaque 500.
        .layer(CatchPanicLayer::custom(|_panic: Box<dyn std::any::Any + Send>| {
            tracing::error!("a request handler panicked; answered 500");
            OciError::new(Code::Unknown, "internal error").into_response()
        }))
        .layer(SetResponseHeaderLayer::overriding(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS)))
        // Outermost: every answer, a refusal by a limit or a caught panic too, has a request id,
        // an access-log line and its metrics; logs written while handling carry the id.
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe::observe))
        .with_state(state)
}
