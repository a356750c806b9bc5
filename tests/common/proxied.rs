//! A real server behind a (simulated) TCP load balancer that sends the PROXY protocol: each
//! request comes from the client address the test chooses.

use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::process::{free_port, Server};
use super::ADMIN_PASSWORD;

pub fn start(dir: &std::path::Path) -> Server {
    let mut env = super::backends::for_data_dir(dir).map(|n| super::backends::env(&n)).unwrap_or_default();
    env.push(("PORTCULLIS_SERVER_PROXY_PROTOCOL".into(), "true".into()));
    // A lock-out long enough to outlast the test's steps, however slow the machine.
    env.push(("PORTCULLIS_AUTH_LOGIN_BACKOFF".into(), "60s".into()));
    // The flood below is of correct logins: the per-account request limit is not what is tested.
    env.push(("PORTCULLIS_SERVER_RATE_LIMIT_PER_PRINCIPAL".into(), "0".into()));
    env.push(("PORTCULLIS_SERVER_RATE_LIMIT_PER_ADDRESS".into(), "0".into()));
    Server::start_with_env(dir, free_port(), None, &env)
}

pub fn tls_config(server: &Server) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(server.ca_path()).unwrap();
    for cert in <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// One HTTP/1.1 request from `client` (through the PROXY header); the status and body.
pub async fn request(port: u16, config: &Arc<rustls::ClientConfig>, client: IpAddr, head: &str) -> (u16, String) {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let header = portcullis::server::proxy::header_for(client, IpAddr::from([127, 0, 0, 1]));
    tcp.write_all(&header).await.unwrap();
    let mut tls =
        tokio_rustls::TlsConnector::from(config.clone()).connect("127.0.0.1".try_into().unwrap(), tcp).await.unwrap();
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

pub async fn login(
    server: &Server,
    config: &Arc<rustls::ClientConfig>,
    client: IpAddr,
    user: &str,
    secret: &str,
) -> u16 {
    login_at(server.port, config, client, user, secret).await
}

pub async fn login_at(port: u16, config: &Arc<rustls::ClientConfig>, client: IpAddr, user: &str, secret: &str) -> u16 {
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    let head = format!(
        "GET /token?service=portcullis HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n"
    );
    request(port, config, client, &head).await.0
}

/// Reads one HTTP/1.1 response with a `Content-Length` from a kept-alive connection; its status.
pub async fn read_response(stream: &mut (impl AsyncReadExt + Unpin)) -> Option<u16> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: usize =
        text.lines().find_map(|l| l.strip_prefix("content-length:")).map_or(0, |v| v.trim().parse().unwrap_or(0));
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

pub fn ip(last: u8) -> IpAddr {
    IpAddr::from([203, 0, 113, last])
}

pub async fn create_user(server: &Server, name: &str) -> String {
    let password = format!("{name}-password-long");
    let body = serde_json::json!({"username": name, "password": password});
    // The admin API over reqwest (no PROXY header) would be closed: go through `request`.
    let config = tls_config(server);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("admin:{ADMIN_PASSWORD}"));
    let body = body.to_string();
    let head = format!(
        "POST /api/v1/users HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, answer) = request(server.port, &config, ip(200), &head).await;
    assert_eq!(status, 201, "{answer}");
    password
}
