//! People: users (`/ui/users`, admins), namespaces and their members (`/ui/namespaces`,
//! `/ui/namespace?name=`), and one's own account (`/ui/account`: password, personal access
//! tokens). Every change is the admin API's own operation (`admin::users::update_user`,
//! `admin::namespaces::set_member_role`, `admin::tokens::create_token`...), which decides who may.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{api_problem, page, render, time};
use super::{form_fields, q, see_other, Viewer};
use crate::http::admin::namespaces::{
    create_namespace, list_members, list_namespaces, remove_member_of, set_member_role,
};
use crate::http::admin::scans::set_scan_policy;
use crate::http::admin::tokens::{create_token, list_tokens, revoke_token};
use crate::http::admin::users::{create_user, list_users, update_user, UserPatch};
use crate::http::credentials::ClientAddr;
use crate::http::AppState;

/// Rows on one page of users or namespaces.
const PAGE: u32 = 100;

#[derive(Deserialize)]
pub struct After {
    after: Option<String>,
    done: Option<String>,
    q: Option<String>,
}

/// A search form for a list page.
fn search_form(action: &str, q: &str, what: &str) -> Markup {
    html! {
        form.search method="get" action=(action) {
            label { (what) input name="q" type="search" value=(q) maxlength="128"; }
            button type="submit" { "Search" }
        }
    }
}

fn notice(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "created" => Some("Created."),
        "updated" => Some("Saved."),
        "removed" => Some("Removed."),
        "revoked" => Some("Revoked."),
        _ => None,
    }
}

fn hidden(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// `GET /ui/users` (admins).
pub async fn users(State(state): State<AppState>, viewer: Viewer, Query(a): Query<After>) -> Response {
    let text = a.q.clone().unwrap_or_default();
    let list = match list_users(&state, &viewer.who, a.after.as_deref(), PAGE, a.q.as_deref()).await {
        Ok(l) => l,
        Err(e) => return api_problem(e),
    };
    let next = (list.len() as u32 == PAGE).then(|| list.last().map(|u| u.username.clone())).flatten();
    let body = html! {
        @if let Some(n) = notice(a.done.as_deref()) { p.notice role="status" { (n) } }
        (search_form("/ui/users", &text, "Users whose name contains"))
        table.list.users {
            thead { tr { th { "User" } th { "Role" } th { "State" } th { "Created" } th {} } }
            tbody { @for u in &list {
                tr {
                    td.mono { (u.username) }
                    td { @if u.admin { "admin" } @else { "user" } }
                    td { @if u.disabled { span.badge.state-error { "disabled" } } @else { "active" } }
                    td { (time(u.created_at)) }
                    td { @if u.username != viewer.name() {
                        form method="post" action="/ui/users/update" {
                            (hidden(&viewer.csrf))
                            input type="hidden" name="username" value=(u.username);
                            @if u.disabled {
                                input type="hidden" name="disabled" value="false";
                                button type="submit" { "Enable" }
                            } @else {
                                input type="hidden" name="disabled" value="true";
                                button.danger type="submit" data-confirm="Disable this account? Its sessions and tokens stop at once." { "Disable" }
                            }
                        }
                    } }
                }
            } }
        }
        @if let Some(n) = next { p { a.more href={ "/ui/users?after=" (q(&n)) "&q=" (q(&text)) } { "More users →" } } }
        h2 { "New user" }
        form.create method="post" action="/ui/users" {
            (hidden(&viewer.csrf))
            label { "Username" input name="username" required maxlength="64" autocomplete="off"; }
            label { "Password" input name="password" type="password" required autocomplete="new-password"; }
            label.check { input type="checkbox" name="admin" value="1"; " administrator" }
            button type="submit" { "Create user" }
        }
    };
    render(StatusCode::OK, page("Users", Some(&viewer), body))
}

/// `POST /ui/users` (admins).
pub async fn create_user_form(State(state): State<AppState>, viewer: Viewer, body: Bytes) -> Response {
    let f = form_fields(&body);
    let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
    match create_user(&state, &viewer.who, get("username").trim(), get("password"), f.contains_key("admin")).await {
        Ok(_) => see_other("/ui/users?done=created"),
        Err(e) => api_problem(e),
    }
}

/// `POST /ui/users/update` (admins): enable or disable an account.
pub async fn update_user_form(State(state): State<AppState>, viewer: Viewer, parts: Parts, body: Bytes) -> Response {
    let f = form_fields(&body);
    let username = f.get("username").cloned().unwrap_or_default();
    let patch = UserPatch { disabled: f.get("disabled").map(|d| d == "true"), ..UserPatch::default() };
    match update_user(&state, &viewer.who, ClientAddr::of(&parts.extensions), &username, &patch).await {
        Ok(_) => see_other("/ui/users?done=updated"),
        Err(e) => api_problem(e),
    }
}

/// `GET /ui/namespaces` (admins): every namespace, and a form to create one.
pub async fn namespaces(State(state): State<AppState>, viewer: Viewer, Query(a): Query<After>) -> Response {
    let text = a.q.clone().unwrap_or_default();
    let list = match list_namespaces(&state, &viewer.who, a.after.as_deref(), PAGE, a.q.as_deref()).await {
        Ok(l) => l,
        Err(e) => return api_problem(e),
    };
    let next = (list.len() as u32 == PAGE).then(|| list.last().map(|n| n.name.clone())).flatten();
    let body = html! {
        @if let Some(n) = notice(a.done.as_deref()) { p.notice role="status" { (n) } }
        (search_form("/ui/namespaces", &text, "Namespaces whose name contains"))
        table.list.namespaces {
            thead { tr { th { "Namespace" } th { "Visibility" } th { "Created" } } }
            tbody { @for n in &list {
                tr {
                    td { a href={ "/ui/namespace?name=" (q(&n.name)) } { (n.name) } }
                    td { @if n.public { "public" } @else { "private" } }
                    td { (time(n.created_at)) }
                }
            } }
        }
        @if let Some(n) = next { p { a.more href={ "/ui/namespaces?after=" (q(&n)) "&q=" (q(&text)) } { "More namespaces →" } } }
        h2 { "New namespace" }
        form.create method="post" action="/ui/namespaces" {
            (hidden(&viewer.csrf))
            label { "Name" input name="name" required maxlength="64" pattern="[a-z0-9]+([._-][a-z0-9]+)*"; }
            label.check { input type="checkbox" name="public" value="1"; " public (anyone may pull)" }
            button type="submit" { "Create namespace" }
        }
    };
    render(StatusCode::OK, page("Namespaces", Some(&viewer), body))
}

/// `POST /ui/namespaces` (admins).
pub async fn create_namespace_form(State(state): State<AppState>, viewer: Viewer, body: Bytes) -> Response {
    let f = form_fields(&body);
    let name = f.get("name").map(|n| n.trim().to_owned()).unwrap_or_default();
    match create_namespace(&state, &viewer.who, &name, f.contains_key("public")).await {
        Ok(_) => see_other(&format!("/ui/namespace?name={}&done=created", q(&name))),
        Err(e) => api_problem(e),
    }
}

#[derive(Deserialize)]
pub struct NsQuery {
    name: String,
    done: Option<String>,
}

/// `GET /ui/namespace?name=` (owners and admins): members, roles, and the scan rule overrides.
pub async fn namespace(State(state): State<AppState>, viewer: Viewer, Query(nq): Query<NsQuery>) -> Response {
    let ns = nq.name.as_str();
    let members = match list_members(&state, &viewer.who, ns).await {
        Ok(m) => m,
        Err(e) => return api_problem(e),
    };
    let overrides = match state.registry.namespace_scan_rules(ns).await {
        Ok(r) => r.unwrap_or_else(|| "{}".into()),
        Err(e) => return super::layout::domain_problem(e),
    };
    // Read after the owner check above, from what the lifecycle, signature and webhook APIs read.
    let (rules, usage, signatures, hooks) = match tokio::try_join!(
        state.registry.namespace_rules(ns),
        state.registry.usage(ns),
        state.registry.signature_policy(ns),
        state.registry.list_webhooks(Some(ns)),
    ) {
        Ok(all) => all,
        Err(e) => return super::layout::domain_problem(e),
    };
    let limit = |l: Option<u64>| l.map(|l| l.to_string()).unwrap_or_else(|| "no limit".into());
    let retention = rules.retention.as_ref().and_then(|r| serde_json::to_string(r).ok());
    let overrides: Vec<(String, String)> =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&overrides)
            .map(|m| m.into_iter().map(|(k, v)| (k, v.as_str().unwrap_or("").to_owned())).collect())
            .unwrap_or_default();
    let body = html! {
        @if let Some(n) = notice(nq.done.as_deref()) { p.notice role="status" { (n) } }
        p.crumbs {
            a href={ "/ui/robots?namespace=" (q(ns)) } { "Robots of " (ns) } " · "
            a href={ "/ui/audit?namespace=" (q(ns)) } { "Audit log of " (ns) }
        }
        h2 { "Members" }
        @if members.is_empty() { p.empty { "No members yet." } } @else {
            table.list.members {
                thead { tr { th { "User" } th { "Role" } th {} } }
                tbody { @for (user, role) in &members {
                    tr {
                        td.mono { (user) }
                        td { (role.as_str()) }
                        td { form method="post" action="/ui/namespace/member/remove" {
                            (hidden(&viewer.csrf))
                            input type="hidden" name="namespace" value=(ns);
                            input type="hidden" name="username" value=(user);
                            button.danger type="submit" data-confirm="Remove this member? Their tokens for the namespace stop at once." { "Remove" }
                        } }
                    }
                } }
            }
        }
        form.create method="post" action="/ui/namespace/member" {
            (hidden(&viewer.csrf))
            input type="hidden" name="namespace" value=(ns);
            label { "User" input name="username" required maxlength="64" autocomplete="off"; }
            label { "Role"
                select name="role" {
                    option value="reader" { "reader: pull" }
                    option value="developer" { "developer: pull, push" }
                    option value="maintainer" { "maintainer: pull, push, delete" }
                    option value="owner" { "owner: everything, and members, robots, rules" }
                }
            }
            button type="submit" { "Set role" }
        }
        h2 { "Scan policy" }
        @if overrides.is_empty() { p { "The registry's rules apply unchanged." } } @else {
            table.list { thead { tr { th { "Rule" } th { "Action here" } } }
                tbody { @for (rule, action) in &overrides { tr { td.mono { (rule) } td { (action) } } } } }
        }
        @if viewer.is_admin() { (policy_form(&viewer.csrf, ns, &overrides)) }
        h2 { "Signatures" }
        p { "Mode: " strong { (format!("{:?}", signatures.mode).to_lowercase()) } ", " (signatures.keys.len()) " trusted key(s)." }
        h2 { "Quota and usage" }
        table.list.quota {
            thead { tr { th { "" } th.num { "Used" } th.num { "Limit" } } }
            tbody {
                tr { td { "Bytes" } td.num { (crate::model::human_bytes(usage.bytes)) } td.num { (rules.quota.bytes.map(crate::model::human_bytes).unwrap_or_else(|| "no limit".into())) } }
                tr { td { "Repositories" } td.num { (usage.repositories) } td.num { (limit(rules.quota.repositories)) } }
                tr { td { "Tags" } td.num { (usage.tags) } td.num { (limit(rules.quota.tags)) } }
                tr { td { "Images quarantined" } td.num { (usage.quarantined) } td.num { "" } }
            }
        }
        h2 { "Tags and retention" }
        p { "Immutable tags: "
            @if rules.immutable.patterns().is_empty() { "none" } @else { span.mono { (rules.immutable.patterns().join(", ")) } } }
        p { "Retention: " @if let Some(r) = &retention { span.mono { (r) } } @else { "none (nothing is removed)" } }
        h2 { "Webhooks" }
        @if hooks.is_empty() { p.empty { "None." } } @else {
            table.list.webhooks {
                thead { tr { th { "Target" } th { "Events" } th { "By" } } }
                tbody { @for h in &hooks {
                    // The origin only: a receiver's token may sit in the path or query.
                    tr {
                        td.mono { (url::Url::parse(&h.url).map(|u| u.origin().ascii_serialization()).unwrap_or_default()) }
                        td { (h.events.join(", ")) }
                        td.mono { (h.created_by) }
                    }
                } }
            }
        }
        p.hint { "Quotas, immutable tags, retention, signatures and webhooks are set through the admin API (see /api/v1/openapi.json)." }
    };
    render(StatusCode::OK, page(&format!("Namespace {ns}"), Some(&viewer), body))
}

/// The overrides form (admins): one choice per rule; "registry" keeps the registry's action.
fn policy_form(csrf: &str, ns: &str, overrides: &[(String, String)]) -> Markup {
    let rules: Vec<String> = crate::model::DEFAULT_RULES
        .iter()
        .filter_map(|(r, _)| serde_json::to_value(r).ok().and_then(|v| v.as_str().map(str::to_owned)))
        .collect();
    let current = |rule: &str| overrides.iter().find(|(r, _)| r == rule).map(|(_, a)| a.as_str()).unwrap_or("");
    html! {
        form.policy method="post" action="/ui/namespace/scan-policy" {
            (hidden(csrf))
            input type="hidden" name="namespace" value=(ns);
            table.list { thead { tr { th { "Rule" } th { "Action in " (ns) } } } tbody {
                @for rule in &rules {
                    tr { td.mono { (rule) } td {
                        select name={ "rule." (rule) } {
                            @for (value, label) in [("", "the registry's"), ("block", "block"), ("warn", "warn"), ("off", "off")] {
                                @if current(rule) == value { option value=(value) selected { (label) } }
                                @else { option value=(value) { (label) } }
                            }
                        }
                    } }
                }
            } }
            label { "Scan inside the push, up to (optional, such as 30s; at most 10m)" input name="sync_timeout" maxlength="16"; }
            button type="submit" { "Save scan policy" }
        }
    }
}

/// `POST /ui/namespace/scan-policy` (admins): the form as the API's body, through its operation.
pub async fn set_policy_form(State(state): State<AppState>, viewer: Viewer, body: Bytes) -> Response {
    let f = form_fields(&body);
    let ns = f.get("namespace").cloned().unwrap_or_default();
    let mut policy = serde_json::Map::new();
    for (key, value) in &f {
        if let (Some(rule), false) = (key.strip_prefix("rule."), value.is_empty()) {
            policy.insert(rule.to_owned(), serde_json::Value::String(value.clone()));
        }
    }
    if let Some(sync) = f.get("sync_timeout").map(|s| s.trim()).filter(|s| !s.is_empty()) {
        policy.insert("sync_timeout".into(), serde_json::Value::String(sync.to_owned()));
    }
    match set_scan_policy(&state, &viewer.who, &ns, policy).await {
        Ok(_) => see_other(&format!("/ui/namespace?name={}&done=updated", q(&ns))),
        Err(e) => api_problem(e),
    }
}

/// `POST /ui/namespace/member` (owners and admins).
pub async fn set_member_form(State(state): State<AppState>, viewer: Viewer, body: Bytes) -> Response {
    let f = form_fields(&body);
    let get = |k: &str| f.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let ns = get("namespace");
    match set_member_role(&state, &viewer.who, &ns, &get("username"), &get("role")).await {
        Ok(_) => see_other(&format!("/ui/namespace?name={}&done=updated", q(&ns))),
        Err(e) => api_problem(e),
    }
}

/// `POST /ui/namespace/member/remove` (owners and admins).
pub async fn remove_member_form(State(state): State<AppState>, viewer: Viewer, body: Bytes) -> Response {
    let f = form_fields(&body);
    let get = |k: &str| f.get(k).cloned().unwrap_or_default();
    let ns = get("namespace");
    match remove_member_of(&state, &viewer.who, &ns, &get("username")).await {
        Ok(()) => see_other(&format!("/ui/namespace?name={}&done=removed", q(&ns))),
        Err(e) => api_problem(e),
    }
}

#[derive(Deserialize)]
pub struct Done {
    done: Option<String>,
}

/// `GET /ui/account`: one's password and personal access tokens.
pub async fn account(State(state): State<AppState>, viewer: Viewer, Query(d): Query<Done>) -> Response {
    account_page(&state, &viewer, d.done.as_deref(), None).await
}

async fn account_page(state: &AppState, viewer: &Viewer, done: Option<&str>, shown: Option<Markup>) -> Response {
    let tokens = match list_tokens(state, &viewer.who).await {
        Ok(t) => t,
        Err(e) => return api_problem(e),
    };
    let now = state.registry.clock().now();
    let body = html! {
        @if let Some(n) = notice(done) { p.notice role="status" { (n) } }
        @if let Some(s) = shown { (s) }
        h2 { "Personal access tokens" }
        p.hint { "A token signs docker in as you (docker login -u " (viewer.name()) "); revoke it when the machine that holds it is gone." }
        @if tokens.is_empty() { p.empty { "No tokens." } } @else {
            table.list.tokens {
                thead { tr { th { "Name" } th { "Id" } th { "Expires" } th { "Last used" } th {} } }
                tbody { @for t in &tokens {
                    tr {
                        td { (t.name) }
                        td.mono { (t.id) }
                        td { @if t.revoked { "revoked" } @else if t.expires_at <= now { "expired" } @else { (time(t.expires_at)) } }
                        td { (t.last_used_at.map(time).unwrap_or_else(|| "never".into())) }
                        td { @if !t.revoked {
                            form method="post" action="/ui/account/tokens/revoke" {
                                (hidden(&viewer.csrf))
                                input type="hidden" name="id" value=(t.id);
                                button.danger type="submit" { "Revoke" }
                            }
                        } }
                    }
                } }
            }
        }
        form.create method="post" action="/ui/account/tokens" {
            (hidden(&viewer.csrf))
            label { "Name" input name="name" required maxlength="64"; }
            label { "Expires (30d, 90d or an RFC 3339 time)" input name="expires_at" value="90d" required; }
            button type="submit" { "Create token" }
        }
        h2 { "Password" }
        form.password method="post" action="/ui/account/password" {
            (hidden(&viewer.csrf))
            label { "Current password" input name="current_password" type="password" required autocomplete="current-password"; }
            label { "New password" input name="password" type="password" required autocomplete="new-password"; }
            button type="submit" { "Change password" }
        }
    };
    render(StatusCode::OK, page("Your account", Some(viewer), body))
}

/// `POST /ui/account/password`: one's own password, with the current one (as the API asks). The
/// change ends every console session of the account and the registry tokens issued before it,
/// this session too: the browser signs in again. (Personal access tokens are credentials of their
/// own and stay; revoke them below.)
pub async fn change_password(State(state): State<AppState>, viewer: Viewer, parts: Parts, body: Bytes) -> Response {
    let f = form_fields(&body);
    let patch = UserPatch {
        password: f.get("password").cloned(),
        current_password: f.get("current_password").cloned(),
        ..UserPatch::default()
    };
    let username = viewer.name().to_owned();
    match update_user(&state, &viewer.who, ClientAddr::of(&parts.extensions), &username, &patch).await {
        Ok(_) => see_other("/ui/login"),
        Err(e) => api_problem(e),
    }
}

/// `POST /ui/account/tokens`: a new token, shown once in this answer.
pub async fn create_token_form(State(state): State<AppState>, viewer: Viewer, body: Bytes) -> Response {
    let f = form_fields(&body);
    let get = |k: &str| f.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let expires = serde_json::Value::String(get("expires_at"));
    match create_token(&state, &viewer.who, &get("name"), &expires).await {
        Ok(created) => {
            let host = crate::model::authority_of(&state.public_url);
            let shown = html! {
                section.secret role="status" {
                    h2 { "Token created: " (created.record.name) }
                    p { strong { "Copy the token now: it is shown only once." } }
                    p { code.mono #token-secret { (created.secret) } " " button.copy type="button" data-copy="token-secret" { "Copy" } }
                    p { "Sign docker in with it (paste the token, then Ctrl-D; in CI, pipe it from the secret store):" }
                    p { code.mono #token-login { "docker login " (host) " -u " (viewer.name()) " --password-stdin" } }
                }
            };
            account_page(&state, &viewer, None, Some(shown)).await
        }
        Err(e) => api_problem(e),
    }
}

/// `POST /ui/account/tokens/revoke`.
pub async fn revoke_token_form(State(state): State<AppState>, viewer: Viewer, body: Bytes) -> Response {
    let f = form_fields(&body);
    match revoke_token(&state, &viewer.who, f.get("id").map(String::as_str).unwrap_or("")).await {
        Ok(()) => see_other("/ui/account?done=revoked"),
        Err(e) => api_problem(e),
    }
}
