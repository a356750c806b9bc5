//! Logins against a real server behind a (simulated) TCP load balancer that sends the PROXY
//! protocol, so each request comes from the client address the test chooses: throttling per
//! (account, address), attempts counted before they are checked, connections without the PROXY
//! header, log lines that cannot be forged, and the modes of the files the registry writes.
//! (An honest login's latency during a flood is measured alone, in `login_flood.rs`.)

mod common;

use common::proxied::{create_user, ip, login, start, tls_config};
use common::ADMIN_PASSWORD;
use tokio::net::TcpStream;

#[tokio::test]
async fn a_guesser_locks_out_only_its_own_account_and_address() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let config = tls_config(&server);
    let alice = create_user(&server, "alice").await;

    // Thirty guesses at admin's password from one address.
    let mut answers = Vec::new();
    for i in 0..30 {
        answers.push(login(&server, &config, ip(1), "admin", &format!("guess-{i}")).await);
    }
    let checked = answers.iter().filter(|s| **s == 401).count();
    println!("30 guesses from one address: {checked} checked, {} refused unchecked", answers.len() - checked);
    assert!(checked <= 6, "{answers:?}");
    // The owner, from another address, is not locked out.
    assert_eq!(login(&server, &config, ip(2), "admin", ADMIN_PASSWORD).await, 200);
    // The guesser's own (account, address) is, even with the right password.
    assert_eq!(login(&server, &config, ip(1), "admin", ADMIN_PASSWORD).await, 429);

    // Names that do not exist, guessed from an address, do not lock out others' accounts there.
    for i in 0..12 {
        login(&server, &config, ip(3), &format!("nobody-{i}"), "some-password").await;
    }
    assert_eq!(login(&server, &config, ip(3), "nobody-x", "some-password").await, 429);
    assert_eq!(login(&server, &config, ip(3), "alice", &alice).await, 200, "a NAT's other users log in");

    // Concurrent guesses are counted before they are checked: of 100, a handful are checked.
    let guesses = (0..100).map(|i| {
        let (server, config) = (&server, &config);
        async move { login(server, config, ip(4), "alice", &format!("concurrent-{i}")).await }
    });
    let results = futures::future::join_all(guesses).await;
    let checked = results.iter().filter(|s| **s == 401).count();
    println!("100 concurrent guesses: {checked} checked, {} refused unchecked", 100 - checked);
    assert!(checked <= 5, "{checked} of 100 concurrent guesses were checked");
}

#[tokio::test]
async fn without_the_proxy_header_a_connection_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    let tcp = TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let handshake =
        tokio_rustls::TlsConnector::from(tls_config(&server)).connect("127.0.0.1".try_into().unwrap(), tcp).await;
    assert!(handshake.is_err(), "a connection without a PROXY header got a TLS handshake");
}

#[tokio::test]
async fn log_lines_cannot_be_forged_and_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut server = start(dir.path());
    let config = tls_config(&server);
    // A user name with a line break and a forged audit line after it.
    let forged = "x\n2026-12-02T00:00:00Z  INFO audit: admin change actor=\"admin\" action=\"user.create\"";
    assert_eq!(login(&server, &config, ip(9), forged, "whatever-password").await, 401);
    server.stop();
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(!log.lines().any(|l| l.starts_with("2026-12-02T00:00:00Z")), "a forged line reached the log");
    assert!(log.contains("failed login"));
    // The data directory is the registry's alone, and so is everything in it.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir.path()), 0o700, "the data directory was narrowed");
    for file in ["keys/token-signing.pem", "tls/private/server.key", "tls/private/ca.key", "portcullis.db"] {
        let path = dir.path().join(file);
        // (On the scale-out stack the database is PostgreSQL's.)
        if file.ends_with(".db") && !path.exists() {
            continue;
        }
        assert_eq!(mode(&path) & 0o077, 0, "{file} is readable by others");
    }
}

/// `server.trusted_proxies`: only the listed balancer may connect with the PROXY protocol on, and
/// only a trusted peer's `X-Forwarded-For` names the client (here a TLS-reencrypting proxy at
/// 127.0.0.2; loopback addresses are all local).
#[tokio::test]
async fn only_trusted_proxies_name_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = common::backends::for_data_dir(dir.path()).map(|n| common::backends::env(&n)).unwrap_or_default();
    env.push(("PORTCULLIS_SERVER_TRUSTED_PROXIES".into(), "[\"127.0.0.2\"]".into()));
    env.push(("PORTCULLIS_AUTH_LOGIN_BACKOFF".into(), "60s".into()));
    let server = common::process::Server::start_with_env(dir.path(), common::process::free_port(), None, &env);
    let ca = reqwest::Certificate::from_pem(&std::fs::read(server.ca_path()).unwrap()).unwrap();
    let from = |source: [u8; 4]| {
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca.clone())
            .local_address(std::net::IpAddr::from(source))
            .build()
            .unwrap()
    };
    let (proxy, direct) = (from([127, 0, 0, 2]), from([127, 0, 0, 1]));
    let login = |client: &reqwest::Client, forwarded: &str, password: &str| {
        client
            .get(server.url("/token?service=portcullis"))
            .basic_auth("admin", Some(password))
            .header("x-forwarded-for", forwarded)
            .send()
    };
    for i in 0..6 {
        login(&proxy, "198.51.100.1, 203.0.113.7", &format!("wrong-{i}")).await.unwrap();
    }
    // The client the proxy named is locked out; another client through the same proxy is not.
    assert_eq!(login(&proxy, "203.0.113.7", ADMIN_PASSWORD).await.unwrap().status(), 429);
    assert_eq!(login(&proxy, "203.0.113.8", ADMIN_PASSWORD).await.unwrap().status(), 200);
    // A direct client's X-Forwarded-For is not believed: it cannot borrow another's address.
    assert_eq!(login(&direct, "203.0.113.8", "wrong-direct").await.unwrap().status(), 401);
    for i in 0..6 {
        login(&direct, "203.0.113.9", &format!("wrong-{i}")).await.unwrap();
    }
    assert_eq!(login(&proxy, "203.0.113.9", ADMIN_PASSWORD).await.unwrap().status(), 200);
    assert_eq!(
        login(&direct, "203.0.113.10", ADMIN_PASSWORD).await.unwrap().status(),
        429,
        "the direct client is itself"
    );

    // With the PROXY protocol on, a peer outside the list cannot connect at all.
    let dir = tempfile::tempdir().unwrap();
    let mut env = common::backends::for_data_dir(dir.path()).map(|n| common::backends::env(&n)).unwrap_or_default();
    env.push(("PORTCULLIS_SERVER_PROXY_PROTOCOL".into(), "true".into()));
    env.push(("PORTCULLIS_SERVER_TRUSTED_PROXIES".into(), "[\"127.0.0.2\"]".into()));
    let server = common::process::Server::start_with_env(dir.path(), common::process::free_port(), None, &env);
    let config = tls_config(&server);
    let mut outsider = TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let header = portcullis::server::proxy::header_for(ip(1), std::net::IpAddr::from([127, 0, 0, 1]));
    let _ = outsider.write_all(&header).await;
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), outsider.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "an outsider's connection was not closed: {read:?}");
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 2], 0))).unwrap();
    let mut balancer = socket.connect(std::net::SocketAddr::from(([127, 0, 0, 1], server.port))).await.unwrap();
    balancer.write_all(&header).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(config).connect("127.0.0.1".try_into().unwrap(), balancer).await;
    assert!(tls.is_ok(), "the trusted balancer was refused");
}
