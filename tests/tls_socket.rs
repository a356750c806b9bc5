//! The registry over a real TLS socket: protocol versions, ALPN, no plaintext, configured
//! certificates, and blob traffic through the listener.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{sha256, test_config, TestRegistry};
use portcullis::auth::{ActionSet, Scope};

use portcullis::Config;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Running {
    addr: SocketAddr,
    ca_pem: Vec<u8>,
    registry: TestRegistry,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn start(edit: impl FnOnce(&mut Config, &std::path::Path)) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    edit(&mut config, dir.path());
    let tls = portcullis::tls::setup(&config).unwrap();
    let ca_pem = match &tls.dev_ca {
        Some(p) => std::fs::read(p).unwrap(),
        None => std::fs::read(config.tls.cert.as_ref().unwrap()).unwrap(),
    };
    let registry = TestRegistry::with_config(dir, |c| *c = config).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let settings = registry.app.config.server_settings(4096);
    tokio::spawn(portcullis::server::serve(
        listener,
        tls.server_config,
        registry.app.router.clone(),
        settings,
        async {
            let _ = rx.await;
        },
    ));
    Running { addr, ca_pem, registry, _shutdown: tx }
}

fn client(ca_pem: &[u8]) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem).unwrap())
        .build()
        .unwrap()
}

/// A raw rustls handshake with the given versions and ALPN; returns the negotiated ALPN.
async fn handshake(
    r: &Running,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> Result<Option<Vec<u8>>, std::io::Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_slice_iter(&r.ca_pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(r.addr).await?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await?;
    Ok(tls.get_ref().1.alpn_protocol().map(|p| p.to_vec()))
}

#[tokio::test]
async fn tls12_and_tls13_with_alpn() {
    let r = start(|_, _| {}).await;
    let h2 = handshake(&r, &[&rustls::version::TLS13], &[b"h2", b"http/1.1"]).await.unwrap();
    assert_eq!(h2.as_deref(), Some(&b"h2"[..]));
    let h1 = handshake(&r, &[&rustls::version::TLS12], &[b"http/1.1"]).await.unwrap();
    assert_eq!(h1.as_deref(), Some(&b"http/1.1"[..]));
    let reply = client(&r.ca_pem).get(format!("https://127.0.0.1:{}/v2/", r.addr.port())).send().await.unwrap();
    assert_eq!(reply.status(), 401, "no token, no access");
    assert!(reply.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer realm="));
    assert_eq!(reply.version(), reqwest::Version::HTTP_2);
    assert!(reply.headers()["strict-transport-security"].to_str().unwrap().starts_with("max-age="));
}

#[tokio::test]
async fn plaintext_http_gets_no_http_answer() {
    let r = start(|_, _| {}).await;
    let mut tcp = tokio::net::TcpStream::connect(r.addr).await.unwrap();
    tcp.write_all(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(!buf.starts_with(b"HTTP/"), "plaintext got an HTTP answer: {:?}", String::from_utf8_lossy(&buf));
}

#[tokio::test]
async fn configured_certificate_replaces_dev_ca() {
    let r = start(|config, dir| {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().self_signed(&key).unwrap();
        std::fs::write(dir.join("own.crt"), cert.pem()).unwrap();
        std::fs::write(dir.join("own.key"), key.serialize_pem()).unwrap();
        config.tls.cert = Some(dir.join("own.crt"));
        config.tls.key = Some(dir.join("own.key"));
    })
    .await;
    let reply = client(&r.ca_pem).get(format!("https://127.0.0.1:{}/v2/", r.addr.port())).send().await.unwrap();
    assert_eq!(reply.status(), 401);
    assert!(!r.registry.dir.path().join("tls/ca.crt").exists(), "no development CA when a certificate is configured");
}

#[tokio::test]
async fn dev_ca_is_reused_across_starts() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    portcullis::tls::setup(&config).unwrap();
    let first = std::fs::read(dir.path().join("tls/ca.crt")).unwrap();
    let server_first = std::fs::read(dir.path().join("tls/private/server.crt")).unwrap();
    portcullis::tls::setup(&config).unwrap();
    assert_eq!(first, std::fs::read(dir.path().join("tls/ca.crt")).unwrap());
    assert_eq!(server_first, std::fs::read(dir.path().join("tls/private/server.crt")).unwrap());
    use std::os::unix::fs::PermissionsExt;
    for key in ["ca.key", "server.key"] {
        let mode = std::fs::metadata(dir.path().join("tls/private").join(key)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{key}");
    }
    // The directory users are told to copy from (or point --cert-dir at) holds the CA certificate
    // and nothing else: skopeo reads any *.key there as a client key.
    let public: Vec<String> = std::fs::read_dir(dir.path().join("tls"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(public, ["ca.crt"]);
    let private = std::fs::metadata(dir.path().join("tls/private")).unwrap().permissions().mode();
    assert_eq!(private & 0o777, 0o700);
    // A new public name re-issues the server certificate from the same CA.
    let renamed = Config { public_url: Some("https://registry.example:5000".into()), ..config };
    portcullis::tls::setup(&renamed).unwrap();
    assert_eq!(first, std::fs::read(dir.path().join("tls/ca.crt")).unwrap());
    assert_ne!(server_first, std::fs::read(dir.path().join("tls/private/server.crt")).unwrap());
}

#[tokio::test]
async fn chunked_upload_and_pull_over_tls() {
    let r = start(|_, _| {}).await;
    let admin = r.registry.admin().await;
    let token = r.registry.token_for(&admin, &[Scope::Repository("tls/app".parse().unwrap(), ActionSet::ALL)]).await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    let c = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&r.ca_pem).unwrap())
        .default_headers(headers)
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{}", r.addr.port());
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    let digest = common::process::push_blob_chunked(&c, &base, "tls/app", &data, 1_000_000).await.unwrap();
    let got = c.get(format!("{base}/v2/tls/app/blobs/{digest}")).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(sha256(&got.bytes().await.unwrap()), digest);
}
