//! Signing in and out: `POST /ui/login` (fields `username`, `password`) opens a session with a
//! user's password; `POST /ui/logout` ends it on the server and clears the cookie.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use maud::html;

use super::layout::{page, render};
use super::{form_fields, see_other, session_cookie, Viewer, COOKIE};
use crate::auth::AuthError;
use crate::http::credentials::ClientAddr;
use crate::http::AppState;

/// The login form, with an error above it if a sign-in failed.
pub fn form(error: Option<&str>, username: &str) -> maud::Markup {
    page(
        "Sign in",
        None,
        html! {
            @if let Some(e) = error { p.problem role="alert" { (e) } }
            form.login method="post" action="/ui/login" {
                label { "Username" input name="username" autocomplete="username" required value=(username); }
                label { "Password" input name="password" type="password" autocomplete="current-password" required; }
                button type="submit" { "Sign in" }
            }
            p.hint { "Sign in with your Portcullis username and password. Robots and personal access tokens are for docker and the API." }
        },
    )
}

/// `GET /ui/login`: the form (or, for a signed-in viewer, the console).
pub async fn login_page(State(state): State<AppState>, mut parts: Parts) -> Response {
    if Viewer::from_request_parts(&mut parts, &state).await.is_ok() {
        return see_other("/ui/");
    }
    render(StatusCode::OK, form(None, ""))
}

/// `POST /ui/login`: a session cookie and a redirect to the console, or the form again with why.
pub async fn login(State(state): State<AppState>, parts: Parts, body: Bytes) -> Response {
    let fields = form_fields(&body);
    let username = fields.get("username").map(String::as_str).unwrap_or("");
    let password = fields.get("password").map(String::as_str).unwrap_or("");
    let client = ClientAddr::of(&parts.extensions);
    let refused = |status: StatusCode, message: &str| render(status, form(Some(message), username));
    match state.auth.console_login(username, password, client).await {
        Ok(opened) => {
            // The session this browser held before ends: a copy of its cookie opens nothing.
            if let Some(old) = session_cookie(&parts.headers) {
                if let Err(e) = state.auth.console_logout(old).await {
                    return super::layout::domain_problem(e);
                }
            }
            let mut response = see_other("/ui/");
            // No `Max-Age`: the cookie goes with the browser session; the server ends it sooner.
            let cookie = format!("{COOKIE}={}; Path=/; Secure; HttpOnly; SameSite=Strict", opened.secret);
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
            response
        }
        Err(AuthError::BadCredentials) => refused(StatusCode::UNAUTHORIZED, "Invalid username or password."),
        Err(AuthError::InvalidToken(m)) => refused(StatusCode::UNAUTHORIZED, &m),
        Err(AuthError::Throttled(wait)) => refused(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "Too many failed sign-ins for this account from this address; retry in {} s.",
                wait.as_secs().max(1)
            ),
        ),
        Err(AuthError::Busy) => {
            refused(StatusCode::SERVICE_UNAVAILABLE, "Too many sign-ins are being checked at once; retry shortly.")
        }
        Err(AuthError::Internal(e)) => super::layout::domain_problem(e),
    }
}

/// `POST /ui/logout`: the session is deleted on the server, so a copy of the cookie is worthless.
pub async fn logout(State(state): State<AppState>, parts: Parts) -> Response {
    if let Some(secret) = session_cookie(&parts.headers) {
        if let Err(e) = state.auth.console_logout(secret).await {
            return super::layout::domain_problem(e);
        }
    }
    let mut response = see_other("/ui/login");
    let cleared = format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&cleared) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}
