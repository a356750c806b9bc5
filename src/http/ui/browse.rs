//! Browsing: the repositories a viewer may read (`/ui/`), a repository's tags
//! (`/ui/repository?name=`), and how to push (`/ui/push`). What is listed is filtered by the pull
//! right, decided as `/v2/_catalog` decides it.

use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::layout::{bytes, domain_problem, page, problem, render, state_badge, time};
use super::{q, Viewer};
use crate::auth::policy::Need;
use crate::domain::RepoName;
use crate::http::admin::may_pull;
use crate::http::admin::repositories::list_tags;
use crate::http::AppState;

/// Repositories on one page.
const PAGE: usize = 50;

/// The most repositories one page of the listing looks at.
const SCAN_LIMIT: usize = 2000;

#[derive(Deserialize)]
pub struct After {
    after: Option<String>,
    q: Option<String>,
}

/// `GET /ui/`: the login form for an anonymous visitor; otherwise the repositories the viewer may
/// read, with their tag and image counts, size and quarantined images.
pub async fn home(State(state): State<AppState>, mut parts: Parts, Query(a): Query<After>) -> Response {
    let viewer = match Viewer::from_request_parts(&mut parts, &state).await {
        Ok(v) => v,
        Err(_) => return render(StatusCode::OK, super::login::form(None, "")),
    };
    // Filled as `/v2/_catalog` is, but looking at no more than SCAN_LIMIT repositories per page,
    // so that a viewer who may read few repositories of many cannot make one request scan them all.
    let batch_size = 200u32.min(state.registry.limits().max_page).max(1);
    let search = match crate::http::admin::search(a.q.as_deref()) {
        Ok(s) => s,
        Err(e) => return super::layout::api_problem(e),
    };
    let shown_q = search.unwrap_or("").to_owned();
    let mut visible = Vec::new();
    let mut cursor = a.after.clone();
    let mut more = true;
    let mut looked = 0;
    while visible.len() < PAGE && more && looked < SCAN_LIMIT {
        let batch = match state.registry.repository_summaries(None, cursor.as_deref(), batch_size, search).await {
            Ok(b) => b,
            Err(e) => return domain_problem(e),
        };
        more = batch.len() as u32 == batch_size;
        for summary in batch {
            looked += 1;
            cursor = Some(summary.name.clone());
            let Ok(repo) = summary.name.parse::<RepoName>() else { continue };
            match may_pull(&state, &viewer.who, &repo).await {
                Ok(true) => visible.push(summary),
                Ok(false) => {}
                Err(e) => return domain_problem(e),
            }
            if visible.len() == PAGE {
                break;
            }
        }
    }
    let next = (visible.len() == PAGE || more).then_some(cursor).flatten();
    // Counts and sizes are members' business (as in the admin API); others of a public
    // namespace see the name.
    let mut members: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    for r in &visible {
        let ns = r.name.split('/').next().unwrap_or("").to_owned();
        if let std::collections::hash_map::Entry::Vacant(slot) = members.entry(ns) {
            let member = match state.auth.authorize(&viewer.who, &[], Need::Member(slot.key())).await {
                Ok(decision) => decision.is_ok(),
                Err(e) => return domain_problem(e),
            };
            slot.insert(member);
        }
    }
    let member = |name: &str| members.get(name.split('/').next().unwrap_or("")).copied().unwrap_or(false);
    let body = html! {
        form.search method="get" action="/ui/" {
            label { "Repositories whose name contains" input name="q" type="search" value=(shown_q) maxlength="128"; }
            button type="submit" { "Search" }
        }
        @if visible.is_empty() {
            p.empty { "No repositories you may read yet. " a href="/ui/push" { "How to push an image" } }
        } @else {
            table.list {
                thead { tr { th { "Repository" } th.num { "Tags" } th.num { "Images" } th.num { "Size" } th { "Worst scan" } th { "Last push" } } }
                tbody {
                    @for r in &visible {
                        tr {
                            td { a href={ "/ui/repository?name=" (q(&r.name)) } { (r.name) } }
                            @if member(&r.name) {
                                td.num { (r.tags) }
                                td.num { (r.manifests) }
                                td.num { (bytes(r.bytes)) }
                                td { @if let Some(w) = r.worst_state { (state_badge(w.as_str())) } }
                                td { (r.last_pushed_at.map(time).unwrap_or_default()) }
                            } @else {
                                td.num { "–" } td.num { "–" } td.num { "–" } td.num { "–" } td { "public" }
                            }
                        }
                    }
                }
            }
        }
        @if let Some(n) = next { p { a.more href={ "/ui/?after=" (q(&n)) "&q=" (q(&shown_q)) } { "More repositories →" } } }
    };
    render(StatusCode::OK, page("Repositories", Some(&viewer), body))
}

#[derive(Deserialize)]
pub struct RepoQuery {
    name: String,
    after: Option<String>,
}

/// `GET /ui/repository?name=`: a page of tags with the digest each names, its size, when it was
/// pushed and its scan state (the admin API's tag listing, so the same rights).
pub async fn repository(State(state): State<AppState>, viewer: Viewer, Query(rq): Query<RepoQuery>) -> Response {
    let (tags, next) = match list_tags(&state, &viewer.who, &rq.name, PAGE as u32, rq.after.as_deref()).await {
        Ok(t) => t,
        Err(e) => {
            let (status, _) = e.parts();
            if status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND {
                return problem(StatusCode::NOT_FOUND, "No such repository, or not one you may read.");
            }
            return problem(status, "The tags could not be listed; retry shortly.");
        }
    };
    let name = rq.name.as_str();
    let body = html! {
        p.crumbs { a href="/ui/" { "Repositories" } " / " (name) }
        @if tags.is_empty() { p.empty { "No tags." } } @else {
            table.list {
                thead { tr { th { "Tag" } th { "Digest" } th.num { "Manifest" } th { "Pushed" } th { "Scan" } } }
                tbody {
                    @for t in &tags {
                        tr {
                            td { a href={ "/ui/image?repository=" (q(name)) "&digest=" (q(&t.digest)) } { (t.name) } }
                            td.mono { (short(&t.digest)) }
                            td.num { (bytes(t.size)) }
                            td { (time(t.pushed_at)) }
                            td { (state_badge(t.state.map(|s| s.as_str()).unwrap_or("unscanned"))) }
                        }
                    }
                }
            }
        }
        @if let Some(n) = &next {
            p { a.more href={ "/ui/repository?name=" (q(name)) "&after=" (q(n)) } { "More tags →" } }
        }
    };
    render(StatusCode::OK, page(name, Some(&viewer), body))
}

/// `sha256:0123456789ab…`: enough of a digest to tell images apart.
pub fn short(digest: &str) -> String {
    match digest.char_indices().nth(19) {
        Some((i, _)) => format!("{}…", &digest[..i]),
        None => digest.to_owned(),
    }
}

/// `GET /ui/push`: how to sign in with docker and push, with this registry's host filled in.
pub async fn how_to_push(State(state): State<AppState>, viewer: Viewer) -> Response {
    let host = crate::model::authority_of(&state.public_url);
    let user = viewer.name().to_owned();
    let body = html! {
        @if state.dev_ca.is_some() {
            section {
                h2 { "1. Trust this registry's certificate" }
                p { "This registry uses its own development CA. Download " a href="/ca.crt" { "ca.crt" } " and install it for docker:" }
                pre.copyable { "sudo mkdir -p /etc/docker/certs.d/" (host) "\nsudo cp ca.crt /etc/docker/certs.d/" (host) "/ca.crt" }
            }
        }
        section {
            h2 { "Sign in" }
            pre.copyable { "docker login " (host) " -u " (user) }
            p { "CI systems sign in with a " a href="/ui/robots" { "robot" } " instead of a person's password." }
        }
        section {
            h2 { "Push an image" }
            pre.copyable { "docker tag myimage:latest " (host) "/NAMESPACE/myimage:1.0\ndocker push " (host) "/NAMESPACE/myimage:1.0" }
            p { "Every image is scanned when it is pushed. An image that fails is quarantined: it cannot be pulled until an admin releases it, and its page here says why." }
        }
    };
    render(StatusCode::OK, page("How to push", Some(&viewer), body))
}
