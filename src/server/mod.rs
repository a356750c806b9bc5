//! The TLS listener: accepts TCP connections, completes a rustls handshake and serves HTTP/1.1 or
//! HTTP/2 with the router, keeping every connection inside its budgets.
//!
//! Rules:
//! - There is no plaintext path. A connection that fails the handshake (including plaintext HTTP)
//!   is closed without an HTTP answer.
//! - From accept to its first complete request head (PROXY header and TLS handshake included), a
//!   connection has `server.header_timeout`; then it may stay idle (no request in flight)
//!   `server.idle_timeout`; a request head on a kept-alive connection must arrive within that too.
//! - The protocol is the one TLS negotiated (ALPN `h2`, else HTTP/1.1): nothing waits for bytes to
//!   guess it.
//! - Connections are capped per replica and per client address ([`tracker`]); when full, the
//!   oldest idle connection makes room, a busy one never does. Request bodies must keep a minimum
//!   rate ([`body_rate`]).
//! - Failing accepts (out of descriptors) close an idle connection and are logged at most once a
//!   second, with the count of those not logged.

pub mod body_rate;
pub mod proxy;
pub mod tracker;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use self::body_rate::MinRate;
use self::tracker::{Admission, Tracker};
use crate::http::credentials::ClientAddr;

/// What the listener enforces (`[server]` in the configuration).
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_min_rate: MinRate,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub proxy_protocol: bool,
    /// Peers whose PROXY header and `X-Forwarded-For` are believed (empty: every peer's PROXY
    /// header, and no `X-Forwarded-For`).
    pub trusted_proxies: Vec<proxy::Cidr>,
}

/// Raises the soft limit on open files to the hard one; returns the limit now in force.
pub fn raise_file_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    match (limit.current, limit.maximum) {
        (Some(current), Some(max)) if current < max => {
            match setrlimit(Resource::Nofile, Rlimit { current: Some(max), maximum: Some(max) }) {
                Ok(()) => max,
                Err(_) => current,
            }
        }
        (Some(current), _) => current,
        // No limit at all.
        (None, _) => u64::MAX,
    }
}

/// Logs a recurring error at most once a second, with how many were not logged.
struct Throttled {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttled {
    fn log(&mut self, error: &std::io::Error) {
        let now = Instant::now();
        if self.last.is_some_and(|l| now.duration_since(l) < Duration::from_secs(1)) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(error = %error, not_logged = self.suppressed, "accept failed");
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Serves until `shutdown` resolves, then waits (bounded) for open connections to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let tracker = Tracker::new(settings.max_connections, settings.max_connections_per_address);
    let settings = Arc::new(settings);
    let mut accept_errors = Throttled { last: None, suppressed: 0 };
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    accept_errors.log(&e);
                    // Out of descriptors: an idle connection gives one back.
                    tracker.evict_oldest_idle();
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let admission = match tracker.admit(peer.ip()) {
            Ok(a) => a,
            Err(refused) => {
                tracing::debug!(?refused, "connection refused: every connection is busy");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, router, settings) = (acceptor.clone(), router.clone(), settings.clone());
        tokio::spawn(async move {
            connection(tcp, peer.ip(), acceptor, router, &settings, &admission).await;
            admission.release();
        });
    }
    drop(listener);
    tracker.close_all();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !tracker.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !tracker.is_empty() {
        tracing::warn!(open = tracker.len(), "connections still open after 30 s; closing");
    }
    Ok(())
}

/// One connection, from the PROXY header to its end.
async fn connection(
    mut tcp: TcpStream,
    peer: IpAddr,
    acceptor: TlsAcceptor,
    router: Router,
    settings: &ServerSettings,
    admission: &Admission,
) {
    let first_deadline = Instant::now() + settings.header_timeout;
    // Until the first request, the connection ends at its deadline or when it must make room.
    let before_first = |phase| async move {
        tokio::select! {
            _ = tokio::time::sleep_until(first_deadline) => tracing::debug!(%peer, phase, "timed out"),
            _ = admission.closing() => tracing::debug!(%peer, phase, "closed to make room"),
        }
    };
    if settings.proxy_protocol
        && !settings.trusted_proxies.is_empty()
        && !settings.trusted_proxies.iter().any(|c| c.contains(peer))
    {
        tracing::debug!(%peer, "connection from outside server.trusted_proxies closed");
        return;
    }
    let client = if settings.proxy_protocol {
        tokio::select! {
            header = proxy::read_header(&mut tcp, peer) => match header {
                Ok(client) => client,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "connection without a PROXY header closed");
                    return;
                }
            },
            _ = before_first("PROXY header") => return,
        }
    } else {
        peer
    };
    let tls = tokio::select! {
        handshake = acceptor.accept(tcp) => match handshake {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(%client, error = %e, "TLS handshake failed");
                return;
            }
        },
        _ = before_first("TLS handshake") => return,
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let service = hyper::service::service_fn({
        let (admission, rate, trusted) = (admission.clone(), settings.body_min_rate, settings.trusted_proxies.clone());
        move |req: hyper::Request<Incoming>| {
            let mut req = req.map(|b| rate.wrap(Body::new(b)));
            let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
            let client = proxy::forwarded_client(client, forwarded, &trusted);
            req.extensions_mut().insert(ClientAddr(client));
            admission.started();
            let done = Finished(Some(admission.clone()));
            let response = tower::ServiceExt::oneshot(router.clone(), req);
            async move {
                let response = response.await.unwrap_or_else(|never| match never {});
                Ok::<_, std::convert::Infallible>(response.map(|body| Body::new(Guarded { body, _done: done })))
            }
        }
    });
    let io = TokioIo::new(tls);
    let mut conn: Pin<Box<dyn Connection>> = if h2 {
        let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(20)))
            .keep_alive_timeout(Duration::from_secs(20))
            .max_concurrent_streams(256);
        Box::pin(b.serve_connection(io, service))
    } else {
        let mut b = hyper::server::conn::http1::Builder::new();
        // Counts from the moment the connection waits for a request head: a slow head, and an
        // idle kept-alive connection, are both cut off after this.
        b.timer(TokioTimer::new()).header_read_timeout(settings.idle_timeout).max_buf_size(64 * 1024);
        Box::pin(b.serve_connection(io, service))
    };
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%client, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = admission.closing(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = tick.tick() => {
                if !admission.served_any() && Instant::now() >= first_deadline {
                    tracing::debug!(%client, "no request head within server.header_timeout; closed");
                    return;
                }
                if admission.idle_for().is_some_and(|idle| idle >= settings.idle_timeout) && !closing {
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The two hyper connection types, as one.
trait Connection: Future<Output = Result<(), hyper::Error>> + Send {
    fn graceful_shutdown(self: Pin<&mut Self>);
}

impl<S, B> Connection for hyper::server::conn::http1::Connection<TokioIo<tokio_rustls::server::TlsStream<TcpStream>>, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = B> + Send,
    S::Future: Send,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http1::Connection::graceful_shutdown(self)
    }
}

impl<S, B> Connection
    for hyper::server::conn::http2::Connection<TokioIo<tokio_rustls::server::TlsStream<TcpStream>>, S, TokioExecutor>
where
    S: hyper::service::HttpService<Incoming, ResBody = B> + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        hyper::server::conn::http2::Connection::graceful_shutdown(self)
    }
}

/// Tells the tracker a response is done when its body is dropped (sent, or abandoned).
struct Finished(Option<Admission>);

impl Drop for Finished {
    fn drop(&mut self) {
        if let Some(a) = self.0.take() {
            a.finished();
        }
    }
}

/// A response body that carries its [`Finished`] guard.
struct Guarded {
    body: Body,
    _done: Finished,
}

impl http_body::Body for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
