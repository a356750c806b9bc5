//! The OCI Distribution API under `/v2`.
//!
//! Rule: one axum route catches every `/v2` path; [`route::V2Route::parse`] decides what it is, and
//! [`dispatch`] hands it to the one handler for that resource and method. Handlers translate HTTP
//! to domain calls and back; they hold no SQL and no storage paths.

pub mod access;
mod blobs;
pub mod headers;
mod listings;
mod manifests;
pub mod route;
mod uploads;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};

use self::access::Needed;
use self::route::{RouteError, V2Route};
use super::observe::RequestFacts;
use super::oci_error::{Code, OciError};
use super::{credentials, token, AppState};
use crate::auth::jwt::TokenUse;
use crate::auth::policy::{self, Deny, NamespaceFacts, Need};
use crate::auth::service::Authenticated;
use crate::auth::{Action, AuthError, Scope};
use crate::domain::{Error, Reader, RepoName};
use crate::model::audit::NewAudit;
use crate::model::ScanState;

pub type HandlerResult = Result<Response, OciError>;

/// Parsed query parameters, in order (a key may repeat).
pub struct Query(Vec<(String, String)>);

impl Query {
    fn parse(uri: &Uri) -> Self {
        Query(url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect())
    }
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// What a handler may need from the request besides its body (kept apart: a body is not `Sync`).
pub struct Request {
    pub method: Method,
    pub headers: HeaderMap,
    pub query: Query,
    pub grants: Grants,
}

/// The verified caller and the access its token carries (typed claims).
pub struct Grants {
    pub who: Authenticated,
    pub access: Vec<Scope>,
}

impl Grants {
    /// The decision ([`policy::decide`]) for a need the token's claims answer alone.
    pub fn allows(&self, need: &Need<'_>) -> Result<(), Deny> {
        policy::decide(&self.who.principal, &self.access, need, &NamespaceFacts::default())
    }
    /// How the quarantine gate treats this caller: those the policy lets bypass it pass (audited).
    pub fn reader(&self) -> Reader {
        match self.allows(&Need::GateBypass) {
            Ok(()) => Reader::Unrestricted,
            Err(_) => Reader::Ordinary,
        }
    }
}

/// Authenticates the bearer token and checks it grants what the route needs. Every deny answers
/// with a challenge naming the scope, so clients know what token to fetch.
async fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    needed: &Needed,
    also: Option<&Scope>,
) -> Result<Grants, Response> {
    let scope = match needed {
        Needed::Scope(s) => Some(s),
        Needed::Token => None,
    };
    let scopes: Vec<&Scope> = scope.into_iter().chain(also).collect();
    let challenge = |error: Option<&str>| token::challenge(state, &scopes, error);
    let Some(bearer) = credentials::bearer(headers) else {
        let e = OciError::new(Code::Unauthorized, "authentication required");
        return Err(e.with_header(header::WWW_AUTHENTICATE, challenge(None)).into_response());
    };
    let grants = match state.auth.verify(bearer, TokenUse::Access).await {
        Ok((who, access)) => Grants { who, access },
        Err(AuthError::Internal(e)) => return Err(OciError::from(e).into_response()),
        Err(e) => {
            tracing::info!(error = %e, "refused a token");
            let e = OciError::new(Code::Unauthorized, e.to_string());
            return Err(e.with_header(header::WWW_AUTHENTICATE, challenge(Some("invalid_token"))).into_response());
        }
    };
    if let Err(limited) = state.limits.check_principal(grants.who.principal.subject()) {
        return Err(super::guards::too_many("/v2/", limited));
    }
    let need = match needed {
        Needed::Token => Need::Token,
        Needed::Scope(s) => Need::Scope(s),
    };
    if let Err(deny) = grants.allows(&need) {
        let wanted = scope.map_or_else(|| "/v2/".to_owned(), |s| s.to_challenge());
        tracing::info!(target: "audit", subject = subject_of(&grants.who.principal), scope = %wanted, "access denied");
        let object = scope.map_or_else(|| "/v2/".to_owned(), |s| s.to_challenge());
        let mut record = NewAudit::new("access.denied", object)
            .actor(grants.who.principal.subject())
            .outcome(crate::model::audit::DENIED)
            .detail("reason", deny.to_string());
        if let Some(Scope::Repository(repo, _)) = scope {
            record = record.namespace(repo.namespace());
        }
        state.registry.audit(record).await;
        // The message goes in the body and in the challenge's error_description: docker shows
        // the challenge's text, and stops at once on DENIED.
        let mut message = deny.to_string();
        // The remedy above is worked out from the token alone; when the account may do it after
        // all (a token fetched for less, or a role granted since), say so instead.
        if let Some(Scope::Repository(repo, wanted)) = scope {
            let need = Need::Repository(repo, *wanted);
            if let Ok(Ok(())) = state.auth.authorize(&grants.who, &[], need).await {
                message = format!(
                    "{} to {repo} denied: the token does not grant it, though the account may; fetch a token for this scope (docker login again)",
                    wanted.names().join(",")
                );
            }
        }
        let e = OciError::new(Code::Denied, message.clone());
        let value = token::challenge_with(state, &scopes, Some(("insufficient_scope", &message)));
        return Err(e.with_header(header::WWW_AUTHENTICATE, value).into_response());
    }
    Ok(grants)
}

/// The caller as logs name it (`anonymous` rather than an empty subject).
fn subject_of(principal: &crate::auth::Principal) -> &str {
    match principal.subject() {
        "" => "anonymous",
        s => s,
    }
}

pub async fn handle(
    State(state): State<AppState>,
    facts: Option<axum::Extension<RequestFacts>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let facts = facts.map(|f| f.0).unwrap_or_default();
    let route = match V2Route::parse(uri.path()) {
        Ok(r) => {
            facts.set_class(r.class());
            if let Some(repo) = r.repository() {
                facts.set_repository(repo.as_str());
            }
            r
        }
        Err(RouteError::Invalid(e)) => return with_api_version(OciError::from(e).into_response()),
        Err(RouteError::NotFound) => {
            return with_api_version(OciError::new(Code::NotFound, "no such endpoint").into_response())
        }
    };
    let needed = access::required(&route, &method);
    let query = Query::parse(&uri);
    // A mount reads its source: the challenge asks for pull there too, so the client's token
    // covers it (without, clients fall back to uploading the blob again).
    let mount_source = match (&route, query.get("mount"), query.get("from")) {
        (V2Route::UploadStart(_), Some(_), Some(from)) => {
            from.parse().ok().map(|r| Scope::Repository(r, crate::auth::ActionSet::of(&[Action::Pull])))
        }
        _ => None,
    };
    let grants = match authorize(&state, &headers, &needed, mount_source.as_ref()).await {
        Ok(g) => g,
        Err(response) => return with_api_version(response),
    };
    facts.set_principal(grants.who.principal.subject());
    let req = Request { method, headers, query, grants };
    let response = match dispatch(&state, route, &req, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    with_api_version(response)
}

async fn dispatch(state: &AppState, route: V2Route, req: &Request, body: Body) -> HandlerResult {
    let registry = &state.registry;
    match (route, req.method.clone()) {
        (V2Route::Base, Method::GET | Method::HEAD) => Ok(axum::Json(serde_json::json!({})).into_response()),
        (V2Route::Catalog, Method::GET) => listings::catalog(state, req).await,
        (V2Route::Tags(repo), Method::GET) => listings::tags(registry, &repo, req).await,
        (V2Route::Referrers(repo, digest), Method::GET) => listings::referrers(registry, &repo, &digest, req).await,
        (V2Route::Manifest(repo, reference), Method::GET | Method::HEAD) => {
            manifests::get(state, &repo, &reference, req).await
        }
        (V2Route::Manifest(repo, reference), Method::PUT) => manifests::put(state, &repo, &reference, req, body).await,
        (V2Route::Manifest(repo, reference), Method::DELETE) => manifests::delete(registry, &repo, &reference).await,
        (V2Route::BadReference(_, text), Method::PUT) => match text.parse::<crate::domain::Reference>() {
            Err(e) => Err(e.into()),
            Ok(_) => Err(crate::domain::Error::ManifestUnknown.into()),
        },
        (V2Route::BadReference(..), Method::GET | Method::HEAD | Method::DELETE) => {
            Err(crate::domain::Error::ManifestUnknown.into())
        }
        (V2Route::Blob(repo, digest), Method::GET | Method::HEAD) => blobs::get(state, &repo, &digest, req).await,
        (V2Route::Blob(repo, digest), Method::DELETE) => blobs::delete(registry, &repo, &digest).await,
        (V2Route::UploadStart(repo), Method::POST) => uploads::start(registry, &repo, req, body).await,
        (V2Route::Upload(repo, id), Method::GET) => uploads::status(registry, &repo, &id).await,
        (V2Route::Upload(repo, id), Method::PATCH) => uploads::patch(registry, &repo, &id, req, body).await,
        (V2Route::Upload(repo, id), Method::PUT) => uploads::put(registry, &repo, &id, req, body).await,
        (V2Route::Upload(repo, id), Method::DELETE) => uploads::cancel(registry, &repo, &id).await,
        (_, method) => Err(OciError::new(Code::Unsupported, format!("{method} is not supported on this endpoint"))),
    }
}

/// The answer to a domain error, with the quarantine gate's refusals spelled out: the code names
/// the state, the message what is blocked and why, and where to read the reports.
pub(super) fn refused(state: &AppState, repo: &RepoName, e: Error) -> OciError {
    let Error::Blocked(blocked) = e else { return e.into() };
    let (code, retry) = match blocked.state {
        ScanState::Quarantined => (Code::Quarantined, false),
        ScanState::Error => (Code::ScanFailed, false),
        _ => (Code::ScanPending, true),
    };
    let reports: Vec<String> = blocked
        .manifests
        .iter()
        .take(3)
        .map(|d| format!("{}/api/v1/scans?repository={repo}&digest={d}", state.public_url))
        .collect();
    let what = match &blocked.target {
        crate::domain::Target::Manifest(d) => format!("image {repo}@{d}"),
        crate::domain::Target::Blob(d) => format!("blob {repo}@{d}"),
    };
    let how = match blocked.state {
        ScanState::Quarantined => "is quarantined",
        ScanState::Error => "could not be scanned and is blocked",
        _ => "is waiting for its security scan",
    };
    let detail = blocked.summary.as_deref().map(|s| format!(": {s}")).unwrap_or_default();
    let mut message = format!("{what} {how}{detail}");
    if !reports.is_empty() {
        message.push_str(&format!("; report: {}", reports.join(" ")));
    }
    let e = OciError::new(code, message);
    if retry {
        e.with_header(header::RETRY_AFTER, HeaderValue::from_static("10"))
    } else {
        e
    }
}

fn with_api_version(mut response: Response) -> Response {
    response.headers_mut().insert("Docker-Distribution-API-Version", HeaderValue::from_static("registry/2.0"));
    response
}

/// A path-only URL for `Location` headers (clients resolve it against the URL they used).
fn location(path: String) -> HeaderValue {
    HeaderValue::from_str(&path).unwrap_or_else(|_| HeaderValue::from_static("/v2/"))
}

pub(super) fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
