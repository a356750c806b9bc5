//! The one table of OCI error codes and HTTP statuses, and the JSON error envelope.
//!
//! Rule: every error a `/v2` client sees is built here, from a [`Code`] whose status comes from
//! [`Code::spec`]; no handler picks a status for an error itself. Internal errors answer with an
//! opaque message and log their detail.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::domain::Error;

/// Error codes, each with one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BlobUnknown,
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    NameInvalid,
    NameUnknown,
    SizeInvalid,
    Unauthorized,
    Denied,
    Unsupported,
    TooManyRequests,
    // Codes of CNCF distribution that clients know, for cases the OCI table leaves open.
    TagInvalid,
    RangeInvalid,
    PaginationNumberInvalid,
    Unavailable,
    Unknown,
    /// `SIZE_INVALID` with 413: the body is over a limit (the spec asks for 413 here).
    TooLarge,
    /// No endpoint has this path.
    NotFound,
    /// A malformed request outside `/v2` (the `/token` form or query).
    RequestInvalid,
    // The quarantine gate (Portcullis): the code names the scan state.
    Quarantined,
    ScanPending,
    ScanFailed,
    /// The signature gate (Portcullis): the namespace requires a signature by a trusted key.
    SignatureRequired,
}

impl Code {
    /// The table: wire code, HTTP status, and the spec's short message.
    pub const fn spec(self) -> (&'static str, StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            Code::BlobUnknown => ("BLOB_UNKNOWN", S::NOT_FOUND, "blob unknown to registry"),
            Code::BlobUploadInvalid => ("BLOB_UPLOAD_INVALID", S::BAD_REQUEST, "blob upload invalid"),
            Code::BlobUploadUnknown => ("BLOB_UPLOAD_UNKNOWN", S::NOT_FOUND, "blob upload unknown to registry"),
            Code::DigestInvalid => ("DIGEST_INVALID", S::BAD_REQUEST, "provided digest did not match uploaded content"),
            Code::ManifestBlobUnknown => {
                ("MANIFEST_BLOB_UNKNOWN", S::NOT_FOUND, "manifest references a manifest or blob unknown to registry")
            }
            Code::ManifestInvalid => ("MANIFEST_INVALID", S::BAD_REQUEST, "manifest invalid"),
            Code::ManifestUnknown => ("MANIFEST_UNKNOWN", S::NOT_FOUND, "manifest unknown to registry"),
            Code::NameInvalid => ("NAME_INVALID", S::BAD_REQUEST, "invalid repository name"),
            Code::NameUnknown => ("NAME_UNKNOWN", S::NOT_FOUND, "repository name not known to registry"),
            Code::SizeInvalid => ("SIZE_INVALID", S::BAD_REQUEST, "provided length did not match content length"),
            Code::Unauthorized => ("UNAUTHORIZED", S::UNAUTHORIZED, "authentication required"),
            Code::Denied => ("DENIED", S::FORBIDDEN, "requested access to the resource is denied"),
            Code::Unsupported => ("UNSUPPORTED", S::METHOD_NOT_ALLOWED, "the operation is unsupported"),
            Code::TooManyRequests => ("TOOMANYREQUESTS", S::TOO_MANY_REQUESTS, "too many requests"),
            Code::TagInvalid => ("TAG_INVALID", S::BAD_REQUEST, "manifest tag did not match URI"),
            Code::RangeInvalid => ("RANGE_INVALID", S::RANGE_NOT_SATISFIABLE, "invalid content range"),
            Code::PaginationNumberInvalid => {
                ("PAGINATION_NUMBER_INVALID", S::BAD_REQUEST, "invalid number of results requested")
            }
            Code::Unavailable => ("UNAVAILABLE", S::SERVICE_UNAVAILABLE, "service unavailable"),
            Code::Unknown => ("UNKNOWN", S::INTERNAL_SERVER_ERROR, "unknown error"),
            Code::TooLarge => ("SIZE_INVALID", S::PAYLOAD_TOO_LARGE, "content is larger than the registry accepts"),
            Code::NotFound => ("NOT_FOUND", S::NOT_FOUND, "no such endpoint"),
            Code::RequestInvalid => ("INVALID_REQUEST", S::BAD_REQUEST, "the request is invalid"),
            Code::Quarantined => ("QUARANTINED", S::FORBIDDEN, "the image is quarantined"),
            Code::ScanPending => ("SCAN_PENDING", S::FORBIDDEN, "the image has not been scanned yet"),
            Code::ScanFailed => ("SCAN_FAILED", S::FORBIDDEN, "the image could not be scanned"),
            Code::SignatureRequired => {
                ("SIGNATURE_REQUIRED", S::FORBIDDEN, "the image has no valid signature by a trusted key")
            }
        }
    }
}

/// An error answer: code, message, and extra headers some codes need.
#[derive(Debug)]
pub struct OciError {
    pub code: Code,
    pub message: String,
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl OciError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        OciError { code, message: message.into(), headers: Vec::new() }
    }
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl From<Error> for OciError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        let code = match e {
            Error::NameInvalid(_) => Code::NameInvalid,
            Error::NameUnknown => Code::NameUnknown,
            Error::TagInvalid(_) => Code::TagInvalid,
            Error::DigestInvalid(_) => Code::DigestInvalid,
            Error::BlobUnknown => Code::BlobUnknown,
            Error::UploadUnknown => Code::BlobUploadUnknown,
            Error::UploadInvalid(_) => Code::BlobUploadInvalid,
            Error::RangeInvalid(_) => Code::RangeInvalid,
            Error::RangeNotSatisfiable { size } => {
                return OciError::new(Code::RangeInvalid, message).with_header(
                    header::CONTENT_RANGE,
                    HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
                )
            }
            Error::SizeInvalid(_) => Code::SizeInvalid,
            Error::ManifestUnknown => Code::ManifestUnknown,
            Error::ManifestInvalid(_) => Code::ManifestInvalid,
            Error::ManifestBlobUnknown { .. } => Code::ManifestBlobUnknown,
            Error::ManifestTooLarge { .. } => Code::TooLarge,
            Error::PaginationInvalid(_) => Code::PaginationNumberInvalid,
            Error::Unsupported(_) => Code::Unsupported,
            Error::Invalid(_) => Code::RequestInvalid,
            Error::TooManyUploads(_) => {
                return OciError::new(Code::TooManyRequests, message)
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("10"))
            }
            Error::Denied(_) | Error::OverQuota { .. } => Code::Denied,
            Error::Unsigned(_) => Code::SignatureRequired,
            Error::Blocked(b) => match b.state {
                crate::model::ScanState::Quarantined => Code::Quarantined,
                crate::model::ScanState::Error => Code::ScanFailed,
                _ => Code::ScanPending,
            },
            Error::Unavailable(detail) => {
                tracing::warn!(%detail, "backend unavailable");
                // The backend already retried with back-off; tell the client when to come back.
                return OciError::new(Code::Unavailable, message)
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Error::Busy(_) => {
                return OciError::new(Code::Unavailable, message)
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Error::Internal(detail) => {
                tracing::error!(%detail, "internal error");
                Code::Unknown
            }
        };
        OciError::new(code, message)
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let (code, status, _) = self.code.spec();
        let body = json!({"errors": [{"code": code, "message": self.message, "detail": null}]});
        let mut response = (status, axum::Json(body)).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

/// Every `/token` refusal has one shape: the registry's error envelope (`errors`, which docker
/// and the other registry clients read) together with OAuth2's `error` and `error_description`
/// (RFC 6749, section 5.2, which OAuth2 clients of `POST /token` read). Statuses and codes come
/// from the one table in `oci_error`.
pub fn token_error(e: OciError) -> Response {
    let (code, status, _) = e.code.spec();
    let oauth = match e.code {
        Code::Unauthorized => "invalid_grant",
        Code::Unknown => "server_error",
        Code::Unavailable | Code::TooManyRequests => "temporarily_unavailable",
        _ => "invalid_request",
    };
    let body = json!({
        "errors": [{"code": code, "message": e.message, "detail": null}],
        "error": oauth,
        "error_description": e.message,
    });
    let mut response = (status, axum::Json(body)).into_response();
    for (name, value) in e.headers {
        response.headers_mut().insert(name, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_detail_stays_out_of_the_body() {
        let e = OciError::from(Error::Internal("secret path /var/lib/x".into()));
        assert_eq!(e.code, Code::Unknown);
        assert!(!e.message.contains("/var/lib"));
    }
}
