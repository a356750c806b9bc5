//! The storage conformance suite against every blob backend: local disk, in-memory object_store,
//! and a real S3 server (Garage, started by scripts/test.sh).

mod common;

use std::sync::Arc;

use common::backends;
use portcullis::storage::{conformance, BlobStore, StoreOptions};

#[tokio::test]
async fn local_disk() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run(&BlobStore::local(dir.path()).unwrap()).await;
}

#[tokio::test]
async fn in_memory() {
    let store = Arc::new(object_store::memory::InMemory::new());
    conformance::run(&BlobStore::new(store, StoreOptions { write_chunk: 5 * 1024 * 1024, chunk_min_length: 0 })).await;
}

#[tokio::test]
async fn s3_garage() {
    let name = backends::name_for(&format!("storage-{}", uuid::Uuid::new_v4()));
    let store = BlobStore::s3(&backends::s3_config(&name)).unwrap();
    store.check_writable().await.unwrap();
    conformance::run(&store).await;
}
