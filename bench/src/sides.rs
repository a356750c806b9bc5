//! The side-by-side run: both registries on loopback with the same certificate and disk, measured
//! in alternation (A/B, B/A, ...), medians reported.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::blobfile::BlobFile;
use crate::machine;
use crate::measure::{self, Listing, Load, Rate, Target, Throughput};
use crate::report::{self, Row};
use crate::Sizes;

#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    pub monolithic: Throughput,
    pub chunked: Throughput,
    /// The blob's first pull after its push: Portcullis writes uploads past the page cache, so it
    /// reads from disk where distribution reads what its upload left in the cache.
    pub first_pull: Throughput,
    /// A second pull of the same blob: both from the page cache.
    pub pull: Throughput,
    pub manifest_get: Load,
    pub manifest_head: Load,
    pub small_images: Rate,
    pub tag_listing: Listing,
}

/// Every repository the measurements use, for the token that covers them.
pub fn repos(runs: usize) -> Vec<String> {
    let mut r = vec!["bench/tags".to_owned(), "bench/memory".to_owned()];
    for run in 0..runs {
        r.push(format!("bench/large-r{run}"));
        r.push(format!("bench/small-r{run}"));
    }
    r
}

/// One pass of every measurement but memory.
pub async fn run_once(t: &Arc<Target>, blob: &Arc<BlobFile>, s: &Sizes, run: usize) -> anyhow::Result<RunResult> {
    let repo = format!("bench/large-r{run}");
    eprintln!("[{}] run {run}: monolithic upload", t.name);
    let (monolithic, digest) = measure::upload_monolithic(t, blob, &repo).await?;
    eprintln!("[{}] run {run}: chunked upload", t.name);
    let chunked = measure::upload_chunked(t, blob, &repo, s.chunk_mib << 20).await?;
    eprintln!("[{}] run {run}: pull", t.name);
    let first_pull = measure::pull(t, &repo, &digest).await?;
    let pull = measure::pull(t, &repo, &digest).await?;
    eprintln!("[{}] run {run}: manifest GET/HEAD load", t.name);
    let load = crate::LOAD(s);
    let manifest_get =
        measure::manifest_load(t, "bench/tags", "t00000", reqwest::Method::GET, s.connections, load).await?;
    let manifest_head =
        measure::manifest_load(t, "bench/tags", "t00000", reqwest::Method::HEAD, s.connections, load).await?;
    eprintln!("[{}] run {run}: small images", t.name);
    let small_images =
        measure::small_images(t, &format!("bench/small-r{run}"), s.small_images, s.small_clients).await?;
    let tag_listing = measure::list_tags(t, "bench/tags", s.page, s.tags.div_ceil(s.page).max(1)).await?;
    Ok(RunResult { monolithic, chunked, first_pull, pull, manifest_get, manifest_head, small_images, tag_listing })
}

struct Registry {
    target: Arc<Target>,
    child: Child,
    runs: Vec<RunResult>,
    peak_rss_mib: Option<f64>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The admin password of the Portcullis instance the benchmark starts (loopback only, thrown away).
pub const BENCH_PASSWORD: &str = "benchmark-admin-password";

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `bin serve` on loopback `port` with its data in `dir`, the benchmark's admin password,
/// request rate limits off, its log in `log`, and `extra` environment variables.
pub fn start_portcullis(
    bin: &Path,
    dir: &Path,
    port: u16,
    log: &Path,
    extra: &[(&str, &str)],
) -> anyhow::Result<Child> {
    Command::new(bin)
        .arg("serve")
        .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
        .env("PORTCULLIS_DATA_DIR", dir)
        .env("PORTCULLIS_LOG", "warn")
        .env("PORTCULLIS_ADMIN_PASSWORD", BENCH_PASSWORD)
        // Request rate limits are a policy, not a speed: off, as distribution has none. (The
        // client is one address and one account making thousands of requests a second.)
        .env("PORTCULLIS_SERVER_RATE_LIMIT_PER_ADDRESS", "0")
        .env("PORTCULLIS_SERVER_RATE_LIMIT_PER_PRINCIPAL", "0")
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {}: {e} (run cargo build --release first)", bin.display()))
}

/// A Portcullis started afresh for one benchmark (its data in `out/<name>-data`, its log in
/// `out/portcullis-<name>.log`), with the admin's credentials; stopped when dropped.
pub struct Fresh {
    child: Child,
    pub target: std::sync::Arc<crate::measure::Target>,
}

impl Drop for Fresh {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn fresh_portcullis(bin: &Path, out: &Path, name: &str, extra: &[(&str, &str)]) -> anyhow::Result<Fresh> {
    let dir = out.join(format!("{name}-data"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = start_portcullis(bin, &dir, port, &out.join(format!("portcullis-{name}.log")), extra)?;
    let ready =
        wait_port(port, &mut child, "portcullis").and_then(|_| Ok(std::fs::read(dir.join("tls").join("ca.crt"))?));
    let ca_pem = match ready {
        Ok(ca) => ca,
        Err(e) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    let target = std::sync::Arc::new(crate::measure::Target {
        name: "portcullis".into(),
        base: format!("https://127.0.0.1:{port}"),
        ca_pem,
        pid: Some(child.id()),
        credentials: Some(("admin".into(), BENCH_PASSWORD.into())),
        token: Default::default(),
    });
    Ok(Fresh { child, target })
}

pub fn wait_port(port: u16, child: &mut Child, what: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("{what} exited with {status}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("{what} did not listen on port {port}")
}

/// Every upload is a distinct blob and every blob is kept to the end (as a registry keeps them), so a
/// run needs room for all of them: the source blob, and per run a `dd` file plus a monolithic and a
/// chunked upload into each registry, and 8 (`--memory-uploads`) more into each at the end.
/// Checked up front, because a disk that fills mid-run leaves both registries answering errors.
fn check_free_space(dir: &Path, runs: usize, s: &Sizes) -> anyhow::Result<()> {
    let blobs = 1 + runs as u64 * 5 + 2 * s.memory_uploads as u64;
    let needed = ((blobs * s.blob_mib) << 20) + (1 << 30);
    let free = free_bytes(dir)?;
    anyhow::ensure!(
        free >= needed,
        "the benchmark needs about {} GiB free under {} ({blobs} blobs of {} MiB); {} GiB are free. \
         Free some space, or pass fewer --runs, a smaller --blob-mib or fewer --memory-uploads",
        needed >> 30,
        dir.display(),
        s.blob_mib,
        free >> 30
    );
    Ok(())
}

fn free_bytes(dir: &Path) -> anyhow::Result<u64> {
    let st = rustix::fs::statvfs(dir)?;
    Ok(st.f_bavail * st.f_frsize)
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    Some(v[v.len() / 2])
}

fn med<F: Fn(&RunResult) -> Option<f64>>(r: &Registry, f: F) -> Option<f64> {
    median(r.runs.iter().filter_map(&f).collect())
}

pub async fn compare(p_bin: &Path, d_bin: &Path, out: &Path, runs: usize, keep: bool, s: &Sizes) -> anyhow::Result<()> {
    let data = out.join("data");
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data)?;
    check_free_space(&data, runs, s)?;
    let blob = Arc::new(BlobFile::ensure(&out.join("blob.bin"), s.blob_mib << 20)?);

    // Portcullis first: its development CA and server certificate serve both registries.
    let p_dir = data.join("portcullis");
    std::fs::create_dir_all(&p_dir)?;
    let p_port = free_port()?;
    let mut p_child = start_portcullis(p_bin, &p_dir, p_port, &out.join("portcullis.log"), &[])?;
    wait_port(p_port, &mut p_child, "portcullis")?;
    let tls_dir = p_dir.join("tls");
    let ca_pem = std::fs::read(tls_dir.join("ca.crt"))?;

    let d_dir = data.join("distribution");
    std::fs::create_dir_all(&d_dir)?;
    let d_port = free_port()?;
    let d_config = out.join("distribution.yml");
    std::fs::write(
        &d_config,
        format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\nhttp:\n  addr: 127.0.0.1:{d_port}\n  tls:\n    certificate: {}\n    key: {}\n",
            d_dir.canonicalize()?.display(),
            tls_dir.join("private/server.crt").canonicalize()?.display(),
            tls_dir.join("private/server.key").canonicalize()?.display()
        ),
    )?;
    let mut d_child = Command::new(d_bin)
        .arg("serve")
        .arg(&d_config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(out.join("distribution.log"))?)
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {}: {e} (apt-get install docker-registry)", d_bin.display()))?;
    wait_port(d_port, &mut d_child, "distribution")?;

    let make = |name: &str, port: u16, child: Child, credentials: Option<(String, String)>| Registry {
        target: Arc::new(Target {
            name: name.into(),
            base: format!("https://127.0.0.1:{port}"),
            ca_pem: ca_pem.clone(),
            pid: Some(child.id()),
            credentials,
            token: Default::default(),
        }),
        child,
        runs: Vec::new(),
        peak_rss_mib: None,
    };
    // Portcullis runs with its authentication on (a token verified on every request); distribution
    // as commonly deployed, anonymous.
    let admin = Some(("admin".to_owned(), BENCH_PASSWORD.to_owned()));
    let mut regs = [make("portcullis", p_port, p_child, admin), make("distribution", d_port, d_child, None)];
    for r in &regs {
        r.target.use_token(&repos(runs)).await?;
    }

    eprintln!("machine limits");
    let tls_config = portcullis::tls::setup(&portcullis::Config { data_dir: p_dir.clone(), ..Default::default() })?;
    let mut limits = machine::Limits {
        sha256_one_core_mb_s: machine::sha256_speed(),
        tls_loopback_mb_s: machine::tls_loopback(tls_config.server_config, &ca_pem, 2 << 30).await,
        new_file_write_mb_s: None,
        new_file_write_per_run_mb_s: Vec::new(),
    };
    for r in &regs {
        eprintln!("[{}] creating {} tags", r.target.name, s.tags);
        measure::create_tags(&r.target, "bench/tags", s.tags, 8).await?;
    }
    for run in 0..runs {
        // Alternate who goes first, so neither always meets a warmer (or fuller) page cache.
        let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        // The write limit under this run's conditions; each file is kept (as the blobs are) until the end.
        eprintln!("run {run}: new-file write limit (dd)");
        limits.new_file_write_per_run_mb_s.extend(machine::dd_write(&blob.path, &dd_file(out, run)));
        for i in order {
            let result = run_once(&regs[i].target, &blob, s, run).await?;
            regs[i].runs.push(result);
        }
    }
    limits.new_file_write_mb_s = median(limits.new_file_write_per_run_mb_s.clone());
    for r in regs.iter_mut() {
        eprintln!("[{}] peak memory during {} concurrent uploads", r.target.name, s.memory_uploads);
        r.peak_rss_mib = measure::peak_memory(&r.target, &blob, "bench/memory", s.memory_uploads).await?;
    }

    let [p, d] = &regs;
    let both = |f: &dyn Fn(&RunResult) -> Option<f64>| (med(p, f), med(d, f));
    let mut rows = Vec::new();
    let mut add = |name: &str, unit: &str, hib: bool, f: &dyn Fn(&RunResult) -> Option<f64>| {
        let (a, b) = both(f);
        rows.push(Row::new(name, unit, hib, a, b));
    };
    add("monolithic upload", "MB/s", true, &|r| Some(r.monolithic.mb_per_s));
    add("monolithic upload server CPU", "s/GiB", false, &|r| r.monolithic.server_cpu_s_per_gib);
    add("chunked upload (8 MiB)", "MB/s", true, &|r| Some(r.chunked.mb_per_s));
    add("chunked upload server CPU", "s/GiB", false, &|r| r.chunked.server_cpu_s_per_gib);
    add("first pull after push (digest verified)", "MB/s", true, &|r| Some(r.first_pull.mb_per_s));
    add("first pull server CPU", "s/GiB", false, &|r| r.first_pull.server_cpu_s_per_gib);
    add("blob pull, cached (digest verified)", "MB/s", true, &|r| Some(r.pull.mb_per_s));
    add("blob pull, cached, server CPU", "s/GiB", false, &|r| r.pull.server_cpu_s_per_gib);
    add("manifest GET, 32 conns", "req/s", true, &|r| Some(r.manifest_get.requests_per_s));
    add("manifest GET p50", "ms", false, &|r| Some(r.manifest_get.p50_ms));
    add("manifest GET p99", "ms", false, &|r| Some(r.manifest_get.p99_ms));
    add("manifest GET server CPU", "us/req", false, &|r| r.manifest_get.server_cpu_us_per_request);
    add("manifest HEAD, 32 conns", "req/s", true, &|r| Some(r.manifest_head.requests_per_s));
    add("manifest HEAD p99", "ms", false, &|r| Some(r.manifest_head.p99_ms));
    add("small image push, 8 clients", "images/s", true, &|r| Some(r.small_images.per_s));
    add("tag listing, all pages", "ms", false, &|r| Some(r.tag_listing.total_ms));
    rows.push(Row::new("peak RSS, 8 concurrent uploads", "MiB", false, p.peak_rss_mib, d.peak_rss_mib));

    let table = report::table(&rows);
    let paging = |r: &Registry| {
        r.runs
            .last()
            .map(|x| {
                format!(
                    "{} pages, {} tags, paging honoured: {}",
                    x.tag_listing.pages, x.tag_listing.tags, x.tag_listing.paging_honoured
                )
            })
            .unwrap_or_default()
    };
    println!("\n{table}");
    println!("tag listing: Portcullis {}; distribution {}", paging(p), paging(d));
    println!(
        "machine: SHA-256 one core {} MB/s; TLS loopback {} MB/s; new-file write (dd conv=fdatasync, median of runs) {} MB/s (runs: {})",
        fmt(limits.sha256_one_core_mb_s),
        fmt(limits.tls_loopback_mb_s),
        fmt(limits.new_file_write_mb_s),
        limits.new_file_write_per_run_mb_s.iter().map(|v| format!("{v:.0}")).collect::<Vec<_>>().join(", ")
    );
    if let Some(limit) = limits.new_file_write_mb_s {
        let share = |f: &dyn Fn(&RunResult) -> Option<f64>| {
            let (a, b) = both(f);
            let pct = |v: Option<f64>| v.map(|v| format!("{:.0}%", v / limit * 100.0)).unwrap_or("n/a".into());
            format!("Portcullis {}, distribution {}", pct(a), pct(b))
        };
        println!(
            "of the new-file write limit: monolithic upload {}; chunked upload {}",
            share(&|r| Some(r.monolithic.mb_per_s)),
            share(&|r| Some(r.chunked.mb_per_s))
        );
    }
    println!("{runs} alternating runs, medians; blob {} MiB; {}", s.blob_mib, machine_line());
    let json = serde_json::json!({
        "machine": machine_line(), "limits": limits, "runs": runs, "rows": rows,
        "portcullis": {"runs": p.runs, "peak_rss_mib": p.peak_rss_mib},
        "distribution": {"runs": d.runs, "peak_rss_mib": d.peak_rss_mib},
    });
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(&json)?)?;
    std::fs::write(out.join("table.md"), &table)?;
    match report::chart(&rows, out) {
        Ok(png) => println!("chart: {}", png.display()),
        Err(e) => eprintln!("no chart: {e}"),
    }
    drop(regs);
    for run in 0..runs {
        let _ = std::fs::remove_file(dd_file(out, run));
    }
    if !keep {
        let _ = std::fs::remove_dir_all(&data);
    }
    Ok(())
}

fn dd_file(out: &Path, run: usize) -> std::path::PathBuf {
    out.join(format!("dd-test-{run}.bin"))
}

fn fmt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.0}")).unwrap_or("n/a".into())
}

fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    format!("{} cores, {cpu}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0))
}
