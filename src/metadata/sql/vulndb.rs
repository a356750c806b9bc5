//! Vulnerability data and rematches (both engines).

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{db_err, digest, repo_name, SqlMetadata};
use crate::metadata::vulndb::{ImportCount, ImportedRecord, Rematch, RematchCursor, VulnDbState, VulnStore};
use crate::model::{Error, Result, ScanState};

/// Records per INSERT (four parameters each, well under SQLite's and PostgreSQL's limits).
const INSERT_ROWS: usize = 500;

const STATE: &str = "SELECT version, imported_at, records FROM vulnerability_data WHERE singleton = 1";

fn state(row: Option<AnyRow>) -> VulnDbState {
    row.map(|r| VulnDbState {
        version: r.get("version"),
        imported_at: Some(r.get("imported_at")),
        records: r.get::<i64, _>("records").max(0) as u64,
    })
    .unwrap_or_default()
}

/// The due rows (the `scans_rematch` index's predicate, then the versions): `$1` version, `$2` stale_before.
const DUE: &str = "s.state = 'passed' AND s.inventory IS NOT NULL AND (s.matched_version < $1 OR s.matched_at < $2)";

#[async_trait]
impl VulnStore for SqlMetadata {
    async fn vulndb_state(&self) -> Result<VulnDbState> {
        Ok(state(sqlx::query(STATE).fetch_optional(&self.read).await.map_err(db_err)?))
    }

    async fn import_vulnerabilities(
        &self,
        records: Vec<ImportedRecord>,
        removed: Vec<String>,
        now: i64,
    ) -> Result<ImportCount> {
        self.writing(move |write| async move {
            let mut tx = write.begin().await.map_err(db_err)?;
            let known: HashMap<String, String> =
                sqlx::query_as::<_, (String, String)>("SELECT id, fingerprint FROM vulnerability_records")
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_err)?
                    .into_iter()
                    .collect();
            let (mut added, mut changed, mut unchanged, mut gone) = (0u64, 0u64, 0u64, 0u64);
            let mut writes = Vec::new();
            for r in &records {
                match known.get(&r.id) {
                    Some(f) if *f == r.fingerprint => unchanged += 1,
                    Some(_) => {
                        changed += 1;
                        writes.push(r);
                    }
                    None => {
                        added += 1;
                        writes.push(r);
                    }
                }
            }
            // Many rows per statement: a full export is a hundred thousand records.
            for chunk in writes.chunks(INSERT_ROWS) {
                let rows: Vec<String> = (0..chunk.len())
                    .map(|i| format!("(${}, ${}, ${}, ${})", 4 * i + 1, 4 * i + 2, 4 * i + 3, 4 * i + 4))
                    .collect();
                let sql = format!(
                    "INSERT INTO vulnerability_records (id, body, fingerprint, imported_at) VALUES {}
                     ON CONFLICT (id) DO UPDATE SET body = excluded.body, fingerprint = excluded.fingerprint,
                         imported_at = excluded.imported_at",
                    rows.join(", ")
                );
                let mut query = sqlx::query(&sql);
                for r in chunk {
                    query = query.bind(&r.id).bind(&r.body).bind(&r.fingerprint).bind(now);
                }
                query.execute(&mut *tx).await.map_err(db_err)?;
            }
            for id in removed.iter().filter(|id| known.contains_key(*id)) {
                let done = sqlx::query("DELETE FROM vulnerability_records WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                gone += done.rows_affected();
            }
            if added + changed + gone > 0 {
                sqlx::query(
                    "INSERT INTO vulnerability_data (singleton, version, imported_at, records)
                     VALUES (1, 1, $1, (SELECT COUNT(*) FROM vulnerability_records))
                     ON CONFLICT (singleton) DO UPDATE SET version = vulnerability_data.version + 1,
                         imported_at = excluded.imported_at, records = excluded.records",
                )
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            let state = state(sqlx::query(STATE).fetch_optional(&mut *tx).await.map_err(db_err)?);
            tx.commit().await.map_err(db_err)?;
            Ok(ImportCount { added, changed, unchanged, removed: gone, state })
        })
        .await
    }

    async fn vulnerability_records(&self) -> Result<(VulnDbState, Vec<String>)> {
        // In a task of its own, so that no caller's cancelling can leave the connection inside
        // the transaction (see `SqlMetadata::writing`).
        let (read, engine) = (self.read.clone(), self.engine);
        tokio::spawn(async move { records_snapshot(read, engine).await })
            .await
            .map_err(|e| Error::Internal(format!("database read task: {e}")))?
    }

    async fn rematch_due(
        &self,
        version: i64,
        stale_before: i64,
        after: Option<&RematchCursor>,
        limit: u32,
    ) -> Result<Vec<Rematch>> {
        let (created, repo, d) = after.cloned().unwrap_or((i64::MIN, i64::MIN, String::new()));
        let rows = sqlx::query(&format!(
            "SELECT r.name, s.repository_id, s.manifest_digest, s.findings, s.summary, s.inventory, s.created_at,
                 s.updated_at
             FROM scans s JOIN repositories r ON r.id = s.repository_id
             WHERE {DUE} AND (s.created_at, s.repository_id, s.manifest_digest) > ($3, $4, $5)
             ORDER BY s.created_at, s.repository_id, s.manifest_digest LIMIT $6"
        ))
        .bind(version)
        .bind(stale_before)
        .bind(created)
        .bind(repo)
        .bind(&d)
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.into_iter()
            .map(|r| {
                Ok(Rematch {
                    repository_id: r.get("repository_id"),
                    repo: repo_name(r.get("name"))?,
                    digest: digest(r.get("manifest_digest"))?,
                    findings: r.get("findings"),
                    summary: r.get("summary"),
                    inventory: r.get("inventory"),
                    created_at: r.get("created_at"),
                    updated_at: r.get("updated_at"),
                })
            })
            .collect()
    }

    async fn count_rematch_due(&self, version: i64, stale_before: i64) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM scans s WHERE {DUE}"))
            .bind(version)
            .bind(stale_before)
            .fetch_one(&self.read)
            .await
            .map_err(db_err)?;
        Ok(n.max(0) as u64)
    }

    async fn rematch_pending(&self, version: i64, stale_before: i64) -> Result<bool> {
        // Two probes, one per index (an OR of the two would read every passed image).
        for (column, bound) in [("matched_version", version), ("matched_at", stale_before)] {
            let found: Option<i64> = sqlx::query_scalar(&format!(
                "SELECT 1 FROM scans WHERE state = 'passed' AND inventory IS NOT NULL AND {column} < $1 LIMIT 1"
            ))
            .bind(bound)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn record_rematch(
        &self,
        read: &Rematch,
        state: ScanState,
        findings: &str,
        summary: &str,
        version: i64,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE scans SET state = $1, findings = $2, summary = $3, matched_version = $4, matched_at = $5,
                 updated_at = $6
             WHERE repository_id = $7 AND manifest_digest = $8
               AND state = 'passed' AND updated_at = $9 AND COALESCE(findings, '') = $10",
        )
        .bind(state.as_str())
        .bind(findings)
        .bind(summary)
        .bind(version)
        .bind(now)
        // A verdict that changes nothing keeps `updated_at` (what lists of verdicts sort by).
        .bind(if state == ScanState::Passed { read.updated_at } else { now.max(read.updated_at + 1) })
        .bind(read.repository_id)
        .bind(read.digest.as_str())
        .bind(read.updated_at)
        .bind(read.findings.as_deref().unwrap_or(""))
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn queue_uninventoried(&self, now: i64) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE scans SET rescan = 1, next_attempt_at = 0, attempts = 0, updated_at = $1
             WHERE state = 'passed' AND inventory IS NULL AND rescan = 0
               AND EXISTS (SELECT 1 FROM manifests m WHERE m.repository_id = scans.repository_id
                           AND m.digest = scans.manifest_digest AND (m.kind IS NULL OR m.kind = 'image'))",
        )
        .bind(now)
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected())
    }
}

/// The vulnerability data in one snapshot, so the bodies are the version read with them
/// (PostgreSQL's default gives each statement its own; SQLite's read transaction is one snapshot
/// already).
async fn records_snapshot(read: sqlx::AnyPool, engine: crate::model::Engine) -> Result<(VulnDbState, Vec<String>)> {
    let mut tx = read.begin().await.map_err(db_err)?;
    if engine == crate::model::Engine::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await.map_err(db_err)?;
    }
    let current = state(sqlx::query(STATE).fetch_optional(&mut *tx).await.map_err(db_err)?);
    let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM vulnerability_records ORDER BY id")
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok((current, bodies))
}
