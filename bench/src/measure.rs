//! The measurements, each against one registry. Loops are bounded in count and time; all traffic
//! goes to the loopback registry under test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::blobfile::{fresh_prefix, BlobFile};
use crate::procstat::CpuMeter;

/// A registry under test.
pub struct Target {
    pub name: String,
    pub base: String,
    pub ca_pem: Vec<u8>,
    pub pid: Option<u32>,
    /// Docker token auth: credentials for `/token`, and the token currently in use.
    pub credentials: Option<(String, String)>,
    pub token: std::sync::Mutex<Option<String>>,
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;
const MB: f64 = 1_000_000.0;

impl Target {
    /// A client with its own connection pool (`http1` keeps one request per connection in flight).
    pub fn client(&self, http1: bool) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&self.ca_pem).expect("CA PEM"))
            .pool_max_idle_per_host(if http1 { 1 } else { 8 })
            .timeout(Duration::from_secs(600));
        if http1 {
            b = b.http1_only();
        }
        b.build().expect("client")
    }

    pub fn auth(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.token.lock().unwrap().as_deref() {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    /// Fetches a token for `repos` (pull, push, delete) through the Docker token flow, when the
    /// target has credentials. Called before timing starts.
    pub async fn fetch_token(&self, repos: &[String]) -> anyhow::Result<Option<String>> {
        let Some((user, password)) = &self.credentials else { return Ok(None) };
        let mut url = self.url("/token?service=portcullis");
        for r in repos {
            url.push_str(&format!("&scope=repository:{r}:pull,push,delete"));
        }
        let reply = self.client(true).get(url).basic_auth(user, Some(password)).send().await?;
        expect(reply.status(), 200, "token")?;
        let body: serde_json::Value = reply.json().await?;
        Ok(body["token"].as_str().map(str::to_owned))
    }

    /// Makes one token for `repos` the one every following request carries.
    pub async fn use_token(&self, repos: &[String]) -> anyhow::Result<()> {
        let token = self.fetch_token(repos).await?;
        *self.token.lock().unwrap() = token;
        Ok(())
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub mb_per_s: f64,
    pub server_cpu_s_per_gib: Option<f64>,
}

fn throughput(bytes: u64, elapsed: Duration, cpu: Option<f64>) -> Throughput {
    Throughput {
        mb_per_s: bytes as f64 / MB / elapsed.as_secs_f64(),
        server_cpu_s_per_gib: cpu.map(|c| c / (bytes as f64 / GIB)),
    }
}

fn expect(status: reqwest::StatusCode, want: u16, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(status.as_u16() == want, "{what}: expected {want}, got {status}");
    Ok(())
}

/// The spec's single-request-body upload that every registry supports: `POST` for a session, then
/// one `PUT ?digest=` carrying the whole blob (distribution 2.8 ignores `POST ?digest=`).
pub async fn post_put(
    t: &Target,
    client: &reqwest::Client,
    repo: &str,
    digest: &str,
    len: u64,
    body: reqwest::Body,
) -> anyhow::Result<()> {
    let reply = t.auth(client.post(t.url(&format!("/v2/{repo}/blobs/uploads/")))).send().await?;
    expect(reply.status(), 202, "upload start")?;
    let location = absolute(t, reply.headers()["location"].to_str()?);
    let sep = if location.contains('?') { '&' } else { '?' };
    let reply = t
        .auth(client.put(format!("{location}{sep}digest={digest}")))
        .header("content-length", len)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send()
        .await?;
    expect(reply.status(), 201, "upload")
}

/// Monolithic upload (`POST`, then one `PUT` with the whole blob) of the blob file under a fresh prefix. Returns the digest too.
pub async fn upload_monolithic(t: &Target, blob: &BlobFile, repo: &str) -> anyhow::Result<(Throughput, String)> {
    let prefix = fresh_prefix();
    let digest = blob.digest(prefix).await?;
    let client = t.client(true);
    let cpu = CpuMeter::start(t.pid);
    let started = Instant::now();
    post_put(t, &client, repo, &digest, blob.len, blob.body(prefix).await?).await?;
    Ok((throughput(blob.len, started.elapsed(), cpu.seconds()), digest))
}

/// Chunked upload: POST, PATCHes of `chunk` bytes with `Content-Range`, PUT.
pub async fn upload_chunked(t: &Target, blob: &BlobFile, repo: &str, chunk: u64) -> anyhow::Result<Throughput> {
    let prefix = fresh_prefix();
    let digest = blob.digest(prefix).await?;
    let client = t.client(true);
    let cpu = CpuMeter::start(t.pid);
    let started = Instant::now();
    let reply = t.auth(client.post(t.url(&format!("/v2/{repo}/blobs/uploads/")))).send().await?;
    expect(reply.status(), 202, "upload start")?;
    let mut location = absolute(t, reply.headers()["location"].to_str()?);
    let mut offset = 0u64;
    while offset < blob.len {
        let end = (offset + chunk).min(blob.len);
        let body = if offset == 0 {
            let head = futures::stream::once(async move { Ok(bytes::Bytes::copy_from_slice(&prefix)) });
            reqwest::Body::wrap_stream(head.chain(blob.stream(crate::blobfile::PREFIX as u64, end).await?))
        } else {
            reqwest::Body::wrap_stream(blob.stream(offset, end).await?)
        };
        let reply = t
            .auth(client.patch(&location))
            .header("content-range", format!("{}-{}", offset, end - 1))
            .header("content-length", end - offset)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
            .await?;
        expect(reply.status(), 202, "chunk")?;
        location = absolute(t, reply.headers()["location"].to_str()?);
        offset = end;
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let reply = t.auth(client.put(format!("{location}{sep}digest={digest}"))).send().await?;
    expect(reply.status(), 201, "upload finish")?;
    Ok(throughput(blob.len, started.elapsed(), cpu.seconds()))
}

fn absolute(t: &Target, location: &str) -> String {
    if location.starts_with("https://") {
        location.to_owned()
    } else {
        t.url(location)
    }
}

/// Pulls a blob, hashing every byte; fails if the digest does not match.
pub async fn pull(t: &Target, repo: &str, digest: &str) -> anyhow::Result<Throughput> {
    let client = t.client(true);
    let cpu = CpuMeter::start(t.pid);
    let started = Instant::now();
    let reply = t.auth(client.get(t.url(&format!("/v2/{repo}/blobs/{digest}")))).send().await?;
    expect(reply.status(), 200, "pull")?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    let mut stream = reply.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        hasher.update(&chunk);
    }
    let elapsed = started.elapsed();
    let got = format!("sha256:{}", hex::encode(hasher.finalize()));
    anyhow::ensure!(got == digest, "pulled blob has digest {got}, not {digest}");
    Ok(throughput(bytes, elapsed, cpu.seconds()))
}

/// Pushes one small image (layer, config, manifest) tagged `tag`; returns the manifest bytes.
pub async fn push_small_image(t: &Target, client: &reqwest::Client, repo: &str, tag: &str) -> anyhow::Result<Vec<u8>> {
    // A real (tiny) layer tarball and a non-root config, so the registry's scanner has honest work.
    let (layer, diff_id) = {
        use std::io::Write;
        let content: Vec<u8> = (0..1024).map(|_| rand::random::<u8>()).collect();
        let mut tar = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        tar.append_data(&mut header, "data.bin", content.as_slice())?;
        let tar = tar.into_inner()?;
        let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&tar)));
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar)?;
        (gz.finish()?, diff_id)
    };
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"User":"10001","Labels":{{"tag":"{tag}"}}}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let mut descriptors = Vec::new();
    for bytes in [config.into_bytes(), layer] {
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
        let len = bytes.len();
        post_put(t, client, repo, &digest, len as u64, bytes.into()).await?;
        descriptors.push((digest, len));
    }
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": descriptors[0].0, "size": descriptors[0].1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": descriptors[1].0, "size": descriptors[1].1}],
    }))?;
    put_manifest(t, client, repo, tag, &manifest).await?;
    Ok(manifest)
}

pub async fn put_manifest(
    t: &Target,
    client: &reqwest::Client,
    repo: &str,
    tag: &str,
    manifest: &[u8],
) -> anyhow::Result<()> {
    let reply = t
        .auth(client.put(t.url(&format!("/v2/{repo}/manifests/{tag}"))))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_vec())
        .send()
        .await?;
    expect(reply.status(), 201, "manifest put")
}

#[derive(Debug, Clone, Serialize)]
pub struct Rate {
    pub per_s: f64,
    pub server_cpu_ms_per_op: Option<f64>,
}

/// Pushes `count` small images with `workers` concurrent clients.
pub async fn small_images(t: &Arc<Target>, repo: &str, count: usize, workers: usize) -> anyhow::Result<Rate> {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cpu = CpuMeter::start(t.pid);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (t, next, repo) = (t.clone(), next.clone(), repo.to_owned());
        tasks.push(tokio::spawn(async move {
            let client = t.client(true);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                push_small_image(&t, &client, &repo, &format!("i{i}")).await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    Ok(Rate {
        per_s: count as f64 / elapsed.as_secs_f64(),
        server_cpu_ms_per_op: cpu.seconds().map(|c| c * 1000.0 / count as f64),
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Load {
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub server_cpu_us_per_request: Option<f64>,
    pub errors: u64,
}

/// `conns` connections, each sending `method` for `repo:tag` back to back for `duration`.
pub async fn manifest_load(
    t: &Arc<Target>,
    repo: &str,
    tag: &str,
    method: reqwest::Method,
    conns: usize,
    duration: Duration,
) -> anyhow::Result<Load> {
    // One token per connection, fetched before the clock starts and reused for every request.
    let mut tokens = Vec::new();
    for _ in 0..conns {
        tokens.push(t.fetch_token(&[repo.to_owned()]).await?);
    }
    let cpu = CpuMeter::start(t.pid);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for token in tokens {
        let (t, method) = (t.clone(), method.clone());
        let url = t.url(&format!("/v2/{repo}/manifests/{tag}"));
        tasks.push(tokio::spawn(async move {
            let client = t.client(true);
            let mut latencies = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            while Instant::now() < deadline {
                let sent = Instant::now();
                let mut request = client.request(method.clone(), &url);
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                let ok = match request.header("accept", "application/vnd.oci.image.manifest.v1+json").send().await {
                    Ok(r) => r.status() == 200 && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    latencies.push(sent.elapsed().as_micros() as u32);
                } else {
                    errors += 1;
                }
            }
            (latencies, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, e) = task.await?;
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(!all.is_empty(), "no successful manifest request");
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)] as f64 / 1000.0;
    Ok(Load {
        requests_per_s: all.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        server_cpu_us_per_request: cpu.seconds().map(|c| c * 1e6 / all.len() as f64),
        errors,
    })
}

/// Tags `count` copies of one manifest in `repo` (setup for the listing measurement).
pub async fn create_tags(t: &Arc<Target>, repo: &str, count: usize, workers: usize) -> anyhow::Result<()> {
    let client = t.client(true);
    let manifest = Arc::new(push_small_image(t, &client, repo, "t00000").await?);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (t, next, repo, manifest) = (t.clone(), next.clone(), repo.to_owned(), manifest.clone());
        tasks.push(tokio::spawn(async move {
            let client = t.client(true);
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    return anyhow::Ok(());
                }
                put_manifest(&t, &client, &repo, &format!("t{i:05}"), &manifest).await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub total_ms: f64,
    pub pages: usize,
    pub tags: usize,
    /// True when the registry returned pages of the requested size, linked by `Link`.
    pub paging_honoured: bool,
}

/// Lists all tags in pages of `page`, following `Link`, for at most `max_pages` pages.
pub async fn list_tags(t: &Target, repo: &str, page: usize, max_pages: usize) -> anyhow::Result<Listing> {
    let client = t.client(true);
    let mut url = t.url(&format!("/v2/{repo}/tags/list?n={page}"));
    let (mut pages, mut tags, mut honoured) = (0, 0, true);
    let started = Instant::now();
    loop {
        let reply = t.auth(client.get(&url)).send().await?;
        expect(reply.status(), 200, "tag list")?;
        let link = reply.headers().get("link").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let body: serde_json::Value = reply.json().await?;
        let n = body["tags"].as_array().map(|a| a.len()).unwrap_or(0);
        honoured &= n <= page;
        tags += n;
        pages += 1;
        match link {
            Some(l) if pages < max_pages => {
                let path = l.trim_start_matches('<').split('>').next().unwrap_or("").to_owned();
                url = absolute(t, &path);
            }
            _ => break,
        }
    }
    Ok(Listing { total_ms: started.elapsed().as_secs_f64() * 1000.0, pages, tags, paging_honoured: honoured })
}

/// Peak RSS of the server while `uploads` monolithic uploads of the blob run at once.
pub async fn peak_memory(
    t: &Arc<Target>,
    blob: &Arc<BlobFile>,
    repo: &str,
    uploads: usize,
) -> anyhow::Result<Option<f64>> {
    let Some(pid) = t.pid else { return Ok(None) };
    let mut prepared = Vec::new();
    for _ in 0..uploads {
        let prefix = fresh_prefix();
        prepared.push((prefix, blob.digest(prefix).await?));
    }
    crate::procstat::reset_peak_rss(pid);
    let mut tasks = Vec::new();
    for (prefix, digest) in prepared {
        let (t, blob, repo) = (t.clone(), blob.clone(), repo.to_owned());
        tasks.push(tokio::spawn(async move {
            let client = t.client(true);
            post_put(&t, &client, &repo, &digest, blob.len, blob.body(prefix).await?).await
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(crate::procstat::peak_rss_mib(pid))
}
