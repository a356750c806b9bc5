//! Named leases for background work.

use async_trait::async_trait;

use super::{db_err, SqlMetadata};
use crate::metadata::LeaseStore;
use crate::model::Result;

#[async_trait]
impl LeaseStore for SqlMetadata {
    async fn take_lease(&self, name: &str, holder: &str, now: i64, until: i64) -> Result<bool> {
        // One statement: on PostgreSQL a racing replica's insert waits for ours, then finds the
        // lease held and changes nothing.
        let done = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $4)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.expires_at <= $3 OR leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(now)
        .bind(until)
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
