//! A real HTTPS webhook receiver for tests: its own CA (written to a file the registry is told
//! to trust through `webhooks.ca_file`), a certificate for `localhost`, and every request kept.
//! It can answer 500 to the first few requests.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status it was answered with.
    pub status: u16,
}

pub struct Receiver {
    pub addr: SocketAddr,
    pub ca_file: PathBuf,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// How many requests in all it answered 500 to.
    pub failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// Starts on `127.0.0.1:port` (0: any), answering 500 to the first `fail_first` requests.
    pub async fn start(dir: &Path, port: u16, fail_first: usize) -> Receiver {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "webhook test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf =
            CertificateParams::new(vec!["localhost".into()]).unwrap().signed_by(&leaf_key, &ca, &ca_key).unwrap();
        let ca_file = dir.join("receiver-ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let failed = Arc::new(AtomicUsize::new(0));
        let (kept, failures) = (received.clone(), failed.clone());
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: Bytes| {
            let (kept, failures) = (kept.clone(), failures.clone());
            async move {
                // One lock for the decision and the record: concurrent requests count exactly.
                let mut kept = kept.lock().unwrap();
                let status = if failures.load(Ordering::SeqCst) < fail_first {
                    failures.fetch_add(1, Ordering::SeqCst);
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::NO_CONTENT
                };
                kept.push(Received { headers, body, status: status.as_u16() });
                status
            }
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Receiver { addr, ca_file, received, failed, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits up to `secs` for a request it accepted (2xx) whose body satisfies `found`.
    pub async fn wait_for(&self, secs: u64, found: impl Fn(&serde_json::Value) -> bool) -> Option<Received> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            let hit = self.received().into_iter().find(|r| {
                r.status < 300 && serde_json::from_slice::<serde_json::Value>(&r.body).is_ok_and(|v| found(&v))
            });
            if hit.is_some() {
                return hit;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        None
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Checks `Portcullis-Signature` the way a receiver should: the HMAC over "<t>.<body>" with the
/// secret, compared in constant time, and `t` within five minutes.
pub fn signature_valid(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    use hmac::Mac;
    let Some(header) = headers.get("portcullis-signature").and_then(|v| v.to_str().ok()) else { return false };
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else { return false };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    if (now - t).abs() > 300 {
        return false;
    }
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&v1).is_ok()
}
