//! Every request's record: its id, its access-log line and its metrics.
//!
//! Rules:
//! - Every response carries `X-Request-Id`: the one a proxy or client sent when it is a short
//!   token of safe characters ([`accept_id`]), a new random UUID otherwise. Handlers find it in the
//!   request's extensions ([`RequestId`]), so an audit record names the same request.
//! - One access-log line per request (tracing target `access`), written when the response body
//!   has ended or the client has gone away: id, client address, method, route class, repository,
//!   principal, status, bytes each way, duration. It never holds a header, a query string or a
//!   body, so no credential can reach it; the only client-chosen text in it is the repository
//!   name, which the route parser validated, and strings are written quoted and escaped (one
//!   request is one line, whatever it holds).
//! - Metrics are labelled by route class, method (a fixed set) and status only: never by
//!   repository or user, so the number of series stays bounded whatever clients send.
//! - The request is handled inside its [`RequestContext`] (id, client, actor once known), so an
//!   audit record written anywhere below names the request it came from.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use http_body::{Frame, SizeHint};

use super::credentials::ClientAddr;
use super::AppState;
use crate::model::audit::{self, NewAudit, RequestContext};
use crate::model::metrics as m;

pub const REQUEST_ID: &str = "x-request-id";

/// The id of the request being handled (a request extension).
#[derive(Debug, Clone)]
pub struct RequestId(pub Arc<str>);

/// What handlers learn about a request that the access log and the metrics report: its route
/// class, the repository it names and who made it. A request extension, shared with the record
/// written when the response ends.
#[derive(Clone, Default)]
pub struct RequestFacts(Arc<Mutex<Facts>>);

#[derive(Default)]
struct Facts {
    class: Option<&'static str>,
    repository: Option<String>,
    principal: Option<String>,
}

impl RequestFacts {
    pub fn of(extensions: &axum::http::Extensions) -> Option<&RequestFacts> {
        extensions.get::<RequestFacts>()
    }
    fn with(&self, f: impl FnOnce(&mut Facts)) {
        if let Ok(mut facts) = self.0.lock() {
            f(&mut facts)
        }
    }
    /// The route class (a fixed word such as `manifest` or `blob`), for labels and the log.
    pub fn set_class(&self, class: &'static str) {
        self.with(|f| f.class = Some(class));
    }
    pub fn set_repository(&self, repository: &str) {
        self.with(|f| f.repository = Some(repository.to_owned()));
    }
    /// The authenticated account's name (empty for anonymous callers); also the actor of the
    /// audit records this request writes.
    pub fn set_principal(&self, subject: &str) {
        self.with(|f| f.principal = Some(subject.to_owned()));
        if let Some(context) = RequestContext::current() {
            context.set_actor(subject);
        }
    }
}

/// Keeps a caller's request id when it is 1 to 128 characters of `A-Z a-z 0-9 . _ : = / + -`
/// (UUIDs, hex trace ids, load balancers' trace headers); anything else is replaced, so the id
/// can go into headers and logs as it is.
pub fn accept_id(value: Option<&HeaderValue>) -> Option<&str> {
    let s = value?.to_str().ok()?;
    let safe = |c: char| c.is_ascii_alphanumeric() || "._:=/+-".contains(c);
    (!s.is_empty() && s.len() <= 128 && s.chars().all(safe)).then_some(s)
}

fn new_id() -> String {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid().to_string()
}

/// The class of a path no handler classified (one word; never the client's text).
fn class_of_path(path: &str) -> &'static str {
    match path {
        "/token" => "token",
        "/healthz" | "/readyz" => "health",
        "/metrics" => "metrics",
        "/.well-known/jwks.json" => "jwks",
        "/.well-known/portcullis-attestation.pem" | "/.well-known/portcullis-attestation.jwks" => "attestation_key",
        p if p == "/v2" || p.starts_with("/v2/") => "v2",
        p if p.starts_with("/api/v1/") => "admin",
        _ => "other",
    }
}

/// The method as a label: one of the methods the registry serves, or `other`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The middleware: gives the request its id and facts, counts the bytes of its body, and wraps
/// the response body so the record is written when it ends.
pub async fn observe(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id: Arc<str> = match accept_id(req.headers().get(REQUEST_ID)) {
        Some(s) => s.into(),
        None => new_id().into(),
    };
    let facts = RequestFacts::default();
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(facts.clone());
    let method = method_label(req.method());
    let path_class = class_of_path(req.uri().path());
    // Refusals of the admin API and of `/metrics` are audited here, once for every handler
    // (`/v2` refusals are audited where they are decided, with the scope).
    let audited_path =
        matches!(path_class, "admin" | "metrics").then(|| req.uri().path().chars().take(256).collect::<String>());
    let client = ClientAddr::of(req.extensions());
    let received = Arc::new(AtomicU64::new(0));
    let req = req.map(|body| Body::new(Counted { inner: body, count: received.clone(), guard: () }));

    // Logs written while handling carry the id (the path is left out: it is the client's text).
    let span = tracing::info_span!("request", id = &*id, method);
    let context = RequestContext::new(id.clone(), client);
    let mut response =
        RequestContext::scope(context.clone(), tracing::Instrument::instrument(next.run(req), span)).await;
    if let Some(path) = audited_path.filter(|_| response.status() == axum::http::StatusCode::FORBIDDEN) {
        RequestContext::scope(context, async {
            let record = NewAudit::new("access.denied", path).outcome(audit::DENIED).detail("method", method);
            state.registry.audit(record).await;
        })
        .await;
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let record = Record {
        id,
        start,
        method,
        path_class,
        client,
        status: response.status().as_u16(),
        facts,
        received,
        sent: Arc::new(AtomicU64::new(0)),
        access_log: state.access_log,
    };
    let sent = record.sent.clone();
    response.map(|body| Body::new(Counted { inner: body, count: sent, guard: record }))
}

/// A body that counts the bytes that pass through it. The response's carries the request's
/// [`Record`] as `guard`, written when the body is dropped (its end, or the client going away).
struct Counted<G> {
    inner: Body,
    count: Arc<AtomicU64>,
    #[allow(dead_code)] // held for its Drop
    guard: G,
}

impl<G: Send + Unpin + 'static> http_body::Body for Counted<G> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

struct Record {
    id: Arc<str>,
    start: Instant,
    method: &'static str,
    path_class: &'static str,
    client: std::net::IpAddr,
    status: u16,
    facts: RequestFacts,
    received: Arc<AtomicU64>,
    sent: Arc<AtomicU64>,
    access_log: bool,
}

impl Drop for Record {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        let received = self.received.load(Ordering::Relaxed);
        let sent = self.sent.load(Ordering::Relaxed);
        let facts = std::mem::take(&mut *self.facts.0.lock().unwrap_or_else(|p| p.into_inner()));
        let class = facts.class.unwrap_or(self.path_class);
        let status = status_label(self.status);
        metrics::counter!(m::HTTP_REQUESTS, "class" => class, "method" => self.method, "status" => status).increment(1);
        metrics::histogram!(m::HTTP_DURATION, "class" => class).record(elapsed.as_secs_f64());
        if received > 0 {
            metrics::counter!(m::HTTP_RECEIVED, "class" => class).increment(received);
        }
        if sent > 0 {
            metrics::counter!(m::HTTP_SENT, "class" => class).increment(sent);
        }
        if self.access_log {
            tracing::info!(
                target: "access",
                request_id = &*self.id,
                client = %self.client,
                method = self.method,
                class,
                repository = facts.repository.as_deref().unwrap_or("-"),
                principal = facts.principal.as_deref().filter(|p| !p.is_empty()).unwrap_or("-"),
                status = self.status,
                received,
                sent,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            );
        }
    }
}

/// The status as a label without an allocation for the codes the registry answers with.
fn status_label(status: u16) -> std::borrow::Cow<'static, str> {
    const KNOWN: &[(u16, &str)] = &[
        (200, "200"),
        (201, "201"),
        (202, "202"),
        (204, "204"),
        (206, "206"),
        (307, "307"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (405, "405"),
        (409, "409"),
        (412, "412"),
        (413, "413"),
        (416, "416"),
        (429, "429"),
        (500, "500"),
        (503, "503"),
    ];
    match KNOWN.iter().find(|(code, _)| *code == status) {
        Some((_, s)) => (*s).into(),
        None => status.to_string().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_is_kept_only_when_it_is_safe() {
        let ok = HeaderValue::from_static("3f2a9c1e-77aa-4b1e-9d2a-0c5b7e1f2a3b");
        assert_eq!(accept_id(Some(&ok)), Some("3f2a9c1e-77aa-4b1e-9d2a-0c5b7e1f2a3b"));
        let aws = HeaderValue::from_static("Root=1-67891233-abcdef012345678912345678");
        assert!(accept_id(Some(&aws)).is_some());
        for bad in ["", "a b", "x\"y", "a;b", "é", "{json}"] {
            let v = HeaderValue::from_str(bad).unwrap_or(HeaderValue::from_static("a b"));
            assert_eq!(accept_id(Some(&v)), None, "{bad:?}");
        }
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        assert_eq!(accept_id(Some(&long)), None);
        assert_eq!(accept_id(None), None);
    }

    #[test]
    fn new_ids_are_uuids_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert_eq!(uuid::Uuid::parse_str(&a).map(|u| u.get_version_num()), Ok(4));
    }

    #[test]
    fn labels_come_from_fixed_sets() {
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(class_of_path("/v2/team/app/manifests/v1"), "v2");
        assert_eq!(class_of_path("/anything/else"), "other");
        assert_eq!(status_label(404), "404");
        assert_eq!(status_label(418), "418");
    }
}
