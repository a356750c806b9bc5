//! Webhooks in SQL. The dispatch pass holds the cursor's row (`FOR UPDATE` on PostgreSQL) while
//! it reads audit records and inserts their deliveries, so two replicas never fan one record out
//! twice; a delivery is claimed by one statement that re-checks its lease on the row it takes.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::audit::audit_records_after;
use super::{db_err, lock_clause, RowLock, SqlMetadata};
use crate::metadata::webhooks::{Plan, WebhookStore};
use crate::model::webhook::{Attempt, Delivery, Webhook};
use crate::model::{Error, Result};

const DELIVERY: &str =
    "id, webhook_id, event, payload, state, attempts, created_ms, next_attempt_ms, last_status, last_error";

fn webhook(row: AnyRow) -> Result<Webhook> {
    let events: String = row.try_get("events").map_err(db_err)?;
    Ok(Webhook {
        id: row.try_get("id").map_err(db_err)?,
        url: row.try_get("url").map_err(db_err)?,
        events: serde_json::from_str(&events).map_err(|e| Error::Internal(format!("corrupt webhook events: {e}")))?,
        namespace: row.try_get("namespace").map_err(db_err)?,
        created_by: row.try_get("created_by").map_err(db_err)?,
        created_ms: row.try_get("created_ms").map_err(db_err)?,
    })
}

fn delivery(row: AnyRow) -> Result<Delivery> {
    Ok(Delivery {
        id: row.try_get("id").map_err(db_err)?,
        webhook_id: row.try_get("webhook_id").map_err(db_err)?,
        event: row.try_get("event").map_err(db_err)?,
        payload: row.try_get("payload").map_err(db_err)?,
        state: row.try_get("state").map_err(db_err)?,
        attempts: row.try_get("attempts").map_err(db_err)?,
        created_ms: row.try_get("created_ms").map_err(db_err)?,
        next_attempt_ms: row.try_get("next_attempt_ms").map_err(db_err)?,
        last_status: row.try_get("last_status").map_err(db_err)?,
        last_error: row.try_get("last_error").map_err(db_err)?,
    })
}

async fn insert_delivery(
    conn: &mut sqlx::AnyConnection,
    webhook_id: &str,
    event: &str,
    payload: &str,
    now_ms: i64,
) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO webhook_deliveries (webhook_id, event, payload, created_ms, next_attempt_ms)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(webhook_id)
    .bind(event)
    .bind(payload)
    .bind(now_ms)
    .bind(now_ms)
    .fetch_one(conn)
    .await
    .map_err(db_err)
}

#[async_trait]
impl WebhookStore for SqlMetadata {
    async fn create_webhook(&self, h: &Webhook) -> Result<()> {
        let h = h.clone();
        let events = serde_json::to_string(&h.events).map_err(|e| Error::Internal(e.to_string()))?;
        self.writing(move |pool| async move {
            sqlx::query(
                "INSERT INTO webhooks (id, url, events, namespace, created_by, created_ms) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&h.id)
            .bind(&h.url)
            .bind(&events)
            .bind(&h.namespace)
            .bind(&h.created_by)
            .bind(h.created_ms)
            .execute(&pool)
            .await
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn list_webhooks(&self, namespace: Option<&str>) -> Result<Vec<Webhook>> {
        sqlx::query("SELECT * FROM webhooks WHERE ($1 IS NULL OR namespace = $2) ORDER BY created_ms, id")
            .bind(namespace)
            .bind(namespace)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?
            .into_iter()
            .map(webhook)
            .collect()
    }

    async fn webhook(&self, id: &str) -> Result<Option<Webhook>> {
        sqlx::query("SELECT * FROM webhooks WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?
            .map(webhook)
            .transpose()
    }

    async fn delete_webhook(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        self.writing(move |pool| async move {
            let mut tx = pool.begin().await.map_err(db_err)?;
            sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            let gone = sqlx::query("DELETE FROM webhooks WHERE id = $1")
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
            tx.commit().await.map_err(db_err)?;
            Ok(gone > 0)
        })
        .await
    }

    async fn dispatch_audit(&self, limit: u32, now_ms: i64, plan: Plan) -> Result<u64> {
        let lock = lock_clause(self.engine, RowLock::Update);
        self.writing(move |pool| async move {
            let mut tx = pool.begin().await.map_err(db_err)?;
            let cursor: i64 = sqlx::query_scalar(&format!("SELECT seq FROM webhook_cursor WHERE one = 1{lock}"))
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
            let records = audit_records_after(&mut tx, cursor, limit).await?;
            let Some(last) = records.last().map(|r| r.id) else { return Ok(0) };
            let hooks: Vec<Webhook> = sqlx::query("SELECT * FROM webhooks")
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?
                .into_iter()
                .map(webhook)
                .collect::<Result<_>>()?;
            if !hooks.is_empty() {
                for r in &records {
                    for (hook, event, payload) in plan(r, &hooks) {
                        insert_delivery(&mut tx, &hook, &event, &payload, now_ms).await?;
                    }
                }
            }
            sqlx::query("UPDATE webhook_cursor SET seq = $1 WHERE one = 1")
                .bind(last)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            Ok(records.len() as u64)
        })
        .await
    }

    async fn enqueue_delivery(&self, webhook_id: &str, event: &str, payload: &str, now_ms: i64) -> Result<i64> {
        let (id, event, payload) = (webhook_id.to_owned(), event.to_owned(), payload.to_owned());
        self.writing(move |pool| async move {
            let mut conn = pool.acquire().await.map_err(db_err)?;
            insert_delivery(&mut conn, &id, &event, &payload, now_ms).await
        })
        .await
    }

    async fn claim_delivery(&self, now_ms: i64, lease_until_ms: i64) -> Result<Option<Delivery>> {
        self.writing(move |pool| async move {
            sqlx::query(&format!(
                "UPDATE webhook_deliveries SET lease_until = $1, attempts = attempts + 1
                 WHERE id = (SELECT id FROM webhook_deliveries
                             WHERE state = 'pending' AND next_attempt_ms <= $2 AND lease_until <= $3
                             ORDER BY next_attempt_ms, id LIMIT 1)
                   AND state = 'pending' AND lease_until <= $4
                 RETURNING {DELIVERY}"
            ))
            .bind(lease_until_ms)
            .bind(now_ms)
            .bind(now_ms)
            .bind(now_ms)
            .fetch_optional(&pool)
            .await
            .map_err(db_err)?
            .map(delivery)
            .transpose()
        })
        .await
    }

    async fn finish_delivery(&self, id: i64, attempt: &Attempt) -> Result<()> {
        let a = attempt.clone();
        self.writing(move |pool| async move {
            sqlx::query(
                "UPDATE webhook_deliveries SET state = $1, next_attempt_ms = $2, lease_until = 0,
                     last_status = $3, last_error = $4 WHERE id = $5",
            )
            .bind(a.state)
            .bind(a.next_attempt_ms)
            .bind(a.status.map(i64::from))
            .bind(&a.error)
            .bind(id)
            .execute(&pool)
            .await
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn deliveries(&self, webhook_id: &str, limit: u32) -> Result<Vec<Delivery>> {
        sqlx::query(&format!(
            "SELECT {DELIVERY} FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2"
        ))
        .bind(webhook_id)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(delivery)
        .collect()
    }
}
