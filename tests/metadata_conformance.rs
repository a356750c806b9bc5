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
async fn postgres() {
    let name = backends::name_for(&format!("conformance-{}", uuid::Uuid::new_v4()));
    let meta = SqlMetadata::connect(&backends::postgres_database(&name), 8).await.unwrap();
    conformance::run(&meta).await;
    meta.close().await;
}

/// Several replicas migrate one database at once: the migrations run once, all of them start.
#[tokio::test]
async fn postgres_concurrent_migrations() {
    let url = backends::postgres_database(&backends::name_for(&format!("migrate-{}", uuid::Uuid::new_v4())));
    let opened = futures::future::join_all((0..3).map(|_| SqlMetadata::connect(&url, 2))).await;
    for meta in opened {
        meta.expect("every replica opens the database").close().await;
    }
}
