//! The console's frame (head, navigation, sign-out form) and its error pages. Everything is
//! written through maud, which escapes every value it is given.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};

use super::Viewer;
use crate::http::admin::ApiError;

/// A whole page: `title`, the navigation for `viewer` (none on the login page), and `body`.
pub fn page(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Portcullis" }
                link rel="stylesheet" href="/ui/assets/app.css";
                script src="/ui/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/ui/" { "Portcullis" }
                    @if let Some(v) = viewer {
                        nav {
                            a href="/ui/" { "Repositories" }
                            @if v.is_admin() {
                                a href="/ui/quarantine" { "Quarantine" }
                                a href="/ui/namespaces" { "Namespaces" }
                                a href="/ui/users" { "Users" }
                                a href="/ui/audit" { "Audit" }
                            }
                            a href="/ui/robots" { "Robots" }
                            a href="/ui/account" { "Account" }
                            a href="/ui/push" { "How to push" }
                        }
                        form.signout method="post" action="/ui/logout" {
                            input type="hidden" name="csrf" value=(v.csrf);
                            span.who { (v.name()) @if v.is_admin() { " (admin)" } }
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { h1 { (title) } (body) }
            }
        }
    }
}

/// An HTML answer with `status`.
pub fn render(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

/// An error page naming what went wrong.
pub fn problem(status: StatusCode, message: &str) -> Response {
    let body = html! {
        p.problem { (message) }
        p { a href="/ui/" { "Back to the console" } }
    };
    render(status, page(status.canonical_reason().unwrap_or("Error"), None, body))
}

/// A refusal or failure of an operation shared with the admin API, as a page: its status and
/// message, which already name what was refused and why.
pub fn api_problem(e: ApiError) -> Response {
    let (status, message) = e.parts();
    problem(status, &message)
}

/// A domain error as a page (the API's one mapping decides status and message).
pub fn domain_problem(e: crate::domain::Error) -> Response {
    api_problem(ApiError::from(e))
}

/// A size in bytes, as people read it.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A Unix time as RFC 3339 (UTC).
pub fn time(unix: i64) -> String {
    crate::model::clock::rfc3339(unix)
}

/// A badge for a scan state.
pub fn state_badge(state: &str) -> Markup {
    html! { span class={ "badge state-" (state) } { (state) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_read_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn values_are_escaped() {
        let text = page("<script>alert(1)</script>", None, html! { p { "\"><img src=x onerror=alert(1)>" } });
        let s = text.into_string();
        assert!(!s.contains("<script>alert"), "{s}");
        assert!(!s.contains("<img src=x"), "{s}");
        assert!(s.contains("&lt;script&gt;"));
    }
}
