//! The storage conformance suite against every blob backend available here.

use std::sync::Arc;

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
