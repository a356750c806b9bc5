//! `/api/v1/vulndb`: the vulnerability data the scanner matches packages against. Admins import
//! OSV exports (`POST`, a zip such as OSV's `all.zip`, or JSON: one record or an array) and read
//! the data's version (`GET`). The import is `domain::vulndb`; the rescans it starts are
//! `scan::rescan`.
//!
//! Rules: one import at a time (another is refused with 409); the body is spooled to an unnamed
//! file in the private data directory, at most `scan.vulndb_max_bytes` of it (a larger one is
//! refused with 413 naming the key), and read off the async threads, a JSON array one record at
//! a time.

use std::io::Write;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use futures::StreamExt;
use serde_json::json as j;

use super::{json, require_admin, ApiError, ApiResult, Caller};
use crate::domain::vulndb::Export;
use crate::http::AppState;

/// What kind of export a body is, from its `Content-Type`.
#[derive(Clone, Copy)]
enum Kind {
    Zip,
    Json,
}

fn kind(headers: &HeaderMap) -> Result<Kind, ApiError> {
    let value = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = value.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/zip" => Ok(Kind::Zip),
        "application/json" => Ok(Kind::Json),
        _ => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send an OSV export as application/zip (such as OSV's all.zip) or application/json (one record or an array)",
        )),
    }
}

/// `POST /api/v1/vulndb` (admin): imports the export in the body and reloads; every replica
/// matches its passed images against the new data. Answers `{"version", "imported_at",
/// "records", "added", "changed", "unchanged", "skipped"}`.
#[utoipa::path(
    post,
    path = "/vulndb",
    tag = "vulnerabilities",
    request_body(content((Vec<u8> = "application/zip"), (Object = "application/json")), description = "an OSV export (all.zip), one OSV record or an array of them"),
    responses((status = 200, description = "ok", body = super::schema::VulnDbImport))
)]
pub async fn import(State(state): State<AppState>, Caller(who): Caller, headers: HeaderMap, body: Body) -> ApiResult {
    require_admin(&who)?;
    let kind = kind(&headers)?;
    let max = state.vulndb_max_bytes;
    let Ok(_running) = state.vulndb_imports.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            "another vulnerability data import is running; retry when it has finished",
        ));
    };
    let mut file = tempfile::tempfile_in(&state.spool_dir)
        .map_err(|e| ApiError::from(crate::domain::Error::Internal(format!("spooling the upload: {e}"))))?;
    let mut size = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", format!("reading the request body: {e}"))
        })?;
        size += chunk.len() as u64;
        if size > max {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the vulnerability data is larger than scan.vulndb_max_bytes ({max} bytes)"),
            ));
        }
        file.write_all(&chunk)
            .map_err(|e| ApiError::from(crate::domain::Error::Internal(format!("spooling the upload: {e}"))))?;
    }
    let export = tokio::task::spawn_blocking(move || {
        use std::io::Seek;
        let io = |e: std::io::Error| crate::domain::Error::Internal(format!("reading the spooled upload: {e}"));
        file.rewind().map_err(io)?;
        let mut export = Export::default();
        match kind {
            Kind::Zip => export.add_zip(file, "the zip archive", max)?,
            Kind::Json => export.add_json_reader(file, "the body")?,
        }
        Ok::<_, crate::domain::Error>(export)
    })
    .await
    .map_err(|e| ApiError::from(crate::domain::Error::Internal(format!("reading the upload: {e}"))))??;
    let report = state.registry.import_vulnerabilities(export, who.principal.subject()).await?;
    let c = report.count;
    json(
        StatusCode::OK,
        j!({
            "version": c.state.version,
            "imported_at": c.state.imported_at.map(crate::model::rfc3339),
            "records": c.state.records,
            "added": c.added,
            "changed": c.changed,
            "unchanged": c.unchanged,
            "removed": c.removed,
            "skipped": report.skipped,
        }),
    )
}

/// `GET /api/v1/vulndb` (admin): `{"version", "imported_at", "records", "rescans_due"}`; the
/// version is 0 and `imported_at` null before the first import. `rescans_due` counts the passed
/// images not yet matched against this version.
#[utoipa::path(
    get,
    path = "/vulndb",
    tag = "vulnerabilities",
    responses((status = 200, description = "ok", body = super::schema::VulnDbStatus))
)]
pub async fn status(State(state): State<AppState>, Caller(who): Caller) -> ApiResult {
    require_admin(&who)?;
    let s = state.registry.vulndb_state().await?;
    let due = state.registry.count_rematch_due(s.version, i64::MIN).await?;
    json(
        StatusCode::OK,
        j!({
            "version": s.version,
            "imported_at": s.imported_at.map(crate::model::rfc3339),
            "records": s.records,
            "rescans_due": due,
        }),
    )
}
