//! `portcullis-bench rescan`: continuous scanning at scale. Fills a Portcullis (release build,
//! local disk) with `--images` Debian 12 images (a dpkg status file of `--packages` packages and
//! an os-release each, every layer distinct), waits for their verdicts, imports `--records`
//! synthetic OSV records, and times how long every passed image takes to be matched again:
//! - after an import that affects none of them (all stay passed),
//! - after one record for a package every image has (all are quarantined).
//!
//! The figure is images per second, from the import's answer to the last image matched (read
//! from `GET /api/v1/vulndb`'s `rescans_due`), and it includes the import itself separately.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::measure::{self, Target};

const FILL_CLIENTS: usize = 8;
const REPOS: usize = 8;

pub struct RescanSizes {
    pub images: usize,
    pub packages: usize,
    pub records: usize,
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn repo(i: usize) -> String {
    format!("bench/rescan{}", i % REPOS)
}

/// Image `i`'s layer: os-release, a dpkg status of `packages` packages (`pkg0`..), and a file
/// that makes the layer its own.
fn layer(i: usize, packages: usize) -> anyhow::Result<Vec<u8>> {
    let mut status = String::new();
    for p in 0..packages {
        status.push_str(&format!("Package: pkg{p}\nStatus: install ok installed\nVersion: 1.{p}-1\n\n"));
    }
    let files = [
        ("usr/lib/os-release", "ID=debian\nVERSION_ID=\"12\"\n".to_owned()),
        ("var/lib/dpkg/status", status),
        ("etc/bench-image", format!("{i}\n")),
    ];
    let mut b = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, content.as_bytes())?;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.into_inner()?)?;
    Ok(gz.finish()?)
}

fn diff_id(gz: &[u8]) -> anyhow::Result<String> {
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(gz), &mut tar)?;
    Ok(sha(&tar))
}

async fn fill(t: &Arc<Target>, images: usize, packages: usize) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..FILL_CLIENTS {
        let (t, next) = (t.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let client = t.client(true);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= images {
                    return anyhow::Ok(());
                }
                let repo = repo(i);
                let layer = layer(i, packages)?;
                let config = serde_json::to_vec(&serde_json::json!({
                    "architecture": "amd64", "os": "linux", "config": {"User": "10001"},
                    "rootfs": {"type": "layers", "diff_ids": [diff_id(&layer)?]}}))?;
                let (config_digest, layer_digest) = (sha(&config), sha(&layer));
                measure::post_put(&t, &client, &repo, &config_digest, config.len() as u64, config.clone().into()).await?;
                measure::post_put(&t, &client, &repo, &layer_digest, layer.len() as u64, layer.clone().into()).await?;
                let manifest = serde_json::to_vec(&serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": layer.len()}],
                }))?;
                measure::put_manifest(&t, &client, &repo, &format!("i{i}"), &manifest).await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn admin(t: &Target, password: &str, path: &str) -> anyhow::Result<serde_json::Value> {
    let reply = t.client(false).get(t.url(path)).basic_auth("admin", Some(password)).send().await?;
    anyhow::ensure!(reply.status() == 200, "GET {path} answered {}", reply.status());
    Ok(reply.json().await?)
}

/// Waits until no image is pending or being scanned; returns how many passed.
async fn verdicts(t: &Target, password: &str, images: usize) -> anyhow::Result<usize> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let passed = admin(t, password, "/api/v1/scans?state=passed&limit=1000").await?;
        let passed = passed["items"].as_array().map_or(0, Vec::len);
        let busy = admin(t, password, "/api/v1/scans?state=pending&limit=1").await?["items"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
            || admin(t, password, "/api/v1/scans?state=scanning&limit=1").await?["items"]
                .as_array()
                .is_some_and(|a| !a.is_empty());
        if !busy && (passed >= images.min(1000)) {
            return Ok(passed);
        }
        anyhow::ensure!(Instant::now() < deadline, "verdicts did not settle");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An OSV zip of `n` records for packages no image has, plus `extra`.
fn export(n: usize, extra: Option<serde_json::Value>) -> anyhow::Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for i in 0..n {
        let record = serde_json::json!({
            "id": format!("BENCH-{i}"), "modified": "2026-12-01T00:00:00Z", "summary": "synthetic",
            "affected": [{"package": {"ecosystem": "Debian:12", "name": format!("other{i}")},
                          "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "9"}]}]}]});
        zip.start_file(format!("BENCH-{i}.json"), options)?;
        zip.write_all(record.to_string().as_bytes())?;
    }
    if let Some(record) = extra {
        zip.start_file("BENCH-HIT.json", options)?;
        zip.write_all(record.to_string().as_bytes())?;
    }
    Ok(zip.finish()?.into_inner())
}

/// Imports `body`; then waits until every passed image was matched against it. (import s, match s)
async fn import_and_wait(t: &Target, password: &str, body: Vec<u8>) -> anyhow::Result<(f64, f64, serde_json::Value)> {
    let started = Instant::now();
    let reply = t
        .client(false)
        .post(t.url("/api/v1/vulndb"))
        .basic_auth("admin", Some(password))
        .header("content-type", "application/zip")
        .body(body)
        .send()
        .await?;
    anyhow::ensure!(reply.status() == 200, "POST /api/v1/vulndb answered {}", reply.status());
    let report: serde_json::Value = reply.json().await?;
    let imported = started.elapsed().as_secs_f64();
    let matching = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let status = admin(t, password, "/api/v1/vulndb").await?;
        if status["rescans_due"] == 0 && status["version"] == report["version"] {
            return Ok((imported, matching.elapsed().as_secs_f64(), report));
        }
        anyhow::ensure!(Instant::now() < deadline, "rescans did not finish: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn run(bin: &Path, out: &Path, s: &RescanSizes) -> anyhow::Result<()> {
    let env = [("PORTCULLIS_SCAN_POLL", "200ms"), ("PORTCULLIS_SCAN_WORKERS", "2")];
    let fresh = crate::sides::fresh_portcullis(bin, out, "rescan", &env)?;
    run_against(&fresh.target, s, crate::sides::BENCH_PASSWORD).await
}

async fn run_against(t: &Arc<Target>, s: &RescanSizes, password: &str) -> anyhow::Result<()> {
    let repos: Vec<String> = (0..REPOS).map(repo).collect();
    t.use_token(&repos).await?;
    eprintln!("filling: {} images of {} packages", s.images, s.packages);
    let started = Instant::now();
    fill(t, s.images, s.packages).await?;
    let passed = verdicts(t, password, s.images).await?;
    let scanned_s = started.elapsed().as_secs_f64();
    eprintln!("{passed} passed in {scanned_s:.1} s (push and first scan)");

    let (import_none_s, match_none_s, none) = import_and_wait(t, password, export(s.records, None)?).await?;
    eprintln!(
        "import of {} records: {import_none_s:.2} s; every image matched again in {match_none_s:.2} s",
        s.records
    );
    let hit = serde_json::json!({
        "id": "BENCH-HIT", "aliases": ["CVE-2099-0001"], "modified": "2026-12-01T00:00:00Z",
        "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
        "affected": [{"package": {"ecosystem": "Debian:12", "name": "pkg0"},
                      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "9"}]}]}]});
    let (import_hit_s, match_hit_s, hit_report) = import_and_wait(t, password, export(s.records, Some(hit))?).await?;
    let quarantined =
        admin(t, password, "/api/v1/scans?state=quarantined&limit=1000").await?["items"].as_array().map_or(0, Vec::len);
    eprintln!("one affecting record: {quarantined} quarantined in {match_hit_s:.2} s");
    let rate = |secs: f64| if secs > 0.0 { s.images as f64 / secs } else { f64::INFINITY };
    println!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "images": s.images,
            "packages_per_image": s.packages,
            "records": s.records,
            "push_and_first_scan_s": scanned_s,
            "no_match": {"import": none, "import_s": import_none_s, "rescan_s": match_none_s,
                         "images_per_s": rate(match_none_s)},
            "all_match": {"import": hit_report, "import_s": import_hit_s, "rescan_s": match_hit_s,
                          "images_per_s": rate(match_hit_s), "quarantined": quarantined},
        }))?
    );
    anyhow::ensure!(quarantined >= s.images.min(1000), "only {quarantined} images were quarantined");
    Ok(())
}
