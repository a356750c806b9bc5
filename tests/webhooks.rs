//! Webhooks against a real HTTPS receiver started by the test (its own CA, trusted through
//! `webhooks.ca_file`) and a real `portcullis serve` process: signed CloudEvents, retries after
//! errors, delivery after a `kill -9`, private targets refused unless allowed, and the quarantine
//! of a passed image by vulnerability data imported later.

mod common;

use std::path::Path;

use common::process::{free_port, push_small_image, Server};
use common::receiver::{signature_valid, Receiver};
use common::ADMIN_PASSWORD;
use serde_json::{json, Value};

fn start(dir: &Path, receiver_ca: &Path, allow_private: bool) -> Server {
    let env = [
        ("PORTCULLIS_WEBHOOKS_ALLOW_PRIVATE_TARGETS".to_owned(), allow_private.to_string()),
        ("PORTCULLIS_WEBHOOKS_CA_FILE".to_owned(), receiver_ca.display().to_string()),
        ("PORTCULLIS_WEBHOOKS_BACKOFF".to_owned(), "200ms".to_owned()),
    ];
    Server::start_with_extra_env(dir, free_port(), &env)
}

async fn call(server: &Server, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    let r = server
        .client()
        .request(method, server.url(path))
        .basic_auth("admin", Some(ADMIN_PASSWORD))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Registers a registry-wide webhook for `events`; returns its id and secret.
async fn register(server: &Server, url: &str, events: &[&str]) -> (String, String) {
    let (status, hook) =
        call(server, reqwest::Method::POST, "/api/v1/webhooks", json!({"url": url, "events": events})).await;
    assert_eq!(status, 201, "{hook}");
    (hook["id"].as_str().unwrap().to_owned(), hook["secret"].as_str().unwrap().to_owned())
}

async fn pusher(server: &Server) -> reqwest::Client {
    server.admin_client(&["repository:team/app:pull,push"]).await
}

/// A root image pushed: the receiver gets `push` and `scan.quarantined` as signed CloudEvents,
/// after answering 500 to the first three requests; the history shows the retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_push_is_delivered_signed_after_retries() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), 0, 3).await;
    let server = start(dir.path(), &receiver.ca_file, true);
    server.api(reqwest::Method::POST, "/api/v1/namespaces", json!({"name": "team"})).await;
    let (id, secret) = register(&server, &receiver.url("/hooks/portcullis"), &["push", "scan.quarantined"]).await;
    let (_, shown) = call(&server, reqwest::Method::GET, &format!("/api/v1/webhooks/{id}"), Value::Null).await;
    assert!(shown.get("secret").is_none(), "the secret is shown once: {shown}");

    let digest = push_small_image(&pusher(&server).await, &server.url(""), "team/app", "v1", None).await;
    let quarantined = receiver
        .wait_for(60, |v| v["type"] == "io.portcullis.scan.quarantined")
        .await
        .expect("the quarantined event arrives");
    let event: Value = serde_json::from_slice(&quarantined.body).unwrap();
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["source"], server.url(""));
    assert_eq!(event["data"]["repository"], "team/app");
    assert_eq!(event["data"]["digest"], digest.as_str());
    assert_eq!(event["data"]["actor"], "system:scanner");
    assert!(event["data"]["report_url"].as_str().unwrap().contains("/api/v1/scans?repository=team/app"));
    assert!(event["data"]["summary"].as_str().is_some_and(|s| !s.is_empty()), "{event}");
    assert_eq!(quarantined.headers["content-type"], "application/cloudevents+json");
    assert!(signature_valid(&secret, &quarantined.headers, &quarantined.body), "the signature verifies");
    assert!(!signature_valid("whsec_wrong", &quarantined.headers, &quarantined.body));
    let push = receiver.wait_for(30, |v| v["type"] == "io.portcullis.push").await.expect("the push event arrives");
    let push_event: Value = serde_json::from_slice(&push.body).unwrap();
    assert_eq!((push_event["data"]["tag"].as_str(), push_event["data"]["actor"].as_str()), (Some("v1"), Some("admin")));
    assert_eq!(push_event["data"]["request_id"], "push-v1");
    assert!(signature_valid(&secret, &push.headers, &push.body));

    // Three 500s, each retried: the history adds up to what the receiver saw.
    assert_eq!(receiver.failed.load(std::sync::atomic::Ordering::SeqCst), 3);
    // (The registry records an attempt just after the receiver answers it.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let history = loop {
        let (_, history) =
            call(&server, reqwest::Method::GET, &format!("/api/v1/webhooks/{id}/deliveries"), Value::Null).await;
        let items = history["items"].as_array();
        let done = items.is_some_and(|i| i.len() == 2 && i.iter().all(|d| d["state"] == "delivered"));
        if done || std::time::Instant::now() > deadline {
            break history;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let items = history["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{history}");
    assert!(items.iter().all(|d| d["state"] == "delivered"), "{history}");
    let attempts: i64 = items.iter().map(|d| d["attempts"].as_i64().unwrap()).sum();
    assert_eq!(attempts as usize, receiver.received().len());

    // The test call.
    let (status, _) = call(&server, reqwest::Method::POST, &format!("/api/v1/webhooks/{id}/test"), Value::Null).await;
    assert_eq!(status, 202);
    let test = receiver.wait_for(30, |v| v["type"] == "io.portcullis.test").await.expect("the test event arrives");
    assert!(signature_valid(&secret, &test.headers, &test.body));
}

/// The registry is killed (-9) after the push, while the receiver is down: after the restart,
/// with the receiver up, the event is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_9_between_push_and_delivery_still_delivers() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let ca_dir = tempfile::tempdir().unwrap();
    // A receiver made only for its CA file; the real one starts later on `port`.
    let ca = ca_dir.path().join("ca.pem");
    let placeholder = Receiver::start(ca_dir.path(), 0, 0).await;
    std::fs::copy(&placeholder.ca_file, &ca).unwrap();
    drop(placeholder);
    let mut server = start(dir.path(), &ca, true);
    server.api(reqwest::Method::POST, "/api/v1/namespaces", json!({"name": "team"})).await;
    let url = format!("https://localhost:{port}/in");
    let (status, hook) = call(
        &server,
        reqwest::Method::POST,
        "/api/v1/namespaces/team/webhooks",
        json!({"url": url, "events": ["push"]}),
    )
    .await;
    assert_eq!(status, 201, "{hook}");
    let id = hook["id"].as_str().unwrap().to_owned();
    push_small_image(&pusher(&server).await, &server.url(""), "team/app", "v1", Some("10001")).await;
    // Wait until the delivery has been tried (and failed: nothing listens), then kill.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, history) =
            call(&server, reqwest::Method::GET, &format!("/api/v1/webhooks/{id}/deliveries"), Value::Null).await;
        if history["items"][0]["attempts"].as_i64().unwrap_or(0) >= 1 {
            assert_eq!(history["items"][0]["state"], "pending", "{history}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no attempt was made: {history}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.kill9();
    // The real receiver, with a new CA: the restarted registry trusts the file it names.
    let receiver = Receiver::start(dir.path(), port, 0).await;
    let _server = start(dir.path(), &receiver.ca_file, true);
    let got = receiver.wait_for(60, |v| v["type"] == "io.portcullis.push").await;
    assert!(got.is_some(), "the push event arrives after the restart");
}

/// Without `webhooks.allow_private_targets`, a private IP target is refused at registration and a
/// name that resolves to one is refused at every delivery attempt; nothing reaches the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_targets_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), 0, 0).await;
    let server = start(dir.path(), &receiver.ca_file, false);
    server.api(reqwest::Method::POST, "/api/v1/namespaces", json!({"name": "team"})).await;
    let port = receiver.addr.port();
    for (url, events, says) in [
        (format!("https://127.0.0.1:{port}/"), json!(["push"]), "allow_private_targets"),
        (format!("https://[::1]:{port}/"), json!(["push"]), "allow_private_targets"),
        ("https://169.254.169.254/".to_owned(), json!(["push"]), "allow_private_targets"),
        ("http://hooks.example.com/".to_owned(), json!(["push"]), "https"),
        ("https://hooks.example.com/".to_owned(), json!(["pushed"]), "unknown event"),
        ("https://hooks.example.com/".to_owned(), json!([]), "at least one"),
    ] {
        let (status, body) =
            call(&server, reqwest::Method::POST, "/api/v1/webhooks", json!({"url": url, "events": events})).await;
        assert_eq!(status, 400, "{url}: {body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(says), "{url}: {body}");
    }
    // A name that resolves to loopback passes registration, and is refused when sent.
    let (status, hook) =
        call(&server, reqwest::Method::POST, "/api/v1/webhooks", json!({"url": receiver.url("/"), "events": ["push"]}))
            .await;
    assert_eq!(status, 201);
    let id = hook["id"].as_str().unwrap();
    push_small_image(&pusher(&server).await, &server.url(""), "team/app", "v1", Some("10001")).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let history = loop {
        let (_, history) =
            call(&server, reqwest::Method::GET, &format!("/api/v1/webhooks/{id}/deliveries"), Value::Null).await;
        if history["items"][0]["attempts"].as_i64().unwrap_or(0) >= 2 {
            break history;
        }
        assert!(std::time::Instant::now() < deadline, "no attempts: {history}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let error = history["items"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("private address"), "{error}");
    assert!(receiver.received().is_empty(), "nothing was sent to a private address");
    // Owners register for their namespace only; others may not.
    server
        .api(reqwest::Method::POST, "/api/v1/users", json!({"username": "dev", "password": "dev-password-long"}))
        .await;
    let r = server
        .client()
        .post(server.url("/api/v1/namespaces/team/webhooks"))
        .basic_auth("dev", Some("dev-password-long"))
        .json(&json!({"url": "https://hooks.example.com/", "events": ["push"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// A passed image quarantined by vulnerability data imported later: the receiver gets
/// `scan.quarantined`, whose summary names the record and its CVE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescan_that_quarantines_is_delivered_naming_the_cve() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(dir.path(), 0, 0).await;
    let server = start(dir.path(), &receiver.ca_file, true);
    server.api(reqwest::Method::POST, "/api/v1/namespaces", json!({"name": "team"})).await;
    register(&server, &receiver.url("/hooks"), &["scan.quarantined"]).await;
    let status = "Package: zlib1g\nStatus: install ok installed\nSource: zlib\nVersion: 1:1.2.13.dfsg-1\n";
    let layer = common::images::layer_tar_gz("var/lib/dpkg/status", status.as_bytes(), 0o644);
    let manifest =
        common::process::push_image(&pusher(&server).await, &server.url(""), "team/app", "v1", &layer).await.unwrap();
    let digest = common::sha256(&manifest);
    assert_eq!(server.scan_state("team/app", digest.as_str(), "60s").await, "passed");
    let record = json!({"id": "DSA-9999-1", "aliases": ["CVE-2099-9999"], "summary": "zlib: overflow",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "zlib"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1:1.2.13.dfsg-1+deb12u1"}]}]}]});
    let (status, imported) = call(&server, reqwest::Method::POST, "/api/v1/vulndb", record).await;
    assert_eq!(status, 200, "{imported}");
    let event = receiver
        .wait_for(30, |v| v["type"] == "io.portcullis.scan.quarantined")
        .await
        .expect("the quarantined event arrives");
    let event: Value = serde_json::from_slice(&event.body).unwrap();
    assert_eq!(event["data"]["digest"], digest.as_str());
    let summary = event["data"]["summary"].as_str().unwrap_or_default();
    assert!(summary.contains("DSA-9999-1 (CVE-2099-9999) in zlib1g"), "{event}");
    assert_eq!(server.scan_state("team/app", digest.as_str(), "0s").await, "quarantined");
}
