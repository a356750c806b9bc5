//! Upload sessions and their parts.

use async_trait::async_trait;
use sqlx::{Connection, Row};

use super::{blobs::link, db_err, digest, repo_name, SqlMetadata};
use crate::metadata::{SessionCap, SessionCaps, Upload, UploadStore};
use crate::model::metrics::{self as m, Timer};
use crate::model::{Digest, Error, RepoName, Result};
use crate::model::{UploadId, WrittenPart};

#[async_trait]
impl UploadStore for SqlMetadata {
    async fn create_upload(
        &self,
        id: &UploadId,
        repo: &RepoName,
        owner: &str,
        now: i64,
        caps: SessionCaps,
    ) -> Result<Result<(), SessionCap>> {
        let _timer = Timer::start(m::DB_DURATION, "op", "create_upload");
        let (id, repo, owner) = (id.clone(), repo.clone(), owner.to_owned());
        self.writing_relaxed(move |conn| {
            Box::pin(async move {
                // One statement: the caps are checked on the rows the insert sees.
                let done = sqlx::query(
                    "INSERT INTO uploads (id, repository, size, created_at, updated_at, owner)
                     SELECT $1, $2, 0, $3, $4, $5
                     WHERE (SELECT COUNT(*) FROM uploads WHERE owner = $6) < $7
                       AND (SELECT COUNT(*) FROM uploads WHERE repository = $8) < $9",
                )
                .bind(id.as_str())
                .bind(repo.as_str())
                .bind(now)
                .bind(now)
                .bind(&owner)
                .bind(&owner)
                .bind(i64::from(caps.per_principal))
                .bind(repo.as_str())
                .bind(i64::from(caps.per_repository))
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
                if done.rows_affected() > 0 {
                    return Ok(Ok(()));
                }
                let mine: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM uploads WHERE owner = $1")
                    .bind(&owner)
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(db_err)?;
                Ok(Err(if mine >= i64::from(caps.per_principal) {
                    SessionCap::Principal(caps.per_principal)
                } else {
                    SessionCap::Repository(caps.per_repository)
                }))
            })
        })
        .await
    }

    async fn touch_upload(&self, id: &UploadId, now: i64) -> Result<()> {
        let id = id.clone();
        self.writing_relaxed(move |conn| {
            Box::pin(async move {
                sqlx::query("UPDATE uploads SET updated_at = $1 WHERE id = $2")
                    .bind(now)
                    .bind(id.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn get_upload(&self, repo: &RepoName, id: &UploadId) -> Result<Option<Upload>> {
        let _timer = Timer::start(m::DB_DURATION, "op", "get_upload");
        let Some(row) =
            sqlx::query("SELECT repository, size, updated_at FROM uploads WHERE id = $1 AND repository = $2")
                .bind(id.as_str())
                .bind(repo.as_str())
                .fetch_optional(&self.read)
                .await
                .map_err(db_err)?
        else {
            return Ok(None);
        };
        let parts = sqlx::query("SELECT part_id, size, sha256 FROM upload_parts WHERE upload_id = $1 ORDER BY start")
            .bind(id.as_str())
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(|p| {
                Ok(WrittenPart {
                    part_id: p.get("part_id"),
                    size: p.get::<i64, _>("size") as u64,
                    sha256: digest(p.get("sha256"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Upload {
            id: id.clone(),
            repo: repo_name(row.get("repository"))?,
            size: row.get::<i64, _>("size") as u64,
            parts,
            updated_at: row.get("updated_at"),
        }))
    }

    async fn append_part(&self, id: &UploadId, offset: u64, part: &WrittenPart, now: i64) -> Result<bool> {
        let _timer = Timer::start(m::DB_DURATION, "op", "append_part");
        let (id, part) = (id.clone(), part.clone());
        self.writing_relaxed(move |conn| {
            Box::pin(async move {
                let mut tx = conn.begin().await.map_err(db_err)?;
                // Optimistic concurrency: only the writer that saw the current end may extend it.
                let moved =
                    sqlx::query("UPDATE uploads SET size = size + $1, updated_at = $2 WHERE id = $3 AND size = $4")
                        .bind(part.size as i64)
                        .bind(now)
                        .bind(id.as_str())
                        .bind(offset as i64)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                if moved.rows_affected() == 0 {
                    return Ok(false);
                }
                sqlx::query(
                    "INSERT INTO upload_parts (upload_id, start, part_id, size, sha256) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id.as_str())
                .bind(offset as i64)
                .bind(&part.part_id)
                .bind(part.size as i64)
                .bind(part.sha256.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                tx.commit().await.map_err(db_err)?;
                Ok(true)
            })
        })
        .await
    }

    async fn complete_upload(&self, id: &UploadId, repo: &RepoName, d: &Digest, size: u64, now: i64) -> Result<()> {
        let _timer = Timer::start(m::DB_DURATION, "op", "complete_upload");
        let (id, repo, d, engine) = (id.clone(), repo.clone(), d.clone(), self.engine());
        self.writing(move |write| async move {
            let mut tx = write.begin().await.map_err(db_err)?;
            let gone = sqlx::query("DELETE FROM uploads WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            if gone.rows_affected() == 0 {
                return Err(Error::UploadUnknown);
            }
            if !link(&mut tx, engine, &repo, &d, size, now).await? {
                // Rolled back: the session stays, and the client is told to push again.
                return Err(Error::Busy(format!(
                    "blob {d} was being garbage-collected while this upload finished; push it again"
                )));
            }
            tx.commit().await.map_err(db_err)
        })
        .await
    }

    async fn delete_upload(&self, id: &UploadId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id.as_str())
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn stale_uploads(&self, before: i64) -> Result<Vec<UploadId>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM uploads WHERE updated_at < $1")
            .bind(before)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        Ok(ids.into_iter().filter_map(|s| s.parse().ok()).collect())
    }

    async fn upload_exists(&self, id: &UploadId) -> Result<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM uploads WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        Ok(found.is_some())
    }
}
