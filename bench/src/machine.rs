//! The machine's own limits, measured in the same run: SHA-256 on one core, TLS on loopback, and
//! writing new files to disk.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    pub sha256_one_core_mb_s: Option<f64>,
    pub tls_loopback_mb_s: Option<f64>,
    /// The median of `new_file_write_per_run_mb_s`.
    pub new_file_write_mb_s: Option<f64>,
    /// Measured at the start of every run: the page cache fills as the runs write their blobs,
    /// which slows new-file writes for the registries and for `dd` alike.
    pub new_file_write_per_run_mb_s: Vec<f64>,
}

/// `openssl speed -evp sha256`: the largest block size's rate, in MB/s.
pub fn sha256_speed() -> Option<f64> {
    let out = std::process::Command::new("openssl").args(["speed", "-seconds", "2", "-evp", "sha256"]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().rev().find(|l| l.trim_start().starts_with("sha256"))?;
    let best = line
        .split_whitespace()
        .filter_map(|f| f.strip_suffix('k'))
        .filter_map(|f| f.parse::<f64>().ok())
        .fold(0.0, f64::max);
    Some(best * 1000.0 / 1e6)
}

/// `dd` of `source` (already in the page cache) into a new file with `conv=fdatasync`; the file is kept
/// until the caller removes it, as a registry's blobs are.
pub fn dd_write(source: &Path, target: &Path) -> Option<f64> {
    let _ = std::fs::remove_file(target);
    let out = std::process::Command::new("dd")
        .arg(format!("if={}", source.display()))
        .arg(format!("of={}", target.display()))
        .args(["bs=8M", "conv=fdatasync"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().find(|l| l.contains("copied"))?;
    let bytes: f64 = line.split_whitespace().next()?.parse().ok()?;
    let secs: f64 = line.split(", ").find(|p| p.ends_with(" s"))?.trim_end_matches(" s").parse().ok()?;
    Some(bytes / secs / 1e6)
}

/// Sends `bytes` through a rustls connection on loopback (same crypto provider as the registry).
pub async fn tls_loopback(tls: Arc<rustls::ServerConfig>, ca_pem: &[u8], bytes: u64) -> Option<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
    let addr = listener.local_addr().ok()?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.ok()?;
        let mut s = acceptor.accept(tcp).await.ok()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut got = 0u64;
        loop {
            let n = s.read(&mut buf).await.ok()?;
            if n == 0 {
                return Some(got);
            }
            got += n as u64;
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert.ok()?).ok()?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.ok()?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").ok()?;
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.ok()?;
    let buf = vec![7u8; 1 << 20];
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        s.write_all(&buf).await.ok()?;
        sent += buf.len() as u64;
    }
    s.shutdown().await.ok()?;
    let received = server.await.ok()??;
    Some(received as f64 / started.elapsed().as_secs_f64() / 1e6)
}
