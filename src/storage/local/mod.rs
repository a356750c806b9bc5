//! The local disk backend: blobs are files under a root directory.
//!
//! Rules:
//! - All chunks of an upload go into its one file, `uploads/<id>.data`, each at its offset
//!   ([`writer`]); a chunked upload is committed by a rename, never by a copy.
//! - The file is cut to the recorded length before it is verified, so the bytes of a refused chunk
//!   past the recorded end never reach a blob.
//! - A commit is durable when it returns: the blob's bytes and its directory entry are fsynced.
//! - One writer per upload at a time, and it owns the upload until its writes have stopped: a
//!   request dropped mid-chunk (a reset stream) keeps the upload's lock in its writer thread, so
//!   no later chunk, commit or delete of that upload runs while stray bytes may still land.
//! - Each upload's running SHA-256 is kept in memory while its chunks arrive, so an upload
//!   commits without reading its file again. It is only a shortcut: it is used only when it covers
//!   exactly the recorded bytes. After a restart (or a refused chunk) commit re-reads the file,
//!   because the recorded digests describe bytes that were not fsynced when they were recorded.

mod files;
mod writer;

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use object_store::path::Path;

use super::{publish, Backend, BlobKey, ByteStream, Commit, StorageError};
use crate::model::digest::{Algorithm, DigestHasher};
use crate::model::{Digest, UploadId, WrittenPart};
pub use writer::Direct;

/// The part id of an upload's one file.
const DATA: &str = "data";

/// Reads of a local blob: each is a syscall (and, when not cached, a hop to the blocking pool),
/// so not small ones; but small enough to stay in the CPU cache while TLS encrypts them (1 MiB
/// reads cost a pull a quarter more CPU than 256 KiB ones).
const READ_CHUNK: usize = 256 * 1024;

/// An upload's SHA-256 over its file from the start to `end`.
struct Running {
    end: u64,
    hasher: DigestHasher,
}

pub struct LocalDisk {
    root: PathBuf,
    /// The same directory through `object_store`, for its atomic no-clobber rename.
    objects: Arc<object_store::local::LocalFileSystem>,
    direct: Direct,
    running: Mutex<HashMap<UploadId, Running>>,
    /// Per-upload locks, held by a chunk's writer thread until it stops.
    locks: Mutex<HashMap<UploadId, Arc<tokio::sync::Mutex<()>>>>,
}

impl LocalDisk {
    /// A backend under `root` (created if missing).
    pub fn open(root: PathBuf, direct: Direct) -> Result<Self, StorageError> {
        std::fs::create_dir_all(&root)?;
        let objects = Arc::new(object_store::local::LocalFileSystem::new_with_prefix(&root)?);
        Ok(LocalDisk { root, objects, direct, running: Mutex::default(), locks: Mutex::default() })
    }

    /// The directory through `object_store` (listings and deletes are the same for every backend).
    pub fn objects(&self) -> Arc<object_store::local::LocalFileSystem> {
        self.objects.clone()
    }

    fn running(&self) -> MutexGuard<'_, HashMap<UploadId, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until no writer of `upload` runs, and holds it until the guard is dropped.
    async fn hold(&self, upload: &UploadId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry(upload.clone()).or_default().clone()
        };
        lock.lock_owned().await
    }
}

#[async_trait::async_trait]
impl Backend for LocalDisk {
    async fn write_part(&self, upload: &UploadId, offset: u64, body: ByteStream) -> Result<WrittenPart, StorageError> {
        let held = self.hold(upload).await;
        let path = BlobKey::UploadFile(upload).path();
        // The running digest continues only if it ends where this chunk starts.
        let mut running = self.running().remove(upload).filter(|r| r.end == offset);
        let mut own = DigestHasher::new(Algorithm::Sha256);
        let (size, _) = match (&mut running, offset) {
            // Everything so far is known: the running digest takes this chunk too.
            (Some(r), _) => {
                let hash = |b: &[u8]| {
                    own.update(b);
                    r.hasher.update(b);
                };
                writer::write_at(&self.root, &path, offset, body, hash, self.direct, held).await?
            }
            // The first chunk, or one after a restart: hashed once.
            _ => {
                let hash = |b: &[u8]| own.update(b);
                writer::write_at(&self.root, &path, offset, body, hash, self.direct, held).await?
            }
        };
        let running = match running {
            Some(mut r) => {
                r.end += size;
                Some(r)
            }
            None if offset == 0 => Some(Running { end: size, hasher: own.clone() }),
            None => None,
        };
        if let Some(r) = running {
            self.running().insert(upload.clone(), r);
        }
        Ok(WrittenPart { part_id: DATA.to_owned(), size, sha256: own.finish() })
    }

    async fn commit(
        &self,
        upload: &UploadId,
        parts: &[WrittenPart],
        expected: &Digest,
    ) -> Result<Commit, StorageError> {
        let _held = self.hold(upload).await;
        let data = BlobKey::UploadFile(upload).path();
        let size: u64 = parts.iter().map(|p| p.size).sum();
        // Never zero-fill: the recorded digests describe bytes that must be in the file.
        files::cut_to(&self.root, &data, size).await?;
        let running = self.running().remove(upload);
        let actual = match running {
            // This process wrote exactly the recorded bytes, and hashed them as they went.
            Some(r) if r.end == size && expected.algorithm() == Algorithm::Sha256 => r.hasher.finish(),
            _ => files::hash_file(&self.root, &data, size, expected.algorithm()).await?,
        };
        if &actual != expected {
            return Ok(Commit::Mismatch { actual });
        }
        let target = BlobKey::Blob(expected).path();
        publish(&*self.objects, &data, &target).await?;
        files::sync_object(&self.root, &target).await?;
        Ok(Commit::Stored { size })
    }

    async fn read(&self, key: &Path, range: Option<Range<u64>>) -> Result<ByteStream, StorageError> {
        let path = files::fs_path(&self.root, key);
        let opened = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let file = std::fs::File::open(path)?;
            let len = file.metadata()?.len();
            Ok((file, len))
        })
        .await
        .map_err(std::io::Error::other)?;
        let (file, len) = match opened {
            Ok(opened) => opened,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StorageError::NotFound),
            Err(e) => return Err(e.into()),
        };
        let range = match range {
            None => 0..len,
            Some(r) if r.start < len || r.is_empty() => r.start..r.end.min(len),
            Some(r) => {
                let message = format!("range {}..{} outside an object of {len} bytes", r.start, r.end);
                return Err(StorageError::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, message)));
            }
        };
        Ok(files::stream_file(file, range, READ_CHUNK))
    }

    fn part_key(&self, upload: &UploadId, part_id: &str) -> Path {
        match part_id {
            DATA => BlobKey::UploadFile(upload).path(),
            // A part an earlier version kept in the upload's directory.
            other => BlobKey::UploadPart(upload, other).path(),
        }
    }

    async fn delete_part(&self, upload: &UploadId, part_id: &str) -> Result<(), StorageError> {
        let _held = self.hold(upload).await;
        // The running digest has taken in the refused bytes: it goes, and commit re-reads the file.
        self.running().remove(upload);
        match part_id {
            // The shared file: its unrecorded tail is cut off at commit.
            DATA => Ok(()),
            other => Ok(files::remove_file(&self.root, &BlobKey::UploadPart(upload, other).path()).await?),
        }
    }

    async fn delete_upload(&self, upload: &UploadId) -> Result<(), StorageError> {
        let _held = self.hold(upload).await;
        self.running().remove(upload);
        // The upload's file, and the directory an earlier version kept its parts in.
        files::remove_file(&self.root, &BlobKey::UploadFile(upload).path()).await?;
        Ok(files::remove_dir(&self.root, &BlobKey::UploadDir(upload).path()).await?)
    }
}
