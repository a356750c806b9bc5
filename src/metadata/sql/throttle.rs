//! Login attempts, shared by all replicas.

use async_trait::async_trait;
use sqlx::Row;

use super::{db_err, SqlMetadata};
use crate::metadata::auth::ThrottleStore;
use crate::model::Result;

#[async_trait]
impl ThrottleStore for SqlMetadata {
    async fn login_attempt(&self, key: &str, now_ms: i64, forget_before_ms: i64) -> Result<(u32, i64)> {
        // Separate statements, no transaction: a row lock is never held while waiting for another,
        // so replicas counting attempts at once cannot deadlock.
        sqlx::query("DELETE FROM login_failures WHERE last_at_ms < $1")
            .bind(forget_before_ms)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        // An atomic increment: concurrent attempts on several replicas all count, each sees its own number.
        let row = sqlx::query(
            "INSERT INTO login_failures (key, failures, last_at_ms, prev_at_ms) VALUES ($1, 1, $2, 0)
             ON CONFLICT (key) DO UPDATE SET failures = login_failures.failures + 1,
                 prev_at_ms = login_failures.last_at_ms, last_at_ms = excluded.last_at_ms
             RETURNING failures, prev_at_ms",
        )
        .bind(key)
        .bind(now_ms)
        .fetch_one(&self.write)
        .await
        .map_err(db_err)?;
        Ok((row.get::<i64, _>("failures") as u32, row.get("prev_at_ms")))
    }

    async fn login_failures(&self, key: &str) -> Result<Option<(u32, i64)>> {
        let row = sqlx::query("SELECT failures, last_at_ms FROM login_failures WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        Ok(row.map(|r| (r.get::<i64, _>("failures") as u32, r.get("last_at_ms"))))
    }

    async fn clear_login_failures(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(key)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
