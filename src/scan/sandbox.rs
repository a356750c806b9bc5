//! The scan sandbox: decompression and parsing of pushed bytes run in a child process, so that a
//! crash, a runaway allocation or a parser bug in them cannot take the registry down.
//!
//! Rules:
//! - The child is this program (`portcullis scan-sandbox`), started with a clean environment and no
//!   descriptors but three pipes. Before it reads its input it sets `PR_SET_NO_NEW_PRIVS` and its own limits (address space =
//!   `scan.limits.memory`, CPU time = `scan.limits.timeout`, no file writes, no core dumps), the
//!   kernel's first choice when memory runs out (`oom_score_adj` 1000), and death with its parent.
//! - It reads a plan and the blobs on stdin, writes one JSON report on stdout, and touches nothing
//!   else: it has no database, no storage and no keys; what it may read of the filesystem it gets
//!   no path to.
//! - Protocol on stdin: one JSON line [`Plan`], then per blob one JSON line [`Item`] followed by
//!   exactly `size` bytes; the end of stdin ends the scan. On stdout: one [`Report`].
//! - The parent bounds what it reads back (`MAX_REPORT`) and the whole run (`timeout`); a child
//!   that dies is a failed attempt, one that ran out of memory or time fails closed with the limit named.

use std::io::{BufRead, Read, Write};
use std::path::PathBuf;
use std::process::Stdio;

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::content::{ArtifactScan, ImageScan, ListedLayer, Outcome};
use super::image_config;
use super::limits::{from_io, ScanError, ScanLimits};
use crate::model::ByteStream;

/// The most of a child's report the parent reads (findings and packages of one image).
const MAX_REPORT: u64 = 64 << 20;
/// The longest plan or item line the child accepts.
const MAX_LINE: u64 = 16 << 20;

/// What is being scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Subject {
    Image,
    Artifact,
    Index,
}

/// The first line on the child's stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub subject: Subject,
    pub limits: ScanLimits,
    /// An image's layers in manifest order (repeats included).
    #[serde(default)]
    pub layers: Vec<ListedLayer>,
    /// podman would pull the image: it may apply every layer unchecked (see `content::runnable_view`).
    #[serde(default)]
    pub podman: bool,
}

/// What a blob is to the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The manifest's own JSON.
    Manifest,
    /// An image's config.
    Config,
    /// An image's layer.
    Layer,
    /// A blob of an artifact.
    Blob,
}

/// The header line before each blob's bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    pub role: Role,
    pub digest: String,
    pub size: u64,
}

/// The child's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Report {
    Done(Outcome),
    /// The content cannot be read completely or hit a limit: the scan fails closed.
    Refused(ScanError),
}

/// Why no report came back.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The content made the sandbox hit its memory or time limit: fails closed, no retry.
    #[error("{0}")]
    Limit(ScanError),
    /// The sandbox died or could not be run: the attempt failed and is retried.
    #[error("the scan sandbox failed: {0}")]
    Failed(String),
    /// A blob could not be read from storage: the attempt failed, not the content.
    #[error("{0}")]
    Input(String),
}

fn read_line(input: &mut impl BufRead) -> Result<Option<String>, ScanError> {
    let mut line = Vec::new();
    let n = input.by_ref().take(MAX_LINE).read_until(b'\n', &mut line).map_err(from_io)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(ScanError::unreadable("sandbox protocol: a line is cut short or too long"));
    }
    String::from_utf8(line).map(Some).map_err(|_| ScanError::unreadable("sandbox protocol: a line is not UTF-8"))
}

fn read_small(reader: impl Read, size: u64, limit: u64, what: &str) -> Result<Vec<u8>, ScanError> {
    if size > limit {
        return Err(ScanError::limit(format!("{what} of {size} bytes"), limit, "max_file_bytes"));
    }
    let mut out = Vec::with_capacity(size as usize);
    reader.take(size).read_to_end(&mut out).map_err(from_io)?;
    if out.len() as u64 != size {
        return Err(ScanError::unreadable("sandbox protocol: a blob is cut short"));
    }
    Ok(out)
}

/// The scan itself, as the child runs it over its input.
pub fn scan_input(mut input: impl BufRead) -> Result<Outcome, ScanError> {
    let plan: Plan = match read_line(&mut input)? {
        Some(line) => serde_json::from_str(&line).map_err(|e| ScanError::unreadable(format!("sandbox plan: {e}")))?,
        None => return Err(ScanError::unreadable("sandbox protocol: no plan")),
    };
    let limits = &plan.limits;
    let mut image = ImageScan::new(limits);
    let mut artifact = ArtifactScan::new(limits);
    let mut config = None;
    let mut manifest_findings = Vec::new();
    while let Some(line) = read_line(&mut input)? {
        let item: Item =
            serde_json::from_str(&line).map_err(|e| ScanError::unreadable(format!("sandbox item: {e}")))?;
        let mut body = (&mut input).take(item.size);
        match item.role {
            Role::Manifest => {
                let bytes = read_small(&mut body, item.size, limits.max_file_bytes, "the manifest")?;
                manifest_findings = image_config::manifest_secrets(&bytes).map_err(ScanError::Unreadable)?;
            }
            Role::Config => config = Some(read_small(&mut body, item.size, limits.max_file_bytes, "the image config")?),
            Role::Layer => image.scan_layer(&item.digest, &mut body)?,
            Role::Blob => artifact.scan_blob(&item.digest, &mut body)?,
        }
        // Every decoder reads its blob to the end; anything left over is a protocol error.
        if std::io::copy(&mut body, &mut std::io::sink()).map_err(from_io)? != 0 {
            return Err(ScanError::unreadable(format!("blob {} was not read to its end", item.digest)));
        }
    }
    let mut outcome = match plan.subject {
        Subject::Image => {
            let config = config.ok_or_else(|| ScanError::unreadable("the image config was not sent"))?;
            image.finish(&plan.layers, &config, plan.podman)?
        }
        Subject::Artifact => artifact.finish(),
        Subject::Index => Outcome::default(),
    };
    outcome.findings.splice(0..0, manifest_findings);
    Ok(outcome)
}

/// `portcullis scan-sandbox`: hardens itself, reads stdin, writes one report line to stdout.
pub fn child_main(limits: ChildLimits) -> std::process::ExitCode {
    if let Err(e) = harden(limits) {
        eprintln!("scan sandbox: cannot apply its limits: {e}");
        return std::process::ExitCode::FAILURE;
    }
    let stdin = std::io::stdin();
    let report = match scan_input(std::io::BufReader::with_capacity(256 * 1024, stdin.lock())) {
        Ok(outcome) => Report::Done(outcome),
        Err(e) => Report::Refused(e),
    };
    let mut out = std::io::stdout().lock();
    match serde_json::to_writer(&mut out, &report).map(|_| out.write_all(b"\n")) {
        Ok(Ok(())) => std::process::ExitCode::SUCCESS,
        _ => std::process::ExitCode::FAILURE,
    }
}

/// Runs scans in child processes.
#[derive(Debug, Clone)]
pub struct Sandbox {
    pub program: PathBuf,
    pub limits: ScanLimits,
}

/// A blob to send: its item header and a stream of exactly `size` bytes.
pub struct Blob {
    pub item: Item,
    pub body: ByteStream,
}

/// The blobs of one scan, opened one after another as the sandbox reads them.
pub type Blobs<'a> = futures::stream::BoxStream<'a, std::io::Result<Blob>>;

/// The limits the child puts on itself, from its command line.
#[derive(Debug, Clone, Copy)]
pub struct ChildLimits {
    /// Address space, bytes (`scan.limits.memory`).
    pub memory: u64,
    /// CPU time, seconds (`scan.limits.timeout`).
    pub cpu_seconds: u64,
    /// The registry's process id: the child dies with it.
    pub parent: i32,
}

/// The child hardens itself before it reads a byte of its input. Doing it here, after exec,
/// rather than between fork and exec lets the parent start it with `posix_spawn` (no copy of the
/// registry's page tables per scan); nothing untrusted has reached the child before this returns.
fn harden(limits: ChildLimits) -> std::io::Result<()> {
    use rustix::process::{setrlimit, Resource, Rlimit};
    let set = |resource, soft: u64, hard: u64| {
        setrlimit(resource, Rlimit { current: Some(soft), maximum: Some(hard) }).map_err(std::io::Error::from)
    };
    set(Resource::As, limits.memory, limits.memory)?;
    set(Resource::Cpu, limits.cpu_seconds, limits.cpu_seconds + 5)?;
    set(Resource::Fsize, 0, 0)?;
    set(Resource::Core, 0, 0)?;
    rustix::thread::set_no_new_privs(true)?;
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    // The parent may have died before the death signal was armed: then this child is an orphan.
    if rustix::process::getppid().map(|p| p.as_raw_nonzero().get()) != Some(limits.parent) {
        return Err(std::io::Error::other("the registry that started the sandbox is gone"));
    }
    // The kernel's first choice if the host or the container runs out of memory. Best effort:
    // a kernel without /proc is no reason not to scan.
    let _ = std::fs::write("/proc/self/oom_score_adj", b"1000");
    Ok(())
}

impl Sandbox {
    /// Runs one scan: `plan`, the manifest, then `blobs` in order.
    pub async fn run(
        &self,
        plan: &Plan,
        manifest: &[u8],
        mut blobs: Blobs<'_>,
    ) -> Result<Result<Outcome, ScanError>, SandboxError> {
        let timeout = self.limits.timeout;
        let (memory, cpu) = (self.limits.memory, timeout.as_secs().max(1));
        let mut command = tokio::process::Command::new(&self.program);
        command
            .arg("scan-sandbox")
            .args(["--memory", &memory.to_string(), "--cpu", &cpu.to_string()])
            .args(["--parent", &std::process::id().to_string()])
            .env_clear()
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| SandboxError::Failed(format!("cannot start {}: {e}", self.program.display())))?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let plan_line = serde_json::to_string(plan).map_err(|e| SandboxError::Failed(e.to_string()))?;
        let manifest_item = Item { role: Role::Manifest, digest: String::new(), size: manifest.len() as u64 };
        let feed = async move {
            let line = |value: &Item| serde_json::to_string(value).map(|s| s + "\n");
            stdin.write_all(format!("{plan_line}\n").as_bytes()).await?;
            stdin.write_all(line(&manifest_item)?.as_bytes()).await?;
            stdin.write_all(manifest).await?;
            while let Some(mut blob) = blobs.try_next().await? {
                stdin.write_all(line(&blob.item)?.as_bytes()).await?;
                let mut sent = 0u64;
                while let Some(chunk) = blob.body.try_next().await? {
                    sent += chunk.len() as u64;
                    if sent > blob.item.size {
                        return Err(std::io::Error::other(format!(
                            "blob {} is longer than recorded",
                            blob.item.digest
                        )));
                    }
                    stdin.write_all(&chunk).await?;
                }
                if sent != blob.item.size {
                    return Err(std::io::Error::other(format!("blob {} is shorter than recorded", blob.item.digest)));
                }
            }
            stdin.shutdown().await?;
            Ok::<_, std::io::Error>(())
        };
        let collect = async {
            let mut report = Vec::new();
            let mut errors = Vec::new();
            let (mut out, mut err) = ((&mut stdout).take(MAX_REPORT), (&mut stderr).take(16 << 10));
            let (a, b) = tokio::join!(out.read_to_end(&mut report), err.read_to_end(&mut errors));
            a?;
            b?;
            Ok::<_, std::io::Error>((report, errors))
        };
        let run = async {
            // The child may stop reading early (it refused the content): a broken pipe then is
            // not the failure, its report tells what happened.
            let (fed, collected) = tokio::join!(feed, collect);
            let status = child.wait().await;
            (fed, collected, status)
        };
        let (fed, collected, status) = match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            Err(_) => {
                let _ = child.start_kill();
                return Err(SandboxError::Limit(ScanError::limit(
                    "the scan's running time in seconds",
                    timeout.as_secs(),
                    "timeout",
                )));
            }
        };
        let (report, errors) = collected.map_err(|e| SandboxError::Failed(format!("reading the sandbox: {e}")))?;
        let status = status.map_err(|e| SandboxError::Failed(format!("waiting for the sandbox: {e}")))?;
        let errors = String::from_utf8_lossy(&errors);
        if status.success() {
            if let Ok(report) = serde_json::from_slice::<Report>(&report) {
                return Ok(match report {
                    Report::Done(outcome) => Ok(outcome),
                    Report::Refused(e) => Err(e),
                });
            }
        }
        if let Err(e) = fed {
            // A blob that could not be read from storage: the attempt failed, not the content.
            // (A broken pipe is the sandbox stopping early; its status says why.)
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(SandboxError::Input(format!("sending blobs to the sandbox: {e}")));
            }
        }
        use std::os::unix::process::ExitStatusExt;
        if errors.contains("memory allocation") {
            return Err(SandboxError::Limit(ScanError::limit("the memory the scan needed", memory, "memory")));
        }
        if status.signal() == Some(rustix::process::Signal::XCPU.as_raw()) {
            return Err(SandboxError::Limit(ScanError::limit("the scan's CPU time in seconds", cpu, "timeout")));
        }
        let last = errors.lines().last().unwrap_or("").chars().take(300).collect::<String>();
        Err(SandboxError::Failed(format!("the sandbox ended with {status} {last:?}")))
    }
}
