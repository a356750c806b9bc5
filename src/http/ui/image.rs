//! One image (`/ui/image?repository=&digest=`): its scan verdict with every finding, and, where
//! the quarantine gate lets the viewer read it, its platform, layers, config and referrers.
//! Admins also get release (reason, optional expiry), reject and rescan, which call the admin
//! API's operations.
//!
//! Rule: the manifest and config are read through the gate as `/v2` reads them. A viewer the gate
//! refuses sees the verdict and why, not the content; an admin's read past the gate is audited
//! (`gate.bypass`, as on `/v2`). Environment values that look secret are masked.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use futures::StreamExt;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::browse::may_pull;
use super::layout::{api_problem, bytes, domain_problem, page, problem, render, state_badge, time};
use super::{form_fields, q, see_other, Viewer};
use crate::auth::policy::{self, NamespaceFacts, Need};
use crate::domain::config_view::{self, ConfigView};
use crate::domain::{Digest, Error, Reader, Reference, RepoName};
use crate::http::admin::scans::{reject_image, release_image, rescan_image};
use crate::http::AppState;
use crate::model::audit::NewAudit;

/// The most of an image config the page reads.
const MAX_CONFIG: usize = 1024 * 1024;

#[derive(Deserialize)]
pub struct ImageQuery {
    repository: String,
    digest: String,
    done: Option<String>,
}

/// How the gate treats the viewer: admins may read past it (audited), others may not.
fn reader(viewer: &Viewer) -> Reader {
    match policy::decide(&viewer.who.principal, &[], &Need::GateBypass, &NamespaceFacts::default()) {
        Ok(()) => Reader::Unrestricted,
        Err(_) => Reader::Ordinary,
    }
}

pub async fn show(State(state): State<AppState>, viewer: Viewer, Query(iq): Query<ImageQuery>) -> Response {
    let hidden = || problem(StatusCode::NOT_FOUND, "No such image, or not one you may read.");
    let (Ok(repo), Ok(digest)) = (iq.repository.parse::<RepoName>(), iq.digest.parse::<Digest>()) else {
        return hidden();
    };
    match may_pull(&state, &viewer, &repo).await {
        Ok(true) => {}
        Ok(false) => return hidden(),
        Err(e) => return domain_problem(e),
    }
    let reference = Reference::Digest(digest.clone());
    let (content, withheld) = match state.registry.read_manifest(Reader::Ordinary, &repo, &reference).await {
        Ok(m) => (Some(m), None),
        Err(Error::ManifestUnknown) => return hidden(),
        Err(e @ (Error::Blocked(_) | Error::Unsigned(_))) if reader(&viewer) == Reader::Unrestricted => {
            let why = crate::http::oci_error::OciError::from(e).message;
            tracing::info!(target: "audit", subject = viewer.name(), repository = %repo, "quarantine bypassed by an admin in the console");
            metrics::counter!(crate::model::metrics::GATE_BYPASSES).increment(1);
            let record = NewAudit::new("gate.bypass", format!("{repo}@{digest}"))
                .actor(viewer.name())
                .namespace(repo.namespace())
                .detail("via", "console");
            state.registry.audit(record).await;
            match state.registry.read_manifest(Reader::Unrestricted, &repo, &reference).await {
                Ok(m) => (Some(m), Some(why)),
                Err(e) => return domain_problem(e),
            }
        }
        Err(e @ (Error::Blocked(_) | Error::Unsigned(_))) => {
            (None, Some(crate::http::oci_error::OciError::from(e).message))
        }
        Err(e) => return domain_problem(e),
    };
    let scan = match state.registry.scan_record(&repo, &digest).await {
        Ok(s) => s,
        Err(e) => return domain_problem(e),
    };
    let now = state.registry.clock().now();
    let effective =
        scan.as_ref().map(|s| s.effective_state(now).as_str().to_owned()).unwrap_or_else(|| "unscanned".into());
    let findings: Vec<Value> = scan
        .as_ref()
        .and_then(|s| s.findings.as_deref())
        .and_then(|f| serde_json::from_str(f).ok())
        .unwrap_or_default();
    let manifest: Option<Value> = content.as_ref().and_then(|m| serde_json::from_slice(&m.content).ok());
    let config = match &manifest {
        Some(m) => read_config(&state, &viewer, &repo, m).await,
        None => Ok(None),
    };
    // Referrers past the gate only where the image itself was (and that look was audited).
    let referrer_reader = if withheld.is_some() { reader(&viewer) } else { Reader::Ordinary };
    let referrers = if content.is_some() {
        state.registry.referrers(referrer_reader, &repo, &digest, None).await.unwrap_or_default()
    } else {
        Vec::new()
    };
    let notice = match iq.done.as_deref() {
        Some("released") => Some("Released. The release is recorded with your name and reason."),
        Some("rescan") => Some("A new scan was requested."),
        _ => None,
    };
    let body = html! {
        p.crumbs {
            a href="/ui/" { "Repositories" } " / "
            a href={ "/ui/repository?name=" (q(repo.as_str())) } { (repo.as_str()) } " / "
            span.mono { (digest.to_string()) }
        }
        @if let Some(n) = notice { p.notice role="status" { (n) } }
        section.verdict {
            h2 { "Scan verdict " (state_badge(&effective)) }
            @if let Some(s) = &scan {
                @if let Some(summary) = &s.summary { p.summary { (summary) } }
                @if let Some(by) = &s.released_by {
                    p { "Released by " strong { (by) } @if let Some(r) = &s.release_reason { ": " q.reason { (r) } }
                        @if let Some(until) = s.release_until { " until " (time(until)) } }
                }
                p.meta { "Updated " (time(s.updated_at)) }
            }
            @if let Some(w) = &withheld { p.problem { "Pulls are refused: " (w) } }
            (findings_table(&findings))
        }
        @if viewer.is_admin() && scan.is_some() { (admin_actions(&viewer, &repo, &digest, &effective)) }
        @if let Some(m) = &manifest { (manifest_section(m, &config)) }
        @if content.is_none() { p.hint { "The image's content is not shown while the gate refuses it to you." } }
        @if !referrers.is_empty() {
            section {
                h2 { "Referrers" }
                table.list {
                    thead { tr { th { "Artifact type" } th { "Digest" } th.num { "Size" } } }
                    tbody { @for r in &referrers {
                        tr {
                            td { (r.artifact_type.as_deref().unwrap_or(&r.media_type)) }
                            td.mono { a href={ "/ui/image?repository=" (q(repo.as_str())) "&digest=" (q(&r.digest.to_string())) } { (super::browse::short(&r.digest.to_string())) } }
                            td.num { (bytes(r.size)) }
                        }
                    } }
                }
            }
        }
    };
    render(StatusCode::OK, page("Image", Some(&viewer), body))
}

/// Every finding: rule, severity, what (a vulnerability's names its package, version and fix),
/// file and layer.
pub fn findings_table(findings: &[Value]) -> Markup {
    let text = |f: &Value, k: &str| f.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    html! {
        @if findings.is_empty() { p.empty { "No findings." } } @else {
            table.list.findings {
                thead { tr { th { "Rule" } th { "Severity" } th { "Finding" } th { "Path" } th { "Layer" } } }
                tbody { @for f in findings {
                    tr {
                        td { (text(f, "rule")) }
                        td { span class={ "badge sev-" (text(f, "severity")) } { (text(f, "severity")) } }
                        td { (text(f, "message")) }
                        td.mono { (text(f, "path")) }
                        td.mono { (super::browse::short(&text(f, "layer"))) }
                    }
                } }
            }
        }
    }
}

/// Release (reason required, expiry optional), reject (reason required) and rescan.
pub fn admin_actions(viewer: &Viewer, repo: &RepoName, digest: &Digest, state: &str) -> Markup {
    let blocked = matches!(state, "quarantined" | "error" | "failed");
    html! {
        section.actions {
            h2 { "Decide" }
            @if blocked {
                form.release method="post" action="/ui/image/release" {
                    input type="hidden" name="csrf" value=(viewer.csrf);
                    input type="hidden" name="repository" value=(repo.as_str());
                    input type="hidden" name="digest" value=(digest.to_string());
                    label { "Reason (recorded and signed)" input name="reason" required maxlength="500"; }
                    label { "Expires (optional: 30d, 12h or an RFC 3339 time)" input name="expires_at" placeholder="30d"; }
                    button type="submit" { "Release" }
                }
            }
            form.reject method="post" action="/ui/image/reject" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                input type="hidden" name="repository" value=(repo.as_str());
                input type="hidden" name="digest" value=(digest.to_string());
                label { "Reason" input name="reason" required maxlength="500"; }
                button.danger type="submit" data-confirm="Delete this image and its tags?" { "Reject (delete)" }
            }
            form.rescan method="post" action="/ui/image/rescan" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                input type="hidden" name="repository" value=(repo.as_str());
                input type="hidden" name="digest" value=(digest.to_string());
                button type="submit" { "Scan again" }
            }
        }
    }
}

/// Platform, config (user, entrypoint, command, environment masked, labels) and layers.
fn manifest_section(m: &Value, config: &Result<Option<ConfigView>, String>) -> Markup {
    let layers = m.get("layers").and_then(Value::as_array).cloned().unwrap_or_default();
    let children = m.get("manifests").and_then(Value::as_array).cloned().unwrap_or_default();
    let total: u64 = layers.iter().filter_map(|l| l.get("size").and_then(Value::as_u64)).sum();
    let c = config.as_ref().ok().and_then(Option::as_ref);
    html! {
        section {
            h2 { "Content" }
            @if let Err(why) = config { p.problem { "The config cannot be shown: " (why) } }
            dl.facts {
                dt { "Media type" } dd.mono { (m.get("mediaType").and_then(Value::as_str).unwrap_or("")) }
                @if let Some(c) = c {
                    dt { "Platform" } dd { (c.os.as_deref().unwrap_or("?")) "/" (c.architecture.as_deref().unwrap_or("?")) }
                    @if let Some(created) = &c.created { dt { "Created" } dd { (created) } }
                }
                @if !layers.is_empty() { dt { "Size (layers)" } dd { (bytes(total)) } }
                @if let Some(c) = c {
                    dt { "User" } dd.mono { (c.user.as_deref().filter(|u| !u.is_empty()).unwrap_or("(root)")) }
                    dt { "Entrypoint" } dd.mono { (c.entrypoint.join(" ")) }
                    dt { "Command" } dd.mono { (c.cmd.join(" ")) }
                    @if let Some(w) = &c.working_dir { dt { "Working directory" } dd.mono { (w) } }
                }
            }
            @if let Some(c) = c {
                @if !c.env.is_empty() {
                    h3 { "Environment" }
                    ul.env { @for e in &c.env { li.mono { (mask_env(e)) } } }
                }
                @if !c.labels.is_empty() {
                    h3 { "Labels" }
                    table.list.labels { tbody { @for (k, v) in &c.labels { tr { td.mono { (k) } td { (v) } } } } }
                }
            }
            @if !layers.is_empty() {
                h3 { "Layers" }
                table.list.layers {
                    thead { tr { th.num { "#" } th { "Digest" } th.num { "Size" } th { "Media type" } } }
                    tbody { @for (i, l) in layers.iter().enumerate() {
                        tr {
                            td.num { (i + 1) }
                            td.mono { (l.get("digest").and_then(Value::as_str).unwrap_or("")) }
                            td.num { (bytes(l.get("size").and_then(Value::as_u64).unwrap_or(0))) }
                            td.mono { (l.get("mediaType").and_then(Value::as_str).unwrap_or("")) }
                        }
                    } }
                }
            }
            @if !children.is_empty() {
                h3 { "Platforms" }
                table.list { tbody { @for c in &children {
                    @let p = c.get("platform");
                    tr {
                        td { (p.and_then(|p| p.get("os")).and_then(Value::as_str).unwrap_or("?")) "/" (p.and_then(|p| p.get("architecture")).and_then(Value::as_str).unwrap_or("?")) }
                        td.mono { (c.get("digest").and_then(Value::as_str).unwrap_or("")) }
                    }
                } } }
            }
        }
    }
}

/// Reads the image config through the gate, as the viewer may, with the runtime's rules
/// (`domain::config_view`). `Ok(None)` when there is none to read; `Err` when it cannot be shown.
async fn read_config(
    state: &AppState,
    viewer: &Viewer,
    repo: &RepoName,
    manifest: &Value,
) -> Result<Option<ConfigView>, String> {
    let Some(digest) = manifest.get("config").and_then(|c| c.get("digest")).and_then(Value::as_str) else {
        return Ok(None);
    };
    let digest: Digest = digest.parse().map_err(|_| "its digest is not valid".to_owned())?;
    let Ok(read) = state.registry.read_blob(reader(viewer), repo, &digest, None).await else { return Ok(None) };
    if read.size as usize > MAX_CONFIG {
        return Err(format!("it is larger than {} KiB", MAX_CONFIG / 1024));
    }
    let mut body = read.body;
    let mut buf = Vec::with_capacity(read.size as usize);
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk.map_err(|_| "it could not be read".to_owned())?);
        if buf.len() > MAX_CONFIG {
            return Err(format!("it is larger than {} KiB", MAX_CONFIG / 1024));
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

struct Decision {
    repository: String,
    digest: String,
}

fn decision(body: &[u8]) -> (Decision, std::collections::HashMap<String, String>) {
    let fields = form_fields(body);
    let get = |k: &str| fields.get(k).cloned().unwrap_or_default();
    (Decision { repository: get("repository"), digest: get("digest") }, fields)
}

fn image_url(d: &Decision, done: &str) -> String {
    format!("/ui/image?repository={}&digest={}&done={done}", q(&d.repository), q(&d.digest))
}

/// `POST /ui/image/release` (admins; the admin API's release, audited and attested).
pub async fn release(State(state): State<AppState>, viewer: Viewer, body: Bytes) -> Response {
    let (d, fields) = decision(&body);
    let reason = fields.get("reason").cloned();
    let expires = fields.get("expires_at").filter(|e| !e.trim().is_empty()).map(|e| Value::String(e.trim().to_owned()));
    match release_image(&state, &viewer.who, &d.repository, &d.digest, reason, expires).await {
        Ok(_) => see_other(&image_url(&d, "released")),
        Err(e) => api_problem(e),
    }
}

/// `POST /ui/image/reject` (admins): the image and its tags are deleted.
pub async fn reject(State(state): State<AppState>, viewer: Viewer, body: Bytes) -> Response {
    let (d, fields) = decision(&body);
    match reject_image(&state, &viewer.who, &d.repository, &d.digest, fields.get("reason").cloned()).await {
        Ok(_) => see_other("/ui/quarantine?done=rejected"),
        Err(e) => api_problem(e),
    }
}

/// `POST /ui/image/rescan` (admins).
pub async fn rescan(State(state): State<AppState>, viewer: Viewer, body: Bytes) -> Response {
    let (d, _) = decision(&body);
    match rescan_image(&state, &viewer.who, &d.repository, &d.digest).await {
        Ok(_) => see_other(&image_url(&d, "rescan")),
        Err(e) => api_problem(e),
    }
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
