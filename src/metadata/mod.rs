//! Metadata: the source of truth for what exists and who may read it.
//!
//! Rules:
//! - A blob is readable in a repository only through a row in the repository-to-blob link table.
//! - Every change that touches more than one row runs in one transaction, so a crash leaves either
//!   the old state or the new one.
//! - Traits are split by capability and implemented per database (SQLite now, PostgreSQL next);
//!   the same conformance tests run against each.

pub mod audit;
pub mod auth;
#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
pub mod gc;
pub mod lifecycle;
pub mod scans;
pub mod signatures;
pub mod sql;
pub mod vulndb;
pub mod webhooks;

use async_trait::async_trait;

use crate::model::{Digest, RepoName, Result, Tag};
use crate::model::{UploadId, WrittenPart};

pub use crate::model::ManifestKind;

/// A manifest as stored, with its own verdict.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    pub digest: Digest,
    pub media_type: String,
    pub content: Vec<u8>,
    /// `None` for manifests stored before kinds were recorded (the gate treats them as images).
    pub kind: Option<ManifestKind>,
    /// `None` when the manifest has no scan record, which the gate treats as blocked.
    pub verdict: Option<scans::Verdict>,
    /// The signature mode of the repository's namespace (read with it, for the signature gate).
    pub signatures: crate::model::SignatureMode,
}

/// Whether a blob linked in a repository may be read by ordinary principals, and its size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlobAccess {
    pub size: u64,
    /// Some image in the repository that references the blob passed or was released; or the blob
    /// was never part of an image there and an artifact that references it passed.
    pub readable: bool,
    /// Some image of the repository lists it, or once did.
    pub image_content: bool,
    /// The signature mode of the repository's namespace.
    pub signatures: crate::model::SignatureMode,
}

/// A manifest to insert, with what it references.
#[derive(Debug, Clone)]
pub struct NewManifest {
    pub repo: RepoName,
    pub digest: Digest,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    /// Annotations as a JSON object, kept for the referrers API.
    pub annotations: Option<String>,
    pub content: Vec<u8>,
    pub blobs: Vec<Digest>,
    pub children: Vec<Digest>,
    pub tag: Option<Tag>,
    /// Every manifest gets a scan record (pending); the kind says what the scan looks at.
    pub kind: ManifestKind,
    /// The push's time on the registry's clock: the manifest's creation and the tag's move
    /// (what retention reads).
    pub pushed_at: i64,
    /// The push's audit record, written in the same transaction.
    pub audit: Option<crate::model::audit::NewAudit>,
}

/// One entry of a referrers listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Referrer {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<String>,
    /// The referrer's own verdict (its annotations are its own bytes, which the verdict covers).
    pub verdict: Option<scans::Verdict>,
}

/// An upload session.
#[derive(Debug, Clone)]
pub struct Upload {
    pub id: UploadId,
    pub repo: RepoName,
    pub size: u64,
    pub parts: Vec<WrittenPart>,
    pub updated_at: i64,
}

/// Why a manifest could not be inserted.
#[derive(Debug)]
pub enum PutManifestRefused {
    MissingBlob(Digest),
    MissingManifest(Digest),
}

/// A repository with its counts (the admin API's listing).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RepositorySummary {
    pub name: String,
    pub tags: u64,
    pub manifests: u64,
    /// The sizes of the blobs linked to it, each counted once.
    pub bytes: u64,
    /// Images whose verdict is `quarantined`.
    pub quarantined: u64,
    pub created_at: i64,
    /// When its newest manifest was pushed (none without manifests).
    pub last_pushed_at: Option<i64>,
    /// The worst scan state in effect among its manifests (a lapsed release counts as
    /// quarantined): `quarantined`, `error`, `scanning`/`pending`, `released`, `passed`.
    pub worst_state: Option<scans::ScanState>,
}

/// A tag with what it names (the admin API's and the console's tag lists).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TagDetail {
    pub name: String,
    pub digest: String,
    pub media_type: String,
    /// The manifest's size in bytes.
    pub size: u64,
    /// When the tag last moved to this manifest.
    pub pushed_at: i64,
    /// The manifest's scan state in effect (a lapsed release reads `quarantined`); none without
    /// a scan record.
    pub state: Option<scans::ScanState>,
}

#[async_trait]
pub trait RepositoryStore: Send + Sync {
    /// Repository names in lexical order after `last`, at most `limit`.
    async fn list_repositories(&self, last: Option<&str>, limit: u32) -> Result<Vec<String>>;
    /// Answers one trivial query: the database serves (readiness checks).
    async fn ping(&self) -> Result<()>;
    /// Whether the repository exists.
    async fn repository_exists(&self, repo: &RepoName) -> Result<bool>;
    /// Up to `limit` repositories after `after` in name order, those of `namespace` only if given
    /// and those whose name contains `search` (any case) if given; releases lapsed at `now` count
    /// as quarantined.
    async fn repository_summaries(
        &self,
        namespace: Option<&str>,
        after: Option<&str>,
        limit: u32,
        now: i64,
        search: Option<&str>,
    ) -> Result<Vec<RepositorySummary>>;
    /// Tags after `last` in lexical order with the manifest each names, at most `limit`, in one
    /// query; releases lapsed at `now` read `quarantined`.
    async fn tag_details(&self, repo: &RepoName, last: Option<&str>, limit: u32, now: i64) -> Result<Vec<TagDetail>>;
    /// Deletes the repository with its manifests, tags, links and verdicts (the bytes stay for
    /// the collector). False if there was none.
    async fn delete_repository(&self, repo: &RepoName) -> Result<bool>;
}

/// A blob linked to a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Linked {
    pub size: u64,
    /// When the link was last touched (created, mounted, uploaded again, or told of by a HEAD).
    pub touched_at: i64,
}

#[async_trait]
pub trait BlobIndex: Send + Sync {
    /// The link of `digest` to `repo`, if there is one.
    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<Linked>>;
    /// Records the blob (if new) and links it to `repo` (created if new), in one transaction.
    /// False, and nothing changed, if the collector is deleting the blob's bytes.
    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64, now: i64) -> Result<bool>;
    /// Removes the link; the bytes stay until garbage collection. False if there was none.
    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
    /// Whether the blob is recorded at all (in any repository).
    async fn blob_recorded(&self, digest: &Digest) -> Result<Option<u64>>;
    /// The size of `digest` in `repo` and whether the quarantine gate lets ordinary principals
    /// read it at `now`; `None` if it is not linked there.
    async fn blob_access(&self, repo: &RepoName, digest: &Digest, now: i64) -> Result<Option<BlobAccess>>;
}

#[async_trait]
pub trait ManifestStore: Send + Sync {
    /// Inserts a manifest, its references, its tag and its pending scan record in one transaction,
    /// after checking inside that transaction that every referenced blob and child manifest is in
    /// the repository. An image marks its blobs as image content in the repository for good.
    async fn put_manifest(&self, manifest: &NewManifest) -> Result<Result<(), PutManifestRefused>>;
    /// The manifest a tag points at, with its verdict.
    async fn manifest_by_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<StoredManifest>>;
    /// The manifest with this digest in this repository.
    async fn manifest_by_digest(&self, repo: &RepoName, digest: &Digest) -> Result<Option<StoredManifest>>;
    /// Deletes the manifest and the tags pointing at it. False if it was not there.
    async fn delete_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
    /// Deletes a manifest and its tags even if an immutable tag holds it: an admin rejecting a
    /// quarantined image (immutability guards content from moving, not from the security team).
    async fn reject_manifest(&self, repo: &RepoName, digest: &Digest) -> Result<bool>;
    /// Deletes one tag; the manifest stays. False if it was not there.
    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool>;
    /// Tags in lexical order after `last`, at most `limit`.
    async fn list_tags(&self, repo: &RepoName, last: Option<&str>, limit: u32) -> Result<Vec<String>>;
    /// Manifests whose `subject` is `digest`, optionally only those of one artifact type.
    async fn referrers(&self, repo: &RepoName, digest: &Digest, artifact_type: Option<&str>) -> Result<Vec<Referrer>>;
    /// The child manifests the indexes `parents` of `repo` list, one per listing (repeats kept);
    /// at most `limit`, so a caller bounds its own work.
    async fn manifest_children(&self, repo: &RepoName, parents: &[Digest], limit: u32) -> Result<Vec<Digest>>;
}

/// How many upload sessions may be open at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionCaps {
    pub per_principal: u32,
    pub per_repository: u32,
}

/// Which cap refused a new session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SessionCap {
    Principal(u32),
    Repository(u32),
}

#[async_trait]
pub trait UploadStore: Send + Sync {
    /// Opens a session for `repo` on behalf of `owner`, unless the owner or the repository already
    /// has as many open as `caps` allow.
    async fn create_upload(
        &self,
        id: &UploadId,
        repo: &RepoName,
        owner: &str,
        now: i64,
        caps: SessionCaps,
    ) -> Result<Result<(), SessionCap>>;
    /// Marks a session as in use at `now` (a long write keeps it from expiring).
    async fn touch_upload(&self, id: &UploadId, now: i64) -> Result<()>;
    /// The session, if it exists and belongs to `repo`.
    async fn get_upload(&self, repo: &RepoName, id: &UploadId) -> Result<Option<Upload>>;
    /// Appends a part if the session still ends at `offset`; false if another write got there first.
    async fn append_part(&self, id: &UploadId, offset: u64, part: &WrittenPart, now: i64) -> Result<bool>;
    /// Records the blob, links it to the session's repository and ends the session, in one transaction.
    async fn complete_upload(&self, id: &UploadId, repo: &RepoName, digest: &Digest, size: u64, now: i64)
        -> Result<()>;
    /// Ends a session without a blob. False if it did not exist.
    async fn delete_upload(&self, id: &UploadId) -> Result<bool>;
    /// Sessions not touched since `before`.
    async fn stale_uploads(&self, before: i64) -> Result<Vec<UploadId>>;
    /// Whether a session exists (for sweeping objects a crash orphaned).
    async fn upload_exists(&self, id: &UploadId) -> Result<bool>;
}

#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes or renews the lease `name` for `holder` until `until`, if it is free, lapsed at `now`
    /// or already `holder`'s. True if `holder` holds it now; of racing holders exactly one does.
    async fn take_lease(&self, name: &str, holder: &str, now: i64, until: i64) -> Result<bool>;
    /// Gives the lease up if `holder` holds it.
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
}

/// Everything the registry needs from its database.
pub trait Metadata:
    RepositoryStore
    + BlobIndex
    + ManifestStore
    + UploadStore
    + LeaseStore
    + auth::AuthStore
    + scans::ScanStore
    + gc::GcStore
    + lifecycle::LifecycleStore
    + webhooks::WebhookStore
    + signatures::SignatureStore
    + vulndb::VulnStore
{
}
impl<T> Metadata for T where
    T: RepositoryStore
        + BlobIndex
        + ManifestStore
        + UploadStore
        + LeaseStore
        + auth::AuthStore
        + scans::ScanStore
        + gc::GcStore
        + lifecycle::LifecycleStore
        + webhooks::WebhookStore
        + signatures::SignatureStore
        + vulndb::VulnStore
{
}
