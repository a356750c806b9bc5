//! A real `portcullis` process: restart keeps everything; kill -9 during concurrent uploads loses
//! no completed push and leaves no blob whose bytes differ from its digest.

mod common;

use common::images;
use common::process::{layer_bytes, push_image, verify_blobs, Server};
use common::sha256;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_pushed_images() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let client = server.admin_client(&["repository:restart/app:pull,push"]).await;
    let base = server.url("");
    let layer = layer_bytes(7, 300_000);
    let manifest = push_image(&client, &base, "restart/app", "v1", &layer).await.unwrap();
    server.stop();
    let server = Server::start_on(dir.path(), server.port);
    let got = client.get(server.url("/v2/restart/app/manifests/v1")).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().to_vec(), manifest);
    let blob = client.get(server.url(&format!("/v2/restart/app/blobs/{}", sha256(&layer)))).send().await.unwrap();
    assert_eq!(sha256(&blob.bytes().await.unwrap()), sha256(&layer));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_concurrent_uploads_loses_no_completed_push() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let scopes: Vec<String> = (0..8).map(|w| format!("repository:crash/w{w}:pull,push")).collect();
    let client = server.admin_client(&scopes.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let base = server.url("");
    let completed = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for worker in 0..8u32 {
        let (client, base, completed) = (client.clone(), base.clone(), completed.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..1000u32 {
                let seed = worker * 1000 + round;
                let layer = layer_bytes(seed, 200_000 + (seed as usize % 7) * 150_000);
                let repo = format!("crash/w{worker}");
                let tag = format!("r{round}");
                match push_image(&client, &base, &repo, &tag, &layer).await {
                    Ok(manifest) => completed.lock().unwrap().push((repo, tag, manifest, layer)),
                    Err(_) => return, // the server died under us
                }
            }
        }));
    }
    // Let pushes overlap until enough have completed to mean something, then kill without any shutdown.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    while completed.lock().unwrap().len() < 8 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.kill9();
    for t in tasks {
        let _ = t.await;
    }
    let completed = completed.lock().unwrap().clone();
    assert!(completed.len() >= 8, "too few pushes completed before the kill: {}", completed.len());

    let server = Server::start_on(dir.path(), server.port);
    for (repo, tag, manifest, layer) in &completed {
        let got = client.get(server.url(&format!("/v2/{repo}/manifests/{tag}"))).send().await.unwrap();
        assert_eq!(got.status(), 200, "{repo}:{tag} lost");
        assert_eq!(&got.bytes().await.unwrap()[..], &manifest[..]);
        let blob = client.get(server.url(&format!("/v2/{repo}/blobs/{}", sha256(layer)))).send().await.unwrap();
        assert_eq!(blob.status(), 200);
        assert_eq!(sha256(&blob.bytes().await.unwrap()), sha256(layer), "{repo}:{tag} layer corrupted");
    }
    let checked = verify_blobs(dir.path()).await;
    assert!(checked >= completed.len(), "checked {checked} blob files");
    eprintln!("kill -9: {} completed pushes intact, {checked} blob files verified", completed.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_interrupted_by_kill_9_finishes_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    // A slow hook holds the job; a short lease lets the restarted server take it over.
    let slow = dir.path().join("slow.toml");
    std::fs::write(&slow, "[scan]\nhook = [\"/bin/sh\", \"-c\", \"sleep 30\"]\nlease = \"2s\"\n").unwrap();
    let fast = dir.path().join("fast.toml");
    std::fs::write(&fast, "[scan]\nhook = [\"/bin/sh\", \"-c\", \"exit 0\"]\nlease = \"2s\"\n").unwrap();
    let mut server = Server::start_with_config(dir.path(), common::process::free_port(), Some(&slow));
    let client = server.admin_client(&["repository:scan/app:pull,push"]).await;
    let base = server.url("");
    let layer = images::layer_tar_gz("app/bin", b"binary", 0o755);
    let manifest = push_image(&client, &base, "scan/app", "v1", &layer).await.unwrap();
    let digest = sha256(&manifest).to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.scan_state("scan/app", &digest, "0s").await != "scanning" {
        assert!(std::time::Instant::now() < deadline, "the scan never started");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    server.kill9();
    let server = Server::start_with_config(dir.path(), server.port, Some(&fast));
    assert_eq!(server.scan_state("scan/app", &digest, "60s").await, "passed");
}

/// `kill -9` at several moments of garbage collections (marking and sweeping 3,000 collectable
/// blobs), a restart after each, and a final collection: every referenced image pulls intact,
/// fsck finds nothing missing or orphaned, and the store holds exactly the referenced blobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_garbage_collection_loses_nothing_referenced() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("PORTCULLIS_GC_GRACE".to_string(), "60s".to_string()),
        ("PORTCULLIS_GC_INTERVAL".into(), "0s".into()),
        ("PORTCULLIS_GC_LEASE".into(), "2s".into()),
    ];
    let port = common::process::free_port();
    let mut server = Server::start_with_extra_env(dir.path(), port, &env);
    let client = server.admin_client(&["repository:gc/kept:pull,push", "repository:gc/loose:pull,push"]).await;
    let base = server.url("");
    let mut kept = Vec::new();
    for (i, tag) in ["v1", "v2"].iter().enumerate() {
        let layer = layer_bytes(900 + i as u32, 100_000);
        kept.push((tag.to_string(), push_image(&client, &base, "gc/kept", tag, &layer).await.unwrap(), layer));
    }
    // Collectable: blobs linked to no manifest (their links go, then they do), 3,000 of them.
    let uploads = futures::stream::iter(0..3000u32).map(|i| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let bytes = layer_bytes(10_000 + i, 2_000);
            let uri = format!("{base}/v2/gc/loose/blobs/uploads/?digest={}", sha256(&bytes));
            let reply = client.post(uri).body(bytes).send().await.unwrap();
            assert_eq!(reply.status(), 201);
        }
    });
    use futures::StreamExt;
    uploads.buffer_unordered(8).collect::<Vec<_>>().await;
    tokio::time::sleep(std::time::Duration::from_secs(61)).await;

    // Kill at growing offsets into a collection (each killed run leaves its committed batches, so
    // later runs reach the sweep sooner). A kill that leaves fewer blobs than before but more
    // than the referenced four landed mid-sweep; one that leaves them all, while marking (or
    // before the request was served).
    let (mut in_mark, mut in_sweep) = (0, 0);
    for offset_ms in (0..40u64).map(|i| 40 + 4 * i + 2 * i * i) {
        if in_sweep >= 2 && in_mark >= 2 {
            break;
        }
        let before = common::process::stored_blobs(dir.path()).await.len();
        if before <= 4 {
            break;
        }
        let admin = server.client();
        let url = server.url("/api/v1/gc");
        let run = tokio::spawn(async move {
            admin.post(url).basic_auth("admin", Some(common::ADMIN_PASSWORD)).send().await.map(|r| r.status())
        });
        tokio::time::sleep(std::time::Duration::from_millis(offset_ms)).await;
        let finished = run.is_finished();
        server.kill9();
        let _ = run.await;
        let after = common::process::stored_blobs(dir.path()).await.len();
        eprintln!("kill at {offset_ms} ms: finished {finished}, blobs {before} -> {after}");
        match (finished, after) {
            (false, a) if a < before && a > 4 => in_sweep += 1,
            (false, a) if a == before => in_mark += 1,
            _ => {}
        }
        server = Server::start_with_extra_env(dir.path(), port, &env);
        // The killed collection's lease lapses (gc.lease) before the next may start.
        tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    }
    assert!(in_sweep >= 1, "no kill landed while blobs were being swept (mark: {in_mark})");
    let interrupted = in_mark + in_sweep;

    let report = server.api(reqwest::Method::POST, "/api/v1/gc", serde_json::Value::Null).await;
    let fsck = server.api(reqwest::Method::GET, "/api/v1/fsck?verify=true", serde_json::Value::Null).await;
    for key in ["missing", "orphaned", "corrupt"] {
        assert_eq!(fsck[key], serde_json::json!([]), "{key} after the kills: {fsck}");
    }
    let client = server.admin_client(&["repository:gc/kept:pull", "repository:gc/loose:pull"]).await;
    for (tag, manifest, layer) in &kept {
        let got = client.get(server.url(&format!("/v2/gc/kept/manifests/{tag}"))).send().await.unwrap();
        assert_eq!(got.status(), 200, "gc/kept:{tag} lost");
        assert_eq!(&got.bytes().await.unwrap()[..], &manifest[..]);
        let blob = client.get(server.url(&format!("/v2/gc/kept/blobs/{}", sha256(layer)))).send().await.unwrap();
        assert_eq!(sha256(&blob.bytes().await.unwrap()), sha256(layer), "gc/kept:{tag} layer damaged");
    }
    // Two images of a config and a layer each: four blobs, nothing else.
    assert_eq!(verify_blobs(dir.path()).await, 4, "the store holds more than the referenced blobs: {report}");
    eprintln!("kill -9 during collections: {interrupted} kills mid-run ({in_sweep} sweeping); final run {report}");
}
