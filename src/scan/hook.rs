//! The external scanner hook: the image is written as an OCI image layout in a private directory
//! (mode 0700, under the data directory's `scan-work/`, removed afterwards) and the configured
//! argv runs (no shell) with a clean environment, in its own process group, with a timeout, and a
//! JSON request on stdin. Its working directory is the layout's parent; it is given nothing else.
//! It runs with `PR_SET_NO_NEW_PRIVS`; with `scan.hook_user = "uid:gid"` (the registry running as
//! root) it runs as that user, without supplementary groups, and the layout is handed to it,
//! so it cannot read the registry's data directory or keys.
//!
//! Exit 0 passes, 1 fails; any other exit, a signal or the timeout is an error (the job is retried
//! and the image stays blocked). Optional JSON findings on stdout are kept; anything else there is
//! ignored.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use futures::TryStreamExt;
use oci_spec::image::ANNOTATION_REF_NAME;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Finding, Rule, Severity};
use crate::domain::{index, manifest, Digest, Reader, Registry, RepoName};

/// The most of the hook's stdout that is read.
const MAX_STDOUT: u64 = 1 << 20;

/// What the hook decided.
#[derive(Debug)]
pub enum HookOutcome {
    Passed(Vec<Finding>),
    Failed(Vec<Finding>),
}

#[derive(Deserialize)]
struct HookReport {
    #[serde(default)]
    findings: Vec<HookFinding>,
}

#[derive(Deserialize)]
struct HookFinding {
    #[serde(default, alias = "title")]
    message: Option<String>,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default)]
    path: Option<String>,
}

async fn copy_blob(registry: &Registry, repo: &RepoName, digest: &Digest, dir: &Path) -> Result<(), String> {
    let mut body = registry.read_blob(Reader::Unrestricted, repo, digest, None).await.map_err(|e| e.to_string())?.body;
    let mut file = tokio::fs::File::create(dir.join(digest.hex())).await.map_err(|e| e.to_string())?;
    while let Some(chunk) = body.try_next().await.map_err(|e| e.to_string())? {
        file.write_all(&chunk).await.map_err(|e| e.to_string())?;
    }
    file.flush().await.map_err(|e| e.to_string())
}

/// Writes `repo@digest` as an OCI image layout under `root`.
async fn write_layout(
    registry: &Registry,
    repo: &RepoName,
    manifest: &crate::metadata::StoredManifest,
    tag: &str,
    root: &Path,
) -> Result<(), String> {
    let blobs = root.join("blobs").join(manifest.digest.algorithm().as_str());
    tokio::fs::create_dir_all(&blobs).await.map_err(|e| e.to_string())?;
    tokio::fs::write(blobs.join(manifest.digest.hex()), &manifest.content).await.map_err(|e| e.to_string())?;
    let parsed = manifest::parse(&manifest.content, Some(&manifest.media_type)).map_err(|e| e.to_string())?;
    // Config and layers, foreign layers excepted (they are not stored here).
    for d in &parsed.blobs {
        let dir = root.join("blobs").join(d.algorithm().as_str());
        tokio::fs::create_dir_all(&dir).await.map_err(|e| e.to_string())?;
        copy_blob(registry, repo, d, &dir).await?;
    }
    let mut descriptor = index::descriptor(&manifest.media_type, &manifest.digest, manifest.content.len() as u64)
        .map_err(|e| e.to_string())?;
    if !tag.is_empty() {
        descriptor.set_annotations(Some([(ANNOTATION_REF_NAME.to_owned(), tag.to_owned())].into()));
    }
    let index = index::image_index(vec![descriptor]).map_err(|e| e.to_string())?;
    let marker = index::layout_marker().map_err(|e| e.to_string())?;
    tokio::fs::write(root.join("index.json"), serde_json::to_vec(&index).map_err(|e| e.to_string())?)
        .await
        .map_err(|e| e.to_string())?;
    tokio::fs::write(root.join("oci-layout"), serde_json::to_vec(&marker).map_err(|e| e.to_string())?)
        .await
        .map_err(|e| e.to_string())
}

fn parse_findings(stdout: &[u8]) -> Vec<Finding> {
    let Ok(report) = serde_json::from_slice::<HookReport>(stdout) else { return Vec::new() };
    report
        .findings
        .into_iter()
        .take(1000)
        .map(|f| Finding {
            rule: Rule::HookFinding,
            severity: f.severity.unwrap_or(Severity::Medium),
            message: f
                .message
                .unwrap_or_else(|| "finding reported by the scan hook".into())
                .chars()
                .take(500)
                .collect(),
            path: f.path,
            layer: None,
        })
        .collect()
}

/// Creates `dir` (and its parents) with `mode` (0700, or 0711 to let the hook's user through).
fn private_dir(dir: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(mode).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

pub use crate::model::HookUser;

/// Gives the layout to the hook's user (the registry must be root to do so).
fn hand_over(dir: &Path, user: HookUser) -> std::io::Result<()> {
    std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid))?;
    if dir.is_dir() {
        for entry in std::fs::read_dir(dir)? {
            hand_over(&entry?.path(), user)?;
        }
    }
    Ok(())
}

/// How the hook runs.
#[derive(Debug, Clone, Copy)]
pub struct Hook<'a> {
    pub argv: &'a [String],
    pub timeout: Duration,
    pub user: Option<HookUser>,
    /// Where its layouts are written (under the data directory).
    pub work_dir: &'a Path,
}

/// Runs the hook on `repo@digest`; `Err` is an error outcome (retry, then `error`).
pub async fn run(
    registry: &Registry,
    hook: Hook<'_>,
    repo: &RepoName,
    digest: &Digest,
    tag: &str,
) -> Result<HookOutcome, String> {
    let Hook { argv, timeout, user, work_dir } = hook;
    let manifest = registry
        .read_manifest(Reader::Unrestricted, repo, &crate::domain::Reference::Digest(digest.clone()))
        .await
        .map_err(|e| e.to_string())?;
    // The hook's user must pass through the work directory to its layout (and see nothing else).
    let mode = if user.is_some() { 0o711 } else { 0o700 };
    private_dir(work_dir, mode).map_err(|e| format!("creating {}: {e}", work_dir.display()))?;
    // tempfile creates the directory 0700.
    let dir = tempfile::Builder::new().prefix("hook-").tempdir_in(work_dir).map_err(|e| e.to_string())?;
    let layout = dir.path().join("layout");
    write_layout(registry, repo, &manifest, tag, &layout).await?;
    if let Some(user) = user {
        hand_over(dir.path(), user).map_err(|e| format!("giving the layout to uid {}: {e}", user.uid))?;
    }
    let request = serde_json::json!({"repository": repo.as_str(), "digest": digest.to_string(), "tag": tag,
        "media_type": manifest.media_type, "layout": layout.display().to_string()});
    let mut command = tokio::process::Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("PORTCULLIS_REPOSITORY", repo.as_str())
        .env("PORTCULLIS_DIGEST", digest.as_str())
        .env("PORTCULLIS_TAG", tag)
        .env("PORTCULLIS_LAYOUT", &layout)
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: the closure only makes system calls (prctl, setgroups, setgid, setuid) and touches
    // no memory of the parent's. Between fork and exec the child has one thread, so rustix's
    // per-thread credential calls change the whole process; each failure fails the spawn, so the
    // hook never runs with the registry's groups or ids.
    unsafe {
        command.pre_exec(move || {
            rustix::thread::set_no_new_privs(true)?;
            if let Some(u) = user {
                use rustix::process::{Gid, Uid};
                rustix::thread::set_thread_groups(&[])?;
                rustix::thread::set_thread_gid(Gid::from_raw(u.gid))?;
                rustix::thread::set_thread_uid(Uid::from_raw(u.uid))?;
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|e| format!("cannot start the scan hook {:?}: {e}", argv[0]))?;
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let work = async {
        // A hook that does not read its stdin must not make us fail.
        let _ = stdin.write_all(request.to_string().as_bytes()).await;
        drop(stdin);
        let mut out = Vec::new();
        let _ = (&mut stdout).take(MAX_STDOUT).read_to_end(&mut out).await;
        let status = child.wait().await;
        (status, out)
    };
    let (status, out) = match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => {
            // The whole process group goes, so a hook's children cannot outlive it.
            if let Some(pid) = pid {
                if let Some(group) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
                }
            }
            return Err(format!("the scan hook did not finish within {timeout:?}"));
        }
    };
    let status = status.map_err(|e| e.to_string())?;
    let findings = parse_findings(&out);
    match status.code() {
        Some(0) => Ok(HookOutcome::Passed(findings)),
        Some(1) => Ok(HookOutcome::Failed(findings)),
        Some(code) => Err(format!("the scan hook exited with status {code}")),
        None => Err("the scan hook was killed by a signal".into()),
    }
}
