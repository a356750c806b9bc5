//! `portcullis-bench gc`: the collector at scale. Fills a Portcullis (release build, local disk)
//! with `--images` manifests of `--layers` distinct layers and a distinct config each, deletes
//! `--deleted` of them, waits out `gc.grace`, then measures
//! - one collection: mark (links nothing references, blobs no link holds) and sweep (their bytes
//!   and rows), as the registry's own report times them;
//! - small-image pushes (8 clients) alone, then while a second fill's collection runs, so the cost
//!   of a collection to pushes shows as a ratio.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::measure::{self, Target};

/// The grace period the benchmark's registry runs with (the least the configuration allows).
const GRACE: Duration = Duration::from_secs(60);
const FILL_CLIENTS: usize = 16;
const REPOS: usize = 16;
const PUSH_CLIENTS: usize = 8;

pub struct GcSizes {
    pub images: usize,
    pub layers: usize,
    pub deleted: usize,
    pub push_secs: u64,
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn repo(i: usize) -> String {
    format!("bench/gc{}", i % REPOS)
}

/// Pushes images `from..to` of the fill (each: `layers` random 256-byte layers and a config, all
/// distinct), answering their manifest digests in order.
async fn fill(t: &Arc<Target>, from: usize, to: usize, layers: usize) -> anyhow::Result<Vec<String>> {
    let next = Arc::new(AtomicUsize::new(from));
    let digests = Arc::new(std::sync::Mutex::new(vec![String::new(); to - from]));
    let mut tasks = Vec::new();
    for _ in 0..FILL_CLIENTS {
        let (t, next, digests) = (t.clone(), next.clone(), digests.clone());
        tasks.push(tokio::spawn(async move {
            let client = t.client(true);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= to {
                    return anyhow::Ok(());
                }
                let repo = repo(i);
                let mut descriptors = Vec::new();
                let config = format!(r#"{{"bench":"gc","image":{i}}}"#).into_bytes();
                for n in 0..=layers {
                    let bytes: Vec<u8> =
                        if n == 0 { config.clone() } else { (0..256).map(|_| rand::random::<u8>()).collect() };
                    let digest = sha(&bytes);
                    measure::post_put(&t, &client, &repo, &digest, bytes.len() as u64, bytes.clone().into()).await?;
                    descriptors.push(serde_json::json!({
                        "mediaType": if n == 0 { "application/vnd.bench.config+json" } else { "application/octet-stream" },
                        "digest": digest, "size": bytes.len()}));
                }
                let manifest = serde_json::to_vec(&serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "artifactType": "application/vnd.bench.gc",
                    "config": descriptors[0],
                    "layers": descriptors[1..],
                }))?;
                measure::put_manifest(&t, &client, &repo, &format!("i{i}"), &manifest).await?;
                digests.lock().unwrap()[i - from] = sha(&manifest);
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let digests = std::mem::take(&mut *digests.lock().unwrap());
    Ok(digests)
}

/// Deletes the manifests `digests[i]` of images `from + i` for every `i` in `picked`.
async fn delete(t: &Arc<Target>, from: usize, digests: &[String], picked: usize) -> anyhow::Result<()> {
    let client = t.client(false);
    let step = (digests.len() / picked.max(1)).max(1);
    let targets: Vec<(usize, &String)> = digests.iter().enumerate().step_by(step).take(picked).collect();
    for chunk in targets.chunks(64) {
        let mut calls = Vec::new();
        for (i, d) in chunk {
            let url = format!("{}/v2/{}/manifests/{d}", t.base, repo(from + i));
            calls.push(t.auth(client.delete(url)).send());
        }
        for reply in futures::future::join_all(calls).await {
            let status = reply?.status();
            anyhow::ensure!(status.as_u16() == 202, "manifest delete answered {status}");
        }
    }
    Ok(())
}

/// Small-image pushes by `PUSH_CLIENTS` clients until `stop` is set or `limit` passes; images/s.
async fn push_rate(t: &Arc<Target>, label: &str, stop: Arc<AtomicBool>, limit: Duration) -> anyhow::Result<f64> {
    let count = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..PUSH_CLIENTS {
        let (t, count, stop, label) = (t.clone(), count.clone(), stop.clone(), label.to_owned());
        tasks.push(tokio::spawn(async move {
            let client = t.client(true);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) && started.elapsed() < limit {
                measure::push_small_image(&t, &client, &format!("bench/push-{label}"), &format!("w{w}-{n}")).await?;
                count.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

async fn collect(t: &Target, password: &str) -> anyhow::Result<serde_json::Value> {
    let reply =
        t.client(false).post(format!("{}/api/v1/gc", t.base)).basic_auth("admin", Some(password)).send().await?;
    anyhow::ensure!(reply.status() == 200, "POST /api/v1/gc answered {}", reply.status());
    Ok(reply.json().await?)
}

pub async fn run(bin: &Path, out: &Path, s: &GcSizes) -> anyhow::Result<()> {
    let gc = [("PORTCULLIS_GC_GRACE", "60s"), ("PORTCULLIS_GC_INTERVAL", "0s")];
    let fresh = crate::sides::fresh_portcullis(bin, out, "gc", &gc)?;
    run_against(&fresh.target, s, crate::sides::BENCH_PASSWORD).await
}

async fn run_against(t: &Arc<Target>, s: &GcSizes, password: &str) -> anyhow::Result<()> {
    let t = t.clone();
    let mut repos: Vec<String> = (0..REPOS).map(repo).collect();
    repos.extend(["bench/push-alone", "bench/push-during"].map(String::from));
    t.use_token(&repos).await?;
    // Tokens are short-lived; the fill outlasts one.
    let refresh = {
        let (t, repos) = (t.clone(), repos.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                let _ = t.use_token(&repos).await;
            }
        })
    };

    let blobs = s.images * (s.layers + 1);
    eprintln!("filling: {} manifests, {blobs} blobs", s.images);
    let started = Instant::now();
    let digests = fill(&t, 0, s.images, s.layers).await?;
    let fill_s = started.elapsed().as_secs_f64();
    eprintln!("filled in {fill_s:.0} s; deleting {} manifests", s.deleted);
    delete(&t, 0, &digests, s.deleted).await?;
    eprintln!("waiting out gc.grace ({} s)", GRACE.as_secs() + 1);
    tokio::time::sleep(GRACE + Duration::from_secs(1)).await;
    let started = Instant::now();
    let report = collect(&t, password).await?;
    let gc_s = started.elapsed().as_secs_f64();
    eprintln!("collection: {report}");

    // Pushes with and without a collection: a second, smaller fill gives the collector work.
    let second = s.images / 4;
    let more = fill(&t, s.images, s.images + second, s.layers).await?;
    delete(&t, s.images, &more, second / 2).await?;
    tokio::time::sleep(GRACE + Duration::from_secs(1)).await;
    let limit = Duration::from_secs(s.push_secs);
    let alone = push_rate(&t, "alone", Arc::new(AtomicBool::new(false)), limit).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let pushes = tokio::spawn({
        let (t, stop) = (t.clone(), stop.clone());
        async move { push_rate(&t, "during", stop, limit).await }
    });
    let started = Instant::now();
    let second_report = collect(&t, password).await;
    let second_gc_s = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let during = pushes.await??;
    let second_report = second_report?;
    refresh.abort();

    let within = report["mark_ms"].as_u64().unwrap_or(0) + report["sweep_ms"].as_u64().unwrap_or(0) < 60_000;
    let ratio = during / alone;
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "manifests": s.images,
            "blobs": blobs,
            "manifests_deleted_before": s.deleted,
            "fill_s": fill_s,
            "collection": report,
            "collection_s": gc_s,
            "mark_and_sweep_under_60_s": within,
            "push_images_per_s_alone": alone,
            "push_images_per_s_during_collection": during,
            "during_collection_s": second_gc_s,
            "second_collection": second_report,
            "push_ratio": ratio,
            "push_ratio_at_least_0_8": ratio >= 0.8,
        }))?
    );
    Ok(())
}
