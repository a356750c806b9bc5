//! The web console at `/ui/`: server-rendered pages over the same operations and the same
//! authorization as the admin API, on the same TLS port, with its assets inside the binary.
//!
//! Rules:
//! - A page shows only what its viewer may see, decided by what the admin API and `/v2` use:
//!   `AuthService::authorize` and `policy::decide` for rights, the quarantine gate for bytes, and
//!   the admin API's own operations (`admin::scans::release_image`, `admin::robots::create_robot`,
//!   ...) for changes. There is no second permission model here.
//! - A viewer is a console session (`auth::sessions`) in the cookie [`COOKIE`]: `__Host-` prefixed,
//!   `Secure`, `HttpOnly`, `SameSite=Strict`, `Path=/`.
//! - Every state change is a `POST` and passes [`guard`] first: same origin (`Sec-Fetch-Site`,
//!   `Origin`), a form body of at most [`MAX_FORM`], and, except for the login form, the session's
//!   CSRF token in its `csrf` field. `GET` changes nothing (but a session's idle clock).
//! - Every response carries [`CSP`] (no inline script or style, nothing from another origin),
//!   `X-Frame-Options: DENY`, `Referrer-Policy: same-origin`, `nosniff` and `no-store`.
//! - Every value from users or images is rendered through maud, which escapes it; `PreEscaped`
//!   is used for nothing.
//!
//! Invariant: no request changes state unless it carries the CSRF token of the session it is
//! authenticated by, and that session is one a user's password opened and may still act.

mod accounts;
mod assets;
mod audit;
mod browse;
mod image;
mod layout;
mod login;
mod quarantine;
mod robots;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;

use super::AppState;
use crate::auth::service::Authenticated;
use crate::auth::sessions;

/// The session cookie. `__Host-`: the browser keeps it only if it is `Secure`, has `Path=/` and no
/// `Domain`, so no other host (or plaintext origin) can plant or shadow it.
pub const COOKIE: &str = "__Host-portcullis_session";

/// The largest form the console accepts.
const MAX_FORM: usize = 64 * 1024;

/// Scripts and styles from this origin only (the embedded assets), no inline code, no plugins,
/// no framing, forms posting only here.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/ui", get(browse::home))
        .route("/ui/", get(browse::home))
        .route("/ui/login", post(login::login).get(login::login_page))
        .route("/ui/logout", post(login::logout))
        .route("/ui/repository", get(browse::repository))
        .route("/ui/image", get(image::show))
        .route("/ui/image/release", post(image::release))
        .route("/ui/image/reject", post(image::reject))
        .route("/ui/image/rescan", post(image::rescan))
        .route("/ui/quarantine", get(quarantine::queue))
        .route("/ui/robots", get(robots::show).post(robots::create))
        .route("/ui/robots/rotate", post(robots::rotate))
        .route("/ui/push", get(browse::how_to_push))
        .route("/ui/users", get(accounts::users).post(accounts::create_user_form))
        .route("/ui/users/update", post(accounts::update_user_form))
        .route("/ui/namespaces", get(accounts::namespaces).post(accounts::create_namespace_form))
        .route("/ui/namespace", get(accounts::namespace))
        .route("/ui/namespace/member", post(accounts::set_member_form))
        .route("/ui/namespace/scan-policy", post(accounts::set_policy_form))
        .route("/ui/namespace/member/remove", post(accounts::remove_member_form))
        .route("/ui/audit", get(audit::show))
        .route("/ui/account", get(accounts::account))
        .route("/ui/account/password", post(accounts::change_password))
        .route("/ui/account/tokens", post(accounts::create_token_form))
        .route("/ui/account/tokens/revoke", post(accounts::revoke_token_form))
        .route("/ui/assets/{name}", get(assets::get))
        .route("/ui/{*rest}", any(|| async { layout::problem(StatusCode::NOT_FOUND, "There is no such page.") }))
        .layer(axum::middleware::from_fn_with_state(state, guard))
}

/// A `303 See Other` to `location` (a path of ours).
pub fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The session secret in the request's cookies, if any.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The signed-in viewer of a page.
#[derive(Clone)]
pub struct Viewer {
    pub who: Authenticated,
    /// The session's CSRF token, which every form carries.
    pub csrf: String,
}

impl Viewer {
    pub fn name(&self) -> &str {
        self.who.principal.subject()
    }
    pub fn is_admin(&self) -> bool {
        self.who.principal.is_admin()
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let Some(secret) = session_cookie(&parts.headers) else {
            return Err(not_signed_in(&parts.method));
        };
        match state.auth.console_session(secret).await {
            Ok(Some(s)) => {
                if let Some(facts) = super::observe::RequestFacts::of(&parts.extensions) {
                    facts.set_principal(s.who.principal.subject());
                }
                // The per-principal rate limit, as on /v2, /token and the admin API.
                if let Err(limited) = state.limits.check_principal(s.who.principal.subject()) {
                    let mut r = layout::problem(
                        StatusCode::TOO_MANY_REQUESTS,
                        &format!("Too many {}; retry in {} s.", limited.what, limited.retry_after_secs()),
                    );
                    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(limited.retry_after_secs()));
                    return Err(r);
                }
                Ok(Viewer { who: s.who, csrf: s.csrf })
            }
            Ok(None) => Err(not_signed_in(&parts.method)),
            Err(e) => Err(layout::domain_problem(e)),
        }
    }
}

/// A page asked for without a session goes to the login form; a change is refused.
fn not_signed_in(method: &Method) -> Response {
    if *method == Method::GET || *method == Method::HEAD {
        see_other("/ui/login")
    } else {
        layout::problem(StatusCode::UNAUTHORIZED, "You are not signed in (or your session has ended). Sign in again.")
    }
}

/// Security headers on every console response, and the checks every change passes first.
async fn guard(State(state): State<AppState>, req: Request<Body>, next: Next) -> Response {
    let mut response = match *req.method() {
        Method::GET | Method::HEAD => next.run(req).await,
        Method::POST => match checked_post(&state, req).await {
            Ok(req) => next.run(req).await,
            Err(refused) => refused,
        },
        _ => layout::problem(StatusCode::METHOD_NOT_ALLOWED, "The console takes GET and POST only."),
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: under `no-referrer` browsers send `Origin: null` with a
    // form, and the origin check could not tell our forms from a sandboxed attacker's.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    headers.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A POST is let through when it comes from this origin, is a small form, and (but for the login
/// form, which has no session yet) carries the CSRF token of the session in its cookie.
async fn checked_post(state: &AppState, req: Request<Body>) -> Result<Request<Body>, Response> {
    let forbidden = |m: &str| layout::problem(StatusCode::FORBIDDEN, m);
    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return Err(forbidden("Refused: the form was sent from another site."));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        if origin.to_str().ok().and_then(super::guards::origin_of) != super::guards::origin_of(&state.public_url) {
            return Err(forbidden("Refused: the form was sent from another origin."));
        }
    }
    let form = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
    });
    if !form {
        return Err(layout::problem(StatusCode::UNSUPPORTED_MEDIA_TYPE, "The console takes HTML forms only."));
    }
    let login = req.uri().path() == "/ui/login";
    let secret = session_cookie(req.headers()).map(str::to_owned);
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM)
        .await
        .map_err(|_| layout::problem(StatusCode::PAYLOAD_TOO_LARGE, "Refused: the form is larger than 64 KiB."))?;
    if !login {
        let token = url::form_urlencoded::parse(&bytes).find(|(k, _)| k == "csrf").map(|(_, v)| v.into_owned());
        let valid = match (secret.as_deref(), token.as_deref()) {
            (Some(secret), Some(token)) => sessions::csrf_matches(secret, token),
            _ => false,
        };
        if !valid {
            return Err(forbidden(
                "Refused: the form's CSRF token is missing or is not this session's. Reload the page and try again.",
            ));
        }
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// A form's fields, parsed after [`guard`] has checked it.
pub fn form_fields(body: &[u8]) -> std::collections::HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

/// `value` encoded for a query string.
pub fn q(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
