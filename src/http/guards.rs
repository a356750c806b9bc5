//! Checks every request passes before its handler: the per-address rate limit, and for the admin
//! API, that the request is not a cross-site one a browser was tricked into sending.
//!
//! Rules for the admin API (CSRF): a request whose `Sec-Fetch-Site` is neither `same-origin` nor
//! `none`, or whose `Origin` is not the registry's own (`public_url`), is refused with `403`; a
//! request with a body must say `Content-Type: application/json` (`415` otherwise), which a plain
//! HTML form cannot send; the one exception, `application/zip` for `POST /api/v1/vulndb`, cannot
//! be sent by a form either.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::admin::ApiError;
use super::credentials::ClientAddr;
use super::oci_error::{Code, OciError};
use super::rate::Limited;
use super::AppState;

/// The answer to a request over a rate limit, in the shape of the API it was for.
pub fn too_many(path: &str, limited: Limited) -> Response {
    let message = format!("too many {}; retry in {} s", limited.what, limited.retry_after_secs());
    let mut response = if path.starts_with("/api/") {
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message).into_response()
    } else if path.starts_with("/token") {
        super::oci_error::token_error(OciError::new(Code::TooManyRequests, message))
    } else {
        OciError::new(Code::TooManyRequests, message).into_response()
    };
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(limited.retry_after_secs()));
    response
}

pub async fn limit_addresses(State(state): State<AppState>, req: Request<Body>, next: Next) -> Response {
    if let Err(limited) = state.limits.check_address(ClientAddr::of(req.extensions())) {
        return too_many(req.uri().path(), limited);
    }
    next.run(req).await
}

/// The origin (`scheme://host[:port]`) of a URL, the default port left out.
pub(super) fn origin_of(url: &str) -> Option<String> {
    let u = url::Url::parse(url).ok()?;
    Some(u.origin().ascii_serialization())
}

pub async fn same_origin_json(State(state): State<AppState>, req: Request<Body>, next: Next) -> Response {
    let forbidden = |m: &str| ApiError::new(StatusCode::FORBIDDEN, "forbidden", m).into_response();
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return forbidden("cross-site requests to the admin API are refused");
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let ours = origin_of(&state.public_url);
        if origin.to_str().ok().and_then(origin_of) != ours {
            return forbidden("requests from another origin to the admin API are refused");
        }
    }
    let declared = match headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()) {
        Some(n) => n != "0",
        None => headers.contains_key(header::TRANSFER_ENCODING),
    };
    let has_body = declared || http_body::Body::size_hint(req.body()).exact() != Some(0);
    let writes = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE);
    if writes && has_body {
        let vulndb = matches!(req.uri().path(), "/api/v1/vulndb" | "/vulndb");
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_ascii_lowercase())
            .is_some_and(|t| {
                t == "application/json"
                    || (t.starts_with("application/") && t.ends_with("+json"))
                    // The vulnerability data upload (OSV's all.zip). A browser form cannot send
                    // this type without a CORS preflight, which this API never grants.
                    || (t == "application/zip" && vulndb)
            });
        if !json {
            let message = if vulndb {
                "send an OSV export as application/zip (such as OSV's all.zip) or application/json"
            } else {
                "the admin API takes JSON bodies: send Content-Type: application/json"
            };
            return ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)
                .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_without_default_ports() {
        assert_eq!(origin_of("https://r.example:443/x"), origin_of("https://r.example"));
        assert_ne!(origin_of("https://r.example:5000"), origin_of("https://r.example"));
        assert_ne!(origin_of("https://evil.example"), origin_of("https://r.example"));
        assert_eq!(origin_of("null"), None);
    }
}
