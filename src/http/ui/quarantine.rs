//! The quarantine queue (`/ui/quarantine`, admins): images waiting for a verdict, quarantined or
//! whose scan failed, each with its findings and the release, reject and rescan forms.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::layout::{api_problem, domain_problem, page, render, state_badge, time};
use super::{q, Viewer};
use crate::domain::{Digest, RepoName};
use crate::http::admin::require_admin;
use crate::http::AppState;
use crate::model::ScanState;

/// Images of each state on the page.
const PER_STATE: u32 = 100;

#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
}

pub async fn queue(State(state): State<AppState>, viewer: Viewer, Query(d): Query<Done>) -> Response {
    if let Err(e) = require_admin(&viewer.who) {
        return api_problem(e);
    }
    let now = state.registry.clock().now();
    let mut items = Vec::new();
    for s in [ScanState::Quarantined, ScanState::Error, ScanState::Pending, ScanState::Scanning] {
        match state.registry.list_scans(Some(s), PER_STATE).await {
            Ok(found) => items.extend(found),
            Err(e) => return domain_problem(e),
        }
    }
    // Lapsed releases are quarantined again, as the gate reads them.
    match state.registry.list_scans(Some(ScanState::Released), PER_STATE).await {
        Ok(found) => items.extend(found.into_iter().filter(|r| r.effective_state(now) == ScanState::Quarantined)),
        Err(e) => return domain_problem(e),
    }
    let body = html! {
        @if d.done.as_deref() == Some("rejected") { p.notice role="status" { "Rejected: the image and its tags were deleted." } }
        @if items.is_empty() { p.empty { "Nothing is waiting or blocked." } }
        @for r in &items {
            @let st = r.effective_state(now).as_str();
            article.card {
                h2 {
                    a href={ "/ui/image?repository=" (q(&r.repository)) "&digest=" (q(&r.digest)) } { (r.repository) " @ " (super::browse::short(&r.digest)) }
                    " " (state_badge(st))
                }
                @if let Some(summary) = &r.summary { p.summary { (summary) } }
                p.meta { "Updated " (time(r.updated_at)) }
                @let findings: Vec<serde_json::Value> = r.findings.as_deref().and_then(|f| serde_json::from_str(f).ok()).unwrap_or_default();
                (super::image::findings_table(&findings))
                @if let (Ok(repo), Ok(digest)) = (r.repository.parse::<RepoName>(), r.digest.parse::<Digest>()) {
                    (super::image::admin_actions(&viewer, &repo, &digest, st))
                }
            }
        }
    };
    render(StatusCode::OK, page("Quarantine", Some(&viewer), body))
}
