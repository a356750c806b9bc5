//! Content-addressed blob bytes: [`BlobStore`] over one backend per file, local disk
//! ([`local`]) or an object store such as S3 ([`object`]), behind the small [`Backend`] interface.
//!
//! Rules:
//! - Object paths come only from [`BlobKey`]; nothing else formats a storage path.
//! - A blob object is created only by moving a fully written, digest-verified upload object to its
//!   content address (`publish`), so an object at `blobs/...` always holds exactly the bytes its
//!   name promises.
//! - Bytes are streamed in bounded chunks; no method holds a whole blob in memory.
//! - Each chunk of an upload is recorded (in metadata) as a [`WrittenPart`] whose `sha256` is the
//!   digest of that chunk's own bytes, on every backend; how a backend lays the chunks out (a part
//!   object each, or one file) is its own affair.
//! - Upload objects live under `uploads/`; whatever a crash leaves there is removed when the
//!   upload session expires.
//! - Listings and deletes of blobs go through `object_store` for every backend; writes, commits
//!   and reads go through the backend.

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
mod key;
mod local;
mod object;
pub mod s3;

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStore;

pub use crate::model::{ByteStream, UploadId, WrittenPart};
pub use key::BlobKey;

use crate::model::digest::Algorithm;
use crate::model::Digest;

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object not found")]
    NotFound,
    /// The client's body stream failed (disconnect, timeout).
    #[error("request body: {0}")]
    Body(std::io::Error),
    #[error("storage backend: {0}")]
    Backend(#[from] object_store::Error),
    /// (Transparent: a context around it names the path, and the text is not repeated when the
    /// error's chain is printed.)
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Local disk: the upload's file is missing or shorter than its recorded chunks (removed
    /// behind our back, or left in an earlier version's layout). Nothing can be committed from it;
    /// the client has to start the upload again.
    #[error("the upload's data is missing or shorter than recorded")]
    UploadLost,
}

impl StorageError {
    /// The disk (or the quota) is full: nothing this request can fix, and nothing a later one
    /// cannot, once an operator has made room.
    pub fn is_out_of_space(&self) -> bool {
        let full = |io: &std::io::Error| {
            // ENOSPC and EDQUOT.
            matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
        };
        // (`Io` is transparent: its io error is itself, not its source.)
        if let StorageError::Io(io) = self {
            return full(io);
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = source {
            if e.downcast_ref::<std::io::Error>().is_some_and(full) {
                return true;
            }
            source = e.source();
        }
        false
    }
}

/// A blob object as the store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBlob {
    pub digest: Digest,
    pub size: u64,
    /// When it was published (Unix seconds): a commit renews it, so bytes whose row is not yet
    /// written look new to the collector.
    pub modified: i64,
}

/// Outcome of turning an upload's parts into a blob.
#[derive(Debug, PartialEq)]
pub enum Commit {
    Stored { size: u64 },
    Mismatch { actual: Digest },
}

/// Tunables that differ per backend.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Buffer size of multipart writes (S3 needs at least 5 MiB; local disk is happy with less).
    pub write_chunk: usize,
    /// Smallest PATCH a backend accepts except the last (`OCI-Chunk-Min-Length`); 0 for none.
    pub chunk_min_length: u64,
}

/// What a storage backend does with the bytes of uploads and blobs; [`BlobStore`] does the rest.
#[async_trait::async_trait]
trait Backend: Send + Sync {
    /// Streams `body`, the chunk of `upload` that starts at `offset`, into the store. The part's
    /// `sha256` is the digest of `body`'s bytes. The caller serialises the chunks of one upload.
    async fn write_part(&self, upload: &UploadId, offset: u64, body: ByteStream) -> Result<WrittenPart, StorageError>;
    /// Turns the recorded `parts` (in order) into the blob `expected`, verifying its digest. A
    /// mismatch leaves no blob behind; the parts stay for the caller to delete with the upload.
    async fn commit(&self, upload: &UploadId, parts: &[WrittenPart], expected: &Digest)
        -> Result<Commit, StorageError>;
    /// Opens an object for reading, optionally a byte range of it.
    async fn read(&self, key: &Path, range: Option<Range<u64>>) -> Result<ByteStream, StorageError>;
    /// Where a recorded part's bytes are.
    fn part_key(&self, upload: &UploadId, part_id: &str) -> Path;
    /// Forgets one part (a refused chunk).
    async fn delete_part(&self, upload: &UploadId, part_id: &str) -> Result<(), StorageError>;
    /// Removes everything stored for an upload session, including what a crash left behind.
    async fn delete_upload(&self, upload: &UploadId) -> Result<(), StorageError>;
}

/// Moves a verified object to its content address. If the blob already exists its bytes are the
/// same by construction, so the source is simply dropped.
async fn publish(store: &dyn ObjectStore, source: &Path, target: &Path) -> Result<(), StorageError> {
    match store.rename_if_not_exists(source, target).await {
        Ok(()) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => {
            let _ = store.delete(source).await;
            Ok(())
        }
        Err(object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented) => {
            // S3 has no rename and, without conditional writes, no copy-if-absent: copy (a
            // server-side CopyObject) only when the blob is not there yet, so a published blob
            // object is not rewritten. Two replicas racing here copy the same verified bytes.
            let exists = match store.head(target).await {
                Ok(_) => true,
                Err(object_store::Error::NotFound { .. }) => false,
                Err(e) => return Err(e.into()),
            };
            if !exists {
                store.copy(source, target).await?;
            }
            let _ = store.delete(source).await;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The blob store used by the domain.
#[derive(Clone)]
pub struct BlobStore {
    backend: Arc<dyn Backend>,
    /// The same store through `object_store`: listings, existence and deletes of blobs.
    objects: Arc<dyn ObjectStore>,
    options: StoreOptions,
}

impl BlobStore {
    /// A store on local disk under `root` (created if missing), with direct writes.
    pub fn local(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        Self::local_with(root, true)
    }

    /// A store on local disk; `direct_writes` lets uploads bypass the page cache.
    pub fn local_with(root: impl Into<PathBuf>, direct_writes: bool) -> Result<Self, StorageError> {
        let direct = if direct_writes { local::Direct::Try } else { local::Direct::Never };
        let disk = local::LocalDisk::open(root.into(), direct)?;
        let objects = disk.objects();
        Ok(BlobStore {
            backend: Arc::new(disk),
            objects,
            options: StoreOptions { write_chunk: 1024 * 1024, chunk_min_length: 0 },
        })
    }

    /// A store in an S3 bucket: [`s3::S3Options`], or what converts into them (`&config::S3Config`,
    /// through the conversion in `lib.rs`).
    pub fn s3<O>(options: O) -> anyhow::Result<Self>
    where
        O: TryInto<s3::S3Options>,
        anyhow::Error: From<O::Error>,
    {
        let s3_options: s3::S3Options = options.try_into()?;
        let options = StoreOptions { write_chunk: s3_options.part_size, chunk_min_length: 0 };
        Ok(BlobStore::new(s3::store(&s3_options)?, options))
    }

    /// A store over any object store (memory in tests, S3 for scale).
    pub fn new(store: Arc<dyn ObjectStore>, options: StoreOptions) -> Self {
        let backend = object::ObjectBackend::new(store.clone(), options.write_chunk);
        BlobStore { backend: Arc::new(backend), objects: store, options }
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Streams `body`, the chunk that starts at `offset`, into `upload`, hashing as it goes. The
    /// caller serialises the chunks of one upload and records the part it gets back.
    pub async fn write_part(
        &self,
        upload: &UploadId,
        offset: u64,
        body: ByteStream,
    ) -> Result<WrittenPart, StorageError> {
        observed("write_part", self.backend.write_part(upload, offset, body)).await
    }

    /// Turns the parts of `upload` (in order) into the blob `expected`, verifying its digest.
    /// A mismatch leaves no blob behind; the parts stay for the caller to delete with the upload.
    pub async fn commit(
        &self,
        upload: &UploadId,
        parts: &[WrittenPart],
        expected: &Digest,
    ) -> Result<Commit, StorageError> {
        observed("commit", self.backend.commit(upload, parts, expected)).await
    }

    /// Writes, reads back and deletes a probe object: proves the store is reachable and writable
    /// (`check-config`).
    pub async fn check_writable(&self) -> Result<(), StorageError> {
        let probe = UploadId::new();
        let bytes = Bytes::from_static(b"portcullis check-config probe");
        let part = self.write_part(&probe, 0, futures::stream::iter([Ok(bytes.clone())]).boxed()).await?;
        let mut read = Vec::new();
        let mut stream = self.backend.read(&self.backend.part_key(&probe, &part.part_id), None).await?;
        while let Some(chunk) = stream.try_next().await? {
            read.extend_from_slice(&chunk);
        }
        self.delete_upload(&probe).await?;
        if read != bytes {
            return Err(StorageError::Io(std::io::Error::other("the probe object read back differs")));
        }
        Ok(())
    }

    /// Opens a blob for reading, optionally a byte range of it.
    pub async fn read(&self, digest: &Digest, range: Option<Range<u64>>) -> Result<ByteStream, StorageError> {
        observed("read", self.backend.read(&BlobKey::Blob(digest).path(), range)).await
    }

    /// Writes a small blob in one request (tests and fixtures; never used for request bodies).
    pub async fn put_verified(&self, bytes: Bytes) -> Result<Digest, StorageError> {
        let digest = Digest::of(Algorithm::Sha256, &bytes);
        let upload = UploadId::new();
        let part = self.write_part(&upload, 0, futures::stream::iter([Ok(bytes)]).boxed()).await?;
        self.commit(&upload, &[part], &digest).await?;
        Ok(digest)
    }

    /// Whether the blob object exists.
    pub async fn exists(&self, digest: &Digest) -> Result<bool, StorageError> {
        match observed("head", async { self.objects.head(&BlobKey::Blob(digest).path()).await }).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a blob object (garbage collection only; metadata decides when).
    pub async fn delete_blob(&self, digest: &Digest) -> Result<(), StorageError> {
        match observed("delete", async { self.objects.delete(&BlobKey::Blob(digest).path()).await }).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes one part of an upload (a refused chunk).
    pub async fn delete_part(&self, upload: &UploadId, part_id: &str) -> Result<(), StorageError> {
        self.backend.delete_part(upload, part_id).await
    }

    /// Deletes everything stored for an upload session, including what a crash left behind.
    pub async fn delete_upload(&self, upload: &UploadId) -> Result<(), StorageError> {
        self.backend.delete_upload(upload).await
    }

    /// Upload ids that have objects in the store (to find sessions a crash orphaned).
    pub async fn stored_uploads(&self) -> Result<Vec<UploadId>, StorageError> {
        let listing = self.objects.list_with_delimiter(Some(&Path::from("uploads"))).await?;
        let dirs = listing.common_prefixes.into_iter();
        let files = listing.objects.into_iter().map(|o| o.location);
        let mut ids: Vec<UploadId> =
            dirs.chain(files).filter_map(|p| p.filename().and_then(BlobKey::parse_upload)).collect();
        ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        ids.dedup();
        Ok(ids)
    }

    /// Every blob object with its size and when it was written (for integrity checks and
    /// garbage collection).
    pub fn list_blobs(&self) -> BoxStream<'_, Result<StoredBlob, StorageError>> {
        self.objects
            .list(Some(&Path::from("blobs")))
            .map_err(StorageError::from)
            .try_filter_map(|m| async move {
                Ok(BlobKey::parse_blob(&m.location).map(|digest| StoredBlob {
                    digest,
                    size: m.size,
                    modified: m.last_modified.timestamp(),
                }))
            })
            .boxed()
    }
}

/// Runs a blob store operation, recording how long it took and whether the store failed (a blob
/// that is not there is an answer, and a client's broken body is the client's).
async fn observed<T, E: ObservedError>(
    op: &'static str,
    f: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    use crate::model::metrics as m;
    let timer = m::Timer::start(m::STORAGE_DURATION, "op", op);
    let result = f.await;
    drop(timer);
    if let Err(e) = &result {
        if e.is_fault() {
            metrics::counter!(m::STORAGE_ERRORS, "op" => op).increment(1);
        }
    }
    result
}

trait ObservedError {
    fn is_fault(&self) -> bool;
}

impl ObservedError for StorageError {
    fn is_fault(&self) -> bool {
        !matches!(self, StorageError::NotFound | StorageError::Body(_))
    }
}

impl ObservedError for object_store::Error {
    fn is_fault(&self) -> bool {
        !matches!(self, object_store::Error::NotFound { .. })
    }
}
