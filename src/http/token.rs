//! The Docker token endpoint (`GET /token`, `POST /token`), the JWKS, and the `WWW-Authenticate`
//! challenge. The realm comes from the configured public URL, never from request headers.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Request, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::credentials::{self, ClientAddr};
use super::observe::RequestFacts;
use super::oci_error::{token_error, Code, OciError};
use super::AppState;
use crate::auth::jwt::TokenUse;
use crate::auth::service::Authenticated;
use crate::auth::{AuthError, Scope};
use crate::model::audit::NewAudit;

/// A failed login is answered only after this pause, which slows guessing further.
const FAILURE_DELAY: Duration = Duration::from_millis(200);

/// The longest `error_description` a challenge carries (the body has the whole message).
const MAX_DESCRIPTION: usize = 300;

/// `Bearer realm="<public_url>/token",service="<service>"[,scope="a b"][,error="..."]`: several
/// scopes are separated by a space, as distribution writes them (a mount asks for the source's pull).
pub fn challenge(state: &AppState, scopes: &[&Scope], error: Option<&str>) -> HeaderValue {
    challenge_with(state, scopes, error.map(|e| (e, "")))
}

/// [`challenge`] with an `error_description` (RFC 6750, section 3) when the text is not empty:
/// quotes and backslashes are dropped and anything outside printable ASCII is replaced, so the
/// header stays valid whatever the text names.
pub fn challenge_with(state: &AppState, scopes: &[&Scope], error: Option<(&str, &str)>) -> HeaderValue {
    let mut value =
        format!("Bearer realm=\"{}/token\",service=\"{}\"", state.public_url, state.auth.settings().service);
    if !scopes.is_empty() {
        let joined = scopes.iter().map(|s| s.to_challenge()).collect::<Vec<_>>().join(" ");
        value.push_str(&format!(",scope=\"{joined}\""));
    }
    if let Some((e, description)) = error {
        value.push_str(&format!(",error=\"{e}\""));
        if !description.is_empty() {
            let safe: String = description
                .chars()
                .filter(|c| *c != '"' && *c != '\\')
                .map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' })
                // Proxies in front may cap header sizes (nginx's default buffer is 4-8 KiB).
                .take(MAX_DESCRIPTION)
                .collect();
            value.push_str(&format!(",error_description=\"{safe}\""));
        }
    }
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
}

pub async fn jwks(State(state): State<AppState>) -> Response {
    axum::Json(state.auth.jwks()).into_response()
}

/// Any other method on `/token`.
pub async fn unsupported() -> Response {
    token_error(OciError::new(Code::Unsupported, "/token takes GET or POST"))
}

/// Maps a login failure to its answer.
async fn refused(e: AuthError) -> Response {
    token_error(match e {
        AuthError::BadCredentials | AuthError::InvalidToken(_) => {
            tokio::time::sleep(FAILURE_DELAY).await;
            OciError::new(Code::Unauthorized, "invalid username or password")
        }
        AuthError::Throttled(wait) => OciError::new(Code::TooManyRequests, "too many failed logins; try again later")
            .with_header(header::RETRY_AFTER, HeaderValue::from(wait.as_secs().max(1))),
        AuthError::Busy => OciError::new(Code::Unavailable, "too many logins are being checked at once; retry shortly")
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("1")),
        AuthError::Internal(e) => OciError::from(e),
    })
}

fn bad_request(message: &str) -> Response {
    token_error(OciError::new(Code::RequestInvalid, message))
}

/// Issues an access token for `scopes`, and a refresh token when asked.
async fn respond(state: &AppState, who: &Authenticated, scopes: &[Scope], refresh: bool) -> Response {
    if let Err(limited) = state.limits.check_principal(who.principal.subject()) {
        return super::guards::too_many("/token", limited);
    }
    let issued = async {
        let access = state.auth.grant(who, scopes).await?;
        let token = state.auth.issue(who, access, TokenUse::Access)?;
        let refresh = if refresh && who.principal != crate::auth::Principal::Anonymous {
            Some(state.auth.issue(who, Vec::new(), TokenUse::Refresh)?.token)
        } else {
            None
        };
        Ok::<_, crate::domain::Error>((token, refresh))
    }
    .await;
    let (token, refresh) = match issued {
        Ok(t) => t,
        Err(e) => return token_error(OciError::from(e)),
    };
    let kind = match who.principal {
        crate::auth::Principal::Robot(_) => "robot",
        crate::auth::Principal::Anonymous => "anonymous",
        _ => "user",
    };
    metrics::counter!(crate::model::metrics::TOKENS_ISSUED, "kind" => kind).increment(1);
    if let crate::auth::Principal::Robot(robot) = &who.principal {
        let granted: Vec<String> = scopes.iter().map(|s| s.to_challenge()).collect();
        let record = NewAudit::new("token.issue", &robot.username)
            .actor(&robot.username)
            .namespace(&robot.namespace)
            .detail("requested", granted);
        state.registry.audit(record).await;
    }
    let issued_at = crate::model::rfc3339(token.issued_at);
    let mut body = json!({
        "token": token.token, "access_token": token.token,
        "expires_in": token.expires_in, "issued_at": issued_at,
    });
    if let Some(r) = refresh {
        body["refresh_token"] = r.into();
    }
    let mut response = axum::Json(body).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A `service` other than ours is refused (a token for another service would not verify here).
fn check_service(state: &AppState, service: Option<&str>) -> Result<(), Box<Response>> {
    match service {
        Some(s) if s != state.auth.settings().service => Err(Box::new(bad_request("unknown service"))),
        _ => Ok(()),
    }
}

/// Names the caller in the request's access-log line.
fn note(facts: Option<&RequestFacts>, who: &Authenticated) {
    if let Some(f) = facts {
        f.set_principal(who.principal.subject());
    }
}

/// `GET /token?service=&scope=...&offline_token=` with optional Basic credentials.
pub async fn get(State(state): State<AppState>, uri: Uri, req: Request<axum::body::Body>) -> Response {
    let params: Vec<(String, String)> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let param = |k: &str| params.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    if let Err(r) = check_service(&state, param("service")) {
        return *r;
    }
    let scopes: Vec<Scope> =
        params.iter().filter(|(k, _)| k == "scope").flat_map(|(_, v)| v.split(' ')).filter_map(Scope::parse).collect();
    let who = match credentials::basic(req.headers()) {
        Some((user, secret)) => match state.auth.login(&user, &secret, ClientAddr::of(req.extensions())).await {
            Ok(w) => w,
            Err(e) => return refused(e).await,
        },
        None => Authenticated::anonymous(),
    };
    note(RequestFacts::of(req.extensions()), &who);
    respond(&state, &who, &scopes, param("offline_token") == Some("true")).await
}

/// `POST /token` (OAuth2 form): `grant_type=password` or `refresh_token`.
pub async fn post(State(state): State<AppState>, headers: HeaderMap, req: Request<axum::body::Body>) -> Response {
    let client = ClientAddr::of(req.extensions());
    let facts = RequestFacts::of(req.extensions()).cloned();
    let body: Bytes = match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => return bad_request("form body too large or unreadable"),
    };
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    if let Err(r) = check_service(&state, field("service")) {
        return *r;
    }
    let _ = headers;
    let scopes: Vec<Scope> = field("scope").unwrap_or("").split(' ').filter_map(Scope::parse).collect();
    let offline = field("access_type") == Some("offline");
    match field("grant_type") {
        Some("password") => {
            let (Some(user), Some(password)) = (field("username"), field("password")) else {
                return bad_request("username and password are required");
            };
            match state.auth.login(user, password, client).await {
                Ok(who) => {
                    note(facts.as_ref(), &who);
                    respond(&state, &who, &scopes, offline).await
                }
                Err(e) => refused(e).await,
            }
        }
        Some("refresh_token") => {
            let Some(token) = field("refresh_token") else { return bad_request("refresh_token is required") };
            match state.auth.verify(token, TokenUse::Refresh).await {
                Ok((who, _)) => {
                    note(facts.as_ref(), &who);
                    respond(&state, &who, &scopes, false).await
                }
                Err(e) => refused(e).await,
            }
        }
        _ => bad_request("grant_type must be password or refresh_token"),
    }
}
