//! Repositories, blobs and their links.

use async_trait::async_trait;
use sqlx::Row;

use super::{db_err, ensure_repo, lifecycle, repo_id, split_page, SqlMetadata, PAGE_SEPARATOR};
use crate::metadata::{BlobAccess, BlobIndex, Linked, RepositoryStore, RepositorySummary, TagDetail};
use crate::model::metrics::{self as m, Timer};
use crate::model::{Digest, Engine, RepoName, Result};

/// A referencing manifest (`m`, with its scan record `s`) that opens the gate at `$1`.
const ALLOWED: &str =
    "(s.state = 'passed' OR (s.state = 'released' AND (s.release_until IS NULL OR s.release_until > $1)))";
/// A referencing manifest that counts as an image (one stored before kinds were recorded does too).
const IMAGE: &str = "(m.digest IS NOT NULL AND (m.kind IS NULL OR m.kind = 'image'))";

#[async_trait]
impl RepositoryStore for SqlMetadata {
    async fn list_repositories(&self, last: Option<&str>, limit: u32) -> Result<Vec<String>> {
        let joined: Option<String> = sqlx::query_scalar(
            "SELECT string_agg(name, $3 ORDER BY name) FROM (
                 SELECT name FROM repositories WHERE name > $1 ORDER BY name LIMIT $2) page",
        )
        .bind(last.unwrap_or(""))
        .bind(limit as i64)
        .bind(PAGE_SEPARATOR)
        .fetch_one(&self.read)
        .await
        .map_err(db_err)?;
        Ok(split_page(joined))
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(&self.read).await.map_err(db_err)?;
        Ok(())
    }

    async fn repository_exists(&self, repo: &RepoName) -> Result<bool> {
        Ok(repo_id(&self.read, repo).await?.is_some())
    }

    async fn repository_summaries(
        &self,
        namespace: Option<&str>,
        after: Option<&str>,
        limit: u32,
        now: i64,
        search: Option<&str>,
    ) -> Result<Vec<RepositorySummary>> {
        type Row = (String, i64, i64, i64, i64, i64, Option<i64>, Option<i64>);
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT r.name,
                 (SELECT COUNT(*) FROM tags t WHERE t.repository_id = r.id),
                 (SELECT COUNT(*) FROM manifests m WHERE m.repository_id = r.id),
                 (SELECT CAST(COALESCE(SUM(b.size), 0) AS BIGINT) FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
                  WHERE rb.repository_id = r.id),
                 (SELECT COUNT(*) FROM scans s WHERE s.repository_id = r.id AND s.state = 'quarantined'),
                 r.created_at,
                 (SELECT CAST(MAX(m.created_at) AS BIGINT) FROM manifests m WHERE m.repository_id = r.id),
                 (SELECT CAST(MAX({STATE_RANK}) AS BIGINT) FROM scans s WHERE s.repository_id = r.id)
             FROM repositories r
             WHERE r.name > $1 AND (CAST($2 AS TEXT) = ''
                  OR substr(r.name, 1, length(CAST($2 AS TEXT)) + 1) = CAST($2 AS TEXT) || '/')
                 AND lower(r.name) LIKE $5 ESCAPE '\\'
             ORDER BY r.name LIMIT $3"
        ))
        .bind(after.unwrap_or(""))
        .bind(namespace.unwrap_or(""))
        .bind(limit as i64)
        .bind(now)
        .bind(crate::model::names::contains_pattern(search))
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|(name, tags, manifests, bytes, quarantined, created_at, last_pushed_at, worst)| RepositorySummary {
                name,
                tags: tags as u64,
                manifests: manifests as u64,
                bytes: bytes as u64,
                quarantined: quarantined as u64,
                created_at,
                last_pushed_at,
                worst_state: worst.and_then(state_of_rank),
            })
            .collect())
    }

    async fn tag_details(&self, repo: &RepoName, last: Option<&str>, limit: u32, now: i64) -> Result<Vec<TagDetail>> {
        type Row = (String, String, String, i64, i64, Option<i64>);
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT t.name, t.manifest_digest, m.media_type, CAST(m.size AS BIGINT), CAST(t.updated_at AS BIGINT), CAST({rank} AS BIGINT)
             FROM tags t JOIN repositories r ON r.id = t.repository_id
             JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
             LEFT JOIN scans s ON s.repository_id = t.repository_id AND s.manifest_digest = t.manifest_digest
             WHERE r.name = $1 AND t.name > $2 ORDER BY t.name LIMIT $3",
            rank = STATE_RANK,
        ))
        .bind(repo.as_str())
        .bind(last.unwrap_or(""))
        .bind(limit as i64)
        .bind(now)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|(name, digest, media_type, size, pushed_at, rank)| TagDetail {
                name,
                digest,
                media_type,
                size: size as u64,
                pushed_at,
                // A scan row in `scanning` reads as such here: the rank merges it with pending.
                state: rank.and_then(state_of_rank),
            })
            .collect())
    }

    async fn delete_repository(&self, repo: &RepoName) -> Result<bool> {
        // Links, manifests and through them references, tags and verdicts go by ON DELETE CASCADE.
        let delete = "DELETE FROM repositories WHERE name = $1 AND name = $2";
        self.delete_guarded(repo, (None, None), delete, repo.to_string()).await
    }
}

#[async_trait]
impl BlobIndex for SqlMetadata {
    async fn linked_blob(&self, repo: &RepoName, digest: &Digest) -> Result<Option<Linked>> {
        let _timer = Timer::start(m::DB_DURATION, "op", "linked_blob");
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT b.size, rb.touched_at FROM blobs b
             JOIN repository_blobs rb ON rb.digest = b.digest
             JOIN repositories r ON r.id = rb.repository_id
             WHERE r.name = $1 AND b.digest = $2",
        )
        .bind(repo.as_str())
        .bind(digest.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)?;
        Ok(row.map(|(size, touched_at)| Linked { size: size as u64, touched_at }))
    }

    async fn link_blob(&self, repo: &RepoName, digest: &Digest, size: u64, now: i64) -> Result<bool> {
        let _timer = Timer::start(m::DB_DURATION, "op", "link_blob");
        let (repo, digest, engine) = (repo.clone(), digest.clone(), self.engine());
        self.writing(move |write| async move {
            let mut tx = write.begin().await.map_err(db_err)?;
            if !link(&mut tx, engine, &repo, &digest, size, now).await? {
                return Ok(false);
            }
            tx.commit().await.map_err(db_err)?;
            Ok(true)
        })
        .await
    }

    async fn unlink_blob(&self, repo: &RepoName, digest: &Digest) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM repository_blobs WHERE digest = $1
             AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
        )
        .bind(digest.as_str())
        .bind(repo.as_str())
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn blob_access(&self, repo: &RepoName, digest: &Digest, now: i64) -> Result<Option<BlobAccess>> {
        let _timer = Timer::start(m::DB_DURATION, "op", "blob_access");
        let row = sqlx::query(&format!(
            "SELECT b.size AS size, rb.in_image AS in_image,
                 COALESCE(SUM(CASE WHEN {IMAGE} THEN 1 ELSE 0 END), 0) AS images,
                 COALESCE(SUM(CASE WHEN {IMAGE} AND {ALLOWED} THEN 1 ELSE 0 END), 0) AS open_images,
                 COALESCE(SUM(CASE WHEN m.kind = 'artifact' AND {ALLOWED} THEN 1 ELSE 0 END), 0) AS open_artifacts,
                 (SELECT p.mode FROM namespace_signature_policies p JOIN namespaces n ON n.id = p.namespace_id
                  WHERE n.name = $4) AS signature_mode
             FROM repositories r
             JOIN repository_blobs rb ON rb.repository_id = r.id AND rb.digest = $3
             JOIN blobs b ON b.digest = rb.digest
             LEFT JOIN manifest_references mr
                 ON mr.repository_id = rb.repository_id AND mr.target_digest = rb.digest AND mr.kind = 'blob'
             LEFT JOIN manifests m ON m.repository_id = mr.repository_id AND m.digest = mr.manifest_digest
             LEFT JOIN scans s ON s.repository_id = mr.repository_id AND s.manifest_digest = mr.manifest_digest
             WHERE r.name = $2
             GROUP BY b.size, rb.in_image"
        ))
        .bind(now)
        .bind(repo.as_str())
        .bind(digest.as_str())
        .bind(repo.namespace())
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)?;
        Ok(row.map(|row| {
            let count = |c: &str| row.get::<i64, _>(c);
            let image_content = count("in_image") != 0 || count("images") > 0;
            BlobAccess {
                size: count("size") as u64,
                readable: count("open_images") > 0 || (!image_content && count("open_artifacts") > 0),
                image_content,
                signatures: super::signature_mode(&row),
            }
        }))
    }

    async fn blob_recorded(&self, digest: &Digest) -> Result<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar("SELECT size FROM blobs WHERE digest = $1")
            .bind(digest.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        Ok(size.map(|s| s as u64))
    }
}

/// Records a blob and links it to a repository, inside the caller's transaction; both are
/// touched. Refused (`Error::OverQuota`) when the namespace's quota has no room for the repository or
/// the bytes: the namespace's settings row is read (and locked, when a quota applies) before any
/// other row. False if the collector is deleting the blob's bytes (the caller rolls back): the
/// blob's row is locked by the touch, so a collector that marks it sweeping either waits for this
/// transaction (and then sees the link) or has committed (and this sees `sweeping`).
pub(crate) async fn link(
    tx: &mut sqlx::AnyConnection,
    engine: Engine,
    repo: &RepoName,
    digest: &Digest,
    size: u64,
    now: i64,
) -> Result<bool> {
    let rules =
        lifecycle::rules_in(tx, engine, repo.namespace(), |q| q.bytes.is_some() || q.repositories.is_some()).await?;
    lifecycle::check_new_repository(tx, &rules, repo).await?;
    let repo_id = ensure_repo(tx, repo).await?;
    sqlx::query(
        "INSERT INTO blobs (digest, size, created_at, touched_at) VALUES ($1, $2, $3, $3)
         ON CONFLICT (digest) DO NOTHING",
    )
    .bind(digest.as_str())
    .bind(size as i64)
    .bind(now)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    // One statement that locks the row for update (a share lock upgraded by a later update would
    // deadlock against a concurrent link of the same blob) and reads whether it is being swept.
    let sweeping: i64 = sqlx::query_scalar("UPDATE blobs SET touched_at = $2 WHERE digest = $1 RETURNING sweeping")
        .bind(digest.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    if sweeping != 0 {
        return Ok(false);
    }
    lifecycle::check_link_bytes(tx, &rules, repo.namespace(), digest, size).await?;
    sqlx::query(
        "INSERT INTO repository_blobs (repository_id, digest, created_at, touched_at, namespace) VALUES ($1, $2, $3, $3, $4)
         ON CONFLICT (repository_id, digest) DO UPDATE SET touched_at = excluded.touched_at",
    )
    .bind(repo_id)
    .bind(digest.as_str())
    .bind(now)
    .bind(repo.namespace())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(true)
}

/// A scan row's state in effect at `$4` as a rank, worst highest (for `MAX`): a release lapsed at
/// `$4` ranks as quarantined.
pub(super) const STATE_RANK: &str = "CASE s.state WHEN 'quarantined' THEN 5 WHEN 'error' THEN 4 \
    WHEN 'scanning' THEN 3 WHEN 'pending' THEN 3 \
    WHEN 'released' THEN (CASE WHEN s.release_until IS NOT NULL AND s.release_until <= $4 THEN 5 ELSE 2 END) \
    WHEN 'passed' THEN 1 ELSE 0 END";

/// The state a [`STATE_RANK`] stands for (`scanning` and `pending` share one: `pending`).
pub(super) fn state_of_rank(rank: i64) -> Option<crate::model::ScanState> {
    use crate::model::ScanState;
    Some(match rank {
        5 => ScanState::Quarantined,
        4 => ScanState::Error,
        3 => ScanState::Pending,
        2 => ScanState::Released,
        1 => ScanState::Passed,
        _ => return None,
    })
}
