//! Failed logins, shared by all replicas.

use async_trait::async_trait;
use sqlx::Row;

use super::{db_err, SqlMetadata};
use crate::domain::Result;
use crate::metadata::auth::ThrottleStore;

#[async_trait]
impl ThrottleStore for SqlMetadata {
    async fn login_failures(&self, keys: &[String]) -> Result<Vec<(u32, i64)>> {
        let mut found = Vec::new();
        for key in keys {
            let row = sqlx::query("SELECT failures, last_at_ms FROM login_failures WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.read)
                .await
                .map_err(db_err)?;
            if let Some(row) = row {
                found.push((row.get::<i64, _>("failures") as u32, row.get("last_at_ms")));
            }
        }
        Ok(found)
    }

    async fn record_login_failure(&self, keys: &[String], now_ms: i64, forget_before_ms: i64) -> Result<()> {
        // Separate statements, no transaction: a row lock is never held while waiting for another,
        // so replicas counting failures at once cannot deadlock.
        sqlx::query("DELETE FROM login_failures WHERE last_at_ms < $1")
            .bind(forget_before_ms)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        for key in keys {
            // An atomic increment: concurrent failures on several replicas all count.
            sqlx::query(
                "INSERT INTO login_failures (key, failures, last_at_ms) VALUES ($1, 1, $2)
                 ON CONFLICT (key) DO UPDATE SET failures = login_failures.failures + 1, last_at_ms = excluded.last_at_ms",
            )
            .bind(key)
            .bind(now_ms)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }

    async fn clear_login_failures(&self, keys: &[String]) -> Result<()> {
        for key in keys {
            sqlx::query("DELETE FROM login_failures WHERE key = $1")
                .bind(key)
                .execute(&self.write)
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }
}
