//! Connection budgets on a real TLS socket, against a real `portcullis` process: connections
//! that never send a request, idle keep-alive connections, slow request bodies, and caps on
//! connections per client address with the oldest idle one making room. Each test prints what it
//! measured.

mod common;

use std::time::{Duration, Instant};

use common::process::{free_port, Server};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn start(dir: &std::path::Path, extra: &[(&str, &str)]) -> Server {
    let mut env = common::backends::for_data_dir(dir).map(|n| common::backends::env(&n)).unwrap_or_default();
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Server::start_with_env(dir, free_port(), None, &env)
}

async fn tls(server: &Server) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(common::proxied::tls_config(server));
    connector.connect("127.0.0.1".try_into().unwrap(), tcp).await.unwrap()
}

/// How long until the server closes `stream` (reads until EOF or an error), bounded by `limit`.
async fn closed_after(stream: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

async fn get_v2(stream: &mut (impl AsyncReadExt + AsyncWriteExt + Unpin)) -> String {
    stream.write_all(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn connections_that_send_nothing_or_idle_are_closed_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        start(dir.path(), &[("PORTCULLIS_SERVER_HEADER_TIMEOUT", "2s"), ("PORTCULLIS_SERVER_IDLE_TIMEOUT", "3s")]);
    // A TCP connection that never sends a byte (not even a TLS hello).
    let mut silent = TcpStream::connect(("127.0.0.1", server.port)).await.unwrap();
    let lived = closed_after(&mut silent, Duration::from_secs(10)).await.expect("closed");
    println!("a connection that sends nothing lived {lived:?} (server.header_timeout 2s)");
    assert!(lived >= Duration::from_millis(1500) && lived < Duration::from_secs(4), "{lived:?}");
    // A TLS connection that never sends a request.
    let mut quiet = tls(&server).await;
    let lived = closed_after(&mut quiet, Duration::from_secs(10)).await.expect("closed");
    println!("a TLS connection without a request lived {lived:?}");
    assert!(lived < Duration::from_secs(4), "{lived:?}");
    // A request head trickled a byte at a time never completes in time.
    let mut slow = tls(&server).await;
    let started = Instant::now();
    for b in b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " {
        if slow.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if started.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    let lived = started.elapsed() + closed_after(&mut slow, Duration::from_secs(10)).await.expect("closed");
    println!("a trickled request head lived {lived:?}");
    assert!(lived < Duration::from_secs(5), "{lived:?}");
    // A kept-alive connection that goes idle after a request is closed after server.idle_timeout.
    let mut kept = tls(&server).await;
    assert!(get_v2(&mut kept).await.starts_with("HTTP/1.1 401"));
    let idle = closed_after(&mut kept, Duration::from_secs(10)).await.expect("closed");
    println!("an idle kept-alive connection lived {idle:?} after its response (server.idle_timeout 3s)");
    assert!(idle >= Duration::from_secs(2) && idle < Duration::from_secs(6), "{idle:?}");
}

#[tokio::test]
async fn one_address_cannot_hold_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[("PORTCULLIS_SERVER_MAX_CONNECTIONS_PER_ADDRESS", "50")]);
    // This test process holds a thousand sockets too.
    portcullis::server::raise_file_limit();
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(("127.0.0.1", server.port)).await.unwrap());
    }
    // An honest request still gets through: the oldest idle connections made room.
    let client = server.client();
    let started = Instant::now();
    let reply = client.get(server.url("/v2/")).send().await.unwrap();
    assert_eq!(reply.status(), 401);
    println!("an honest request beside 1,000 idle connections answered in {:?}", started.elapsed());
    // Count how many of the thousand the server still holds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut open = 0;
    for s in &mut idle {
        let mut buf = [0u8; 1];
        // Still open: nothing to read yet (the read times out). Closed: end of stream or a reset.
        if tokio::time::timeout(Duration::from_millis(5), s.read(&mut buf)).await.is_err() {
            open += 1;
        }
    }
    println!("one address held {open} of 1,000 idle connections (server.max_connections_per_address 50)");
    assert!(open <= 50, "{open} connections of one address stayed open");
    // The log says nothing of failed accepts: no descriptor ran out.
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(!log.contains("accept failed"), "{log}");
}

#[tokio::test]
async fn request_bodies_must_keep_moving() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        start(dir.path(), &[("PORTCULLIS_SERVER_BODY_MIN_RATE", "1000"), ("PORTCULLIS_SERVER_BODY_RATE_WINDOW", "2s")]);
    // A token request whose form is trickled a byte a second.
    let mut slow = tls(&server).await;
    let form = b"grant_type=password&username=admin&password=whatever&service=portcullis";
    let head = format!(
        "POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        form.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut answer = String::new();
    for b in form {
        if slow.write_all(&[*b]).await.is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
            answer = String::from_utf8_lossy(&buf[..n]).into_owned();
            break;
        }
    }
    println!("a trickled body was cut off after {:?}: {:?}", started.elapsed(), answer.lines().next());
    assert!(started.elapsed() < Duration::from_secs(5), "read for {:?}", started.elapsed());
    assert!(answer.starts_with("HTTP/1.1 400") || answer.is_empty(), "{answer}");

    // A slow but steady upload (2 KiB every second, twice the minimum) passes, however long.
    let client = server.admin_client(&["repository:slow/app:pull,push"]).await;
    let data = vec![7u8; 12 * 2048];
    let chunks: Vec<Vec<u8>> = data.chunks(2048).map(<[u8]>::to_vec).collect();
    let stream = futures::stream::iter(chunks).then(|c| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok::<_, std::io::Error>(c)
    });
    use futures::StreamExt;
    let digest = common::sha256(&data);
    let started = Instant::now();
    let reply = client
        .post(server.url(&format!("/v2/slow/app/blobs/uploads/?digest={digest}")))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201, "{:?}", reply.text().await);
    println!("a steady 2 KiB/s upload of 24 KiB took {:?} and was stored", started.elapsed());
}
