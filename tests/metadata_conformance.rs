//! The metadata conformance suite against every database backend available here.

use portcullis::metadata::{conformance, sqlite::SqliteMetadata};

#[tokio::test]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let meta = SqliteMetadata::open(&dir.path().join("meta.db")).await.unwrap();
    conformance::run(&meta).await;
}
