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
    for file in ["keys/token-signing.pem", "tls/server.key", "tls/ca.key", "portcullis.db"] {
        let path = dir.path().join(file);
        // (On the scale-out stack the database is PostgreSQL's.)
        if file.ends_with(".db") && !path.exists() {
            continue;
        }
        assert_eq!(mode(&path) & 0o077, 0, "{file} is readable by others");
    }
}
