//! Online garbage collection and the consistency check (`fsck`).
//!
//! **The invariant.** A manifest PUT either succeeds with every blob it names readable, or fails
//! with `MANIFEST_BLOB_UNKNOWN`: never a 201 and a 404 later. And no row says a blob is live
//! whose bytes are gone. The database is the source of truth; the collector runs while pushes go
//! on, on every replica's database and store, and at most one runs at a time (the `gc` lease,
//! renewed between batches and retaken by another replica when its holder dies).
//!
//! **How it holds.** Every step that removes something re-checks, on the locked row, the
//! condition it was chosen for:
//! 0. *Retention.* Each namespace's rules remove the tags and manifests they no longer keep
//!    (`retention` states how, and how a racing push is never undone); their links then age like
//!    any other.
//! 1. *Links.* A repository's link to a blob goes when no manifest of that repository references
//!    it and nobody has touched it for `gc.grace` (created, mounted, uploaded again, or answered a
//!    HEAD). A manifest PUT share-locks the links it names, so either it commits first (and the
//!    link is referenced, so it stays) or the link is gone first (and the PUT fails with
//!    `MANIFEST_BLOB_UNKNOWN`).
//! 2. *Blobs.* A blob with no link left and untouched for `gc.grace` is marked `sweeping`, its
//!    bytes are deleted, then its row. A sweeping blob cannot be linked (a mount falls back to an
//!    upload, a finishing upload is refused and pushed again), and an upload of the same bytes
//!    touches the blob's row before it publishes them and waits while the blob is sweeping.
//! 3. *Orphans.* Bytes without a row (a crash between publishing and recording them) that are
//!    older than `gc.grace` get a `sweeping` row first, unless a row appeared meanwhile; then they
//!    go like any blob.
//! 4. *Uploads.* Sessions idle past `uploads.expiry` go with their parts.
//! 5. *Usage.* Each namespace's usage deltas are folded into one row (`metadata::lifecycle`).
//!
//! A `kill -9` anywhere leaves rows marked `sweeping` (the next run finishes them first) or bytes
//! without a row (the next run's orphans), never a live row without bytes.
//!
//! The grace period is what makes the race between "the client learns a blob exists" and "the
//! collector removes it" harmless in practice: a client that skipped an upload because of a HEAD
//! has `gc.grace` to send its manifest. Past that, the PUT fails cleanly and the client pushes
//! again; it never succeeds over a missing blob.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::registry::storage_err;
use super::{Digest, Error, Registry, Result};
use crate::metadata::gc::{BlobRow, Link};
use crate::model::digest::DigestHasher;

/// Rows handled per database transaction.
const BATCH: u32 = 1000;
/// Blob deletions in flight at once.
const DELETES_IN_FLIGHT: usize = 16;
/// While pushes arrive, a collection pauses this many times as long as its last batch took, so
/// pushes keep about four fifths of the database writer and the disk (measured by
/// `portcullis-bench gc`); without pushes it runs flat out.
const YIELD_TO_PUSHES: u32 = 4;
/// The longest an upload waits for the collector to finish sweeping the blob it is completing.
const SWEEP_WAIT: Duration = Duration::from_secs(30);

/// The collection's pace: after each batch it renews its lease and, if pushes arrived while the
/// batch ran, pauses [`YIELD_TO_PUSHES`] times as long as the batch took.
struct Pace {
    batch_started: Instant,
    pushes_seen: u64,
}

impl Pace {
    fn new(r: &Registry) -> Self {
        Pace { batch_started: Instant::now(), pushes_seen: r.pushes.load(std::sync::atomic::Ordering::Relaxed) }
    }

    async fn between_batches(&mut self, r: &Registry, holder: &str) -> Result<()> {
        r.renew(holder).await?;
        let pushes = r.pushes.load(std::sync::atomic::Ordering::Relaxed);
        if pushes != self.pushes_seen {
            tokio::time::sleep(self.batch_started.elapsed() * YIELD_TO_PUSHES).await;
        }
        *self = Pace::new(r);
        Ok(())
    }
}

/// What a collection did (or, in a dry run, would do).
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct GcReport {
    pub dry_run: bool,
    /// Repository links to blobs that no manifest referenced.
    pub links_deleted: u64,
    /// Blobs whose bytes were deleted, orphans included.
    pub blobs_deleted: u64,
    pub bytes_freed: u64,
    /// Of `blobs_deleted`: bytes that had no row (a crash's leftovers).
    pub orphans_deleted: u64,
    /// Manifests removed (by retention; a DELETE removes its manifest at once).
    pub manifests_deleted: u64,
    /// Upload sessions past their expiry, and upload objects no session owned.
    pub uploads_expired: u64,
    /// Blobs an interrupted collection had left sweeping, finished first.
    pub resumed: u64,
    pub mark_ms: u64,
    pub sweep_ms: u64,
}

/// What a consistency check found.
#[derive(Debug, Default, Clone, Serialize, PartialEq, Eq)]
pub struct FsckReport {
    /// Recorded blobs whose bytes are missing from the store.
    pub missing: Vec<String>,
    /// Bytes in the store that no row records.
    pub orphaned: Vec<String>,
    /// Recorded blobs whose bytes do not hash to their digest or have the wrong size (with `verify`).
    pub corrupt: Vec<String>,
    pub blobs_checked: u64,
    pub bytes_verified: u64,
    /// Image verdicts set to `error` because a blob they use is missing or corrupt.
    pub images_failed: u64,
    pub verified: bool,
    /// Namespaces whose recorded usage differed from their links (recomputed and fixed).
    pub usage_drift: Vec<crate::metadata::lifecycle::UsageDrift>,
}

impl Registry {
    /// The moment before which something untouched may be collected.
    fn gc_cutoff(&self) -> i64 {
        self.clock.now() - self.limits.gc_grace.as_secs() as i64
    }

    /// Touched this recently, a blob or link needs no new touch: a collection cannot take it for
    /// another three quarters of the grace period.
    pub(super) fn gc_fresh_after(&self) -> i64 {
        self.clock.now() - (self.limits.gc_grace.as_secs() / 4) as i64
    }

    /// Runs one collection as `holder`, unless another holds the `gc` lease
    /// ([`Error::Unavailable`], which names it).
    pub async fn collect_garbage(&self, holder: &str, dry_run: bool) -> Result<GcReport> {
        if dry_run {
            metrics::counter!(crate::model::metrics::GC_RUNS, "outcome" => "dry_run").increment(1);
            return self.gc_dry_run().await;
        }
        if !self.take_gc_lease(holder).await? {
            return Err(Error::Busy("a garbage collection is already running; try again later".into()));
        }
        let result = self.gc_run(holder).await;
        let _ = self.meta.release_lease("gc", holder).await;
        result
    }

    /// One collection for the schedule: `None` when another replica holds the lease.
    pub async fn collect_garbage_scheduled(&self, holder: &str) -> Result<Option<GcReport>> {
        if !self.take_gc_lease(holder).await? {
            return Ok(None);
        }
        let result = self.gc_run(holder).await;
        let _ = self.meta.release_lease("gc", holder).await;
        result.map(Some)
    }

    async fn take_gc_lease(&self, holder: &str) -> Result<bool> {
        let now = self.clock.now();
        self.meta.take_lease("gc", holder, now, now + self.limits.gc_lease.as_secs() as i64).await
    }

    /// A collection, counted in the metrics.
    async fn gc_run(&self, holder: &str) -> Result<GcReport> {
        use crate::model::metrics as m;
        let started = Instant::now();
        let result = self.gc_collect(holder).await;
        metrics::histogram!(m::GC_DURATION).record(started.elapsed().as_secs_f64());
        match &result {
            Ok(r) => {
                metrics::counter!(m::GC_RUNS, "outcome" => "ok").increment(1);
                metrics::counter!(m::GC_FREED_BYTES).increment(r.bytes_freed);
                metrics::counter!(m::GC_BLOBS).increment(r.blobs_deleted);
                metrics::counter!(m::GC_MANIFESTS).increment(r.manifests_deleted);
            }
            Err(_) => metrics::counter!(m::GC_RUNS, "outcome" => "error").increment(1),
        }
        result
    }

    async fn gc_collect(&self, holder: &str) -> Result<GcReport> {
        let mut report = GcReport::default();
        let started = Instant::now();
        // An interrupted run's sweeps first: their rows block uploads of the same bytes.
        let leftover = self.meta.sweeping_blobs().await?;
        // Retention before marking: what it removes is collected in this same run once its
        // links are older than the grace period.
        report.manifests_deleted = self.apply_all_retention(Some(holder)).await?;
        report.resumed = leftover.len() as u64;
        self.sweep(&leftover, &mut report).await?;

        let cutoff = self.gc_cutoff();
        let mut pace = Pace::new(self);
        let mut after: Option<Link> = None;
        loop {
            let links = self.meta.stale_links(cutoff, after.as_ref(), BATCH).await?;
            let Some(last) = links.last().cloned() else { break };
            report.links_deleted += self.meta.remove_stale_links(&links, cutoff).await?;
            after = Some(last);
            pace.between_batches(self, holder).await?;
        }
        let mut marked = Vec::new();
        let mut after: Option<Digest> = None;
        loop {
            let candidates = self.meta.collectable_blobs(cutoff, after.as_ref(), BATCH).await?;
            let Some((last, _)) = candidates.last().cloned() else { break };
            let digests: Vec<Digest> = candidates.iter().map(|(d, _)| d.clone()).collect();
            let now_sweeping: HashSet<Digest> = self.meta.begin_sweep(&digests, cutoff).await?.into_iter().collect();
            marked.extend(candidates.into_iter().filter(|(d, _)| now_sweeping.contains(d)));
            after = Some(last);
            pace.between_batches(self, holder).await?;
        }
        report.mark_ms = started.elapsed().as_millis() as u64;

        let sweep_started = Instant::now();
        for batch in marked.chunks(BATCH as usize) {
            self.sweep(batch, &mut report).await?;
            pace.between_batches(self, holder).await?;
        }
        let orphans = self.orphans().await?;
        let now = self.clock.now();
        for batch in orphans.chunks(BATCH as usize) {
            let now_sweeping: HashSet<Digest> = self.meta.begin_orphan_sweep(batch, now).await?.into_iter().collect();
            let claimed: Vec<(Digest, u64)> = batch.iter().filter(|(d, _)| now_sweeping.contains(d)).cloned().collect();
            report.orphans_deleted += claimed.len() as u64;
            self.sweep(&claimed, &mut report).await?;
            pace.between_batches(self, holder).await?;
        }
        report.uploads_expired = self.expire_uploads().await? as u64;
        self.meta.fold_usage().await?;
        report.sweep_ms = sweep_started.elapsed().as_millis() as u64;
        tracing::info!(
            target: "audit",
            links = report.links_deleted,
            blobs = report.blobs_deleted,
            bytes = report.bytes_freed,
            orphans = report.orphans_deleted,
            uploads = report.uploads_expired,
            mark_ms = report.mark_ms,
            sweep_ms = report.sweep_ms,
            "garbage collection finished"
        );
        Ok(report)
    }

    /// Counts a push, which a running collection yields to.
    pub(super) fn note_push(&self) {
        self.pushes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub(super) async fn renew(&self, holder: &str) -> Result<()> {
        if self.take_gc_lease(holder).await? {
            Ok(())
        } else {
            Err(Error::Busy("the garbage collection lost its lease to another replica".into()))
        }
    }

    /// Deletes the bytes of blobs marked sweeping, then their rows.
    async fn sweep(&self, blobs: &[(Digest, u64)], report: &mut GcReport) -> Result<()> {
        if blobs.is_empty() {
            return Ok(());
        }
        // Owned digests and store: a future that borrows from its stream is not `Send` for every
        // lifetime, and the scheduled collection runs on a spawned task.
        let deletions: Vec<_> = blobs
            .iter()
            .map(|(digest, _)| {
                let (store, digest) = (self.blobs.clone(), digest.clone());
                async move { store.delete_blob(&digest).await.map_err(storage_err) }
            })
            .collect();
        futures::stream::iter(deletions).buffer_unordered(DELETES_IN_FLIGHT).try_collect::<Vec<()>>().await?;
        let digests: Vec<Digest> = blobs.iter().map(|(d, _)| d.clone()).collect();
        self.meta.end_sweep(&digests).await?;
        for (digest, size) in blobs {
            tracing::info!(target: "audit", %digest, size, "blob collected");
        }
        report.blobs_deleted += blobs.len() as u64;
        report.bytes_freed += blobs.iter().map(|(_, s)| s).sum::<u64>();
        Ok(())
    }

    /// Bytes in the store with no row, written longer than the grace period ago. Their times come
    /// from the store's clock (the file system, the S3 service), so they are compared with the
    /// wall clock, never with a clock a test has moved.
    async fn orphans(&self) -> Result<Vec<(Digest, u64)>> {
        let cutoff = crate::model::now() - self.limits.gc_grace.as_secs() as i64;
        let recorded: HashSet<Digest> = self.meta.recorded_blobs().await?.into_iter().map(|(d, ..)| d).collect();
        let stored: Vec<_> = self.blobs.list_blobs().try_collect().await.map_err(storage_err)?;
        Ok(stored
            .into_iter()
            .filter(|b| b.modified < cutoff && !recorded.contains(&b.digest))
            .map(|b| (b.digest, b.size))
            .collect())
    }

    async fn gc_dry_run(&self) -> Result<GcReport> {
        let started = Instant::now();
        let cutoff = self.gc_cutoff();
        let mut report = GcReport { dry_run: true, ..Default::default() };
        report.manifests_deleted = self.apply_all_retention(None).await?;
        let mut after: Option<Link> = None;
        loop {
            let links = self.meta.stale_links(cutoff, after.as_ref(), BATCH).await?;
            let Some(last) = links.last().cloned() else { break };
            report.links_deleted += links.len() as u64;
            after = Some(last);
        }
        let mut after: Option<Digest> = None;
        loop {
            let candidates = self.meta.collectable_blobs(cutoff, after.as_ref(), BATCH).await?;
            let Some((last, _)) = candidates.last().cloned() else { break };
            report.blobs_deleted += candidates.len() as u64;
            report.bytes_freed += candidates.iter().map(|(_, s)| s).sum::<u64>();
            after = Some(last);
        }
        report.mark_ms = started.elapsed().as_millis() as u64;
        let sweep_started = Instant::now();
        let orphans = self.orphans().await?;
        report.orphans_deleted = orphans.len() as u64;
        report.blobs_deleted += orphans.len() as u64;
        report.bytes_freed += orphans.iter().map(|(_, s)| s).sum::<u64>();
        report.uploads_expired = self.stale_upload_count().await? as u64;
        report.sweep_ms = sweep_started.elapsed().as_millis() as u64;
        Ok(report)
    }

    /// Before an upload publishes the bytes of `digest`: touches the blob's row so that no
    /// collection takes it, and waits while one is sweeping it.
    pub(super) async fn hold_for_upload(&self, digest: &Digest) -> Result<()> {
        self.note_push();
        let deadline = Instant::now() + SWEEP_WAIT;
        loop {
            match self.meta.touch_blob(digest, self.clock.now(), self.gc_fresh_after()).await? {
                BlobRow::Absent | BlobRow::Live => return Ok(()),
                BlobRow::Sweeping if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                BlobRow::Sweeping => {
                    return Err(Error::Busy(format!(
                        "blob {digest} is being garbage-collected; push it again in a moment"
                    )))
                }
            }
        }
    }

    /// Compares the database with the blob store; with `verify`, re-hashes every recorded blob.
    /// Images that use a missing or corrupt blob get an `error` verdict, so they are not served
    /// as if intact.
    pub async fn fsck(&self, verify: bool) -> Result<FsckReport> {
        let mut report = FsckReport { verified: verify, ..Default::default() };
        // Rows before the listing: bytes are published before their row, so every row read here
        // has bytes unless a collection swept them (re-checked below).
        let recorded = self.meta.recorded_blobs().await?;
        let stored: Vec<_> = self.blobs.list_blobs().try_collect().await.map_err(storage_err)?;
        let stored_sizes: std::collections::HashMap<&Digest, u64> =
            stored.iter().map(|b| (&b.digest, b.size)).collect();
        let mut missing = Vec::new();
        let mut corrupt = Vec::new();
        // A sweeping blob's bytes are on their way out: nothing to check.
        for (digest, size, _) in recorded.iter().filter(|(.., sweeping)| !sweeping) {
            report.blobs_checked += 1;
            match stored_sizes.get(digest) {
                None => missing.push(digest.clone()),
                Some(&stored) if stored != *size => corrupt.push(digest.clone()),
                Some(_) if verify && !self.hashes_to(digest, &mut report.bytes_verified).await? => {
                    corrupt.push(digest.clone())
                }
                _ => {}
            }
        }
        // Re-check what looked missing: a collection may have swept it since the rows were read.
        let now_recorded: std::collections::HashMap<Digest, bool> =
            self.meta.recorded_blobs().await?.into_iter().map(|(d, _, sweeping)| (d, sweeping)).collect();
        missing.retain(|d| now_recorded.get(d) == Some(&false));
        let recorded_before: HashSet<&Digest> = recorded.iter().map(|(d, ..)| d).collect();
        report.orphaned = stored
            .iter()
            .filter(|b| !recorded_before.contains(&b.digest) && !now_recorded.contains_key(&b.digest))
            .map(|b| b.digest.to_string())
            .collect();
        let now = self.clock.now();
        for (digest, what) in missing
            .iter()
            .map(|d| (d, "missing from the blob store"))
            .chain(corrupt.iter().map(|d| (d, "corrupt in the blob store (its bytes no longer match its digest)")))
        {
            tracing::error!(target: "audit", %digest, problem = what, "fsck: a recorded blob is damaged");
            let summary = format!("blob {digest} is {what}; push the image again");
            report.images_failed += self.meta.fail_images_using(digest, &summary, now).await?;
        }
        report.missing = missing.iter().map(Digest::to_string).collect();
        report.corrupt = corrupt.iter().map(Digest::to_string).collect();
        report.usage_drift = self.meta.recount_usage().await?;
        for d in &report.usage_drift {
            tracing::warn!(namespace = ?d.namespace, recorded = d.recorded_bytes, actual = d.actual_bytes,
                "fsck: a namespace's recorded usage was wrong; recomputed");
        }
        Ok(report)
    }

    /// Whether the stored bytes of `digest` hash to it.
    async fn hashes_to(&self, digest: &Digest, bytes: &mut u64) -> Result<bool> {
        let mut stream = match self.blobs.read(digest, None).await {
            Ok(s) => s,
            Err(crate::storage::StorageError::NotFound) => return Ok(false),
            Err(e) => return Err(storage_err(e)),
        };
        let mut hasher = DigestHasher::new(digest.algorithm());
        while let Some(chunk) = stream.try_next().await.map_err(|e| Error::Unavailable(format!("storage: {e}")))? {
            *bytes += chunk.len() as u64;
            hasher.update(&chunk);
        }
        Ok(&hasher.finish() == digest)
    }
}
