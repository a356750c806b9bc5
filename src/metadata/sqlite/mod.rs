//! SQLite metadata (the embedded default).
//!
//! Rule: all writes go through a single-connection pool. SQLite allows one writer at a time anyway,
//! and one writer connection means a transaction never fails to upgrade its lock (`SQLITE_BUSY`);
//! reads use their own pool and see committed snapshots (WAL).

mod auth;
mod blobs;
mod manifests;
mod scans;
mod uploads;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::domain::{Digest, Error, RepoName, Result};

pub struct SqliteMetadata {
    read: SqlitePool,
    write: SqlitePool,
}

pub(crate) fn db_err(e: sqlx::Error) -> Error {
    Error::Internal(format!("database: {e}"))
}

/// Parses a digest read back from the database (written by us, so failure means corruption).
pub(crate) fn digest(s: String) -> Result<Digest> {
    Digest::from_str(&s).map_err(|_| Error::Internal(format!("corrupt digest in database: {s:?}")))
}

pub(crate) fn repo_name(s: String) -> Result<RepoName> {
    RepoName::from_str(&s).map_err(|_| Error::Internal(format!("corrupt repository name in database: {s:?}")))
}

impl SqliteMetadata {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(Error::internal)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed push survives power loss, not only a process crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new().max_connections(1).connect_with(options.clone()).await.map_err(db_err)?;
        sqlx::migrate!("migrations/sqlite")
            .run(&write)
            .await
            .map_err(|e| Error::Internal(format!("migrations: {e}")))?;
        let read =
            SqlitePoolOptions::new().max_connections(8).connect_with(options.read_only(true)).await.map_err(db_err)?;
        Ok(SqliteMetadata { read, write })
    }

    /// Closes both pools, flushing the WAL.
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// Looks up a repository id inside a transaction or pool.
pub(crate) async fn repo_id<'e, E>(exec: E, repo: &RepoName) -> Result<Option<i64>>
where
    E: sqlx::Executor<'e, Database = sqlx::Sqlite>,
{
    sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
        .bind(repo.as_str())
        .fetch_optional(exec)
        .await
        .map_err(db_err)
}

/// The id of a repository, creating it if needed (inside the caller's transaction).
pub(crate) async fn ensure_repo(tx: &mut sqlx::SqliteConnection, repo: &RepoName) -> Result<i64> {
    sqlx::query("INSERT INTO repositories (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING")
        .bind(repo.as_str())
        .bind(crate::domain::now())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    repo_id(&mut *tx, repo).await?.ok_or_else(|| Error::Internal("repository vanished".into()))
}
