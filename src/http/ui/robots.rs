//! Robots (`/ui/robots?namespace=`): a namespace's robots, and creating or rotating one (its
//! owners and admins, through the admin API's operations). A new secret is shown once, in the
//! answer to the POST (never in a URL), with a copy button and the `docker login` line to use it.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{api_problem, page, render, time};
use super::{form_fields, q, Viewer};
use crate::auth::accounts::{NewSecret, RobotRecord};
use crate::http::admin::robots::{create_robot, list_robots, rotate_robot};
use crate::http::AppState;

#[derive(Deserialize)]
pub struct NsQuery {
    namespace: Option<String>,
}

/// `GET /ui/robots[?namespace=]`.
pub async fn page_for(state: &AppState, viewer: &Viewer, ns: Option<&str>, shown: Option<Markup>) -> Response {
    let namespaces = if viewer.is_admin() {
        state
            .auth
            .list_namespaces(None, 1000, None)
            .await
            .map(|n| n.into_iter().map(|n| n.name).collect())
            .unwrap_or_default()
    } else {
        Vec::<String>::new()
    };
    let robots = match ns {
        Some(ns) => match list_robots(state, &viewer.who, ns).await {
            Ok(r) => Some(r),
            Err(e) => return api_problem(e),
        },
        None => None,
    };
    let now = state.registry.clock().now();
    let body = html! {
        @if let Some(s) = shown { (s) }
        form.pick method="get" action="/ui/robots" {
            label { "Namespace" input name="namespace" required value=(ns.unwrap_or("")); }
            button type="submit" { "Show robots" }
        }
        @if !namespaces.is_empty() {
            p.namespaces { @for n in &namespaces { a href={ "/ui/robots?namespace=" (q(n)) } { (n) } " " } }
        }
        @if let (Some(ns), Some(robots)) = (ns, &robots) {
            p { a href={ "/ui/namespace?name=" (q(ns)) } { "Members and rules of " (ns) } }
            h2 { "Robots of " (ns) }
            @if robots.is_empty() { p.empty { "No robots yet." } } @else {
                table.list.robots {
                    thead { tr { th { "Robot" } th { "May" } th { "Repositories" } th { "Expires" } th { "Last used" } th {} } }
                    tbody { @for r in robots {
                        tr {
                            td.mono { (r.username) }
                            td { (r.actions.join(", ")) }
                            td.mono { (r.repositories.as_deref().unwrap_or("all")) }
                            td { @if r.revoked { "revoked" } @else if r.expires_at <= now { "expired" } @else { (time(r.expires_at)) } }
                            td { (r.last_used_at.map(time).unwrap_or_else(|| "never".into())) }
                            td { @if !r.revoked {
                                form method="post" action="/ui/robots/rotate" {
                                    input type="hidden" name="csrf" value=(viewer.csrf);
                                    input type="hidden" name="namespace" value=(ns);
                                    input type="hidden" name="name" value=(r.name);
                                    button type="submit" data-confirm="The old secret stops working at once. Rotate?" { "Rotate secret" }
                                }
                            } }
                        }
                    } }
                }
            }
            h2 { "New robot" }
            form.create method="post" action="/ui/robots" {
                input type="hidden" name="csrf" value=(viewer.csrf);
                input type="hidden" name="namespace" value=(ns);
                label { "Name" input name="name" required pattern="[a-z0-9][a-z0-9._-]*" maxlength="64"; }
                fieldset { legend { "May" }
                    label.check { input type="checkbox" name="pull" value="1" checked; " pull" }
                    label.check { input type="checkbox" name="push" value="1"; " push" }
                }
                label { "Repositories (optional patterns, comma-separated, such as apps/*)" input name="repositories"; }
                label { "Expires (30d, 90d or an RFC 3339 time)" input name="expires_at" value="90d" required; }
                button type="submit" { "Create robot" }
            }
        }
    };
    render(StatusCode::OK, page("Robots", Some(viewer), body))
}

pub async fn show(State(state): State<AppState>, viewer: Viewer, Query(nq): Query<NsQuery>) -> Response {
    page_for(&state, &viewer, nq.namespace.as_deref().filter(|n| !n.is_empty()), None).await
}

/// The secret, shown once, with the line that uses it.
fn secret_shown(state: &AppState, created: &NewSecret<RobotRecord>, verb: &str) -> Markup {
    let host = crate::model::authority_of(&state.public_url);
    // Pasted at the prompt (or piped from a secret store), never typed into a command line that
    // shell history would keep.
    let login = format!("docker login {host} -u '{}' --password-stdin", created.record.username);
    html! {
        section.secret role="status" {
            h2 { "Robot " (verb) ": " span.mono { (created.record.username) } }
            p { strong { "Copy the secret now: it is shown only once." } }
            p { code.mono #robot-secret { (created.secret) } " " button.copy type="button" data-copy="robot-secret" { "Copy" } }
            p { "Sign in with it (paste the secret, then Ctrl-D; in CI, pipe it from the secret store):" }
            p { code.mono #robot-login { (login) } " " button.copy type="button" data-copy="robot-login" { "Copy" } }
        }
    }
}

/// `POST /ui/robots`: creates a robot and shows its secret once.
pub async fn create(State(state): State<AppState>, viewer: Viewer, body: Bytes) -> Response {
    let f = form_fields(&body);
    let get = |k: &str| f.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let ns = get("namespace");
    let actions: Vec<String> = ["pull", "push"].iter().filter(|a| f.contains_key(**a)).map(|a| a.to_string()).collect();
    let patterns: Vec<String> =
        get("repositories").split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect();
    let expires = serde_json::Value::String(get("expires_at"));
    let patterns = (!patterns.is_empty()).then_some(patterns);
    match create_robot(&state, &viewer.who, &ns, &get("name"), &actions, patterns, &expires).await {
        Ok(created) => {
            let shown = secret_shown(&state, &created, "created");
            page_for(&state, &viewer, Some(&ns), Some(shown)).await
        }
        Err(e) => api_problem(e),
    }
}

/// `POST /ui/robots/rotate`: a new secret, shown once; the old one stops at once.
pub async fn rotate(State(state): State<AppState>, viewer: Viewer, body: Bytes) -> Response {
    let f = form_fields(&body);
    let (ns, name) = (f.get("namespace").cloned().unwrap_or_default(), f.get("name").cloned().unwrap_or_default());
    match rotate_robot(&state, &viewer.who, &ns, &name).await {
        Ok(rotated) => {
            let shown = secret_shown(&state, &rotated, "rotated");
            page_for(&state, &viewer, Some(&ns), Some(shown)).await
        }
        Err(e) => api_problem(e),
    }
}
