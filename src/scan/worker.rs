//! The scan worker: claims jobs (with a lease, so a crashed worker's job is picked up again),
//! streams the image's config and layers through the built-in checks, and records the verdict.
//! Failures are retried with back-off before the job ends in `error`.

use std::time::Duration;

use futures::TryStreamExt;
use serde::Deserialize;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::layers::ImageScan;
use super::{image_config, Finding, Policy};
use crate::domain::{now, Digest, Reference, Registry};
use crate::metadata::scans::{ScanJob, ScanState};

/// What the worker runs, from `[scan]` in the configuration.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    pub policy: Policy,
    /// OSV records for vulnerability matching, with the threshold and allowlist.
    pub osv: Option<std::sync::Arc<super::osv::OsvDb>>,
    pub vulnerability_threshold: super::Severity,
    pub allowlist: Vec<super::osv::Allow>,
    pub hook: Option<Vec<String>>,
    pub hook_timeout: Duration,
    pub lease: Duration,
    pub max_attempts: u32,
}

/// Largest config blob read into memory.
const MAX_CONFIG: u64 = 4 << 20;

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    size: u64,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

async fn scan_image(registry: &Registry, job: &ScanJob, settings: &ScanSettings) -> Result<Vec<Finding>, String> {
    let policy = &settings.policy;
    let manifest =
        registry.get_manifest(&job.repo, &Reference::Digest(job.digest.clone())).await.map_err(|e| e.to_string())?;
    let manifest: Manifest = serde_json::from_slice(&manifest.content).map_err(|e| format!("manifest: {e}"))?;
    let config_digest: Digest = manifest.config.digest.parse().map_err(|e: crate::domain::Error| e.to_string())?;
    if manifest.config.size > MAX_CONFIG {
        return Err("image config is larger than 4 MiB".into());
    }
    let mut config = Vec::new();
    let mut body = registry.read_blob(&job.repo, &config_digest, None).await.map_err(|e| e.to_string())?.body;
    while let Some(chunk) = body.try_next().await.map_err(|e| e.to_string())? {
        config.extend_from_slice(&chunk);
        if config.len() as u64 > MAX_CONFIG {
            return Err("image config is larger than 4 MiB".into());
        }
    }
    let mut findings = image_config::check(&config)?;
    let mut scan = ImageScan::new();
    scan.count_bytes(manifest.config.size);
    for layer in manifest.layers {
        let digest: Digest = layer.digest.parse().map_err(|e: crate::domain::Error| e.to_string())?;
        scan.count_bytes(layer.size);
        let body = registry.read_blob(&job.repo, &digest, None).await.map_err(|e| e.to_string())?.body;
        // The tar reader is synchronous: it runs on the blocking pool, pulling bytes as it goes.
        let reader = SyncIoBridge::new(StreamReader::new(body));
        let name = digest.to_string();
        scan = tokio::task::spawn_blocking(move || scan.scan_layer(&name, reader).map(|()| scan))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())?;
    }
    if let Some(osv) = &settings.osv {
        findings.extend(osv.scan(&scan.packages(), settings.vulnerability_threshold, &settings.allowlist, now()));
    }
    findings.extend(scan.finish(policy));
    Ok(findings)
}

/// Built-in checks, then the hook if one is configured.
async fn scan_all(registry: &Registry, job: &ScanJob, settings: &ScanSettings) -> Result<Vec<Finding>, String> {
    let mut findings = scan_image(registry, job, settings).await?;
    if let Some(argv) = &settings.hook {
        let tag = registry.scan_tag(&job.repo, &job.digest).await.map_err(|e| e.to_string())?.unwrap_or_default();
        match super::hook::run(registry, argv, settings.hook_timeout, &job.repo, &job.digest, &tag).await? {
            super::hook::HookOutcome::Passed(reported) => findings.extend(reported),
            super::hook::HookOutcome::Failed(reported) => {
                findings.push(Finding {
                    rule: super::Rule::Hook,
                    severity: super::Severity::High,
                    message: "the external scan hook rejected the image".into(),
                    path: None,
                    layer: None,
                });
                findings.extend(reported);
            }
        }
    }
    Ok(findings)
}

/// Runs one job if there is one; returns whether there was.
pub async fn run_once(registry: &Registry, settings: &ScanSettings) -> crate::domain::Result<bool> {
    let Some(job) = registry.claim_scan(settings.lease).await? else { return Ok(false) };
    // The namespace's overrides, on top of the global rules.
    let mut settings = settings.clone();
    if let Some(overrides) = registry.namespace_scan_rules(job.repo.namespace()).await? {
        match serde_json::from_str::<std::collections::BTreeMap<super::Rule, super::RuleAction>>(&overrides) {
            Ok(rules) => settings.policy.rules.extend(rules),
            Err(e) => {
                tracing::warn!(namespace = job.repo.namespace(), error = %e, "ignoring unreadable scan rule overrides")
            }
        }
    }
    let settings = &settings;
    let policy = &settings.policy;
    match scan_all(registry, &job, settings).await {
        Ok(findings) => {
            let assessment = policy.assess(findings.clone());
            let state = if assessment.passed() { ScanState::Passed } else { ScanState::Quarantined };
            let summary = if assessment.passed() {
                format!("passed with {} warning(s)", assessment.warnings.len())
            } else {
                assessment.blocking.iter().take(3).map(|f| f.message.clone()).collect::<Vec<_>>().join("; ")
            };
            let findings = serde_json::to_string(&findings).unwrap_or_else(|_| "[]".into());
            tracing::info!(target: "audit", repository = %job.repo, digest = %job.digest, verdict = state.as_str(), "scan finished");
            registry.finish_scan(&job, state, &findings, &summary).await?;
        }
        Err(e) => {
            let retry = (job.attempts < settings.max_attempts).then(|| now() + (1i64 << job.attempts.min(10)));
            tracing::warn!(repository = %job.repo, digest = %job.digest, attempt = job.attempts, error = %e, "scan failed");
            registry.fail_scan(&job, retry, &format!("scan failed: {e}")).await?;
        }
    }
    Ok(true)
}

/// Works through scan jobs until the task is dropped.
pub async fn run(registry: Registry, settings: ScanSettings) {
    loop {
        match run_once(&registry, &settings).await {
            Ok(true) => continue,
            Ok(false) => registry.wait_for_scan_work().await,
            Err(e) => {
                tracing::warn!(error = %e, "scan worker");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
