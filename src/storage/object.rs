//! The object store backend (S3, and `object_store`'s in-memory store in tests): stores cannot
//! append, so each chunk of an upload is its own part object.
//!
//! Rules:
//! - A part object is written in one PUT when it fits one write buffer, else as a multipart upload
//!   with at most two buffers in flight; on any error the partial object is aborted.
//! - The usual single-part upload (docker: one PATCH, then PUT) is verified by the part's own
//!   digest and published without reading it again; several parts are concatenated into one new
//!   object while it is hashed under the digest's algorithm.
//! - Publishing is a rename where the store has one, else a server-side copy made only when the
//!   blob object is absent, so a published blob object is never rewritten.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload, WriteMultipart};

use super::{publish, Backend, BlobKey, ByteStream, Commit, StorageError};
use crate::model::digest::{Algorithm, DigestHasher};
use crate::model::{Digest, UploadId, WrittenPart};

pub struct ObjectBackend {
    store: Arc<dyn ObjectStore>,
    /// Buffer size of multipart writes (S3 needs at least 5 MiB but for the last part).
    write_chunk: usize,
}

impl ObjectBackend {
    pub fn new(store: Arc<dyn ObjectStore>, write_chunk: usize) -> Self {
        ObjectBackend { store, write_chunk }
    }

    /// Streams into one new object at `path`, hashing as it goes; returns its length. What fits in
    /// one write buffer goes up in a single PUT (S3 refuses a multipart upload of no parts);
    /// anything longer becomes a multipart upload whose parts are all `write_chunk` long but the
    /// last.
    async fn put_stream<S>(&self, path: &Path, stream: &mut S, hasher: &mut DigestHasher) -> Result<u64, StorageError>
    where
        S: futures::Stream<Item = Result<Bytes, StorageError>> + Unpin,
    {
        let mut head = Vec::new();
        let mut buffered = 0u64;
        while buffered < self.write_chunk as u64 {
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
        let mut writer = WriteMultipart::new_with_chunk_size(self.store.put_multipart(path).await?, self.write_chunk);
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
}

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

/// Reads an object of any store, optionally a range of it.
pub(super) async fn read_object(
    store: &dyn ObjectStore,
    path: &Path,
    range: Option<Range<u64>>,
) -> Result<ByteStream, StorageError> {
    let options = GetOptions { range: range.map(GetRange::Bounded), ..Default::default() };
    match store.get_opts(path, options).await {
        Ok(result) => Ok(result.into_stream().map_err(std::io::Error::other).boxed()),
        Err(object_store::Error::NotFound { .. }) => Err(StorageError::NotFound),
        Err(e) => Err(e.into()),
    }
}

#[async_trait::async_trait]
impl Backend for ObjectBackend {
    async fn write_part(&self, upload: &UploadId, _offset: u64, body: ByteStream) -> Result<WrittenPart, StorageError> {
        let part_id = uuid::Uuid::new_v4().simple().to_string();
        let path = BlobKey::UploadPart(upload, &part_id).path();
        let mut hasher = DigestHasher::new(Algorithm::Sha256);
        let size = self.put_stream(&path, &mut body.map_err(StorageError::Body), &mut hasher).await?;
        Ok(WrittenPart { part_id, size, sha256: hasher.finish() })
    }

    async fn commit(
        &self,
        upload: &UploadId,
        parts: &[WrittenPart],
        expected: &Digest,
    ) -> Result<Commit, StorageError> {
        let target = BlobKey::Blob(expected).path();
        if let [part] = parts {
            if expected.algorithm() == Algorithm::Sha256 {
                if &part.sha256 != expected {
                    return Ok(Commit::Mismatch { actual: part.sha256.clone() });
                }
                let source = BlobKey::UploadPart(upload, &part.part_id).path();
                publish(&*self.store, &source, &target).await?;
                return Ok(Commit::Stored { size: part.size });
            }
        }
        let assembled = BlobKey::UploadPart(upload, "assembled").path();
        let mut hasher = DigestHasher::new(expected.algorithm());
        let store = &*self.store;
        let mut joined =
            futures::stream::iter(parts)
                .then(|part| async move {
                    read_object(store, &BlobKey::UploadPart(upload, &part.part_id).path(), None).await
                })
                .map_ok(|s| s.map_err(StorageError::Io))
                .try_flatten()
                .boxed();
        let size = self.put_stream(&assembled, &mut joined, &mut hasher).await?;
        let actual = hasher.finish();
        if &actual != expected {
            let _ = self.store.delete(&assembled).await;
            return Ok(Commit::Mismatch { actual });
        }
        publish(&*self.store, &assembled, &target).await?;
        Ok(Commit::Stored { size })
    }

    async fn read(&self, key: &Path, range: Option<Range<u64>>) -> Result<ByteStream, StorageError> {
        read_object(&*self.store, key, range).await
    }

    fn part_key(&self, upload: &UploadId, part_id: &str) -> Path {
        BlobKey::UploadPart(upload, part_id).path()
    }

    async fn delete_part(&self, upload: &UploadId, part_id: &str) -> Result<(), StorageError> {
        match self.store.delete(&BlobKey::UploadPart(upload, part_id).path()).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_upload(&self, upload: &UploadId) -> Result<(), StorageError> {
        let prefix = BlobKey::UploadDir(upload).path();
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
}
