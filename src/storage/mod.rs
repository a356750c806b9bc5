//! Content-addressed blob bytes over `object_store`.
//!
//! Rules:
//! - Object paths come only from [`BlobKey`]; nothing else formats a storage path.
//! - A blob object is created only by renaming a fully written, digest-verified upload object to its
//!   content address, so an object at `blobs/...` always holds exactly the bytes its name promises.
//! - Bytes are streamed in bounded chunks; no method holds a whole blob in memory.
//! - Upload objects live under `uploads/<id>/` (object stores: one object per part) or in the one
//!   file `uploads/<id>.data` (local disk); whatever a crash leaves there is removed when the upload
//!   session expires.
//!
//! Backends have no append, so each PATCH of an upload is its own part object; the part's SHA-256 and
//! size are recorded in metadata, which makes the usual single-part upload commit without a re-read.

#[cfg(any(test, feature = "test-util"))]
pub mod conformance;
mod key;
mod local;
pub mod s3;

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, GetResultPayload, ObjectStore, PutPayload, WriteMultipart};

pub use crate::model::{ByteStream, UploadId, WrittenPart};
pub use key::BlobKey;

use crate::model::digest::{Algorithm, DigestHasher};
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
    #[error("storage io: {0}")]
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
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                // ENOSPC and EDQUOT.
                if matches!(io.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded) {
                    return true;
                }
            }
            source = e.source();
        }
        false
    }
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

/// The blob store used by the domain.
#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    options: StoreOptions,
    /// Set for the local disk backend: lets us fsync committed blobs and sweep staging files.
    local_root: Option<PathBuf>,
    /// Local disk: whether uploads may bypass the page cache.
    direct: local::Direct,
    /// Local disk: each upload's running SHA-256 and the offset it has reached. Lost on restart,
    /// when the next chunk re-hashes the file up to its offset once.
    running: Arc<std::sync::Mutex<std::collections::HashMap<UploadId, (u64, DigestHasher)>>>,
}

/// Reads of a local blob: each is a syscall (and, when not cached, a hop to the blocking pool),
/// so not small ones; but small enough to stay in the CPU cache while TLS encrypts them (1 MiB
/// reads cost a pull a quarter more CPU than 256 KiB ones).
const READ_CHUNK: usize = 256 * 1024;

/// The one data file of an upload on local disk.
const LOCAL_DATA: &str = "data";

/// Copies a stream into a multipart writer through a hasher, with at most two chunks in flight
/// (bounded memory whatever the blob size). Returns the byte count.
async fn pump<S>(stream: &mut S, writer: &mut WriteMultipart, hasher: &mut DigestHasher) -> Result<u64, StorageError>
where
    S: futures::Stream<Item = Result<Bytes, StorageError>> + Unpin,
{
    let mut size = 0u64;
    while let Some(chunk) = stream.try_next().await? {
        hasher.update(&chunk);
        size += chunk.len() as u64;
        writer.wait_for_capacity(2).await?;
        writer.put(chunk);
    }
    Ok(size)
}

impl BlobStore {
    /// A store on local disk under `root` (created if missing), with direct writes.
    pub fn local(root: impl Into<PathBuf>) -> Result<Self, StorageError> {
        Self::local_with(root, true)
    }

    /// A store on local disk; `direct_writes` lets uploads bypass the page cache ([`local::Direct`]).
    pub fn local_with(root: impl Into<PathBuf>, direct_writes: bool) -> Result<Self, StorageError> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&root)?;
        Ok(BlobStore {
            store: Arc::new(store),
            options: StoreOptions { write_chunk: 1024 * 1024, chunk_min_length: 0 },
            local_root: Some(root),
            direct: if direct_writes { local::Direct::Try } else { local::Direct::Never },
            running: Default::default(),
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
        BlobStore { store, options, local_root: None, direct: local::Direct::Never, running: Default::default() }
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Streams `body`, the chunk that starts at `offset`, into `upload`, hashing as it goes.
    ///
    /// Object stores get a new part object per chunk (they cannot append); on any error the partial
    /// object is aborted. Local disk writes every chunk into one file at its offset, so a chunked
    /// upload is committed by a rename instead of a copy; the caller serialises chunks of one upload,
    /// and bytes past the recorded end (a refused chunk) are cut off at commit.
    pub async fn write_part(
        &self,
        upload: &UploadId,
        offset: u64,
        body: ByteStream,
    ) -> Result<WrittenPart, StorageError> {
        if let Some(root) = &self.local_root {
            let path = BlobKey::UploadFile(upload).path();
            let resumed = self.running_hashes().remove(upload).filter(|(end, _)| *end == offset);
            let mut hasher = match resumed {
                Some((_, hasher)) => hasher,
                None if offset == 0 => DigestHasher::new(Algorithm::Sha256),
                // After a restart, or after a refused chunk moved the running hash past the end.
                None => local::hash_prefix(root, &path, offset).await?,
            };
            let (size, _) = local::write_at(root, &path, offset, body, &mut hasher, self.direct).await?;
            let sha256 = hasher.clone().finish();
            self.running_hashes().insert(upload.clone(), (offset + size, hasher));
            return Ok(WrittenPart { part_id: LOCAL_DATA.to_owned(), size, sha256 });
        }
        let part_id = uuid::Uuid::new_v4().simple().to_string();
        let path = BlobKey::UploadPart(upload, &part_id).path();
        let mut hasher = DigestHasher::new(Algorithm::Sha256);
        let size = self.put_stream(&path, &mut body.map_err(StorageError::Body), &mut hasher).await?;
        Ok(WrittenPart { part_id, size, sha256: hasher.finish() })
    }

    /// Streams into one new object at `path`, hashing as it goes. What fits in one write buffer
    /// goes up in a single PUT (one request; S3 also refuses a multipart upload of no parts);
    /// anything longer becomes a multipart upload whose parts are all `write_chunk` long but the
    /// last, with at most two in flight. On any error the partial object is aborted.
    async fn put_stream<S>(&self, path: &Path, stream: &mut S, hasher: &mut DigestHasher) -> Result<u64, StorageError>
    where
        S: futures::Stream<Item = Result<Bytes, StorageError>> + Unpin,
    {
        let mut head = Vec::new();
        let mut buffered = 0u64;
        while buffered < self.options.write_chunk as u64 {
            match stream.try_next().await? {
                Some(chunk) => {
                    hasher.update(&chunk);
                    buffered += chunk.len() as u64;
                    head.push(chunk);
                }
                None => {
                    self.store.put(path, head.into_iter().collect::<PutPayload>()).await?;
                    return Ok(buffered);
                }
            }
        }
        let mut writer =
            WriteMultipart::new_with_chunk_size(self.store.put_multipart(path).await?, self.options.write_chunk);
        for chunk in head {
            writer.put(chunk);
        }
        match pump(stream, &mut writer, hasher).await {
            Ok(rest) => {
                writer.finish().await?;
                Ok(buffered + rest)
            }
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        }
    }

    /// Turns the parts of `upload` (in order) into the blob `expected`, verifying its digest.
    /// A mismatch leaves no blob behind; the parts stay for the caller to delete with the upload.
    pub async fn commit(
        &self,
        upload: &UploadId,
        parts: &[WrittenPart],
        expected: &Digest,
    ) -> Result<Commit, StorageError> {
        let target = BlobKey::Blob(expected).path();
        if let Some(root) = &self.local_root {
            return self.commit_local(root, upload, parts, expected, &target).await;
        }
        // The common case (docker: one PATCH, then PUT): the part's own hash is the blob's digest.
        if let [part] = parts {
            if expected.algorithm() == Algorithm::Sha256 {
                if &part.sha256 != expected {
                    return Ok(Commit::Mismatch { actual: part.sha256.clone() });
                }
                let source = BlobKey::UploadPart(upload, &part.part_id).path();
                self.publish(&source, &target).await?;
                return Ok(Commit::Stored { size: part.size });
            }
        }
        // Otherwise concatenate the parts into one object, hashing with the digest's algorithm.
        let assembled = BlobKey::UploadPart(upload, "assembled").path();
        let mut hasher = DigestHasher::new(expected.algorithm());
        let mut joined = futures::stream::iter(parts)
            .then(|part| self.read_object_owned(BlobKey::UploadPart(upload, &part.part_id).path()))
            .map_ok(|s| s.map_err(StorageError::Io))
            .try_flatten()
            .boxed();
        let size = self.put_stream(&assembled, &mut joined, &mut hasher).await?;
        let actual = hasher.finish();
        if &actual != expected {
            let _ = self.store.delete(&assembled).await;
            return Ok(Commit::Mismatch { actual });
        }
        self.publish(&assembled, &target).await?;
        Ok(Commit::Stored { size })
    }

    /// Local disk: all chunks are in one file. Cut it to the recorded length, verify, rename.
    async fn commit_local(
        &self,
        root: &std::path::Path,
        upload: &UploadId,
        parts: &[WrittenPart],
        expected: &Digest,
        target: &Path,
    ) -> Result<Commit, StorageError> {
        let data = BlobKey::UploadFile(upload).path();
        let size: u64 = parts.iter().map(|p| p.size).sum();
        // Never zero-fill: the recorded digest describes bytes that must be in the file.
        local::cut_to(root, &data, size).await?;
        self.running_hashes().remove(upload);
        let actual = match parts.last() {
            // Taken while the chunks streamed in: the digest of everything up to the last part.
            Some(last) if expected.algorithm() == Algorithm::Sha256 => last.sha256.clone(),
            _ => {
                let mut hasher = DigestHasher::new(expected.algorithm());
                let mut stream = self.read_object(&data, None).await?;
                while let Some(chunk) = stream.try_next().await? {
                    hasher.update(&chunk);
                }
                hasher.finish()
            }
        };
        if &actual != expected {
            return Ok(Commit::Mismatch { actual });
        }
        self.publish(&data, target).await?;
        Ok(Commit::Stored { size })
    }

    /// Moves a verified object to its content address. If the blob already exists its bytes are
    /// the same by construction, so the source is simply dropped.
    async fn publish(&self, source: &Path, target: &Path) -> Result<(), StorageError> {
        match self.store.rename_if_not_exists(source, target).await {
            Ok(()) => {}
            Err(object_store::Error::AlreadyExists { .. }) => {
                let _ = self.store.delete(source).await;
            }
            Err(object_store::Error::NotSupported { .. } | object_store::Error::NotImplemented) => {
                // S3 has no rename and, without conditional writes, no copy-if-absent: copy (a
                // server-side CopyObject) only when the blob is not there yet, so a published blob
                // object is not rewritten. Two replicas racing here copy the same verified bytes.
                if !self.exists_at(target).await? {
                    self.store.copy(source, target).await?;
                }
                let _ = self.store.delete(source).await;
            }
            Err(e) => return Err(e.into()),
        }
        if let Some(root) = &self.local_root {
            local::sync_object(root, target).await?;
        }
        Ok(())
    }

    /// Writes, reads back and deletes a probe object: proves the store is reachable and writable
    /// (`check-config`).
    pub async fn check_writable(&self) -> Result<(), StorageError> {
        let probe = UploadId::new();
        let bytes = Bytes::from_static(b"portcullis check-config probe");
        let part = self.write_part(&probe, 0, futures::stream::iter([Ok(bytes.clone())]).boxed()).await?;
        let mut read = Vec::new();
        let mut stream = self.read_object(&self.part_path(&probe, &part.part_id), None).await?;
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
        self.read_object(&BlobKey::Blob(digest).path(), range).await
    }

    async fn read_object_owned(&self, path: Path) -> Result<ByteStream, StorageError> {
        self.read_object(&path, None).await
    }

    async fn read_object(&self, path: &Path, range: Option<Range<u64>>) -> Result<ByteStream, StorageError> {
        let options = GetOptions { range: range.map(GetRange::Bounded), ..Default::default() };
        let result = match self.store.get_opts(path, options).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Err(StorageError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let range = result.range.clone();
        Ok(match result.payload {
            // object_store reads local files 8 KiB at a time; larger reads are much cheaper.
            GetResultPayload::File(file, _) => local::stream_file(file, range, READ_CHUNK),
            GetResultPayload::Stream(s) => s.map_err(std::io::Error::other).boxed(),
        })
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
        self.exists_at(&BlobKey::Blob(digest).path()).await
    }

    async fn exists_at(&self, path: &Path) -> Result<bool, StorageError> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a blob object (garbage collection only; metadata decides when).
    pub async fn delete_blob(&self, digest: &Digest) -> Result<(), StorageError> {
        match self.store.delete(&BlobKey::Blob(digest).path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes one part of an upload (a refused chunk).
    pub async fn delete_part(&self, upload: &UploadId, part_id: &str) -> Result<(), StorageError> {
        if part_id == LOCAL_DATA {
            // The shared data file: its unrecorded tail is cut off at commit. The running digest
            // has taken in the refused bytes, so it goes too; the next chunk rebuilds it from the
            // file rather than trusting its position alone.
            self.running_hashes().remove(upload);
            return Ok(());
        }
        match self.store.delete(&BlobKey::UploadPart(upload, part_id).path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Where a part recorded for `upload` lives: the upload's one file on local disk, else its own object.
    fn part_path(&self, upload: &UploadId, part_id: &str) -> Path {
        if self.local_root.is_some() && part_id == LOCAL_DATA {
            BlobKey::UploadFile(upload).path()
        } else {
            BlobKey::UploadPart(upload, part_id).path()
        }
    }

    fn running_hashes(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<UploadId, (u64, DigestHasher)>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Deletes everything stored for an upload session, including what a crash left behind.
    pub async fn delete_upload(&self, upload: &UploadId) -> Result<(), StorageError> {
        self.running_hashes().remove(upload);
        let prefix = BlobKey::UploadDir(upload).path();
        if let Some(root) = &self.local_root {
            // The upload's file, and the directory an earlier version kept its parts in.
            local::remove_file(root, &BlobKey::UploadFile(upload).path()).await?;
            return Ok(local::remove_dir(root, &prefix).await?);
        }
        let locations = self.store.list(Some(&prefix)).map_ok(|m| m.location).boxed();
        let mut deleted = self.store.delete_stream(locations);
        while let Some(r) = deleted.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Upload ids that have objects in the store (to find sessions a crash orphaned).
    pub async fn stored_uploads(&self) -> Result<Vec<UploadId>, StorageError> {
        let listing = self.store.list_with_delimiter(Some(&Path::from("uploads"))).await?;
        let dirs = listing.common_prefixes.into_iter();
        let files = listing.objects.into_iter().map(|o| o.location);
        let mut ids: Vec<UploadId> =
            dirs.chain(files).filter_map(|p| p.filename().and_then(BlobKey::parse_upload)).collect();
        ids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        ids.dedup();
        Ok(ids)
    }

    /// Every blob object with its size (for integrity checks and garbage collection).
    pub fn list_blobs(&self) -> BoxStream<'_, Result<(Digest, u64), StorageError>> {
        self.store
            .list(Some(&Path::from("blobs")))
            .map_err(StorageError::from)
            .try_filter_map(|m| async move { Ok(BlobKey::parse_blob(&m.location).map(|d| (d, m.size))) })
            .boxed()
    }
}
