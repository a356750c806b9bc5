//! The metadata conformance suite against every database backend: SQLite (embedded) and the real
//! PostgreSQL server that scripts/test.sh starts.

mod common;

use common::backends;
use portcullis::metadata::{conformance, sql::SqlMetadata};

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let meta = SqlMetadata::open(&dir.path().join("meta.db")).await.unwrap();
    conformance::run(&meta).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test.sh runs it"]
async fn postgres() {
    let name = backends::name_for(&format!("conformance-{}", uuid::Uuid::new_v4()));
    let meta = SqlMetadata::connect(&backends::postgres_database(&name), 8).await.unwrap();
    conformance::run(&meta).await;
    meta.close().await;
}

/// Several replicas migrate one database at once: the migrations run once, all of them start.
#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test.sh runs it"]
async fn postgres_concurrent_migrations() {
    let url = backends::postgres_database(&backends::name_for(&format!("migrate-{}", uuid::Uuid::new_v4())));
    let opened = futures::future::join_all((0..3).map(|_| SqlMetadata::connect(&url, 2))).await;
    for meta in opened {
        meta.expect("every replica opens the database").close().await;
    }
}

/// Both engines carry the same indexes (named alike): a query fast on one is fast on the other.
#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test.sh runs it"]
async fn both_engines_have_the_same_indexes() {
    use std::collections::BTreeSet;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta.db");
    SqlMetadata::open(&path).await.unwrap();
    let sqlite = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
    let ours: BTreeSet<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'")
            .fetch_all(&sqlite)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let url = backends::postgres_database(&backends::name_for(&format!("indexes-{}", uuid::Uuid::new_v4())));
    SqlMetadata::connect(&url, 2).await.unwrap().close().await;
    let pg = sqlx::PgPool::connect(&url).await.unwrap();
    // Primary keys and unique constraints are indexes of their own on PostgreSQL (`*_pkey`, `*_key`).
    let theirs: BTreeSet<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() \
         AND indexname NOT LIKE '%\\_pkey' AND indexname NOT LIKE '%\\_key'",
    )
    .fetch_all(&pg)
    .await
    .unwrap()
    .into_iter()
    .collect();
    pg.close().await;
    assert!(ours.contains("tags_manifest") && ours.contains("uploads_updated"), "{ours:?}");
    assert_eq!(ours, theirs, "SQLite (left) and PostgreSQL (right) differ");
}
