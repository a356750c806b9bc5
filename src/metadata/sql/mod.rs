//! SQL metadata: one implementation for SQLite (the embedded default) and PostgreSQL (scale-out).
//!
//! Rules:
//! - Every query is written once, in the SQL both engines speak: `$N` placeholders, `ON CONFLICT`,
//!   `RETURNING`, row values, integers for booleans and BIGINT for every number. What differs between
//!   the engines (connection set-up, migrations) lives in this file only, chosen by the database URL.
//! - SQLite: all writes go through a single-connection pool. SQLite allows one writer at a time
//!   anyway, and one writer connection means a transaction never fails to upgrade its lock
//!   (`SQLITE_BUSY`); reads use their own pool and see committed snapshots (WAL).
//! - SQLite's writer is the one serialisation point of a busy registry, so the hot write paths
//!   ([`SqlMetadata::writing`]) run their statements on a thread of their own: between two statements
//!   of a transaction the connection then waits for that idle thread, not for a turn on a runtime
//!   whose workers are busy with TLS and HTTP (that wait was half of the writer's held time).
//! - PostgreSQL: one pool serves both, shared by any number of replicas. A check-then-write is
//!   either one statement whose condition is re-checked on the row it changes (claiming a scan job,
//!   extending an upload) or a transaction whose inserts tolerate a concurrent twin (`ON CONFLICT`).

mod audit;
mod auth;
mod blobs;
mod gc;
mod leases;
mod lifecycle;
mod manifests;
mod scans;
mod signatures;
mod throttle;
mod uploads;
mod vulndb;
mod webhooks;

use std::path::Path;
use std::str::FromStr;

use sqlx::any::AnyPoolOptions;
use sqlx::any::AnyRow;
use sqlx::AnyPool;
use sqlx::Executor;
use sqlx::Row;

use crate::model::{Digest, Error, RepoName, Result, ScanState, Verdict};

pub use crate::model::Engine;

pub struct SqlMetadata {
    read: AnyPool,
    write: AnyPool,
    engine: Engine,
    /// SQLite: the runtime on the writer's own thread (see the module rules).
    writer: Option<WriterThread>,
}

/// A single-threaded runtime on a thread of its own, stopped when the metadata store is dropped.
struct WriterThread {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl WriterThread {
    fn start() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(Error::internal)?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .map_err(Error::internal)?;
        Ok(WriterThread { handle, _stop: stop })
    }
}

pub(crate) fn db_err(e: sqlx::Error) -> Error {
    let error = classify(e);
    let kind = if matches!(error, Error::Unavailable(_)) { "unavailable" } else { "internal" };
    metrics::counter!(crate::model::metrics::DB_ERRORS, "kind" => kind).increment(1);
    error
}

fn classify(e: sqlx::Error) -> Error {
    match e {
        // A database that cannot be reached now may be back in a moment: 503, not 500.
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            Error::Unavailable(format!("database: {e}"))
        }
        // PostgreSQL chose this transaction to end a deadlock (or a serialization conflict): it
        // was rolled back whole, and the same request again succeeds.
        sqlx::Error::Database(ref d) if matches!(d.code().as_deref(), Some("40P01" | "40001")) => {
            Error::Unavailable(format!("database: {e}"))
        }
        e => Error::Internal(format!("database: {e}")),
    }
}

/// A namespace's signature mode as read with a manifest or blob (`signature_mode`): off when it
/// has no policy; a value this build does not know requires signatures (fails closed).
pub(crate) fn signature_mode(row: &sqlx::any::AnyRow) -> crate::model::SignatureMode {
    let mode: Option<String> = row.get("signature_mode");
    mode.map_or(crate::model::SignatureMode::Off, |m| {
        crate::model::SignatureMode::parse(&m).unwrap_or(crate::model::SignatureMode::Require)
    })
}

/// Parses a digest read back from the database (written by us, so failure means corruption).
pub(crate) fn digest(s: String) -> Result<Digest> {
    Digest::from_str(&s).map_err(|_| Error::Internal(format!("corrupt digest in database: {s:?}")))
}

pub(crate) fn repo_name(s: String) -> Result<RepoName> {
    RepoName::from_str(&s).map_err(|_| Error::Internal(format!("corrupt repository name in database: {s:?}")))
}

/// Listings come back as one row holding the whole page, names joined with this separator (no
/// tag or repository name can contain it): a page of 10,000 names costs one row's decoding instead
/// of 10,000, which is most of a listing's time. Both engines have `string_agg(x, sep ORDER BY x)`.
pub(crate) const PAGE_SEPARATOR: &str = "\n";

/// The names of a page joined with [`PAGE_SEPARATOR`]; `None` (no rows) is an empty page.
pub(crate) fn split_page(joined: Option<String>) -> Vec<String> {
    joined.map(|j| j.split(PAGE_SEPARATOR).map(str::to_owned).collect()).unwrap_or_default()
}

/// The characters of a file path that must be escaped in a `sqlite:` URL.
const SQLITE_PATH: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b' ').add(b'?').add(b'#').add(b'%').add(b'"');

impl SqlMetadata {
    /// Opens the database a URL names (`sqlite://PATH` or `postgres://...`) and applies migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        match Engine::of_url(url) {
            Some(Engine::Sqlite) => {
                let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
                let path = percent_encoding::percent_decode_str(path.split('?').next().unwrap_or(""));
                Self::open(Path::new(&*path.decode_utf8_lossy())).await
            }
            Some(Engine::Postgres) => Self::open_postgres(url, max_connections).await,
            None => Err(Error::Internal("database URL must start with sqlite: or postgres://".into())),
        }
    }

    /// Opens (creating if needed) a SQLite database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        sqlx::any::install_default_drivers();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(Error::internal)?;
        }
        let encoded = percent_encoding::utf8_percent_encode(&path.to_string_lossy(), SQLITE_PATH).to_string();
        let write = AnyPoolOptions::new()
            .max_connections(1)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    sqlite_pragmas(conn).await
                })
            })
            .connect(&format!("sqlite://{encoded}?mode=rwc"))
            .await
            .map_err(db_err)?;
        sqlx::migrate!("migrations/sqlite")
            .run(&write)
            .await
            .map_err(|e| Error::Internal(format!("migrations: {e}")))?;
        let read = AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(|conn, _| Box::pin(sqlite_pragmas(conn)))
            .connect(&format!("sqlite://{encoded}?mode=ro"))
            .await
            .map_err(db_err)?;
        Ok(SqlMetadata { read, write, engine: Engine::Sqlite, writer: Some(WriterThread::start()?) })
    }

    /// Connects to PostgreSQL and applies migrations (under the server's advisory lock, so
    /// replicas starting together migrate once).
    pub async fn open_postgres(url: &str, max_connections: u32) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(db_err)?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| Error::Internal(format!("migrations: {e}")))?;
        Ok(SqlMetadata { read: pool.clone(), write: pool, engine: Engine::Postgres, writer: None })
    }

    /// Runs a write on the writer's thread (SQLite) or in a task of its own (PostgreSQL, where many
    /// connections write at once). `write` gets the write pool.
    ///
    /// The write runs to its end even if the caller stops waiting (a client that hung up, an
    /// aborted collection): a transaction is committed or rolled back as a whole either way. A
    /// write cancelled in place could stop between sending `BEGIN` and learning that it began,
    /// and go back to the pool still inside that transaction, its row locks held and every later
    /// statement on it never committed (seen: a collection aborted a few milliseconds in left the
    /// `leases` row locked, and every replica waited on it).
    pub(crate) async fn writing<T, F, Fut>(&self, write: F) -> Result<T>
    where
        F: FnOnce(AnyPool) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let work = write(self.write.clone());
        match &self.writer {
            Some(thread) => {
                thread.handle.spawn(work).await.map_err(|e| Error::Internal(format!("database writer task: {e}")))?
            }
            None => tokio::spawn(work).await.map_err(|e| Error::Internal(format!("database write task: {e}")))?,
        }
    }

    /// Like [`writing`](Self::writing), for state that a power cut may roll back without harm:
    /// upload sessions and their progress, scan leases and verdicts. On SQLite these commits do not
    /// wait for the disk (`synchronous = NORMAL` for the one transaction). Why that is safe:
    /// - a chunk's bytes are not on disk either until its blob is committed, so a durable record
    ///   of them would promise nothing; the blob's own commit is FULL and fsyncs the WAL, which
    ///   makes every earlier commit durable too, in order;
    /// - a lost session or chunk makes the client start that blob again; a lost lease or verdict
    ///   puts the image back to scanning, which keeps it quarantined until it is scanned again.
    ///
    /// It matters because such a commit otherwise waits behind the writeback of the blob being
    /// uploaded (5 ms per 8 MiB chunk here). PostgreSQL keeps its usual durable commit.
    pub(crate) async fn writing_relaxed<T, F>(&self, write: F) -> Result<T>
    where
        F: for<'c> FnOnce(&'c mut sqlx::AnyConnection) -> futures::future::BoxFuture<'c, Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let relax = self.engine == Engine::Sqlite;
        self.writing(move |pool| async move {
            let mut conn = Relaxed::acquire(&pool, relax).await?;
            let result = write(conn.connection()).await;
            conn.restore().await?;
            result
        })
        .await
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Writes and deletes a row in a transaction that is rolled back: proves the database
    /// accepts writes from us (`check-config`).
    pub async fn check_writable(&self) -> Result<()> {
        let mut tx = self.write.begin().await.map_err(db_err)?;
        sqlx::query("INSERT INTO repositories (name, created_at) VALUES ($1, 0)")
            .bind("portcullis-check-config/probe")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.rollback().await.map_err(db_err)
    }

    /// Runs one statement as it is: for tests that need a state no API can make (a row as an
    /// older version of the registry wrote it). Only with the `test-util` feature.
    #[cfg(any(test, feature = "test-util"))]
    pub async fn execute_for_tests(&self, sql: &str) -> Result<u64> {
        Ok(sqlx::query(sql).execute(&self.write).await.map_err(db_err)?.rows_affected())
    }

    /// Closes the pools (flushing SQLite's WAL).
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

/// A write connection whose commits do not wait for the disk until [`restore`](Self::restore)
/// sets them back to FULL (also after a failed write). A connection that could not be set back,
/// or was dropped before (a panic), is closed rather than returned to the pool, so no later write
/// can inherit the relaxed setting.
struct Relaxed {
    conn: Option<sqlx::pool::PoolConnection<sqlx::Any>>,
    relaxed: bool,
}

impl Relaxed {
    async fn acquire(pool: &AnyPool, relax: bool) -> Result<Self> {
        let mut conn = pool.acquire().await.map_err(db_err)?;
        if relax {
            conn.execute("PRAGMA synchronous = NORMAL").await.map_err(db_err)?;
        }
        Ok(Relaxed { conn: Some(conn), relaxed: relax })
    }

    fn connection(&mut self) -> &mut sqlx::AnyConnection {
        self.conn.as_deref_mut().expect("a Relaxed connection is present until restored")
    }

    async fn restore(mut self) -> Result<()> {
        let Some(mut conn) = self.conn.take() else { return Ok(()) };
        if !self.relaxed {
            return Ok(());
        }
        if let Err(e) = conn.execute("PRAGMA synchronous = FULL").await {
            conn.close_on_drop();
            return Err(db_err(e));
        }
        Ok(())
    }
}

impl Drop for Relaxed {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            if self.relaxed {
                conn.close_on_drop();
            }
        }
    }
}

/// Settings every SQLite connection needs; they are per connection, not per file.
async fn sqlite_pragmas(conn: &mut sqlx::AnyConnection) -> std::result::Result<(), sqlx::Error> {
    // FULL: a committed push survives power loss, not only a process crash.
    conn.execute("PRAGMA synchronous = FULL").await?;
    conn.execute("PRAGMA foreign_keys = ON").await?;
    conn.execute("PRAGMA busy_timeout = 10000").await?;
    Ok(())
}

/// Looks up a repository id inside a transaction or pool.
pub(crate) async fn repo_id<'e, E>(exec: E, repo: &RepoName) -> Result<Option<i64>>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
        .bind(repo.as_str())
        .fetch_optional(exec)
        .await
        .map_err(db_err)
}

/// The id of a repository, creating it if needed (inside the caller's transaction).
///
/// Nearly every write names a repository that exists, so it looks first and inserts only when the
/// name is missing: one statement on the common path, and no write to the repository's row.
pub(crate) async fn ensure_repo(tx: &mut sqlx::AnyConnection, repo: &RepoName) -> Result<i64> {
    if let Some(id) = repo_id(&mut *tx, repo).await? {
        return Ok(id);
    }
    sqlx::query(
        "INSERT INTO repositories (name, created_at, namespace) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
    )
    .bind(repo.as_str())
    .bind(crate::model::now())
    .bind(repo.namespace())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    repo_id(&mut *tx, repo).await?.ok_or_else(|| Error::Internal("repository vanished".into()))
}

/// `$from, $from+1, ...`: `count` numbered placeholders for an `IN (...)` list or a `VALUES` row.
pub(crate) fn placeholders(from: usize, count: usize) -> String {
    (from..from + count).map(|n| format!("${n}")).collect::<Vec<_>>().join(", ")
}

// Row helpers shared by `manifests` and `scans` (here, so neither imports the other).

/// Rows per multi-row insert of references, and digests per `IN (...)` check: statements stay far
/// below both engines' limit on bound parameters (SQLite 32,766; PostgreSQL 65,535), while a
/// manifest's checks and references cost one round trip each in all but huge indexes.
pub(crate) const REFERENCE_ROWS: usize = 500;

/// The verdict columns `state`, `summary` and `release_until` of a row, if it has a scan record.
pub(crate) fn verdict(row: &AnyRow) -> Result<Option<Verdict>> {
    let state: Option<String> = row.get("state");
    let Some(state) = state else { return Ok(None) };
    Ok(Some(Verdict {
        state: ScanState::parse(&state).ok_or_else(|| Error::Internal(format!("bad scan state {state}")))?,
        summary: row.get("summary"),
        release_until: row.get("release_until"),
    }))
}

/// Marks `blobs` as image content in the repository (sticky; see migration 0008), inside the
/// caller's transaction.
pub(crate) async fn mark_image_content(tx: &mut sqlx::AnyConnection, repo_id: i64, blobs: &[Digest]) -> Result<()> {
    for batch in blobs.chunks(REFERENCE_ROWS) {
        let sql = format!(
            "UPDATE repository_blobs SET in_image = 1 WHERE repository_id = $1 AND in_image = 0 AND digest IN ({})",
            placeholders(2, batch.len())
        );
        let mut update = sqlx::query(&sql).bind(repo_id);
        for d in batch {
            update = update.bind(d.as_str());
        }
        update.execute(&mut *tx).await.map_err(db_err)?;
    }
    Ok(())
}

/// A row lock a statement takes on PostgreSQL, where transactions of several replicas interleave.
/// SQLite needs none: its one writer connection runs write transactions one at a time.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RowLock {
    Share,
    Update,
}

/// The clause that takes `lock` on the rows a `SELECT` returns, for `engine`.
pub(crate) fn lock_clause(engine: Engine, lock: RowLock) -> &'static str {
    match (engine, lock) {
        (Engine::Sqlite, _) => "",
        (Engine::Postgres, RowLock::Share) => " FOR SHARE",
        (Engine::Postgres, RowLock::Update) => " FOR UPDATE",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn synchronous(meta: &SqlMetadata) -> i64 {
        sqlx::query_scalar("PRAGMA synchronous").fetch_one(&meta.write).await.unwrap()
    }

    #[tokio::test]
    async fn relaxed_writes_leave_the_writer_durable() {
        let dir = tempfile::tempdir().unwrap();
        let meta = SqlMetadata::open(&dir.path().join("db.sqlite")).await.unwrap();
        const FULL: i64 = 2;
        assert_eq!(synchronous(&meta).await, FULL);
        let seen: i64 = meta
            .writing_relaxed(|conn| {
                Box::pin(
                    async move { sqlx::query_scalar("PRAGMA synchronous").fetch_one(&mut *conn).await.map_err(db_err) },
                )
            })
            .await
            .unwrap();
        assert_eq!(seen, 1, "NORMAL inside");
        assert_eq!(synchronous(&meta).await, FULL, "FULL again afterwards");
        let failed: Result<()> = meta
            .writing_relaxed(|conn| {
                Box::pin(async move {
                    sqlx::query("INSERT INTO no_such_table VALUES (1)").execute(&mut *conn).await.map_err(db_err)?;
                    Ok(())
                })
            })
            .await;
        assert!(failed.is_err());
        assert_eq!(synchronous(&meta).await, FULL, "FULL again after a failed write");
    }

    #[test]
    fn placeholders_are_numbered_from_the_start() {
        assert_eq!(placeholders(3, 3), "$3, $4, $5");
        assert_eq!(placeholders(1, 0), "");
    }
}
