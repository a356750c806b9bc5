//! `/metrics`, request ids and the access log, against a real `portcullis serve` process: who may
//! scrape, counters that move with real traffic (parsed by a Prometheus text parser), labels that
//! never hold a repository, and one access-log line per request with its id and no secret.

mod common;

use std::collections::HashMap;

use common::images;
use common::process::{push_small_image, Server};
use common::ADMIN_PASSWORD;
use serde_json::json;
use sha2::{Digest as _, Sha256};

const SCRAPE_TOKEN: &str = "scrape-3b8f0c1e9a7d4f26b5e0c8a1d2f3e4b5";

fn hex_sha256(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// The scrape's samples: `name{label="v",...}` (labels sorted) to value. Histograms appear as
/// their `_count` and `_sum`.
async fn scrape(server: &Server) -> HashMap<String, f64> {
    let reply = server.client().get(server.url("/metrics")).bearer_auth(SCRAPE_TOKEN).send().await.unwrap();
    assert_eq!(reply.status(), 200);
    let content_type = reply.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = reply.text().await.unwrap();
    let parsed = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid exposition");
    let mut out = HashMap::new();
    for sample in parsed.samples {
        let mut labels: Vec<(String, String)> = sample.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.sort();
        let labels = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join(",");
        let key = if labels.is_empty() { sample.metric.clone() } else { format!("{}{{{labels}}}", sample.metric) };
        match sample.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => {
                out.insert(key, v);
            }
            prometheus_parse::Value::Histogram(buckets) => {
                let count = buckets.last().map_or(0.0, |b| b.count);
                out.insert(format!("{}_count{}", sample.metric, key.trim_start_matches(&sample.metric)), count);
            }
            prometheus_parse::Value::Summary(_) | prometheus_parse::Value::Untyped(_) => {}
        }
    }
    // No label value is a repository name: the number of series stays bounded.
    assert!(!text.contains("team/"), "a repository name reached a label:\n{text}");
    out
}

fn value(samples: &HashMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

/// The sum over every series of `name` whose labels include all of `with`.
fn sum(samples: &HashMap<String, f64>, name: &str, with: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")) || k.as_str() == name)
        .filter(|(k, _)| with.iter().all(|w| k.contains(w)))
        .map(|(_, v)| v)
        .sum()
}

fn start(dir: &std::path::Path) -> Server {
    let env = [
        ("PORTCULLIS_METRICS_SCRAPE_TOKEN_SHA256".to_owned(), hex_sha256(SCRAPE_TOKEN)),
        ("PORTCULLIS_LOG_FORMAT".to_owned(), "json".to_owned()),
    ];
    Server::start_with_extra_env(dir, common::process::free_port(), &env)
}

/// Only administrators and the scrape token read `/metrics`; everyone else is refused, and a
/// registry token (even an admin's) is not a way in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_and_the_scrape_token_read_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    server
        .api(reqwest::Method::POST, "/api/v1/users", json!({"username": "dev", "password": "dev-password-long"}))
        .await;
    let client = server.client();
    let url = server.url("/metrics");
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(client.get(&url).send().await.unwrap()), 401);
    assert_eq!(status(client.get(&url).bearer_auth("wrong-token").send().await.unwrap()), 401);
    let admin_jwt = server.token("admin", ADMIN_PASSWORD, &[]).await;
    assert_eq!(status(client.get(&url).bearer_auth(&admin_jwt).send().await.unwrap()), 401);
    assert_eq!(status(client.get(&url).basic_auth("dev", Some("dev-password-long")).send().await.unwrap()), 403);
    assert_eq!(status(client.get(&url).basic_auth("admin", Some("not-the-password")).send().await.unwrap()), 401);
    assert_eq!(status(client.get(&url).basic_auth("admin", Some(ADMIN_PASSWORD)).send().await.unwrap()), 200);
    assert_eq!(status(client.get(&url).bearer_auth(SCRAPE_TOKEN).send().await.unwrap()), 200);
    // The scrape token opens nothing else: not the admin API, not the token endpoint.
    let api = client.get(server.url("/api/v1/users")).bearer_auth(SCRAPE_TOKEN).send().await.unwrap();
    assert_eq!(status(api), 401);
    let v2 = client.get(server.url("/v2/")).bearer_auth(SCRAPE_TOKEN).send().await.unwrap();
    assert_eq!(status(v2), 401);
}

/// Real pushes, pulls, a failed login and a quarantined image move the counters they should.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_real_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path());
    server.api(reqwest::Method::POST, "/api/v1/namespaces", json!({"name": "team"})).await;
    let before = scrape(&server).await;
    assert_eq!(value(&before, "portcullis_build_info{version=\"0.1.0\"}"), 1.0, "{before:?}");

    let base = server.url("");
    let pusher = server.admin_client(&["repository:team/app:pull,push", "repository:team/root:pull,push"]).await;
    let clean = push_small_image(&pusher, &base, "team/app", "v1", Some("10001")).await;
    let root = push_small_image(&pusher, &base, "team/root", "v1", None).await;
    assert_eq!(server.scan_state("team/app", &clean, "30s").await, "passed");
    assert_eq!(server.scan_state("team/root", &root, "30s").await, "quarantined");

    server
        .api(reqwest::Method::POST, "/api/v1/users", json!({"username": "dev", "password": "dev-password-long"}))
        .await;
    server.api(reqwest::Method::PUT, "/api/v1/namespaces/team/members/dev", json!({"role": "reader"})).await;
    let reader = server.client_with_token(
        &server.token("dev", "dev-password-long", &["repository:team/app:pull", "repository:team/root:pull"]).await,
    );
    let manifest = reader
        .get(server.url("/v2/team/app/manifests/v1"))
        .header("accept", images::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(manifest.status(), 200);
    let parsed: serde_json::Value = manifest.json().await.unwrap();
    let layer = parsed["layers"][0]["digest"].as_str().unwrap();
    let blob = reader.get(server.url(&format!("/v2/team/app/blobs/{layer}"))).send().await.unwrap();
    assert_eq!(blob.status(), 200);
    let blob_len = blob.bytes().await.unwrap().len() as f64;
    let blocked = reader.get(server.url("/v2/team/root/manifests/v1")).send().await.unwrap();
    assert_eq!(blocked.status(), 403);
    let failed = server
        .client()
        .get(server.url("/token?service=portcullis"))
        .basic_auth("dev", Some("a-wrong-guess"))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);

    let after = scrape(&server).await;
    let moved = |name: &str, with: &[&str]| sum(&after, name, with) - sum(&before, name, with);
    assert_eq!(moved("portcullis_uploads_completed_total", &[]), 4.0);
    assert!(moved("portcullis_upload_bytes_total", &[]) >= blob_len);
    assert_eq!(moved("portcullis_manifest_pushes_total", &[]), 2.0);
    assert_eq!(moved("portcullis_manifest_pulls_total", &[]), 1.0);
    assert_eq!(moved("portcullis_blob_pulls_total", &[]), 1.0);
    assert_eq!(moved("portcullis_pulls_blocked_total", &["state=\"quarantined\""]), 1.0);
    assert_eq!(moved("portcullis_scan_verdicts_total", &["verdict=\"passed\""]), 1.0);
    assert_eq!(moved("portcullis_scan_verdicts_total", &["verdict=\"quarantined\""]), 1.0);
    assert_eq!(moved("portcullis_scan_duration_seconds_count", &[]), 2.0);
    assert_eq!(moved("portcullis_logins_total", &["outcome=\"failed\""]), 1.0);
    assert!(moved("portcullis_logins_total", &["outcome=\"ok\""]) >= 2.0);
    assert!(moved("portcullis_tokens_issued_total", &["kind=\"user\""]) >= 2.0);
    assert_eq!(value(&after, "portcullis_images{state=\"quarantined\"}"), 1.0);
    assert_eq!(value(&after, "portcullis_images{state=\"passed\"}"), 1.0);
    assert_eq!(value(&after, "portcullis_scan_queue_depth"), 0.0);
    let manifest_put = "class=\"manifest\",method=\"PUT\",status=\"201\"";
    assert_eq!(moved("portcullis_http_requests_total", &[manifest_put]), 2.0);
    assert_eq!(moved("portcullis_http_requests_total", &["class=\"manifest\"", "status=\"403\""]), 1.0);
    assert!(moved("portcullis_http_request_duration_seconds_count", &["class=\"upload\""]) >= 8.0);
    assert!(moved("portcullis_http_sent_bytes_total", &["class=\"blob\""]) >= blob_len);
    assert!(moved("portcullis_http_received_bytes_total", &["class=\"upload\""]) >= blob_len);
    assert!(moved("portcullis_database_operation_seconds_count", &["op=\"put_manifest\""]) >= 2.0);
    assert!(moved("portcullis_storage_operation_seconds_count", &["op=\"commit\""]) >= 4.0);

    // A collection is counted with what it freed.
    let gc = server.api(reqwest::Method::POST, "/api/v1/gc", json!(null)).await;
    let after_gc = scrape(&server).await;
    assert_eq!(sum(&after_gc, "portcullis_gc_runs_total", &["outcome=\"ok\""]), 1.0);
    assert_eq!(value(&after_gc, "portcullis_gc_freed_bytes_total"), gc["bytes_freed"].as_f64().unwrap());
}

/// Every response carries an X-Request-Id (the caller's when it is safe, a new one otherwise); the
/// JSON access log has exactly one line per request with that id, the principal, the route class,
/// the repository, the status and the bytes; no password or token reaches the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_has_an_id_and_one_access_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path());
    server.api(reqwest::Method::POST, "/api/v1/namespaces", json!({"name": "team"})).await;
    let token = server.token("admin", ADMIN_PASSWORD, &["repository:team/app:pull,push"]).await;
    let client = server.client();

    let kept = client
        .get(server.url("/v2/team/app/tags/list"))
        .bearer_auth(&token)
        .header("x-request-id", "ci-run-42.step-7")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.status(), 404);
    assert_eq!(kept.headers()["x-request-id"], "ci-run-42.step-7");
    let mut made = Vec::new();
    for unsafe_id in ["has space", "quote\"d", &"x".repeat(200)] {
        let r = client.get(server.url("/v2/")).header("x-request-id", unsafe_id).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        made.push(id);
    }
    let health = client.get(server.url("/healthz")).send().await.unwrap();
    let health_id = health.headers()["x-request-id"].to_str().unwrap().to_owned();
    let missing = client.get(server.url("/nowhere?password=hunter2-in-a-query")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert!(missing.headers().contains_key("x-request-id"));
    let login = client
        .get(server.url("/token?service=portcullis"))
        .basic_auth("admin", Some("guessed-password-in-the-log?"))
        .header("x-request-id", "failed-login-1")
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 401);
    server.stop();

    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    let access: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "access")
        .collect();
    let line = |id: &str| {
        let found: Vec<&serde_json::Value> = access.iter().filter(|v| v["fields"]["request_id"] == id).collect();
        assert_eq!(found.len(), 1, "one access line for {id}: {found:?}");
        found[0]["fields"].clone()
    };
    let tags = line("ci-run-42.step-7");
    assert_eq!(tags["class"], "tags");
    assert_eq!(tags["repository"], "team/app");
    assert_eq!(tags["principal"], "admin");
    assert_eq!(tags["status"], 404);
    assert_eq!(tags["method"], "GET");
    assert!(tags["sent"].as_u64().unwrap() > 0 && tags["duration_ms"].as_f64().is_some(), "{tags}");
    for id in &made {
        let l = line(id);
        assert_eq!(
            (l["class"].as_str(), l["status"].as_u64(), l["principal"].as_str()),
            (Some("v2_base"), Some(401), Some("-"))
        );
    }
    assert_eq!(line(&health_id)["class"], "health");
    assert_eq!(line("failed-login-1")["status"], 401);
    for secret in [ADMIN_PASSWORD, token.as_str(), "guessed-password-in-the-log?", "hunter2-in-a-query"] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
}
