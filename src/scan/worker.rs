//! The scan workers: claim jobs (with a lease, so a crashed worker's job is picked up again; every
//! claim counts an attempt), send the manifest and its blobs through the [`sandbox`](super::sandbox),
//! match the packages against OSV, run the hook, and record the verdict.
//!
//! Rules:
//! - Several workers run at once (`scan.workers`); claims take namespaces in turn, so one
//!   namespace's flood of pushes cannot hold back another's verdicts.
//! - Each distinct blob of a manifest is sent once; a manifest listing more blobs than
//!   `limits.max_references` is not scanned (it could not have been pushed under that limit).
//! - How an attempt fails decides what happens next: content that cannot be read or hits a limit
//!   fails closed at once (`error`, no retry: it would fail again); a sandbox that died is retried
//!   and, after `max_attempts`, fails closed too; storage or database trouble is retried, and a
//!   rescan that keeps failing keeps the verdict it had.

use std::time::Duration;

use futures::StreamExt;

use super::content::{ListedLayer, Outcome};
use super::packages::Inventory;
use super::sandbox::{Blob, Item, Plan, Role, Sandbox, SandboxError, Subject};
use super::{Finding, Policy, Rule, Severity};
use crate::domain::manifest::{containerd_unpacks, parse};
use crate::domain::{Digest, Error, Reader, Reference, Registry};
use crate::metadata::scans::{GiveUp, NewVerdict, ScanJob, ScanState};
use crate::metadata::ManifestKind;
use crate::model::audit::NewAudit;
use crate::model::metrics as m;
use crate::model::RepoName;

/// What the workers run, from `[scan]` in the configuration.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    pub policy: Policy,
    /// The vulnerability data (reloaded when an import changes it), with the threshold and allowlist.
    pub vulndb: super::vulndb::VulnDb,
    pub vulnerability_threshold: Severity,
    pub allowlist: Vec<super::osv::Allow>,
    pub hook: Option<Vec<String>>,
    pub hook_timeout: Duration,
    /// The user the hook runs as, if not the registry's.
    pub hook_user: Option<super::hook::HookUser>,
    /// Where the hook's OCI layouts are written (a private directory under the data dir).
    pub work_dir: std::path::PathBuf,
    pub lease: Duration,
    pub max_attempts: u32,
    pub workers: usize,
    pub sandbox: Sandbox,
    pub max_references: usize,
    /// Whether the SBOM of each scanned image is attached to it (`scan.sbom`).
    pub sbom: bool,
    /// How often passed images are matched again even without new data (0: only on new data).
    pub rescan_interval: Duration,
    /// How often the rescanner looks for data another replica imported.
    pub poll: Duration,
    /// Images the rescanner matches and records at once.
    pub rescan_workers: usize,
}

impl ScanSettings {
    /// The vulnerability findings of `packages` in an image of `distro` under these settings
    /// (none while no data is loaded).
    pub(super) fn match_vulnerabilities(
        &self,
        osv: &super::osv::OsvDb,
        packages: &[super::packages::Package],
        distro: Option<&super::packages::Distro>,
        now: i64,
    ) -> Vec<Finding> {
        osv.scan(packages, distro, self.vulnerability_threshold, &self.allowlist, now)
    }

    /// These settings with the namespace's rule overrides on top of the global rules.
    pub(super) async fn for_namespace(&self, registry: &Registry, namespace: &str) -> crate::domain::Result<Policy> {
        let mut policy = self.policy.clone();
        if let Some(overrides) = registry.namespace_scan_rules(namespace).await? {
            match serde_json::from_str::<std::collections::BTreeMap<super::Rule, super::RuleAction>>(&overrides) {
                Ok(rules) => policy.rules.extend(rules),
                Err(e) => tracing::warn!(namespace, error = %e, "ignoring unreadable scan rule overrides"),
            }
        }
        Ok(policy)
    }
}

/// The one-line summary of an assessment, as the scan record and the audit log show it.
pub(super) fn summary(assessment: &super::Assessment) -> String {
    if assessment.passed() {
        format!("passed with {} warning(s)", assessment.warnings.len())
    } else {
        assessment.blocking.iter().take(3).map(|f| f.message.clone()).collect::<Vec<_>>().join("; ")
    }
}

/// Why an attempt produced no verdict.
#[derive(Debug)]
enum Failure {
    /// The content cannot be scanned: fail closed now.
    Content(String),
    /// The attempt failed; retry, and when attempts run out give up as said.
    Retry(String, GiveUp),
}

fn storage(e: Error) -> Failure {
    Failure::Retry(e.to_string(), GiveUp::KeepVerdict)
}

/// What a scan found: the findings and, for an image, its installed packages and distribution,
/// with the version of the vulnerability data they were matched against.
struct Scanned {
    findings: Vec<Finding>,
    inventory: Option<Inventory>,
    osv: std::sync::Arc<super::osv::OsvDb>,
}

/// Scans one manifest; `Ok(None)` when it was deleted meanwhile.
async fn scan_manifest(
    registry: &Registry,
    job: &ScanJob,
    settings: &ScanSettings,
) -> Result<Option<Scanned>, Failure> {
    // The newest data (another replica may have imported it: one small read), and one version
    // of it for the whole scan, recorded with the verdict.
    settings.vulndb.reload_if_changed(registry).await.map_err(storage)?;
    let osv = settings.vulndb.current();
    let reference = Reference::Digest(job.digest.clone());
    let manifest = match registry.read_manifest(Reader::Unrestricted, &job.repo, &reference).await {
        Ok(m) => m,
        Err(Error::ManifestUnknown | Error::NameUnknown) => return Ok(None),
        Err(e) => return Err(storage(e)),
    };
    let parsed = parse(&manifest.content, Some(&manifest.media_type))
        .map_err(|e| Failure::Content(format!("the manifest cannot be read: {e}")))?;
    let kind = match registry.manifest_kind(&job.repo, &parsed).await {
        Ok(kind) => kind,
        Err(e @ Error::ManifestBlobUnknown { .. }) => return Err(Failure::Content(e.to_string())),
        Err(e) => return Err(storage(e)),
    };
    if manifest.kind != Some(kind) {
        registry.record_kind(&job.repo, &job.digest, kind).await.map_err(storage)?;
    }
    if parsed.references() > settings.max_references {
        return Err(Failure::Content(format!(
            "the manifest references {} blobs or manifests, more than limits.max_references ({})",
            parsed.references(),
            settings.max_references
        )));
    }
    let (subject, layer_role) = match kind {
        ManifestKind::Image => (Subject::Image, Role::Layer),
        ManifestKind::Artifact => (Subject::Artifact, Role::Blob),
        ManifestKind::Index => (Subject::Index, Role::Blob),
    };
    if kind == ManifestKind::Image {
        if let Some(foreign) = parsed.layers.iter().find(|l| l.foreign) {
            return Err(Failure::Content(format!(
                "layer {} is a foreign layer: clients fetch it from its urls, so the registry cannot scan it",
                foreign.digest
            )));
        }
        if let Some(lazy) = parsed.layers.iter().find(|l| l.lazy_toc) {
            return Err(Failure::Content(format!(
                "layer {} carries a table of contents for partial pulls (zstd:chunked or eStargz): clients that \
                 use it build files from the table, which the scanner does not check against the tar; push it \
                 with gzip or plain zstd compression",
                lazy.digest
            )));
        }
    }
    // `blobs` are config first, then layers, foreign ones excepted (they are not stored here).
    let mut sends: Vec<(Role, Digest)> = Vec::new();
    for (i, d) in parsed.blobs.iter().enumerate() {
        let role = match (i, kind) {
            (0, ManifestKind::Image) => Role::Config,
            _ => layer_role,
        };
        if !sends.iter().any(|(_, s)| s == d) {
            sends.push((role, d.clone()));
        }
    }
    let layers = match kind {
        // Repeats matter for the final filesystem: the manifest's own list, not the deduplicated one.
        ManifestKind::Image => parsed
            .layers
            .iter()
            .map(|l| ListedLayer { digest: l.digest.to_string(), containerd: containerd_unpacks(&l.media_type) })
            .collect(),
        _ => Vec::new(),
    };
    let plan = Plan { subject, limits: settings.sandbox.limits.clone(), layers, podman: parsed.podman_pulls() };
    let repo = job.repo.clone();
    let stream = futures::stream::iter(sends)
        .then(move |(role, digest)| {
            let (registry, repo) = (registry.clone(), repo.clone());
            async move {
                let read = registry
                    .read_blob(Reader::Unrestricted, &repo, &digest, None)
                    .await
                    .map_err(|e| std::io::Error::other(format!("reading {digest}: {e}")))?;
                Ok(Blob { item: Item { role, digest: digest.to_string(), size: read.size }, body: read.body })
            }
        })
        .boxed();
    let outcome: Outcome = match settings.sandbox.run(&plan, &manifest.content, stream).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) | Err(SandboxError::Limit(e)) => return Err(Failure::Content(e.to_string())),
        Err(SandboxError::Input(e)) => return Err(Failure::Retry(e, GiveUp::KeepVerdict)),
        Err(SandboxError::Failed(e)) => return Err(Failure::Retry(e, GiveUp::Fail)),
    };
    let mut findings = outcome.findings;
    if kind == ManifestKind::Image {
        let total = parsed.declared_size();
        if total > settings.policy.max_image_bytes {
            findings.push(Finding {
                rule: Rule::ImageTooLarge,
                severity: Severity::Low,
                message: format!("the image is {total} bytes, above the limit of {}", settings.policy.max_image_bytes),
                path: None,
                layer: None,
            });
        }
        findings.extend(settings.match_vulnerabilities(
            &osv,
            &outcome.packages,
            outcome.distro.as_ref(),
            registry.clock().now(),
        ));
        if let Some(argv) = &settings.hook {
            findings.extend(run_hook(registry, job, argv, settings).await?);
        }
    }
    let inventory =
        (kind == ManifestKind::Image).then_some(Inventory { packages: outcome.packages, distro: outcome.distro });
    Ok(Some(Scanned { findings, inventory, osv }))
}

/// Attaches the SBOM of an image the scan read (logged on failure; the verdict stands).
async fn attach_sbom(registry: &Registry, job: &ScanJob, inventory: &Inventory) {
    let created = crate::model::rfc3339(registry.clock().now());
    let document = super::sbom::spdx(&job.repo, &job.digest, inventory, &created);
    let packages = &inventory.packages;
    match registry.attach_sbom(&job.repo, &job.digest, document, &super::sbom::fingerprint(inventory)).await {
        Ok(Some(sbom)) => {
            tracing::info!(repository = %job.repo, digest = %job.digest, %sbom, packages = packages.len(), "SBOM attached")
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(repository = %job.repo, digest = %job.digest, error = %e, "could not attach the SBOM"),
    }
}

async fn run_hook(
    registry: &Registry,
    job: &ScanJob,
    argv: &[String],
    settings: &ScanSettings,
) -> Result<Vec<Finding>, Failure> {
    let tag = registry.scan_tag(&job.repo, &job.digest).await.map_err(storage)?.unwrap_or_default();
    let hook = super::hook::Hook {
        argv,
        timeout: settings.hook_timeout,
        user: settings.hook_user,
        work_dir: &settings.work_dir,
    };
    let outcome = super::hook::run(registry, hook, &job.repo, &job.digest, &tag)
        .await
        .map_err(|e| Failure::Retry(e, GiveUp::KeepVerdict))?;
    Ok(match outcome {
        super::hook::HookOutcome::Passed(reported) => reported,
        super::hook::HookOutcome::Failed(mut reported) => {
            reported.insert(
                0,
                Finding {
                    rule: Rule::Hook,
                    severity: Severity::High,
                    message: "the external scan hook rejected the image".into(),
                    path: None,
                    layer: None,
                },
            );
            reported
        }
    })
}

/// The audit record of a verdict (the summary names rules and paths, never file contents).
async fn verdict_record(registry: &Registry, repo: &RepoName, digest: &Digest, verdict: &str, summary: &str) {
    registry.audit(verdict_audit(repo, digest, verdict, summary)).await;
}

/// The audit record of a verdict (which webhooks turn into `scan.*` events).
pub(super) fn verdict_audit(repo: &RepoName, digest: &Digest, verdict: &str, summary: &str) -> NewAudit {
    NewAudit::new("scan.verdict", format!("{repo}@{digest}"))
        .actor("system:scanner")
        .namespace(repo.namespace())
        .outcome(verdict)
        .detail("summary", summary)
}

/// What a signed verdict says of the scan besides its record: the rules in force (and their
/// digest, to compare policies at a glance) and the vulnerability data's version and size.
pub(super) fn attestation_context(policy: &Policy, db: &super::osv::OsvDb) -> crate::domain::attestations::ScanContext {
    let policy = serde_json::to_value(policy).unwrap_or_default();
    let digest = crate::model::Digest::of(crate::model::Algorithm::Sha256, policy.to_string().as_bytes());
    crate::domain::attestations::ScanContext {
        policy: Some(serde_json::json!({"rules": policy, "digest": digest.to_string()})),
        vulnerability_database: Some({
            match db.records {
                0 => serde_json::json!({"version": db.version, "records": 0, "note": "no vulnerability data imported"}),
                n => serde_json::json!({"version": db.version, "records": n}),
            }
        }),
    }
}

/// Runs one job if there is one; returns whether there was.
pub async fn run_once(registry: &Registry, settings: &ScanSettings) -> crate::domain::Result<bool> {
    let Some(job) = registry.claim_scan(settings.lease, settings.max_attempts).await? else { return Ok(false) };
    // The namespace's overrides, on top of the global rules.
    let mut settings = settings.clone();
    settings.policy = settings.for_namespace(registry, job.repo.namespace()).await?;
    let settings = &settings;
    let started = std::time::Instant::now();
    let finished = |verdict: &'static str| {
        metrics::histogram!(m::SCAN_DURATION).record(started.elapsed().as_secs_f64());
        metrics::counter!(m::SCAN_VERDICTS, "verdict" => verdict).increment(1);
    };
    match scan_manifest(registry, &job, settings).await {
        Ok(None) => {}
        Ok(Some(Scanned { findings, inventory, osv })) => {
            let assessment = settings.policy.assess(findings.clone());
            let state = if assessment.passed() { ScanState::Passed } else { ScanState::Quarantined };
            let summary = summary(&assessment);
            let findings = serde_json::to_string(&findings).unwrap_or_else(|_| "[]".into());
            let stored = inventory.as_ref().and_then(|i| serde_json::to_string(i).ok());
            finished(state.as_str());
            tracing::info!(target: "audit", repository = %job.repo, digest = %job.digest, verdict = state.as_str(), "scan finished");
            let verdict = NewVerdict {
                state,
                findings: &findings,
                summary: &summary,
                inventory: stored.as_deref(),
                matched_version: osv.version,
            };
            if !registry.finish_scan(&job, &verdict).await? {
                tracing::info!(repository = %job.repo, digest = %job.digest, "the verdict was matched against older vulnerability data than the image's; scanning again");
                return Ok(true);
            }
            verdict_record(registry, &job.repo, &job.digest, state.as_str(), &summary).await;
            registry.attest_logged(&job.repo, &job.digest, &attestation_context(&settings.policy, &osv)).await;
            if let Some(inventory) = inventory.filter(|_| settings.sbom) {
                attach_sbom(registry, &job, &inventory).await;
            }
        }
        Err(Failure::Content(reason)) => {
            finished("error");
            tracing::warn!(repository = %job.repo, digest = %job.digest, reason = ?reason, "scan failed closed");
            registry.fail_scan(&job, None, GiveUp::Fail, &format!("the scan failed closed: {reason}")).await?;
            verdict_record(registry, &job.repo, &job.digest, "error", "the scan failed closed").await;
            let context = attestation_context(&settings.policy, &settings.vulndb.current());
            registry.attest_logged(&job.repo, &job.digest, &context).await;
        }
        Err(Failure::Retry(reason, give_up)) => {
            finished("retry");
            let retry =
                (job.attempts < settings.max_attempts).then(|| registry.clock().now() + (1i64 << job.attempts.min(10)));
            tracing::warn!(repository = %job.repo, digest = %job.digest, attempt = job.attempts, reason = ?reason, "scan attempt failed");
            registry.fail_scan(&job, retry, give_up, &format!("scan failed: {reason}")).await?;
            // Attempts ran out and the image is now in `error`: that verdict is recorded and
            // signed like any other (a rescan that keeps its verdict changes nothing to attest).
            if retry.is_none() {
                let record = registry.scan_record(&job.repo, &job.digest).await?;
                if record.is_some_and(|r| r.state == ScanState::Error) {
                    verdict_record(registry, &job.repo, &job.digest, "error", "the scan gave up").await;
                    let context = attestation_context(&settings.policy, &settings.vulndb.current());
                    registry.attest_logged(&job.repo, &job.digest, &context).await;
                }
            }
        }
    }
    Ok(true)
}

/// One worker: works through scan jobs until the task is dropped.
async fn work(registry: Registry, settings: ScanSettings) {
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

/// Runs `settings.workers` workers until the task is dropped.
pub async fn run(registry: Registry, settings: ScanSettings) {
    let workers = (0..settings.workers.max(1)).map(|_| work(registry.clone(), settings.clone()));
    futures::future::join_all(workers).await;
}
