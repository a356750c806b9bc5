//! `portcullis-bench`: measures a registry (`run`) or Portcullis and CNCF distribution side by side
//! (`compare`), printing one table with both figures, their ratio and the machine's own limits;
//! the garbage collector at scale (`gc`); and continuous scanning at scale (`rescan`).
//!
//! Every loop is bounded in count and time, and all traffic goes to registries on loopback.

mod blobfile;
mod gc;
mod machine;
mod measure;
mod procstat;
mod report;
mod rescan;
mod sides;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use blobfile::BlobFile;
use measure::Target;

#[derive(Parser)]
#[command(name = "portcullis-bench", about = "Registry benchmark: push, pull, manifest rate, paging, memory")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measure one registry once.
    Run {
        /// Base URL, e.g. https://127.0.0.1:5000
        #[arg(long)]
        url: String,
        /// CA certificate (PEM) that signed the registry's certificate.
        #[arg(long)]
        ca: PathBuf,
        /// Registry process id, for server CPU and memory figures.
        #[arg(long)]
        pid: Option<u32>,
        /// User for Docker token auth (the password comes from PORTCULLIS_BENCH_PASSWORD).
        #[arg(long)]
        user: Option<String>,
        /// Only this measurement, `repeat` times, one JSON line each (for profiling).
        #[arg(long, value_enum)]
        only: Option<Only>,
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        #[command(flatten)]
        sizes: Sizes,
    },
    /// Start Portcullis and distribution (Debian's docker-registry) with the same TLS and disk, and
    /// measure both in alternation.
    Compare {
        /// The portcullis binary to run (build it with `cargo build --release`).
        #[arg(long, default_value = "target/release/portcullis")]
        portcullis_bin: PathBuf,
        /// The distribution binary.
        #[arg(long, default_value = "docker-registry")]
        distribution_bin: PathBuf,
        /// Where data, results.json and chart.png go.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        /// Alternating A/B runs; medians are reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Keep the registries' data afterwards.
        #[arg(long)]
        keep_data: bool,
        #[command(flatten)]
        sizes: Sizes,
    },
    /// The garbage collector at scale: fill a Portcullis with many small images, delete some, and
    /// time one collection; then small-image pushes alone and during a collection.
    Gc {
        #[arg(long, default_value = "target/release/portcullis")]
        portcullis_bin: PathBuf,
        /// Where the registry's data and log go.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        /// Manifests pushed, each with a distinct config and `--layers` distinct layers.
        #[arg(long, default_value_t = 20_000)]
        images: usize,
        #[arg(long, default_value_t = 4)]
        layers: usize,
        /// Manifests deleted before the collection (their blobs become unreferenced).
        #[arg(long, default_value_t = 10_000)]
        deleted: usize,
        /// The longest each push-rate measurement runs, in seconds.
        #[arg(long, default_value_t = 20)]
        push_secs: u64,
    },
    /// Continuous scanning: fill a Portcullis with Debian images, import vulnerability data
    /// twice (matching none, then all of them) and time how fast every image is matched again.
    Rescan {
        #[arg(long, default_value = "target/release/portcullis")]
        portcullis_bin: PathBuf,
        /// Where the registry's data and log go.
        #[arg(long, default_value = "bench-results")]
        out: PathBuf,
        /// Images pushed (each its own layer) and scanned before the imports.
        #[arg(long, default_value_t = 1_000)]
        images: usize,
        /// Installed packages per image.
        #[arg(long, default_value_t = 100)]
        packages: usize,
        /// Synthetic OSV records in each import.
        #[arg(long, default_value_t = 20_000)]
        records: usize,
    },
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum Only {
    Monolithic,
    Chunked,
    Pull,
    Memory,
    /// Small-image pushes (`--small-images` by `--small-clients`), one rate per repeat.
    Small,
}

#[derive(clap::Args, Clone)]
pub struct Sizes {
    /// Size of the large blob in MiB.
    #[arg(long, default_value_t = 1024)]
    pub blob_mib: u64,
    /// PATCH size of the chunked upload in MiB.
    #[arg(long, default_value_t = 8)]
    pub chunk_mib: u64,
    /// Seconds of each manifest load measurement.
    #[arg(long, default_value_t = 10)]
    pub load_secs: u64,
    /// Concurrent connections of the manifest load.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// Small images pushed, and by how many clients.
    #[arg(long, default_value_t = 500)]
    pub small_images: usize,
    #[arg(long, default_value_t = 8)]
    pub small_clients: usize,
    /// Tags created for the listing measurement, and the page size.
    #[arg(long, default_value_t = 10_000)]
    pub tags: usize,
    #[arg(long, default_value_t = 1_000)]
    pub page: usize,
    /// Concurrent large uploads during the memory measurement.
    #[arg(long, default_value_t = 8)]
    pub memory_uploads: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        match cli.command {
            Command::Run { url, ca, pid, user, only, repeat, sizes } => {
                let credentials = user.map(|u| (u, std::env::var("PORTCULLIS_BENCH_PASSWORD").unwrap_or_default()));
                let target = Arc::new(Target {
                    name: "registry".into(),
                    base: url,
                    ca_pem: std::fs::read(&ca)?,
                    pid,
                    credentials,
                    token: Default::default(),
                });
                target.use_token(&sides::repos(repeat.max(1))).await?;
                let dir = std::env::temp_dir().join("portcullis-bench");
                std::fs::create_dir_all(&dir)?;
                let blob = Arc::new(BlobFile::ensure(&dir.join("blob.bin"), sizes.blob_mib << 20)?);
                if let Some(only) = only {
                    return run_only(&target, &blob, &sizes, only, repeat).await;
                }
                measure::create_tags(&target, "bench/tags", sizes.tags, 8).await?;
                let result = sides::run_once(&target, &blob, &sizes, 0).await?;
                let memory = measure::peak_memory(&target, &blob, "bench/memory", sizes.memory_uploads).await?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"run": result, "peak_rss_mib": memory}))?
                );
                Ok(())
            }
            Command::Compare { portcullis_bin, distribution_bin, out, runs, keep_data, sizes } => {
                sides::compare(&portcullis_bin, &distribution_bin, &out, runs.max(1), keep_data, &sizes).await
            }
            Command::Rescan { portcullis_bin, out, images, packages, records } => {
                std::fs::create_dir_all(&out)?;
                rescan::run(&portcullis_bin, &out, &rescan::RescanSizes { images, packages, records }).await
            }
            Command::Gc { portcullis_bin, out, images, layers, deleted, push_secs } => {
                std::fs::create_dir_all(&out)?;
                let sizes = gc::GcSizes { images, layers: layers.max(1), deleted: deleted.min(images), push_secs };
                gc::run(&portcullis_bin, &out, &sizes).await
            }
        }
    })
}

/// One large-blob measurement, repeated; the pull pulls a blob uploaded once beforehand.
async fn run_only(t: &Arc<Target>, blob: &Arc<BlobFile>, s: &Sizes, only: Only, repeat: usize) -> anyhow::Result<()> {
    let repo = "bench/large-r0";
    let pulled = match only {
        Only::Pull => Some(measure::upload_monolithic(t, blob, repo).await?.1),
        _ => None,
    };
    for run in 0..repeat {
        if let Only::Small = only {
            let rate =
                measure::small_images(t, &format!("bench/small-r{run}"), s.small_images, s.small_clients).await?;
            println!("{}", serde_json::to_string(&rate)?);
            continue;
        }
        if let Only::Memory = only {
            let peak = measure::peak_memory(t, blob, "bench/memory", s.memory_uploads).await?;
            println!("{}", serde_json::json!({ "peak_rss_mib": peak }));
            continue;
        }
        let result = match (only, &pulled) {
            (Only::Pull, Some(digest)) => measure::pull(t, repo, digest).await?,
            (Only::Chunked, _) => measure::upload_chunked(t, blob, repo, s.chunk_mib << 20).await?,
            _ => measure::upload_monolithic(t, blob, repo).await?.0,
        };
        println!("{}", serde_json::to_string(&result)?);
    }
    Ok(())
}

pub const LOAD: fn(&Sizes) -> Duration = |s| Duration::from_secs(s.load_secs);
