//! `/healthz` and `/readyz`: unauthenticated, cheap, and naming the dependency that fails.

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use common::TestRegistry;

#[tokio::test]
async fn healthz_and_readyz_answer_without_credentials() {
    let r = TestRegistry::new().await;
    let health = r.send_raw("GET", "/healthz", &[], Body::empty()).await;
    health.expect(200, None);
    assert_eq!(health.json()["status"], "ok");
    let ready = r.send_raw("GET", "/readyz", &[], Body::empty()).await;
    ready.expect(200, None);
    let body = ready.json();
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!((body["database"]["ok"].as_bool(), body["storage"]["ok"].as_bool()), (Some(true), Some(true)));
    assert_eq!(ready.header("cache-control"), "no-store");
    // Cheap enough to poll every second: 20 probes in well under a second each.
    for _ in 0..20 {
        let started = Instant::now();
        r.send_raw("GET", "/readyz", &[], Body::empty()).await.expect(200, None);
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}

/// A blob store that does not answer (an S3 endpoint nobody listens on): `/readyz` is 503 and
/// names the store, within its bound; the database still reads ok; `/healthz` stays 200.
#[tokio::test]
async fn readyz_names_an_unreachable_blob_store() {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let dir = tempfile::tempdir().unwrap();
    let r = TestRegistry::with_config(dir, |c| {
        c.storage.backend = portcullis::config::StorageBackend::S3;
        c.storage.s3.bucket = Some("nowhere".into());
        c.storage.s3.endpoint = Some(format!("http://127.0.0.1:{port}"));
        c.storage.s3.allow_http = true;
        c.storage.s3.path_style = true;
        c.storage.s3.access_key_id = Some("key".into());
        c.storage.s3.secret_access_key = Some(portcullis::config::Secret::new("secret-that-must-not-show".into()));
        c.storage.s3.max_retries = 1;
        c.storage.s3.retry_timeout = Duration::from_millis(500);
    })
    .await;
    let started = Instant::now();
    let ready = r.send_raw("GET", "/readyz", &[], Body::empty()).await;
    assert!(started.elapsed() < Duration::from_secs(4), "the probe is bounded");
    ready.expect(503, None);
    let body = ready.json();
    assert_eq!(body["status"], "not ready", "{body}");
    assert_eq!(body["storage"]["ok"], false, "{body}");
    assert_eq!(body["database"]["ok"], true, "{body}");
    let text = String::from_utf8_lossy(&ready.body).to_string();
    assert!(!text.contains("secret-that-must-not-show") && !text.contains(&port.to_string()), "{text}");
    r.send_raw("GET", "/healthz", &[], Body::empty()).await.expect(200, None);
}

/// A TCP forwarder to `target` that can be cut: every connection through it, open or new, ends.
struct Cuttable {
    port: u16,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Cuttable {
    async fn start(target: std::net::SocketAddr) -> Cuttable {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>> = Default::default();
        let kept = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let pipe = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                kept.lock().unwrap().push(pipe);
            }
        });
        tasks.lock().unwrap().push(accept);
        Cuttable { port, tasks }
    }

    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// The database stops answering (PostgreSQL behind a connection that is cut): `/readyz` is 503
/// and names the database, within its bound, while `/healthz` stays 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: scripts/test.sh runs it"]
async fn readyz_names_a_database_that_stopped_answering() {
    let server_url = std::env::var("TESTBED_POSTGRES").expect("TESTBED_POSTGRES: run through scripts/test.sh");
    let dir = tempfile::tempdir().unwrap();
    let name = common::backends::name_for(&dir.path().to_string_lossy());
    let mut url = url::Url::parse(&common::backends::postgres_database(&name)).unwrap();
    let pg = url::Url::parse(&server_url).unwrap();
    let target = format!("{}:{}", pg.host_str().unwrap(), pg.port().unwrap()).parse().unwrap();
    let cuttable = Cuttable::start(target).await;
    url.set_port(Some(cuttable.port)).unwrap();
    let r = TestRegistry::with_config(dir, |c| {
        c.database.url = Some(portcullis::config::Secret::new(url.to_string()));
    })
    .await;
    r.send_raw("GET", "/readyz", &[], Body::empty()).await.expect(200, None);
    cuttable.cut();
    let started = Instant::now();
    let ready = r.send_raw("GET", "/readyz", &[], Body::empty()).await;
    assert!(started.elapsed() < Duration::from_secs(4), "the probe is bounded: {:?}", started.elapsed());
    ready.expect(503, None);
    let body = ready.json();
    assert_eq!(body["database"]["ok"], false, "{body}");
    assert_eq!(body["storage"]["ok"], true, "{body}");
    assert!(!String::from_utf8_lossy(&ready.body).contains(&cuttable.port.to_string()), "no detail: {body}");
    r.send_raw("GET", "/healthz", &[], Body::empty()).await.expect(200, None);
}
