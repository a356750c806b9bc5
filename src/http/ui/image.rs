//! One image (`/ui/image?repository=&digest=`): its scan verdict with every finding, and, where
//! the quarantine gate lets the viewer read it, its platform, layers, config and referrers.
//! Admins also get release (reason, optional expiry), reject and rescan, which call the admin
//! API's operations.
//!
//! Rule: the page renders `admin::images::image_detail`, the admin API's own reading of an image
//! (through the gate as `/v2` reads, the config with the runtime's rules, secrets masked, a look
//! past the gate audited); it reads nothing by itself.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::Value;

use super::layout::{api_problem, bytes, page, problem, render, state_badge, time};
use super::{form_fields, q, see_other, Viewer};
use crate::domain::{Digest, RepoName};
use crate::http::admin::images::{image_detail, ImageDetail};
use crate::http::admin::scans::{reject_image, release_image, rescan_image};
use crate::http::AppState;

#[derive(Deserialize)]
pub struct ImageQuery {
    repository: String,
    digest: String,
    done: Option<String>,
}

pub async fn show(State(state): State<AppState>, viewer: Viewer, Query(iq): Query<ImageQuery>) -> Response {
    let detail = match image_detail(&state, &viewer.who, &iq.repository, &iq.digest, "console").await {
        Ok(d) => d,
        Err(e) => {
            let (status, _) = e.parts();
            if status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND {
                return problem(StatusCode::NOT_FOUND, "No such image, or not one you may read.");
            }
            return problem(status, "The image could not be read; retry shortly.");
        }
    };
    let (Ok(repo), Ok(digest)) = (detail.repository.parse::<RepoName>(), detail.digest.parse::<Digest>()) else {
        return problem(StatusCode::NOT_FOUND, "No such image, or not one you may read.");
    };
    let scan = detail.record.clone();
    let now = state.registry.clock().now();
    let effective =
        scan.as_ref().map(|s| s.effective_state(now).as_str().to_owned()).unwrap_or_else(|| "unscanned".into());
    let findings: Vec<Value> = scan
        .as_ref()
        .and_then(|s| s.findings.as_deref())
        .and_then(|f| serde_json::from_str(f).ok())
        .unwrap_or_default();
    let withheld = detail.pulls_refused.clone();
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
        @if detail.content_shown { (content_section(&detail)) }
        @else { p.hint { "The image's content is not shown while the gate refuses it to you." } }
        @if !detail.referrers.is_empty() {
            section {
                h2 { "Referrers" }
                table.list {
                    thead { tr { th { "Artifact type" } th { "Digest" } th.num { "Size" } } }
                    tbody { @for r in &detail.referrers {
                        tr {
                            td { (r.artifact_type.as_deref().unwrap_or(&r.media_type)) }
                            td.mono { a href={ "/ui/image?repository=" (q(repo.as_str())) "&digest=" (q(&r.digest)) } { (super::browse::short(&r.digest)) } }
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
fn content_section(d: &ImageDetail) -> Markup {
    let total: u64 = d.layers.iter().map(|l| l.size).sum();
    let c = d.config.as_ref();
    html! {
        section {
            h2 { "Content" }
            @if let Some(why) = &d.config_error { p.problem { "The config cannot be shown: " (why) } }
            dl.facts {
                dt { "Media type" } dd.mono { (d.media_type.as_deref().unwrap_or("")) }
                @if let Some(c) = c {
                    dt { "Platform" } dd { (c.os.as_deref().unwrap_or("?")) "/" (c.architecture.as_deref().unwrap_or("?")) }
                    @if let Some(created) = &c.created { dt { "Created" } dd { (created) } }
                }
                @if !d.layers.is_empty() { dt { "Size (layers)" } dd { (bytes(total)) } }
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
                    ul.env { @for e in &c.env { li.mono { (e) } } }
                }
                @if !c.labels.is_empty() {
                    h3 { "Labels" }
                    table.list.labels { tbody { @for (k, v) in &c.labels { tr { td.mono { (k) } td { (v) } } } } }
                }
            }
            @if !d.layers.is_empty() {
                h3 { "Layers" }
                table.list.layers {
                    thead { tr { th.num { "#" } th { "Digest" } th.num { "Size" } th { "Media type" } } }
                    tbody { @for (i, l) in d.layers.iter().enumerate() {
                        tr {
                            td.num { (i + 1) }
                            td.mono { (l.digest) }
                            td.num { (bytes(l.size)) }
                            td.mono { (l.media_type) }
                        }
                    } }
                }
            }
            @if !d.platforms.is_empty() {
                h3 { "Platforms" }
                table.list { tbody { @for p in &d.platforms {
                    tr {
                        td { (p.os) "/" (p.architecture) }
                        td.mono { a href={ "/ui/image?repository=" (q(&d.repository)) "&digest=" (q(&p.digest)) } { (p.digest) } }
                    }
                } } }
            }
        }
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
