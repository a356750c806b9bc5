//! What the garbage collector (`domain::gc`) needs of the database.
//!
//! Rules (the protocol is the collector's; these are the database's half of it):
//! - A link nothing references is removed only after re-checking, on the locked row, that it is
//!   still older than the cutoff and still unreferenced in its repository; a manifest PUT locks
//!   the links it depends on, so the two are ordered.
//! - A blob's bytes are deleted only while its row says `sweeping`; a sweeping blob cannot be
//!   linked ([`BlobIndex::link_blob`](super::BlobIndex::link_blob) refuses it) and an upload of
//!   the same bytes waits until the row is gone.

use async_trait::async_trait;

use crate::model::{Digest, RepoName, Result};

/// A link from a repository to a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub repository_id: i64,
    pub repo: String,
    pub digest: Digest,
}

/// A blob's row as the upload path finds it before publishing bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobRow {
    Absent,
    Live,
    /// The collector is deleting its bytes.
    Sweeping,
}

#[async_trait]
pub trait GcStore: Send + Sync {
    /// Up to `limit` links untouched since `cutoff` that no manifest of their repository
    /// references, after `after` (paging).
    async fn stale_links(&self, cutoff: i64, after: Option<&Link>, limit: u32) -> Result<Vec<Link>>;
    /// Removes those of `links` that are still stale and unreferenced; returns how many went.
    async fn remove_stale_links(&self, links: &[Link], cutoff: i64) -> Result<u64>;
    /// Up to `limit` blobs untouched since `cutoff` with no link, or whose every link is stale and
    /// unreferenced (what a collection would free), with their sizes, after `after`.
    async fn collectable_blobs(&self, cutoff: i64, after: Option<&Digest>, limit: u32) -> Result<Vec<(Digest, u64)>>;
    /// Blobs a collection left `sweeping` (one that was interrupted).
    async fn sweeping_blobs(&self) -> Result<Vec<(Digest, u64)>>;
    /// Marks as sweeping those of `blobs` that are still untouched since `cutoff` and unlinked.
    async fn begin_sweep(&self, blobs: &[Digest], cutoff: i64) -> Result<Vec<Digest>>;
    /// Records bytes found without a row as sweeping (a row of `size`); those that meanwhile got a
    /// row are left alone. Returns the ones now sweeping.
    async fn begin_orphan_sweep(&self, orphans: &[(Digest, u64)], now: i64) -> Result<Vec<Digest>>;
    /// Deletes the rows of swept blobs, whose bytes are gone.
    async fn end_sweep(&self, blobs: &[Digest]) -> Result<()>;
    /// Before an upload publishes the same bytes: the blob's row, touched at `now` unless it was
    /// touched since `fresh_after` (a collection cannot be about to sweep it then).
    async fn touch_blob(&self, digest: &Digest, now: i64, fresh_after: i64) -> Result<BlobRow>;
    /// Touches a link (a HEAD told a client the blob is there).
    async fn touch_link(&self, repo: &RepoName, digest: &Digest, now: i64) -> Result<()>;
    /// Every recorded blob with its size and whether it is sweeping (fsck).
    async fn recorded_blobs(&self) -> Result<Vec<(Digest, u64, bool)>>;
    /// Marks every image that references `digest` as `error` with `summary` (a corrupt blob);
    /// returns how many verdicts changed.
    async fn fail_images_using(&self, digest: &Digest, summary: &str, now: i64) -> Result<u64>;
}
