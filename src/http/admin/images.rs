//! `/api/v1/images?repository=&digest=`: one image as a reviewer needs it: its scan report with
//! every finding, why pulls are refused (if they are), and, where the quarantine gate lets the
//! caller read it, its layers, platforms, config and referrers. The console's image page renders
//! the same [`image_detail`].
//!
//! Rules:
//! - The pull right on the repository is needed; without it the image does not exist (404).
//! - The manifest and config are read through the gate as `/v2` reads them: a caller the gate
//!   refuses gets the report and the reason, not the content. A look past the gate (admins) is
//!   audited (`gate.bypass`) and counted, as on `/v2`; referrers are read past it only then.
//! - The config is read with Go's rules (`domain::config_view`), so what is shown is what runs; an
//!   ambiguous config is not shown. Environment values that look secret are masked.

use axum::extract::State;
use axum::http::StatusCode;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{json, ApiError, ApiResult, Caller, Query};
use crate::auth::policy::{self, NamespaceFacts, Need};
use crate::auth::service::Authenticated;
use crate::domain::config_view::{self, ConfigView};
use crate::domain::{Digest, Error, Reader, Reference, RepoName};
use crate::http::AppState;
use crate::model::audit::NewAudit;
use crate::model::ScanRecord;

/// The most of an image config that is read.
const MAX_CONFIG: usize = 1024 * 1024;

#[derive(Serialize)]
pub struct Layer {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

#[derive(Serialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub digest: String,
}

#[derive(Serialize)]
pub struct ReferrerItem {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub size: u64,
}

/// One image as [`image_detail`] reads it.
#[derive(Serialize)]
pub struct ImageDetail {
    pub repository: String,
    pub digest: String,
    /// Why pulls are refused (the gate's message), if they are.
    pub pulls_refused: Option<String>,
    /// Whether the content below could be read by the caller.
    pub content_shown: bool,
    pub media_type: Option<String>,
    pub layers: Vec<Layer>,
    /// An index's images.
    pub platforms: Vec<Platform>,
    pub config: Option<ConfigView>,
    /// Why the config is not shown, when it exists but is not.
    pub config_error: Option<String>,
    pub referrers: Vec<ReferrerItem>,
    /// The scan report (as `GET /scans` answers it); null without a scan record.
    pub scan: Option<Value>,
    #[serde(skip)]
    pub record: Option<ScanRecord>,
}

/// How the gate treats `who`: those the policy lets bypass it (admins) may read past it.
fn reader_of(who: &Authenticated) -> Reader {
    match policy::decide(&who.principal, &[], &Need::GateBypass, &NamespaceFacts::default()) {
        Ok(()) => Reader::Unrestricted,
        Err(_) => Reader::Ordinary,
    }
}

/// Reads one image for `who`; `via` names the caller's surface in the audit record of a look
/// past the gate (`api`, `console`).
pub async fn image_detail(
    state: &AppState,
    who: &Authenticated,
    repository: &str,
    digest: &str,
    via: &str,
) -> Result<ImageDetail, ApiError> {
    let hidden = || ApiError::not_found("image");
    let repo: RepoName =
        repository.parse().map_err(|_| ApiError::invalid("repository is not a valid repository name"))?;
    let digest: Digest = digest.parse().map_err(|_| ApiError::invalid("digest is not a valid digest"))?;
    if !super::may_pull(state, who, &repo).await? {
        return Err(hidden());
    }
    let reference = Reference::Digest(digest.clone());
    let (content, refused) = match state.registry.read_manifest(Reader::Ordinary, &repo, &reference).await {
        Ok(m) => (Some(m), None),
        Err(Error::ManifestUnknown | Error::NameUnknown) => return Err(hidden()),
        Err(e @ (Error::Blocked(_) | Error::Unsigned(_))) if reader_of(who) == Reader::Unrestricted => {
            let why = crate::http::oci_error::OciError::from(e).message;
            let subject = who.principal.subject();
            tracing::info!(target: "audit", subject, repository = %repo, via, "quarantine bypassed by an admin");
            metrics::counter!(crate::model::metrics::GATE_BYPASSES).increment(1);
            let record = NewAudit::new("gate.bypass", format!("{repo}@{digest}"))
                .actor(subject)
                .namespace(repo.namespace())
                .detail("via", via);
            state.registry.audit(record).await;
            (Some(state.registry.read_manifest(Reader::Unrestricted, &repo, &reference).await?), Some(why))
        }
        Err(e @ (Error::Blocked(_) | Error::Unsigned(_))) => {
            (None, Some(crate::http::oci_error::OciError::from(e).message))
        }
        Err(e) => return Err(e.into()),
    };
    let record = state.registry.scan_record(&repo, &digest).await?;
    let now = state.registry.clock().now();
    let mut detail = ImageDetail {
        repository: repo.to_string(),
        digest: digest.to_string(),
        pulls_refused: refused.clone(),
        content_shown: content.is_some(),
        media_type: content.as_ref().map(|m| m.media_type.clone()),
        layers: Vec::new(),
        platforms: Vec::new(),
        config: None,
        config_error: None,
        referrers: Vec::new(),
        scan: record.as_ref().map(|r| super::scans::report(r, now)),
        record,
    };
    let Some(content) = content else { return Ok(detail) };
    let manifest: Value = serde_json::from_slice(&content.content).unwrap_or(Value::Null);
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    for l in manifest.get("layers").and_then(Value::as_array).into_iter().flatten() {
        let size = l.get("size").and_then(Value::as_u64).unwrap_or(0);
        detail.layers.push(Layer { digest: text(l, "digest"), size, media_type: text(l, "mediaType") });
    }
    for c in manifest.get("manifests").and_then(Value::as_array).into_iter().flatten() {
        let p = c.get("platform").cloned().unwrap_or(Value::Null);
        detail.platforms.push(Platform {
            os: text(&p, "os"),
            architecture: text(&p, "architecture"),
            digest: text(c, "digest"),
        });
    }
    let reader = if refused.is_some() { reader_of(who) } else { Reader::Ordinary };
    match read_config(state, reader, &repo, &manifest).await {
        Ok(Some(mut view)) => {
            view.env = view.env.iter().map(|e| mask_env(e)).collect();
            detail.config = Some(view);
        }
        Ok(None) => {}
        Err(why) => detail.config_error = Some(why),
    }
    // Referrers past the gate only where the image itself was read past it (and audited).
    detail.referrers = state
        .registry
        .referrers(reader, &repo, &digest, None)
        .await?
        .into_iter()
        .map(|r| ReferrerItem {
            digest: r.digest.to_string(),
            media_type: r.media_type,
            artifact_type: r.artifact_type,
            size: r.size,
        })
        .collect();
    Ok(detail)
}

/// The image config through the gate, as `reader` may read it; `Ok(None)` when there is none to
/// read, `Err` when it cannot be shown.
async fn read_config(
    state: &AppState,
    reader: Reader,
    repo: &RepoName,
    manifest: &Value,
) -> Result<Option<ConfigView>, String> {
    let Some(digest) = manifest.get("config").and_then(|c| c.get("digest")).and_then(Value::as_str) else {
        return Ok(None);
    };
    let digest: Digest = digest.parse().map_err(|_| "its digest is not valid".to_owned())?;
    let Ok(read) = state.registry.read_blob(reader, repo, &digest, None).await else { return Ok(None) };
    let too_large = || format!("it is larger than {} KiB", MAX_CONFIG / 1024);
    if read.size as usize > MAX_CONFIG {
        return Err(too_large());
    }
    let mut body = read.body;
    let mut buf = Vec::with_capacity(read.size as usize);
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk.map_err(|_| "it could not be read".to_owned())?);
        if buf.len() > MAX_CONFIG {
            return Err(too_large());
        }
    }
    config_view::read(&buf).map(Some)
}

/// Key words in a variable's name that say its value is a secret.
const SECRET_NAMES: &[&str] = &[
    "PASS",
    "PWD",
    "SECRET",
    "TOKEN",
    "KEY",
    "CRED",
    "AUTH",
    "PRIVATE",
    "SESSION",
    "COOKIE",
    "SIGNATURE",
    "DSN",
    "JWT",
    "CONN",
    "CERT",
    "SALT",
    "API",
];

/// `NAME=value`, the value masked when the name or the value looks like a secret. (Masking keeps
/// a secret off screens and screenshots; whoever may pull the image can read its config anyway.)
pub fn mask_env(entry: &str) -> String {
    let (name, value) = entry.split_once('=').unwrap_or((entry, ""));
    let upper = name.to_ascii_uppercase();
    let named = SECRET_NAMES.iter().any(|w| upper.contains(w));
    // Credentials in a URL (`scheme://user:pass@host`) or its query, key material, connection
    // strings, and long unbroken random-looking strings.
    let lower = value.to_ascii_lowercase();
    let in_url = value.contains("://")
        && value.split("://").nth(1).is_some_and(|rest| rest.split('/').next().is_some_and(|h| h.contains('@')));
    let marked =
        ["-----begin", "password=", "pwd=", "secret=", "token=", "key=", "sig="].iter().any(|m| lower.contains(m));
    let random = value.len() >= 20
        && !value.contains([' ', ':', ','])
        && value.bytes().any(|b| b.is_ascii_digit())
        && value.bytes().any(|b| b.is_ascii_alphabetic())
        && !value.starts_with('/');
    if !value.is_empty() && (named || in_url || marked || random) {
        format!("{name}=•••••• (masked)")
    } else {
        entry.to_owned()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageQuery {
    repository: String,
    digest: String,
}

/// One image: its scan report and findings, why pulls are refused, and (where the gate lets the
/// caller read it) its layers, platforms, config (secret-looking environment masked) and referrers.
#[utoipa::path(
    get,
    path = "/images",
    tag = "repositories",
    params(
        ("repository" = String, Query, description = "the repository (pull right needed; otherwise 404)"),
        ("digest" = String, Query, description = "the manifest's digest")
    ),
    responses((status = 200, description = "ok", body = super::schema::Image))
)]
pub async fn show(State(state): State<AppState>, Caller(who): Caller, Query(q): Query<ImageQuery>) -> ApiResult {
    json(StatusCode::OK, image_detail(&state, &who, &q.repository, &q.digest, "api").await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_values_are_masked() {
        for secret in [
            "DB_PASSWORD=hunter2",
            "AWS_SECRET_ACCESS_KEY=x",
            "GITHUB_TOKEN=ghp_abc",
            "DATABASE_URL=postgres://app:s3cret@db/app",
            "RANDOM=Zx81kq0Pq9vX2mN4bT7yL5wR",
            "TLS=-----BEGIN PRIVATE KEY----- MIIE",
            "DB_CONN=Server=x;Password=y",
            "MYSQL_PWD=short",
            "HOOK=https://example.com/x?token=abc",
            "B64=aGVsbG8vd29ybGQ/Zm9vYmFyMTIz/",
        ] {
            assert!(mask_env(secret).ends_with("(masked)"), "{secret}");
            assert!(!mask_env(secret).contains(secret.split_once('=').unwrap().1), "{secret}");
        }
        for plain in ["PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8", "HOME=/root", "VERSION=1.2.3", "EMPTY_TOKEN="] {
            assert_eq!(mask_env(plain), plain);
        }
    }
}
