//! Continuous scanning: when the vulnerability data changes (and every `scan.rescan_interval`),
//! every passed image is matched again against it, from the inventory its scan kept (packages
//! and distribution), without reading its layers again.
//!
//! Rules and invariants:
//! - Only `passed` images are matched again. A quarantined, failed or released image keeps its
//!   state: new data never releases an image, and an admin's release stands until it lapses.
//! - An image stays servable while it is matched again (it was passed, and a rescan that has not
//!   finished changes nothing); the verdict that quarantines it is one conditional write of its
//!   scan row, which the gate reads on every pull: from that commit on, neither its manifest nor
//!   its blobs are served. There is no cache of verdicts to go stale.
//! - The write lands only on the row that was read (still passed, same findings and time), so a
//!   verdict, release or rescan that landed meanwhile wins; the image is matched again later.
//!   The other way round, a full scan's passing verdict matched against older data than a
//!   rescan's quarantine is not recorded (`ScanStore::finish_scan`): the image is scanned again.
//! - Non-vulnerability findings are kept as the full scan found them; vulnerability findings are
//!   replaced by the new match, and the namespace's policy in force now decides.
//! - A quarantine by a rescan writes the audit record `scan.verdict` (outcome `quarantined`,
//!   which webhooks send as `scan.quarantined`) naming the vulnerabilities, and a new signed
//!   verdict. A rescan that still passes writes neither.
//! - Images scanned before inventories were kept get one full rescan (the layers read again)
//!   each time this replica loads a newer version.
//! - Work is bounded: one sweep at a time per replica, [`BATCH`] rows per query, oldest push
//!   first, at most `scan.rescan_workers` images matched and written at once. Replicas may sweep
//!   at once; the conditional write makes one of them win per image.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;

use super::packages::Inventory;
use super::worker::{attestation_context, summary, verdict_audit, ScanSettings};
use super::{Finding, Policy, Rule};
use crate::domain::Registry;
use crate::metadata::vulndb::{Rematch, RematchCursor};
use crate::model::metrics as m;
use crate::model::ScanState;

/// Rows read per query.
pub const BATCH: u32 = 256;

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    pub matched: u64,
    pub quarantined: u64,
    pub superseded: u64,
}

/// Before which time a passed image is matched again even without new data.
fn stale_before(registry: &Registry, settings: &ScanSettings) -> i64 {
    match settings.rescan_interval.as_secs() {
        0 => i64::MIN,
        every => registry.clock().now().saturating_sub(every as i64),
    }
}

/// Matches every due image once (against the data loaded now); returns what it did. An image
/// whose match failed (the database, say) is counted and left due for the next sweep.
pub async fn sweep(registry: &Registry, settings: &ScanSettings) -> crate::domain::Result<Sweep> {
    let osv = settings.vulndb.current();
    metrics::gauge!(m::VULNDB_VERSION).set(osv.version as f64);
    let stale_before = stale_before(registry, settings);
    let mut done = Sweep::default();
    let mut failed = 0u64;
    let mut policies: HashMap<String, Policy> = HashMap::new();
    let mut cursor: Option<RematchCursor> = None;
    loop {
        let due = registry.rematch_due(osv.version, stale_before, cursor.as_ref(), BATCH).await?;
        let Some(last) = due.last() else { break };
        cursor = Some((last.created_at, last.repository_id, last.digest.to_string()));
        for row in &due {
            let namespace = row.repo.namespace();
            if !policies.contains_key(namespace) {
                let policy = settings.for_namespace(registry, namespace).await?;
                policies.insert(namespace.to_owned(), policy);
            }
        }
        // (Built first: a stream that maps borrowed rows is not `Send` for every lifetime.)
        let pending: Vec<_> =
            due.iter().map(|row| rematch(registry, settings, &osv, &policies[row.repo.namespace()], row)).collect();
        let outcomes: Vec<crate::domain::Result<Outcome>> =
            futures::stream::iter(pending).buffer_unordered(settings.rescan_workers.max(1)).collect().await;
        for outcome in outcomes {
            done.matched += 1;
            match outcome {
                Ok(Outcome::Passed) => {}
                Ok(Outcome::Quarantined) => done.quarantined += 1,
                Ok(Outcome::Superseded) => done.superseded += 1,
                Err(e) => {
                    failed += 1;
                    if failed <= 3 {
                        tracing::warn!(error = %e, "matching an image again failed; it stays due");
                    }
                }
            }
        }
    }
    if failed > 0 {
        return Err(crate::domain::Error::Unavailable(format!("{failed} images could not be matched again")));
    }
    if done.matched > 0 {
        tracing::info!(
            version = osv.version,
            matched = done.matched,
            quarantined = done.quarantined,
            superseded = done.superseded,
            "images matched again against the vulnerability data"
        );
    }
    Ok(done)
}

/// What matching one image again came to.
enum Outcome {
    Passed,
    Quarantined,
    /// Another verdict landed first (or the inventory was unreadable and a full rescan was asked).
    Superseded,
}

/// Matches one image again and records the verdict.
async fn rematch(
    registry: &Registry,
    settings: &ScanSettings,
    osv: &super::osv::OsvDb,
    policy: &Policy,
    row: &Rematch,
) -> crate::domain::Result<Outcome> {
    let inventory: Inventory = match serde_json::from_str(&row.inventory) {
        Ok(i) => i,
        Err(e) => {
            // Written by this code; unreadable only if the database was edited. A full rescan
            // rebuilds it; meanwhile the row is marked matched, so sweeps do not ask again.
            tracing::warn!(repository = %row.repo, digest = %row.digest, error = %e, "unreadable inventory; rescanning in full");
            registry.request_rescan(&row.repo, &row.digest).await?;
            let (findings, summary) = (row.findings.as_deref().unwrap_or("[]"), row.summary.as_deref().unwrap_or(""));
            registry.record_rematch(row, ScanState::Passed, findings, summary, osv.version).await?;
            return Ok(Outcome::Superseded);
        }
    };
    let kept: Vec<Finding> = row
        .findings
        .as_deref()
        .and_then(|f| serde_json::from_str::<Vec<Finding>>(f).ok())
        .unwrap_or_default()
        .into_iter()
        .filter(|f| !matches!(f.rule, Rule::Vulnerability | Rule::VulnerabilityLow))
        .collect();
    let mut findings = kept;
    let matched =
        settings.match_vulnerabilities(osv, &inventory.packages, inventory.distro.as_ref(), registry.clock().now());
    findings.extend(matched);
    let assessment = policy.assess(findings.clone());
    let state = if assessment.passed() { ScanState::Passed } else { ScanState::Quarantined };
    let summary = summary(&assessment);
    let stored = serde_json::to_string(&findings).unwrap_or_else(|_| "[]".into());
    if !registry.record_rematch(row, state, &stored, &summary, osv.version).await? {
        metrics::counter!(m::RESCANS, "outcome" => "superseded").increment(1);
        return Ok(Outcome::Superseded);
    }
    metrics::counter!(m::RESCANS, "outcome" => state.as_str()).increment(1);
    if state != ScanState::Quarantined {
        return Ok(Outcome::Passed);
    }
    {
        // A finding's message starts with the record's id, then its CVE ids in parentheses.
        let blocking = assessment.blocking.iter().filter(|f| f.rule == Rule::Vulnerability);
        let ids: Vec<&str> = blocking.clone().filter_map(|f| f.message.split(' ').next()).collect();
        let mut cves: Vec<&str> =
            blocking.flat_map(|f| f.message.split([' ', '(', ')', ','])).filter(|w| super::osv::is_cve(w)).collect();
        cves.sort_unstable();
        cves.dedup();
        tracing::warn!(target: "audit", repository = %row.repo, digest = %row.digest, version = osv.version, "a passed image was quarantined by new vulnerability data");
        let record = verdict_audit(&row.repo, &row.digest, state.as_str(), &summary)
            .detail("rescan", true)
            .detail("vulnerability_data_version", osv.version)
            .detail("vulnerabilities", ids)
            .detail("cves", cves);
        registry.audit(record).await;
        registry.attest_logged(&row.repo, &row.digest, &attestation_context(policy, osv)).await;
    }
    Ok(Outcome::Quarantined)
}

/// Reloads and sweeps whenever data is imported on this replica, and otherwise looks every
/// `scan.poll`: at the version another replica imported, and whether an image is due (one
/// verdict matched against older data, or matched longer ago than `scan.rescan_interval`; two
/// index lookups). Runs until the task is dropped.
pub async fn run(registry: Registry, settings: ScanSettings) {
    let poll = settings.poll.max(Duration::from_millis(10));
    // The version whose arrival queued full rescans of images without an inventory.
    let mut queued_for = 0i64;
    let mut failures = 0u32;
    loop {
        let round = async {
            settings.vulndb.reload_if_changed(&registry).await?;
            let version = settings.vulndb.current().version;
            if version > queued_for {
                let queued = registry.queue_uninventoried().await?;
                if queued > 0 {
                    tracing::info!(
                        images = queued,
                        "full rescans queued for images scanned before inventories were kept"
                    );
                }
                queued_for = version;
            }
            if registry.rematch_pending(version, stale_before(&registry, &settings)).await? {
                sweep(&registry, &settings).await?;
            }
            Ok::<_, crate::domain::Error>(())
        };
        match round.await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, "rescan round");
                // Back off while the database is in trouble, up to a minute.
                tokio::time::sleep(Duration::from_secs(1u64 << failures.min(6))).await;
            }
        }
        registry.wait_for_vulndb(poll).await;
    }
}
