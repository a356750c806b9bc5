//! The registry service: blobs, listings and the wiring of storage and metadata.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use super::{
    Clock, Digest, Error, RepoName, Result, DEFAULT_GC_GRACE, DEFAULT_MAX_INDEX_REACH, DEFAULT_MAX_REFERENCES,
};
use crate::metadata::Metadata;
use crate::storage::{BlobStore, ByteStream, StorageError, UploadId};

/// Limits that protect the registry from oversized input.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_manifest_bytes: usize,
    /// Upload sessions idle this long are removed with their parts.
    pub upload_expiry: Duration,
    /// Largest page for tag and catalog listings.
    pub max_page: u32,
    /// Most layers (plus config) of an image or artifact, or manifests of an index, in one manifest.
    pub max_references: usize,
    /// Most manifests an index may reach, a manifest counted once for each index that lists it.
    pub max_index_reach: usize,
    /// Open upload sessions allowed per principal and per repository.
    pub upload_sessions: crate::metadata::SessionCaps,
    /// What nobody has touched for this long, and nothing references, the collector may remove.
    pub gc_grace: Duration,
    /// How long one holder keeps the `gc` lease without renewing it.
    pub gc_lease: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_bytes: 4 * 1024 * 1024,
            upload_expiry: Duration::from_secs(3600),
            max_page: 10_000,
            max_references: DEFAULT_MAX_REFERENCES,
            max_index_reach: DEFAULT_MAX_INDEX_REACH,
            upload_sessions: crate::metadata::SessionCaps { per_principal: 256, per_repository: 256 },
            gc_grace: DEFAULT_GC_GRACE,
            gc_lease: crate::model::DEFAULT_GC_LEASE,
        }
    }
}

/// The registry: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Registry {
    pub(super) meta: Arc<dyn Metadata>,
    pub(super) blobs: BlobStore,
    pub(super) limits: Limits,
    /// Per-upload locks: chunks of one upload are written one after another.
    pub(super) upload_locks: Arc<std::sync::Mutex<std::collections::HashMap<UploadId, Arc<tokio::sync::Mutex<()>>>>>,
    pub(super) scan_signals: Arc<super::scans::ScanSignals>,
    /// Decides what has expired or is due.
    pub(super) clock: Clock,
    /// Pushes seen (uploads completing, mounts, manifests): a collection yields to them.
    pub(super) pushes: Arc<std::sync::atomic::AtomicU64>,
    /// The key webhook secrets derive from and the audit head is sealed with (random unless the
    /// wiring sets the one every replica shares).
    pub(super) registry_key: Arc<Vec<u8>>,
    /// Signature verification results (`signatures`).
    pub(super) signature_cache: Arc<super::signatures::SignatureCache>,
    /// The key that signs scan verdicts (`attestations`), when configured.
    pub(super) attestor: Option<Arc<super::attestations::Attestor>>,
}

/// A blob `Range` request as the client wrote it (`bytes=a-b`, `bytes=a-`, `bytes=-n`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ByteRange {
    FromTo(u64, u64),
    From(u64),
    Suffix(u64),
}

impl ByteRange {
    /// The half-open byte range this selects in a blob of `size` bytes.
    pub fn resolve(self, size: u64) -> Result<Range<u64>> {
        let range = match self {
            ByteRange::FromTo(a, b) if a <= b && a < size => a..(b.saturating_add(1)).min(size),
            ByteRange::From(a) if a < size => a..size,
            ByteRange::Suffix(n) if n > 0 && size > 0 => size.saturating_sub(n)..size,
            _ => return Err(Error::RangeNotSatisfiable { size }),
        };
        Ok(range)
    }
}

/// A blob being read: its full size, the range served and the bytes.
pub struct BlobRead {
    pub size: u64,
    pub range: Option<Range<u64>>,
    pub body: ByteStream,
}

/// One page of a listing and whether there is more.
#[derive(Debug, PartialEq)]
pub struct Page {
    pub items: Vec<String>,
    /// The `last` value for the next page, when this page is full.
    pub next: Option<String>,
}

pub(super) fn storage_err(e: StorageError) -> Error {
    match e {
        StorageError::Body(e) => Error::UploadInvalid(format!("request body could not be read: {e}")),
        StorageError::UploadLost => Error::UploadUnknown,
        // A full disk is the operator's to fix; the client may try again later (503, Retry-After).
        e if e.is_out_of_space() => Error::Unavailable(format!("storage is full: {e}")),
        // A remote store that still fails after its client's retries (throttling, 5xx, lost
        // connections): the client should come back later.
        StorageError::Backend(e @ object_store::Error::Generic { store, .. }) if store != "LocalFileSystem" => {
            Error::Unavailable(format!("storage: {e}"))
        }
        other => Error::Internal(other.to_string()),
    }
}

impl Registry {
    pub fn new(meta: Arc<dyn Metadata>, blobs: BlobStore, limits: Limits) -> Self {
        Registry {
            meta,
            blobs,
            limits,
            upload_locks: Default::default(),
            scan_signals: Default::default(),
            clock: Clock::system(),
            pushes: Default::default(),
            registry_key: Arc::new(rand::random::<[u8; 32]>().to_vec()),
            signature_cache: Default::default(),
            attestor: None,
        }
    }

    /// The same registry with `key` for webhook secrets and the audit seal (every replica must
    /// have the same).
    pub fn with_registry_key(mut self, key: Vec<u8>) -> Self {
        self.registry_key = Arc::new(key);
        self
    }

    /// The same registry signing scan verdicts with `attestor`.
    pub fn with_attestor(mut self, attestor: super::attestations::Attestor) -> Self {
        self.attestor = Some(Arc::new(attestor));
        self
    }

    /// The same registry on `clock` (the app's one clock; tests move it).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The clock that decides expiry.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The blob store (for health checks).
    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Smallest chunk the storage backend accepts (except the last), if it has a minimum.
    pub fn chunk_min_length(&self) -> Option<u64> {
        Some(self.blobs.options().chunk_min_length).filter(|&n| n > 0)
    }

    /// Size of a blob linked in `repo` (what a HEAD tells; the bytes are behind the gate).
    ///
    /// The client may now skip uploading it, so an old link is touched: the collector leaves it
    /// alone for another grace period, in which the client's manifest PUT will come.
    pub async fn stat_blob(&self, repo: &RepoName, digest: &Digest) -> Result<u64> {
        let linked = self.meta.linked_blob(repo, digest).await?.ok_or(Error::BlobUnknown)?;
        if linked.touched_at < self.gc_fresh_after() {
            self.meta.touch_link(repo, digest, self.clock.now()).await?;
        }
        Ok(linked.size)
    }

    /// Opens a blob of `size` bytes, optionally a range of it. Only the gate calls this: every
    /// read of a blob's bytes is decided there first.
    pub(super) async fn open_blob(&self, digest: &Digest, size: u64, range: Option<ByteRange>) -> Result<BlobRead> {
        let range = range.map(|r| r.resolve(size)).transpose()?;
        match self.blobs.read(digest, range.clone()).await {
            Ok(body) => Ok(BlobRead { size, range, body }),
            Err(StorageError::NotFound) => {
                tracing::error!(%digest, "blob recorded in metadata is missing from storage");
                Err(Error::BlobUnknown)
            }
            Err(e) => Err(storage_err(e)),
        }
    }

    /// Repositories with their counts, those of `namespace` only if given, those whose name
    /// contains `search` only if given.
    pub async fn repository_summaries(
        &self,
        namespace: Option<&str>,
        after: Option<&str>,
        limit: u32,
        search: Option<&str>,
    ) -> Result<Vec<crate::metadata::RepositorySummary>> {
        self.meta
            .repository_summaries(namespace, after, limit.min(self.limits.max_page), self.clock.now(), search)
            .await
    }

    /// Deletes a repository: its manifests, tags and links at once, its bytes at the next
    /// collection (those no other repository links).
    pub async fn delete_repository(&self, repo: &RepoName) -> Result<()> {
        if self.meta.delete_repository(repo).await? {
            Ok(())
        } else {
            Err(Error::NameUnknown)
        }
    }

    /// Removes a blob from a repository. The bytes stay until garbage collection.
    pub async fn delete_blob(&self, repo: &RepoName, digest: &Digest) -> Result<()> {
        if self.meta.unlink_blob(repo, digest).await? {
            Ok(())
        } else {
            Err(Error::BlobUnknown)
        }
    }

    fn page_size(&self, n: Option<u32>) -> u32 {
        n.unwrap_or(self.limits.max_page).min(self.limits.max_page)
    }

    /// A page of tags in lexical order.
    pub async fn list_tags(&self, repo: &RepoName, n: Option<u32>, last: Option<&str>) -> Result<Page> {
        if !self.meta.repository_exists(repo).await? {
            return Err(Error::NameUnknown);
        }
        let limit = self.page_size(n);
        let items = self.meta.list_tags(repo, last, limit).await?;
        Ok(page(items, limit))
    }

    /// A page of tags with the manifest each names, its size and scan state, in lexical order.
    pub async fn tag_details(
        &self,
        repo: &RepoName,
        n: Option<u32>,
        last: Option<&str>,
    ) -> Result<(Vec<crate::metadata::TagDetail>, Option<String>)> {
        if !self.meta.repository_exists(repo).await? {
            return Err(Error::NameUnknown);
        }
        let limit = self.page_size(n);
        let items = self.meta.tag_details(repo, last, limit, self.clock.now()).await?;
        let next = (items.len() as u32 == limit).then(|| items.last().map(|t| t.name.clone())).flatten();
        Ok((items, next))
    }

    /// A page of repository names in lexical order.
    pub async fn catalog(&self, n: Option<u32>, last: Option<&str>) -> Result<Page> {
        let limit = self.page_size(n);
        let items = self.meta.list_repositories(last, limit).await?;
        Ok(page(items, limit))
    }
}

fn page(items: Vec<String>, limit: u32) -> Page {
    let next = (limit > 0 && items.len() as u32 == limit).then(|| items.last().cloned()).flatten();
    Page { items, next }
}

impl Registry {
    /// A blob of `repo` read whole when it has at most `max` bytes; `None` if larger,
    /// `Error::BlobUnknown` if missing.
    pub(super) async fn read_small(&self, repo: &RepoName, digest: &Digest, max: u64) -> Result<Option<Vec<u8>>> {
        use futures::StreamExt;
        // Straight to storage, not through `read_blob`: this is the gates' own reading.
        let size = self.stat_blob(repo, digest).await?;
        if size > max {
            return Ok(None);
        }
        let read = self.open_blob(digest, size, None).await?;
        let mut bytes = Vec::with_capacity(read.size as usize);
        let mut body = read.body;
        while let Some(chunk) = body.next().await {
            bytes.extend_from_slice(&chunk.map_err(|e| Error::Internal(format!("reading blob {digest}: {e}")))?);
            if bytes.len() as u64 > max {
                return Ok(None);
            }
        }
        Ok(Some(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_unavailable_not_internal() {
        for code in [libc::ENOSPC, libc::EDQUOT] {
            let e = storage_err(StorageError::Io(std::io::Error::from_raw_os_error(code)));
            assert!(matches!(e, Error::Unavailable(ref d) if d.contains("storage is full")), "{e:?}");
        }
        // As object_store's local backend reports it: the io error inside its own.
        let wrapped = object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(std::io::Error::from_raw_os_error(libc::ENOSPC)),
        };
        assert!(matches!(storage_err(StorageError::Backend(wrapped)), Error::Unavailable(_)));
        let other = storage_err(StorageError::Io(std::io::Error::from_raw_os_error(libc::EIO)));
        assert!(matches!(other, Error::Internal(_)), "{other:?}");
    }

    #[test]
    fn ranges_resolve() {
        assert_eq!(ByteRange::FromTo(0, 9).resolve(5).unwrap(), 0..5);
        assert_eq!(ByteRange::From(2).resolve(5).unwrap(), 2..5);
        assert_eq!(ByteRange::Suffix(2).resolve(5).unwrap(), 3..5);
        assert!(ByteRange::From(5).resolve(5).is_err());
        assert!(ByteRange::FromTo(3, 2).resolve(5).is_err());
        assert!(ByteRange::Suffix(0).resolve(5).is_err());
    }
}
