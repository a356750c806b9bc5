//! S3 throttling: `503 SlowDown` answers from the store are retried with back-off, and only when
//! the retries run out does a client see `UNAVAILABLE`.
//!
//! Between the registry and the real Garage sits a fault-injecting TCP proxy: it answers the first
//! N connections itself, as a throttling S3 endpoint does, and forwards every other connection
//! untouched (so request signatures stay valid).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{backends, sha256, TestRegistry};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SLOW_DOWN: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";

/// Starts the proxy in front of `upstream`; returns its endpoint URL and the count of throttled
/// requests.
async fn throttling_proxy(upstream: String, throttle_first: usize) -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let throttled = Arc::new(AtomicUsize::new(0));
    let counter = throttled.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else { return };
            let throttle = counter.fetch_add(1, Ordering::SeqCst) < throttle_first;
            if !throttle {
                counter.fetch_sub(1, Ordering::SeqCst);
            }
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if throttle {
                    answer_slow_down(&mut client).await;
                } else if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    (endpoint, throttled)
}

/// Reads one request (head and `Content-Length` body) and answers `503 SlowDown`, closing.
async fn answer_slow_down(client: &mut tokio::net::TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 64 * 1024 {
        if client.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let length: u64 =
        text.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    let _ = tokio::io::copy(&mut client.take(length), &mut tokio::io::sink()).await;
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{SLOW_DOWN}",
        SLOW_DOWN.len()
    );
    let _ = client.write_all(reply.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// A registry whose blob store is the test bucket reached through the proxy.
async fn registry_through(endpoint: String, max_retries: usize) -> TestRegistry {
    let name = backends::name_for(&format!("throttle-{}", uuid::Uuid::new_v4()));
    let dir = tempfile::tempdir().unwrap();
    TestRegistry::with_config(dir, move |c| {
        c.storage.backend = portcullis::config::StorageBackend::S3;
        c.storage.s3 = portcullis::config::S3Config {
            endpoint: Some(endpoint),
            max_retries,
            retry_timeout: std::time::Duration::from_secs(20),
            ..backends::s3_config(&name)
        };
    })
    .await
}

fn garage() -> String {
    let endpoint = std::env::var("TESTBED_S3_ENDPOINT").expect("TESTBED_S3_ENDPOINT: run scripts/test.sh");
    endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned()
}

#[tokio::test]
#[ignore = "needs Garage (S3): scripts/test.sh runs it"]
async fn slow_down_answers_are_retried_until_the_store_takes_the_blob() {
    let (endpoint, throttled) = throttling_proxy(garage(), 3).await;
    let r = registry_through(endpoint, 10).await;
    let layer = common::process::layer_bytes(11, 300_000);
    let digest = r.push_blob("throttled/app", &layer).await;
    assert_eq!(throttled.load(Ordering::SeqCst), 3, "the first three requests were throttled");
    let got = r.get(&format!("/v2/throttled/app/blobs/{digest}")).await;
    got.expect(200, None);
    assert_eq!(sha256(&got.body), digest);
}

#[tokio::test]
#[ignore = "needs Garage (S3): scripts/test.sh runs it"]
async fn unavailable_when_the_retries_run_out() {
    let (endpoint, throttled) = throttling_proxy(garage(), usize::MAX).await;
    let r = registry_through(endpoint, 2).await;
    let layer = common::process::layer_bytes(12, 1000);
    let digest = sha256(&layer);
    let started = std::time::Instant::now();
    let reply = r.send("POST", &format!("/v2/throttled/app/blobs/uploads/?digest={digest}"), &[], layer).await;
    reply.expect(503, Some("UNAVAILABLE"));
    assert_eq!(reply.header("retry-after"), "5");
    // Each store request (the upload, then the clean-up of its leftovers) went out once and was
    // retried twice before the registry gave up.
    let tries = throttled.load(Ordering::SeqCst);
    assert!(tries >= 3 && tries % 3 == 0, "{tries} throttled requests");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "back-off stays bounded");
    // Nothing was recorded: the blob is unknown, not half there.
    r.get(&format!("/v2/throttled/app/blobs/{digest}")).await.expect(404, Some("BLOB_UNKNOWN"));
}
