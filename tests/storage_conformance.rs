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

/// Local disk keeps each upload's running digest in memory; a restarted store (a new process)
/// rebuilds it from the file, and the chunked upload still commits under the right digest.
#[tokio::test]
async fn local_disk_chunked_upload_survives_a_restart() {
    use futures::StreamExt;
    let dir = tempfile::tempdir().unwrap();
    let chunk = |b: &'static [u8]| futures::stream::iter([Ok(bytes::Bytes::from_static(b))]).boxed();
    let upload = portcullis::storage::UploadId::new();
    let first = BlobStore::local(dir.path()).unwrap().write_part(&upload, 0, chunk(b"before ")).await.unwrap();
    let restarted = BlobStore::local(dir.path()).unwrap();
    let second = restarted.write_part(&upload, 7, chunk(b"and after")).await.unwrap();
    let whole = common::sha256(b"before and after");
    assert_eq!(second.sha256, whole, "the last chunk carries the digest of the whole upload");
    let committed = restarted.commit(&upload, &[first, second], &whole).await.unwrap();
    assert_eq!(committed, portcullis::storage::Commit::Stored { size: 16 });
}
