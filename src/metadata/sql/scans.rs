//! Scan jobs and verdicts (both engines).

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{db_err, digest, repo_name, SqlMetadata};
use crate::domain::{Digest, Error, RepoName, Result};
use crate::metadata::scans::{ScanJob, ScanRecord, ScanState, ScanStore};

const RECORD: &str = "SELECT r.name, s.* FROM scans s JOIN repositories r ON r.id = s.repository_id";

/// A job that may be claimed at time `$2`: due, not leased, and still wanting a verdict. The last
/// term is the predicate of the `scans_queue` partial index, word for word, so that a claim reads
/// only the queue and never the whole table.
const CLAIMABLE: &str = "next_attempt_at <= $2 AND (lease_until IS NULL OR lease_until < $2)
    AND (state IN ('pending', 'scanning') OR rescan = 1)";

/// Claims the oldest claimable job: `$1` the lease's end, `$2` now.
fn claim_sql() -> String {
    format!(
        "UPDATE scans SET lease_until = $1, attempts = attempts + 1, updated_at = $2,
             state = CASE WHEN state = 'pending' THEN 'scanning' ELSE state END
         WHERE (repository_id, manifest_digest) = (
             SELECT repository_id, manifest_digest FROM scans WHERE {CLAIMABLE}
             ORDER BY created_at, manifest_digest LIMIT 1)
           AND {CLAIMABLE}
         RETURNING repository_id, manifest_digest, attempts"
    )
}

fn record(row: AnyRow) -> Result<ScanRecord> {
    let state: String = row.get("state");
    Ok(ScanRecord {
        repository: row.get("name"),
        digest: row.get("manifest_digest"),
        state: ScanState::parse(&state).ok_or_else(|| Error::Internal(format!("bad scan state {state}")))?,
        findings: row.get("findings"),
        summary: row.get("summary"),
        attempts: row.get::<i64, _>("attempts") as u32,
        rescan_requested: row.get::<i64, _>("rescan") != 0,
        released_by: row.get("released_by"),
        release_reason: row.get("release_reason"),
        release_until: row.get("release_until"),
        updated_at: row.get("updated_at"),
    })
}

/// Selects one job's row; its two parameters (repository name, manifest digest) are `$first` and the next.
fn where_job(first: u8) -> String {
    format!("repository_id = (SELECT id FROM repositories WHERE name = ${first}) AND manifest_digest = ${}", first + 1)
}

#[async_trait]
impl ScanStore for SqlMetadata {
    async fn scan(&self, repo: &RepoName, d: &Digest) -> Result<Option<ScanRecord>> {
        sqlx::query(&format!("{RECORD} WHERE r.name = $1 AND s.manifest_digest = $2"))
            .bind(repo.as_str())
            .bind(d.as_str())
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?
            .map(record)
            .transpose()
    }

    async fn claim_scan(&self, now: i64, lease_until: i64) -> Result<Option<ScanJob>> {
        // The condition is repeated on the row itself: when two replicas pick the same job at once,
        // the second update re-checks it against the first one's committed lease and takes nothing.
        let claim = claim_sql();
        let row = self
            .writing_relaxed(move |conn| {
                Box::pin(async move {
                    sqlx::query(&claim).bind(lease_until).bind(now).fetch_optional(&mut *conn).await.map_err(db_err)
                })
            })
            .await?;
        let Some(row) = row else { return Ok(None) };
        // A committed row's name: the read pool answers, and the single writer is free sooner.
        let name: String = sqlx::query_scalar("SELECT name FROM repositories WHERE id = $1")
            .bind(row.get::<i64, _>("repository_id"))
            .fetch_one(&self.read)
            .await
            .map_err(db_err)?;
        Ok(Some(ScanJob {
            repo: repo_name(name)?,
            digest: digest(row.get("manifest_digest"))?,
            attempts: row.get::<i64, _>("attempts") as u32,
        }))
    }

    async fn finish_scan(
        &self,
        job: &ScanJob,
        state: ScanState,
        findings: &str,
        summary: &str,
        now: i64,
    ) -> Result<()> {
        let update = format!(
            "UPDATE scans SET findings = $1, summary = $2, lease_until = NULL, rescan = 0, attempts = 0, updated_at = $3,
                 state = CASE WHEN state = 'released' AND $4 != 'passed' THEN 'released' ELSE $5 END
             WHERE {}",
            where_job(6)
        );
        let (job, findings, summary) = (job.clone(), findings.to_owned(), summary.to_owned());
        self.writing_relaxed(move |conn| {
            Box::pin(async move {
                sqlx::query(&update)
                    .bind(findings)
                    .bind(summary)
                    .bind(now)
                    .bind(state.as_str())
                    .bind(state.as_str())
                    .bind(job.repo.as_str())
                    .bind(job.digest.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err)?;
                Ok(())
            })
        })
        .await
    }

    async fn fail_scan(&self, job: &ScanJob, retry_at: Option<i64>, summary: &str, now: i64) -> Result<()> {
        let query = match retry_at {
            Some(_) => format!(
                "UPDATE scans SET lease_until = NULL, next_attempt_at = $1, summary = $2, updated_at = $3,
                     state = CASE WHEN state = 'scanning' THEN 'pending' ELSE state END
                 WHERE {}",
                where_job(4)
            ),
            None => format!(
                "UPDATE scans SET lease_until = NULL, next_attempt_at = $1, summary = $2, updated_at = $3, rescan = 0, attempts = 0,
                     state = CASE WHEN state IN ('pending', 'scanning') THEN 'error' ELSE state END
                 WHERE {}",
                where_job(4)
            ),
        };
        sqlx::query(&query)
            .bind(retry_at.unwrap_or(now))
            .bind(summary)
            .bind(now)
            .bind(job.repo.as_str())
            .bind(job.digest.as_str())
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn release_scan(
        &self,
        repo: &RepoName,
        d: &Digest,
        by: &str,
        reason: &str,
        until: Option<i64>,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(&format!(
            "UPDATE scans SET state = 'released', released_by = $1, release_reason = $2, release_until = $3, updated_at = $4
             WHERE {}",
            where_job(5)
        ))
        .bind(by)
        .bind(reason)
        .bind(until)
        .bind(now)
        .bind(repo.as_str())
        .bind(d.as_str())
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn request_rescan(&self, repo: &RepoName, d: &Digest, now: i64) -> Result<bool> {
        let done = sqlx::query(&format!(
            "UPDATE scans SET rescan = 1, next_attempt_at = 0, updated_at = $1 WHERE {}",
            where_job(2)
        ))
        .bind(now)
        .bind(repo.as_str())
        .bind(d.as_str())
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_scans(&self, state: Option<ScanState>, limit: u32) -> Result<Vec<ScanRecord>> {
        sqlx::query(&format!(
            "{RECORD} WHERE ($1 IS NULL OR s.state = $2) ORDER BY s.updated_at DESC, s.manifest_digest LIMIT $3"
        ))
        .bind(state.map(ScanState::as_str))
        .bind(state.map(ScanState::as_str))
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(record)
        .collect()
    }

    async fn child_scans(&self, repo: &RepoName, index: &Digest) -> Result<Vec<ScanRecord>> {
        sqlx::query(&format!(
            "{RECORD} JOIN manifest_references mr ON mr.repository_id = s.repository_id AND mr.target_digest = s.manifest_digest
             WHERE r.name = $1 AND mr.manifest_digest = $2 AND mr.kind = 'manifest'"
        ))
        .bind(repo.as_str())
        .bind(index.as_str())
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(record)
        .collect()
    }

    async fn namespace_scan_rules(&self, namespace: &str) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT p.rules FROM namespace_scan_policies p JOIN namespaces n ON n.id = p.namespace_id WHERE n.name = $1",
        )
        .bind(namespace)
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)
    }

    async fn namespace_scan_sync(&self, namespace: &str) -> Result<Option<u64>> {
        let ms: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT p.sync_timeout_ms FROM namespace_scan_policies p JOIN namespaces n ON n.id = p.namespace_id WHERE n.name = $1",
        )
        .bind(namespace)
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)?;
        Ok(ms.flatten().map(|m| m as u64))
    }

    async fn set_namespace_scan_rules(
        &self,
        namespace: &str,
        rules: &str,
        sync_timeout_ms: Option<u64>,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO namespace_scan_policies (namespace_id, rules, sync_timeout_ms, updated_at)
             SELECT id, $1, $2, $3 FROM namespaces WHERE name = $4
             ON CONFLICT (namespace_id) DO UPDATE SET rules = excluded.rules,
                 sync_timeout_ms = excluded.sync_timeout_ms, updated_at = excluded.updated_at",
        )
        .bind(rules)
        .bind(sync_timeout_ms.map(|m| m as i64))
        .bind(now)
        .bind(namespace)
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn scan_tag(&self, repo: &RepoName, d: &Digest) -> Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repository_id
             WHERE r.name = $1 AND t.manifest_digest = $2 ORDER BY t.name LIMIT 1",
        )
        .bind(repo.as_str())
        .bind(d.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)
    }

    async fn blob_pull_allowed(&self, repo: &RepoName, d: &Digest, now: i64) -> Result<bool> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS total,
                    COALESCE(SUM(CASE WHEN s.state IS NULL OR s.state = 'passed'
                        OR (s.state = 'released' AND (s.release_until IS NULL OR s.release_until > $1)) THEN 1 ELSE 0 END), 0) AS open
             FROM manifest_references mr JOIN repositories r ON r.id = mr.repository_id
             LEFT JOIN scans s ON s.repository_id = mr.repository_id AND s.manifest_digest = mr.manifest_digest
             WHERE r.name = $2 AND mr.target_digest = $3 AND mr.kind = 'blob'",
        )
        .bind(now)
        .bind(repo.as_str())
        .bind(d.as_str())
        .fetch_one(&self.read)
        .await
        .map_err(db_err)?;
        let (total, open): (i64, i64) = (row.get("total"), row.get("open"));
        Ok(total == 0 || open > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The claim runs on the single writer after every push; a plan that reads the whole table
    /// makes each push slower than the one before.
    #[tokio::test]
    async fn a_claim_reads_the_queue_index_not_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqlMetadata::open(&dir.path().join("db.sqlite")).await.unwrap();
        let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {}", claim_sql()))
            .bind(1i64)
            .bind(1i64)
            .fetch_all(&meta.write)
            .await
            .unwrap_or_else(|e| panic!("explain: {e}"));
        let plan = rows.iter().map(|r| r.get::<String, _>("detail")).collect::<Vec<_>>().join("\n");
        assert!(plan.contains("USING INDEX scans_queue"), "claim plan:\n{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "claim plan sorts:\n{plan}");
    }
}
