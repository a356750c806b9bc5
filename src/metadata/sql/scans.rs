//! Scan jobs and verdicts (both engines).

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{db_err, digest, mark_image_content, repo_name, verdict, SqlMetadata};
use crate::metadata::scans::{GiveUp, NewVerdict, ScanJob, ScanRecord, ScanState, ScanStore, Verdict};
use crate::metadata::ManifestKind;
use crate::model::metrics::{self as m, Timer};
use crate::model::{Digest, Error, RepoName, Result};

const RECORD: &str = "SELECT r.name, s.* FROM scans s JOIN repositories r ON r.id = s.repository_id";

/// The predicate of the `scans_queue` partial index (for the rows of alias `a`), so that the
/// planners read only the queue and never the whole table.
fn queued(a: &str) -> String {
    format!("({a}.state IN ('pending', 'scanning') OR {a}.rescan = 1)")
}

/// A queued job of alias `a` that is due at `$2` and not leased. Claims also require `attempts < $3`.
fn due(a: &str) -> String {
    format!("{a}.next_attempt_at <= $2 AND ({a}.lease_until IS NULL OR {a}.lease_until < $2) AND {}", queued(a))
}

/// Claims a job: `$1` the lease's end, `$2` now, `$3` the attempts allowed. The namespace served
/// longest ago among those with a claimable job goes first, then its oldest job. The condition is
/// repeated on the row itself: of replicas picking the same job at once, one takes it.
fn claim_sql() -> String {
    let claimable = |a: &str| format!("{} AND {a}.attempts < $3", due(a));
    format!(
        "UPDATE scans SET lease_until = $1, attempts = attempts + 1, updated_at = $2,
             state = CASE WHEN state = 'pending' THEN 'scanning' ELSE state END
         WHERE (repository_id, manifest_digest) = (
             SELECT j.repository_id, j.manifest_digest FROM scans j
             WHERE j.namespace = (
                 SELECT t.namespace FROM scan_turns t
                 WHERE EXISTS (SELECT 1 FROM scans q WHERE q.namespace = t.namespace AND {q})
                 ORDER BY t.served, t.namespace LIMIT 1)
               AND {j}
             ORDER BY j.created_at, j.manifest_digest LIMIT 1)
           AND {s}
         RETURNING repository_id, manifest_digest, attempts, namespace",
        q = claimable("q"),
        j = claimable("j"),
        s = claimable("scans"),
    )
}

/// Ends the jobs claimed `$3` times that never finished (their worker died each time): `$2` now.
fn give_up_sql() -> String {
    format!(
        "UPDATE scans SET lease_until = NULL, rescan = 0, attempts = 0, updated_at = $2,
             state = CASE WHEN state = 'released' THEN 'released' ELSE 'error' END,
             summary = 'the scan was started ' || $1 || ' times and never finished (the scan sandbox or the registry stopped during it each time)'
         WHERE {} AND scans.attempts >= $3",
        due("scans")
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

    async fn claim_scan(&self, now: i64, lease_until: i64, max_attempts: u32) -> Result<Option<ScanJob>> {
        let _timer = Timer::start(m::DB_DURATION, "op", "claim_scan");
        let (give_up, claim) = (give_up_sql(), claim_sql());
        let max = i64::from(max_attempts);
        let row = self
            .writing_relaxed(move |conn| {
                Box::pin(async move {
                    sqlx::query(&give_up)
                        .bind(max.to_string())
                        .bind(now)
                        .bind(max)
                        .execute(&mut *conn)
                        .await
                        .map_err(db_err)?;
                    let row = sqlx::query(&claim)
                        .bind(lease_until)
                        .bind(now)
                        .bind(max)
                        .fetch_optional(&mut *conn)
                        .await
                        .map_err(db_err)?;
                    if let Some(row) = &row {
                        // This namespace goes to the back of the line.
                        let namespace: String = row.get("namespace");
                        sqlx::query(
                            "UPDATE scan_turns SET served = (SELECT COALESCE(MAX(served), 0) + 1 FROM scan_turns)
                             WHERE namespace = $1",
                        )
                        .bind(namespace)
                        .execute(&mut *conn)
                        .await
                        .map_err(db_err)?;
                    }
                    Ok(row)
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

    async fn record_kind(&self, repo: &RepoName, d: &Digest, kind: ManifestKind) -> Result<()> {
        let (repo, d) = (repo.clone(), d.clone());
        self.writing(move |write| async move {
            let mut tx = write.begin().await.map_err(db_err)?;
            let Some(repo_id) = super::repo_id(&mut *tx, &repo).await? else { return Ok(()) };
            sqlx::query("UPDATE manifests SET kind = $1 WHERE repository_id = $2 AND digest = $3")
                .bind(kind.as_str())
                .bind(repo_id)
                .bind(d.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            if kind == ManifestKind::Image {
                let blobs: Vec<String> = sqlx::query_scalar(
                    "SELECT target_digest FROM manifest_references WHERE repository_id = $1 AND manifest_digest = $2 AND kind = 'blob'",
                )
                .bind(repo_id)
                .bind(d.as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
                let blobs = blobs.into_iter().map(digest).collect::<Result<Vec<_>>>()?;
                mark_image_content(&mut tx, repo_id, &blobs).await?;
            }
            tx.commit().await.map_err(db_err)
        })
        .await
    }

    async fn finish_scan(&self, job: &ScanJob, verdict: &NewVerdict<'_>, now: i64) -> Result<bool> {
        let update = format!(
            "UPDATE scans SET findings = $1, summary = $2, lease_until = NULL, rescan = 0, attempts = 0, updated_at = $3,
                 state = CASE WHEN state = 'released' AND $4 != 'passed' THEN 'released' ELSE $5 END,
                 inventory = $6, matched_version = $7, matched_at = $8
             WHERE {} AND NOT (state = 'quarantined' AND matched_version > $11 AND $12 = 'passed')",
            where_job(9)
        );
        let requeue = format!(
            "UPDATE scans SET lease_until = NULL, rescan = 1, next_attempt_at = $1, updated_at = $2 WHERE {}",
            where_job(3)
        );
        let (job, findings, summary) = (job.clone(), verdict.findings.to_owned(), verdict.summary.to_owned());
        let (state, inventory, version) =
            (verdict.state, verdict.inventory.map(str::to_owned), verdict.matched_version);
        self.writing_relaxed(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(&update)
                    .bind(findings)
                    .bind(summary)
                    .bind(now)
                    .bind(state.as_str())
                    .bind(state.as_str())
                    .bind(inventory)
                    .bind(version)
                    .bind(now)
                    .bind(job.repo.as_str())
                    .bind(job.digest.as_str())
                    .bind(version)
                    .bind(state.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err)?;
                if done.rows_affected() > 0 {
                    return Ok(true);
                }
                sqlx::query(&requeue)
                    .bind(now)
                    .bind(now)
                    .bind(job.repo.as_str())
                    .bind(job.digest.as_str())
                    .execute(&mut *conn)
                    .await
                    .map_err(db_err)?;
                Ok(false)
            })
        })
        .await
    }

    async fn fail_scan(
        &self,
        job: &ScanJob,
        retry_at: Option<i64>,
        give_up: GiveUp,
        summary: &str,
        now: i64,
    ) -> Result<()> {
        let state = match (retry_at, give_up) {
            (Some(_), _) => "CASE WHEN state = 'scanning' THEN 'pending' ELSE state END",
            (None, GiveUp::KeepVerdict) => "CASE WHEN state IN ('pending', 'scanning') THEN 'error' ELSE state END",
            (None, GiveUp::Fail) => "CASE WHEN state = 'released' THEN 'released' ELSE 'error' END",
        };
        // A retried attempt keeps its count; an ended job starts from zero when it is queued again.
        let ended = if retry_at.is_some() { "" } else { ", rescan = 0, attempts = 0" };
        let query = format!(
            "UPDATE scans SET lease_until = NULL, next_attempt_at = $1, summary = $2, updated_at = $3, state = {state}{ended}
             WHERE {}",
            where_job(4)
        );
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

    async fn count_scans(&self) -> Result<Vec<(ScanState, u64)>> {
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT state, COUNT(*) FROM scans GROUP BY state")
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        rows.into_iter()
            .map(|(state, n)| {
                let state = ScanState::parse(&state)
                    .ok_or_else(|| Error::Internal(format!("corrupt scan state in database: {state:?}")))?;
                Ok((state, n.max(0) as u64))
            })
            .collect()
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

    async fn manifest_closure(
        &self,
        repo: &RepoName,
        d: &Digest,
        limit: u32,
    ) -> Result<Vec<(Digest, Option<Verdict>)>> {
        // UNION (not UNION ALL) visits each manifest once, however many indexes reach it.
        let rows = sqlx::query(
            "WITH RECURSIVE repo(id) AS (SELECT id FROM repositories WHERE name = $1),
             reached(digest) AS (
                 SELECT m.digest FROM manifests m WHERE m.repository_id = (SELECT id FROM repo) AND m.digest = $2
                 UNION
                 SELECT mr.target_digest FROM manifest_references mr JOIN reached ON mr.manifest_digest = reached.digest
                 WHERE mr.repository_id = (SELECT id FROM repo) AND mr.kind = 'manifest')
             SELECT reached.digest AS digest, s.state, s.summary, s.release_until FROM reached
             LEFT JOIN scans s ON s.repository_id = (SELECT id FROM repo) AND s.manifest_digest = reached.digest
             LIMIT $3",
        )
        .bind(repo.as_str())
        .bind(d.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.iter().map(|row| Ok((digest(row.get("digest"))?, verdict(row)?))).collect()
    }

    async fn blob_referrers(
        &self,
        repo: &RepoName,
        blob: &Digest,
        limit: u32,
    ) -> Result<Vec<(Digest, Option<Verdict>)>> {
        let rows = sqlx::query(
            "SELECT mr.manifest_digest AS digest, s.state, s.summary, s.release_until
             FROM manifest_references mr JOIN repositories r ON r.id = mr.repository_id
             LEFT JOIN scans s ON s.repository_id = mr.repository_id AND s.manifest_digest = mr.manifest_digest
             WHERE r.name = $1 AND mr.target_digest = $2 AND mr.kind = 'blob'
             ORDER BY mr.manifest_digest LIMIT $3",
        )
        .bind(repo.as_str())
        .bind(blob.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.iter().map(|row| Ok((digest(row.get("digest"))?, verdict(row)?))).collect()
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
            .bind(5i64)
            .fetch_all(&meta.write)
            .await
            .unwrap_or_else(|e| panic!("explain: {e}"));
        let plan = rows.iter().map(|r| r.get::<String, _>("detail")).collect::<Vec<_>>().join("\n");
        assert!(plan.contains("USING INDEX scans_queue"), "claim plan:\n{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "claim plan sorts:\n{plan}");
    }
}
