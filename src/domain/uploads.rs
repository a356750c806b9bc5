//! Blob uploads: sessions, chunks, commit with digest verification, mounts and expiry.
//!
//! Rules: a chunk must start where the upload ends (else `RangeInvalid`, HTTP 416); a blob becomes
//! visible only after its bytes are stored under their verified digest and the metadata commit
//! links it; a failed verification removes the whole session.

use super::registry::storage_err;
use super::{Digest, Error, RepoName, Result};
use crate::metadata::{SessionCap, Upload};
use crate::storage::{ByteStream, Commit, UploadId, WrittenPart};

/// Where an upload stands.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadState {
    pub id: UploadId,
    pub size: u64,
}

impl super::Registry {
    /// Opens an upload session for `owner` (the principal's name), within the session caps.
    pub async fn start_upload(&self, repo: &RepoName, owner: &str) -> Result<UploadState> {
        let id = UploadId::new();
        match self.meta.create_upload(&id, repo, owner, self.clock.now(), self.limits.upload_sessions).await? {
            Ok(()) => Ok(UploadState { id, size: 0 }),
            Err(SessionCap::Principal(n)) => Err(Error::TooManyUploads(format!(
                "{n} upload sessions are open for this account, the most allowed (uploads.max_per_principal); finish or cancel some"
            ))),
            Err(SessionCap::Repository(n)) => Err(Error::TooManyUploads(format!(
                "{n} upload sessions are open in {repo}, the most allowed (uploads.max_per_repository); finish or cancel some"
            ))),
        }
    }

    /// Runs `work` (a write into session `id`) while marking the session as in use every quarter
    /// of `uploads.expiry`, so that a long upload is never swept as idle under it.
    async fn in_use<T>(&self, id: &UploadId, work: impl std::future::Future<Output = T>) -> T {
        let every = (self.limits.upload_expiry / 4).max(std::time::Duration::from_secs(1));
        let beat = async {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = self.meta.touch_upload(id, self.clock.now()).await {
                    tracing::warn!(upload = %id, error = %e, "could not mark an upload session as in use");
                }
            }
        };
        tokio::select! {
            done = work => done,
            never = beat => never,
        }
    }

    /// Current state of a session.
    pub async fn upload_status(&self, repo: &RepoName, id: &UploadId) -> Result<UploadState> {
        let upload = self.meta.get_upload(repo, id).await?.ok_or(Error::UploadUnknown)?;
        Ok(UploadState { id: upload.id, size: upload.size })
    }

    /// Appends a chunk. `range` is the inclusive `Content-Range` when the client sent one.
    pub async fn append_chunk(
        &self,
        repo: &RepoName,
        id: &UploadId,
        range: Option<(u64, u64)>,
        body: ByteStream,
    ) -> Result<UploadState> {
        // Chunks of one upload are written one at a time (local disk appends them to one file).
        let lock = self.upload_lock(id);
        let _held = lock.lock().await;
        let upload = self.meta.get_upload(repo, id).await?.ok_or(Error::UploadUnknown)?;
        let Some(part) = self.in_use(id, self.write_chunk(&upload, range, body)).await? else {
            return Ok(UploadState { id: id.clone(), size: upload.size });
        };
        if !self.meta.append_part(id, upload.size, &part, self.clock.now()).await? {
            self.drop_part(id, &part).await;
            return Err(Error::RangeInvalid("the upload was extended by another request".into()));
        }
        Ok(UploadState { id: id.clone(), size: upload.size + part.size })
    }

    /// Writes a chunk at the end of `upload`, checked against its `Content-Range`. `None` for an
    /// empty chunk, which changes nothing. The part is not recorded: the caller does that.
    async fn write_chunk(
        &self,
        upload: &Upload,
        range: Option<(u64, u64)>,
        body: ByteStream,
    ) -> Result<Option<WrittenPart>> {
        if let Some((start, end)) = range {
            if start != upload.size || end < start {
                return Err(Error::RangeInvalid(format!(
                    "chunk {start}-{end} does not continue the upload, which has {} bytes",
                    upload.size
                )));
            }
        }
        let part = self.blobs.write_part(&upload.id, upload.size, body).await.map_err(storage_err)?;
        let expected = range.map(|(start, end)| end - start + 1);
        if expected.is_some_and(|n| n != part.size) {
            self.drop_part(&upload.id, &part).await;
            return Err(Error::UploadInvalid(format!(
                "chunk has {} bytes but Content-Range says {}",
                part.size,
                expected.unwrap_or_default()
            )));
        }
        if part.size == 0 {
            self.drop_part(&upload.id, &part).await;
            return Ok(None);
        }
        Ok(Some(part))
    }

    /// Deletes a part that is not part of the upload (refused, or empty).
    async fn drop_part(&self, id: &UploadId, part: &WrittenPart) {
        if let Err(e) = self.blobs.delete_part(id, &part.part_id).await {
            tracing::warn!(upload = %id, error = %e, "could not delete a refused chunk; the expiry sweep will");
        }
    }

    /// Finishes an upload: an optional last chunk, then verification against `digest`.
    ///
    /// The last chunk is written but never recorded as a part of its own: the blob's commit ends
    /// the session in the same transaction, so a `PUT` with a body costs one database commit, not
    /// two. Should the store fail in between, the unrecorded part is overwritten by a retried
    /// `PUT` (local disk) or removed with the session (object stores).
    pub async fn complete_upload(
        &self,
        repo: &RepoName,
        id: &UploadId,
        digest: &Digest,
        last_chunk: Option<(Option<(u64, u64)>, ByteStream)>,
    ) -> Result<u64> {
        let lock = self.upload_lock(id);
        let _held = lock.lock().await;
        let mut upload = self.meta.get_upload(repo, id).await?.ok_or(Error::UploadUnknown)?;
        if let Some((range, body)) = last_chunk {
            if let Some(part) = self.in_use(id, self.write_chunk(&upload, range, body)).await? {
                upload.parts.push(part);
            }
        }
        // No collection may sweep these bytes while they are published and recorded.
        self.hold_for_upload(digest).await?;
        match self.in_use(id, self.blobs.commit(id, &upload.parts, digest)).await.map_err(storage_err)? {
            Commit::Stored { size } => {
                let completed = self.meta.complete_upload(id, repo, digest, size, self.clock.now()).await;
                self.quota_checked(repo, completed).await?;
                self.discard_upload_objects(id).await;
                metrics::counter!(crate::model::metrics::UPLOADS).increment(1);
                metrics::counter!(crate::model::metrics::UPLOAD_BYTES).increment(size);
                Ok(size)
            }
            Commit::Mismatch { actual } => {
                self.meta.delete_upload(id).await?;
                self.discard_upload_objects(id).await;
                Err(Error::DigestInvalid(format!("uploaded content has digest {actual}, not {digest}")))
            }
        }
    }

    /// A whole blob in one request (`POST ?digest=`).
    pub async fn upload_monolithic(
        &self,
        repo: &RepoName,
        owner: &str,
        digest: &Digest,
        body: ByteStream,
    ) -> Result<u64> {
        let state = self.start_upload(repo, owner).await?;
        let result = self.complete_upload(repo, &state.id, digest, Some((None, body))).await;
        if result.is_err() {
            // The session was never shown to the client, so nothing may outlive the failure.
            let _ = self.meta.delete_upload(&state.id).await;
            self.discard_upload_objects(&state.id).await;
        }
        result
    }

    /// Cancels a session and deletes its parts.
    pub async fn cancel_upload(&self, repo: &RepoName, id: &UploadId) -> Result<()> {
        self.meta.get_upload(repo, id).await?.ok_or(Error::UploadUnknown)?;
        self.meta.delete_upload(id).await?;
        self.discard_upload_objects(id).await;
        Ok(())
    }

    /// Runs [`Registry::expire_uploads`] if this replica (`holder`) gets the sweep's lease for
    /// `every`, so that of several replicas on one database one sweeps per interval; `None` when
    /// another replica holds it.
    pub async fn expire_uploads_leased(&self, holder: &str, every: std::time::Duration) -> Result<Option<usize>> {
        let now = self.clock.now();
        if !self.meta.take_lease("upload-sweep", holder, now, now + every.as_secs().max(1) as i64).await? {
            return Ok(None);
        }
        self.expire_uploads().await.map(Some)
    }

    /// Removes sessions idle past the expiry, and upload objects no session owns (a crash's leftovers).
    pub async fn expire_uploads(&self) -> Result<usize> {
        let cutoff = self.clock.now() - self.limits.upload_expiry.as_secs() as i64;
        let mut removed = 0;
        for id in self.meta.stale_uploads(cutoff).await? {
            self.meta.delete_upload(&id).await?;
            self.discard_upload_objects(&id).await;
            removed += 1;
        }
        for id in self.blobs.stored_uploads().await.map_err(storage_err)? {
            if !self.meta.upload_exists(&id).await? {
                self.discard_upload_objects(&id).await;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// How many sessions and orphaned upload objects [`Registry::expire_uploads`] would remove.
    pub(super) async fn stale_upload_count(&self) -> Result<usize> {
        let cutoff = self.clock.now() - self.limits.upload_expiry.as_secs() as i64;
        let mut count = self.meta.stale_uploads(cutoff).await?.len();
        for id in self.blobs.stored_uploads().await.map_err(storage_err)? {
            if !self.meta.upload_exists(&id).await? {
                count += 1;
            }
        }
        Ok(count)
    }

    /// The lock that serialises writes to one upload, dropped from the table when unused.
    fn upload_lock(&self, id: &UploadId) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.upload_locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.retain(|_, l| std::sync::Arc::strong_count(l) > 1);
        locks.entry(id.clone()).or_default().clone()
    }

    /// Best effort: a failure here leaves objects that the expiry sweep removes later.
    async fn discard_upload_objects(&self, id: &UploadId) {
        if let Err(e) = self.blobs.delete_upload(id).await {
            tracing::warn!(upload = %id, error = %e, "could not delete upload objects; the expiry sweep will retry");
        }
    }
}
