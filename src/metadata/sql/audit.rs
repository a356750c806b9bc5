//! The audit log in SQL. Records are inserted unchained; [`AuditStore::chain_audit`] gives them
//! their place while it holds the head row (`FOR UPDATE` on PostgreSQL; SQLite's one writer
//! runs one chaining at a time anyway), so replicas that chain at once still make one chain.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{db_err, lock_clause, RowLock, SqlMetadata};
use crate::metadata::audit::AuditStore;
use crate::model::audit::{chain_hash, head_mac, AuditFilter, AuditHead, AuditRecord, NewAudit};
use crate::model::Result;

const COLUMNS: &str = "seq, time_ms, actor, client, action, object, namespace, outcome, request_id, details, hash";

/// Inserts `r` unchained on `conn` (also inside another change's transaction).
pub(crate) async fn insert(conn: &mut sqlx::AnyConnection, r: &NewAudit) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (time_ms, actor, client, action, object, namespace, outcome, request_id, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(r.time_ms)
    .bind(&r.actor)
    .bind(&r.client)
    .bind(&r.action)
    .bind(&r.object)
    .bind(&r.namespace)
    .bind(&r.outcome)
    .bind(&r.request_id)
    .bind(&r.details)
    .execute(conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

fn content(row: &AnyRow) -> std::result::Result<NewAudit, sqlx::Error> {
    Ok(NewAudit {
        time_ms: row.try_get("time_ms")?,
        actor: row.try_get("actor")?,
        client: row.try_get("client")?,
        action: row.try_get("action")?,
        object: row.try_get("object")?,
        namespace: row.try_get("namespace")?,
        outcome: row.try_get("outcome")?,
        request_id: row.try_get("request_id")?,
        details: row.try_get("details")?,
    })
}

fn record(row: AnyRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        id: row.try_get("seq").map_err(db_err)?,
        hash: row.try_get("hash").map_err(db_err)?,
        content: content(&row).map_err(db_err)?,
    })
}

/// Chained records after place `after`, in chain order (the webhook dispatch reads them inside
/// its own transaction).
pub(crate) async fn audit_records_after(
    conn: &mut sqlx::AnyConnection,
    after: i64,
    limit: u32,
) -> Result<Vec<AuditRecord>> {
    sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2"))
        .bind(after)
        .bind(limit as i64)
        .fetch_all(conn)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(record)
        .collect()
}

async fn head(conn: &mut sqlx::AnyConnection, lock: &str) -> Result<AuditHead> {
    let row = sqlx::query(&format!("SELECT seq, hash, first_seq, first_prev, mac FROM audit_head WHERE one = 1{lock}"))
        .fetch_one(conn)
        .await
        .map_err(db_err)?;
    Ok(AuditHead {
        seq: row.try_get("seq").map_err(db_err)?,
        hash: row.try_get("hash").map_err(db_err)?,
        first_seq: row.try_get("first_seq").map_err(db_err)?,
        first_prev: row.try_get("first_prev").map_err(db_err)?,
        mac: row.try_get("mac").map_err(db_err)?,
    })
}

/// Writes `head` with its seal: a new one if `sealed` (the seal found was good), none otherwise,
/// so a head that was forged stays visibly broken.
async fn store_head(conn: &mut sqlx::AnyConnection, head: &AuditHead, sealed: bool, key: &[u8]) -> Result<()> {
    let mac = if sealed { head_mac(key, head) } else { String::new() };
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2, first_seq = $3, first_prev = $4, mac = $5 WHERE one = 1")
        .bind(head.seq)
        .bind(&head.hash)
        .bind(head.first_seq)
        .bind(&head.first_prev)
        .bind(&mac)
        .execute(conn)
        .await
        .map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl AuditStore for SqlMetadata {
    async fn append_audit(&self, r: &NewAudit) -> Result<()> {
        let r = r.clone();
        // Relaxed on SQLite (see `writing_relaxed`): a crash keeps it; a power cut may lose the
        // last records written before it, and never breaks the chain (they were not in it yet).
        self.writing_relaxed(move |conn| Box::pin(async move { insert(conn, &r).await })).await
    }

    async fn chain_audit(&self, limit: u32, key: Vec<u8>) -> Result<u64> {
        let lock = lock_clause(self.engine, RowLock::Update);
        self.writing(move |pool| async move {
            let mut tx = pool.begin().await.map_err(db_err)?;
            let mut at = head(&mut tx, lock).await?;
            let sealed = at.sealed_by(&key);
            let rows = sqlx::query(
                "SELECT id, time_ms, actor, client, action, object, namespace, outcome, request_id, details
                 FROM audit_log WHERE seq IS NULL ORDER BY id LIMIT $1",
            )
            .bind(limit as i64)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
            if rows.is_empty() {
                // A new log's head gets its first seal.
                if at.seq == 0 && at.mac.is_empty() {
                    store_head(&mut tx, &at, true, &key).await?;
                    tx.commit().await.map_err(db_err)?;
                }
                return Ok(0);
            }
            for row in &rows {
                let id: i64 = row.try_get("id").map_err(db_err)?;
                let c = content(row).map_err(db_err)?;
                at.seq += 1;
                at.hash = chain_hash(&at.hash, at.seq, &c);
                sqlx::query("UPDATE audit_log SET seq = $1, hash = $2 WHERE id = $3")
                    .bind(at.seq)
                    .bind(&at.hash)
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            store_head(&mut tx, &at, sealed, &key).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(rows.len() as u64)
        })
        .await
    }

    async fn audit_head(&self) -> Result<AuditHead> {
        let mut conn = self.read.acquire().await.map_err(db_err)?;
        head(&mut conn, "").await
    }

    async fn audit_range(&self, from: i64, until: i64, limit: u32) -> Result<Vec<AuditRecord>> {
        sqlx::query(&format!("SELECT {COLUMNS} FROM audit_log WHERE seq >= $1 AND seq <= $2 ORDER BY seq LIMIT $3"))
            .bind(from)
            .bind(until)
            .bind(limit as i64)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(record)
            .collect()
    }

    async fn list_audit(&self, f: &AuditFilter, limit: u32) -> Result<Vec<AuditRecord>> {
        // `object` matches as a prefix (`team/app` finds `team/app@sha256:...`).
        sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_log WHERE seq IS NOT NULL
               AND ($1 IS NULL OR actor = $2) AND ($3 IS NULL OR action = $4)
               AND ($5 IS NULL OR substr(object, 1, length($6)) = $7) AND ($8 IS NULL OR namespace = $9)
               AND ($10 IS NULL OR time_ms >= $11) AND ($12 IS NULL OR time_ms < $13) AND ($14 IS NULL OR seq < $15)
             ORDER BY seq DESC LIMIT $16"
        ))
        .bind(f.actor.as_deref())
        .bind(f.actor.as_deref())
        .bind(f.action.as_deref())
        .bind(f.action.as_deref())
        .bind(f.object.as_deref())
        .bind(f.object.as_deref())
        .bind(f.object.as_deref())
        .bind(f.namespace.as_deref())
        .bind(f.namespace.as_deref())
        .bind(f.since_ms)
        .bind(f.since_ms)
        .bind(f.until_ms)
        .bind(f.until_ms)
        .bind(f.before)
        .bind(f.before)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(record)
        .collect()
    }

    async fn drop_audit_before(&self, before_ms: i64, limit: u32, key: Vec<u8>) -> Result<u64> {
        let lock = lock_clause(self.engine, RowLock::Update);
        self.writing(move |pool| async move {
            let mut tx = pool.begin().await.map_err(db_err)?;
            let mut at = head(&mut tx, lock).await?;
            let sealed = at.sealed_by(&key);
            let rows: Vec<(i64, i64, String)> =
                sqlx::query_as("SELECT seq, time_ms, hash FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2")
                    .bind(at.first_seq)
                    .bind(limit as i64)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_err)?;
            let Some((last_seq, _, last_hash)) = rows.iter().take_while(|(_, t, _)| *t < before_ms).last().cloned()
            else {
                return Ok(0);
            };
            let dropped = sqlx::query("DELETE FROM audit_log WHERE seq IS NOT NULL AND seq <= $1")
                .bind(last_seq)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
            at.first_seq = last_seq + 1;
            at.first_prev = last_hash;
            store_head(&mut tx, &at, sealed, &key).await?;
            tx.commit().await.map_err(db_err)?;
            Ok(dropped)
        })
        .await
    }
}
