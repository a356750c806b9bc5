//! A namespace's lifecycle settings (quota, immutable tags, retention), its usage, and what
//! retention needs to read and remove.
//!
//! Invariants the implementations keep:
//! - the quota and the immutable tags are checked inside the transaction that adds the link, the
//!   repository or the tag, or moves or deletes the tag, after locking the namespace's settings
//!   row when a quota applies; so concurrent pushes cannot together pass a byte quota (they queue
//!   on that row), and no path changes an immutable tag;
//! - usage (`bytes`, `blobs`) is kept by the database itself on every insert and delete of a link,
//!   whatever path makes it (upload, mount, collector, a cascading repository delete), as
//!   insert-only deltas (no hot counter row for concurrent writers to wait on, or deadlock over),
//!   folded by [`LifecycleStore::fold_usage`]; [`LifecycleStore::recount_usage`] recomputes it
//!   exactly.

use async_trait::async_trait;

use crate::model::{Digest, Quota, RepoName, Result, Retention, Tag, TagPatterns, Usage};

/// A namespace's rules; the defaults (no limit, no pattern, no retention) when it has none.
#[derive(Debug, Clone, Default)]
pub struct NamespaceRules {
    pub quota: Quota,
    pub immutable: TagPatterns,
    pub retention: Option<Retention>,
}

/// A tag as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagRow {
    pub name: Tag,
    pub digest: Digest,
    /// When it was last pushed (moved), Unix seconds.
    pub pushed_at: i64,
}

/// A manifest as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRow {
    pub digest: Digest,
    pub created_at: i64,
    pub subject: Option<Digest>,
    /// The manifests an index lists.
    pub children: Vec<Digest>,
}

/// Everything retention decides about in one repository.
#[derive(Debug, Clone, Default)]
pub struct RepositoryContents {
    pub tags: Vec<TagRow>,
    pub manifests: Vec<ManifestRow>,
}

/// A namespace whose stored usage differed from a recount (fixed by the recount).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageDrift {
    pub namespace: String,
    pub recorded_bytes: i64,
    pub actual_bytes: i64,
}

#[async_trait]
pub trait LifecycleStore: Send + Sync {
    /// The namespace's rules (the defaults when it has none).
    async fn namespace_rules(&self, namespace: &str) -> Result<NamespaceRules>;
    /// False when there is no such namespace.
    async fn set_quota(&self, namespace: &str, quota: Quota, now: i64) -> Result<bool>;
    async fn set_immutable_tags(&self, namespace: &str, patterns: &TagPatterns, now: i64) -> Result<bool>;
    async fn set_retention(&self, namespace: &str, retention: Option<&Retention>, now: i64) -> Result<bool>;
    /// Every namespace with retention rules, by name.
    async fn retention_policies(&self) -> Result<Vec<(String, Retention)>>;
    async fn usage(&self, namespace: &str) -> Result<Usage>;
    /// Recomputes every namespace's usage from the links, fixing and returning what differed.
    async fn recount_usage(&self) -> Result<Vec<UsageDrift>>;
    /// Folds each namespace's usage deltas into one row (the collector's last step); answers how
    /// many namespaces it folded.
    async fn fold_usage(&self) -> Result<u64>;
    /// The repositories of a namespace, by name.
    async fn namespace_repositories(&self, namespace: &str) -> Result<Vec<RepoName>>;
    async fn repository_contents(&self, repo: &RepoName) -> Result<RepositoryContents>;
    /// Removes, in one transaction, each tag of `tags` that still points where it did and was not
    /// pushed since (one with a subject, a cosign-style tag, only once that manifest is gone), and
    /// each manifest of `manifests` that no tag, no other manifest and no present subject holds by
    /// then (each re-checked on its locked row). Answers how many tags and manifests went; what
    /// changed meanwhile stays.
    async fn remove_retained(
        &self,
        repo: &RepoName,
        tags: &[(TagRow, Option<Digest>)],
        manifests: &[Digest],
    ) -> Result<(u64, u64)>;
}
