//! The collector's queries (see `metadata::gc` for the rules and `domain::gc` for the protocol).
//!
//! On PostgreSQL every check-then-change first locks the rows it may change (`FOR UPDATE`), then
//! re-checks its condition in a new statement, whose snapshot sees whatever a transaction that
//! held a conflicting lock committed. On SQLite the one writer connection orders them anyway.

use async_trait::async_trait;

use super::{db_err, digest, lock_clause, placeholders, RowLock, SqlMetadata, REFERENCE_ROWS};
use crate::metadata::gc::{BlobRow, GcStore, Link};
use crate::model::{Digest, RepoName, Result};

/// A link some manifest of its repository references.
const REFERENCED: &str = "EXISTS (SELECT 1 FROM manifest_references mr
     WHERE mr.repository_id = rb.repository_id AND mr.target_digest = rb.digest)";

/// `(repository_id, digest) IN ((...), ...)` for `count` links, placeholders from `from`.
fn link_list(from: usize, count: usize) -> String {
    (0..count).map(|i| format!("(${}, ${})", from + 2 * i, from + 2 * i + 1)).collect::<Vec<_>>().join(", ")
}

#[async_trait]
impl GcStore for SqlMetadata {
    async fn stale_links(&self, cutoff: i64, after: Option<&Link>, limit: u32) -> Result<Vec<Link>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(&format!(
            "SELECT rb.repository_id, r.name, rb.digest FROM repository_blobs rb
             JOIN repositories r ON r.id = rb.repository_id
             WHERE rb.touched_at < $1 AND (rb.repository_id, rb.digest) > ($2, $3) AND NOT {REFERENCED}
             ORDER BY rb.repository_id, rb.digest LIMIT $4"
        ))
        .bind(cutoff)
        .bind(after.map_or(-1, |l| l.repository_id))
        .bind(after.map_or("", |l| l.digest.as_str()))
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(|(repository_id, repo, d)| Ok(Link { repository_id, repo, digest: digest(d)? })).collect()
    }

    async fn remove_stale_links(&self, links: &[Link], cutoff: i64) -> Result<u64> {
        let (links, engine) = (links.to_vec(), self.engine());
        self.writing(move |write| async move {
            let mut tx = write.begin().await.map_err(db_err)?;
            let mut removed = 0;
            for batch in links.chunks(REFERENCE_ROWS / 2) {
                let list = link_list(2, batch.len());
                let lock = lock_clause(engine, RowLock::Update);
                if !lock.is_empty() {
                    let sql = format!(
                        "SELECT repository_id FROM repository_blobs WHERE (repository_id, digest) IN ({})
                         ORDER BY repository_id, digest{lock}",
                        link_list(1, batch.len())
                    );
                    let mut q = sqlx::query_scalar::<_, i64>(&sql);
                    for l in batch {
                        q = q.bind(l.repository_id).bind(l.digest.as_str());
                    }
                    q.fetch_all(&mut *tx).await.map_err(db_err)?;
                }
                let sql = format!(
                    "DELETE FROM repository_blobs AS rb WHERE (rb.repository_id, rb.digest) IN ({list})
                     AND rb.touched_at < $1 AND NOT {REFERENCED}"
                );
                let mut q = sqlx::query(&sql).bind(cutoff);
                for l in batch {
                    q = q.bind(l.repository_id).bind(l.digest.as_str());
                }
                removed += q.execute(&mut *tx).await.map_err(db_err)?.rows_affected();
            }
            tx.commit().await.map_err(db_err)?;
            Ok(removed)
        })
        .await
    }

    async fn collectable_blobs(&self, cutoff: i64, after: Option<&Digest>, limit: u32) -> Result<Vec<(Digest, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as(&format!(
            "SELECT b.digest, b.size FROM blobs b
             WHERE b.touched_at < $1 AND b.sweeping = 0 AND b.digest > $2
             AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = b.digest
                             AND (rb.touched_at >= $1 OR {REFERENCED}))
             ORDER BY b.digest LIMIT $3"
        ))
        .bind(cutoff)
        .bind(after.map_or("", |d| d.as_str()))
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(|(d, size)| Ok((digest(d)?, size as u64))).collect()
    }

    async fn sweeping_blobs(&self) -> Result<Vec<(Digest, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT digest, size FROM blobs WHERE sweeping <> 0")
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        rows.into_iter().map(|(d, size)| Ok((digest(d)?, size as u64))).collect()
    }

    async fn begin_sweep(&self, blobs: &[Digest], cutoff: i64) -> Result<Vec<Digest>> {
        let (blobs, engine) = (blobs.to_vec(), self.engine());
        self.writing(move |write| async move {
            let mut tx = write.begin().await.map_err(db_err)?;
            let mut marked = Vec::new();
            for batch in blobs.chunks(REFERENCE_ROWS) {
                let list = placeholders(2, batch.len());
                let lock = lock_clause(engine, RowLock::Update);
                if !lock.is_empty() {
                    let sql = format!(
                        "SELECT digest FROM blobs WHERE digest IN ({}) ORDER BY digest{lock}",
                        placeholders(1, batch.len())
                    );
                    let mut q = sqlx::query_scalar::<_, String>(&sql);
                    for d in batch {
                        q = q.bind(d.as_str());
                    }
                    q.fetch_all(&mut *tx).await.map_err(db_err)?;
                }
                let sql = format!(
                    "UPDATE blobs SET sweeping = 1 WHERE digest IN ({list}) AND sweeping = 0 AND touched_at < $1
                     AND NOT EXISTS (SELECT 1 FROM repository_blobs rb WHERE rb.digest = blobs.digest)
                     RETURNING digest"
                );
                let mut q = sqlx::query_scalar::<_, String>(&sql).bind(cutoff);
                for d in batch {
                    q = q.bind(d.as_str());
                }
                for d in q.fetch_all(&mut *tx).await.map_err(db_err)? {
                    marked.push(digest(d)?);
                }
            }
            tx.commit().await.map_err(db_err)?;
            Ok(marked)
        })
        .await
    }

    async fn begin_orphan_sweep(&self, orphans: &[(Digest, u64)], now: i64) -> Result<Vec<Digest>> {
        let orphans = orphans.to_vec();
        self.writing(move |write| async move {
            let mut tx = write.begin().await.map_err(db_err)?;
            let mut marked = Vec::new();
            for batch in orphans.chunks(REFERENCE_ROWS / 2) {
                let rows = (0..batch.len()).map(|i| format!("(${}, ${}, $1, $1, 1)", 2 + 2 * i, 3 + 2 * i));
                let sql = format!(
                    "INSERT INTO blobs (digest, size, created_at, touched_at, sweeping) VALUES {}
                     ON CONFLICT (digest) DO NOTHING RETURNING digest",
                    rows.collect::<Vec<_>>().join(", ")
                );
                let mut q = sqlx::query_scalar::<_, String>(&sql).bind(now);
                for (d, size) in batch {
                    q = q.bind(d.as_str()).bind(*size as i64);
                }
                for d in q.fetch_all(&mut *tx).await.map_err(db_err)? {
                    marked.push(digest(d)?);
                }
            }
            tx.commit().await.map_err(db_err)?;
            Ok(marked)
        })
        .await
    }

    async fn end_sweep(&self, blobs: &[Digest]) -> Result<()> {
        let blobs = blobs.to_vec();
        self.writing(move |write| async move {
            let mut tx = write.begin().await.map_err(db_err)?;
            for batch in blobs.chunks(REFERENCE_ROWS) {
                let sql =
                    format!("DELETE FROM blobs WHERE digest IN ({}) AND sweeping <> 0", placeholders(1, batch.len()));
                let mut q = sqlx::query(&sql);
                for d in batch {
                    q = q.bind(d.as_str());
                }
                q.execute(&mut *tx).await.map_err(db_err)?;
            }
            tx.commit().await.map_err(db_err)
        })
        .await
    }

    async fn touch_blob(&self, digest: &Digest, now: i64, fresh_after: i64) -> Result<BlobRow> {
        let row: Option<(i64, i64)> = sqlx::query_as("SELECT sweeping, touched_at FROM blobs WHERE digest = $1")
            .bind(digest.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        match row {
            None => return Ok(BlobRow::Absent),
            Some((sweeping, _)) if sweeping != 0 => return Ok(BlobRow::Sweeping),
            Some((_, touched)) if touched >= fresh_after => return Ok(BlobRow::Live),
            Some(_) => {}
        }
        // Touched long enough ago that a collection could be about to sweep it: touch it, on the
        // row a sweep would lock, and see what the sweep (if any) left.
        let d = digest.as_str().to_owned();
        self.writing_relaxed(move |conn| {
            Box::pin(async move {
                let touched = sqlx::query("UPDATE blobs SET touched_at = $2 WHERE digest = $1 AND sweeping = 0")
                    .bind(&d)
                    .bind(now)
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err)?;
                if touched.rows_affected() > 0 {
                    return Ok(BlobRow::Live);
                }
                let exists: Option<i64> = sqlx::query_scalar("SELECT sweeping FROM blobs WHERE digest = $1")
                    .bind(&d)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(db_err)?;
                Ok(if exists.is_some() { BlobRow::Sweeping } else { BlobRow::Absent })
            })
        })
        .await
    }

    async fn touch_link(&self, repo: &RepoName, digest: &Digest, now: i64) -> Result<()> {
        let (repo, d) = (repo.as_str().to_owned(), digest.as_str().to_owned());
        self.writing_relaxed(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE repository_blobs SET touched_at = $3 WHERE digest = $2 AND touched_at < $3
                     AND repository_id = (SELECT id FROM repositories WHERE name = $1)",
                )
                .bind(&repo)
                .bind(&d)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(db_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn recorded_blobs(&self) -> Result<Vec<(Digest, u64, bool)>> {
        let rows: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT digest, size, sweeping FROM blobs").fetch_all(&self.read).await.map_err(db_err)?;
        rows.into_iter().map(|(d, size, sweeping)| Ok((digest(d)?, size as u64, sweeping != 0))).collect()
    }

    async fn fail_images_using(&self, digest: &Digest, summary: &str, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE scans SET state = 'error', summary = $2, updated_at = $3, lease_until = NULL, rescan = 0,
                 release_until = NULL, released_by = NULL, release_reason = NULL
             WHERE state <> 'error' AND (repository_id, manifest_digest) IN
                 (SELECT repository_id, manifest_digest FROM manifest_references WHERE target_digest = $1)",
        )
        .bind(digest.as_str())
        .bind(summary)
        .bind(now)
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }
}
