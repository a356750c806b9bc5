//! The storage conformance suite against every blob backend: local disk, in-memory object_store,
//! and a real S3 server (Garage, started by scripts/test.sh).

mod common;

use common::backends;
use portcullis::storage::{BlobStore, StoreOptions};

/// Direct writes on (the default): the suite's multi-MiB chunks, aligned and not, go to the disk
/// past the page cache where this filesystem allows it.
mod local_disk {
    portcullis::storage_conformance!(async {
        let dir = tempfile::tempdir().unwrap();
        (super::BlobStore::local(dir.path()).unwrap(), dir)
    });
}

/// `storage.direct_writes = false`: every byte through the page cache.
mod local_disk_buffered {
    portcullis::storage_conformance!(async {
        let dir = tempfile::tempdir().unwrap();
        (super::BlobStore::local_with(dir.path(), false).unwrap(), dir)
    });
}

mod in_memory {
    portcullis::storage_conformance!(async {
        let store = std::sync::Arc::new(object_store::memory::InMemory::new());
        let options = super::StoreOptions { write_chunk: 5 * 1024 * 1024, chunk_min_length: 0 };
        (super::BlobStore::new(store, options), ())
    });
}

/// A real S3 server (Garage, started by scripts/test.sh): one bucket per property.
mod s3_garage {
    portcullis::storage_conformance!(ignore = "needs Garage (S3): scripts/test.sh runs it", async {
        let name = super::backends::name_for(&format!("storage-{}", uuid::Uuid::new_v4()));
        let store = super::BlobStore::s3(&super::backends::s3_config(&name)).unwrap();
        store.check_writable().await.unwrap();
        (store, ())
    });
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
    assert_eq!(second.sha256, common::sha256(b"and after"), "a part's digest is of its own bytes");
    let committed = restarted.commit(&upload, &[first, second], &whole).await.unwrap();
    assert_eq!(committed, portcullis::storage::Commit::Stored { size: 16 });
}

/// Local disk: an upload whose file went missing or shrank (removed behind the store's back, or
/// left in an earlier version's layout) commits nothing and takes no further chunk; it is never
/// padded into a blob whose bytes differ from its digest.
#[tokio::test]
async fn local_disk_lost_upload_file_is_refused_never_padded() {
    use futures::StreamExt;
    use portcullis::storage::{StorageError, UploadId};
    let dir = tempfile::tempdir().unwrap();
    let chunk = |b: &'static [u8]| futures::stream::iter([Ok(bytes::Bytes::from_static(b))]).boxed();
    let store = BlobStore::local(dir.path()).unwrap();
    let upload = UploadId::new();
    let part = store.write_part(&upload, 0, chunk(b"recorded bytes")).await.unwrap();
    let file = dir.path().join("uploads").join(format!("{upload}.data"));
    assert!(file.is_file(), "one file per upload");

    std::fs::write(&file, b"rec").unwrap();
    let commit = store.commit(&upload, std::slice::from_ref(&part), &part.sha256).await;
    assert!(matches!(commit, Err(StorageError::UploadLost)), "{commit:?}");
    let more = store.write_part(&upload, part.size, chunk(b" and more")).await;
    assert!(matches!(more, Err(StorageError::UploadLost)), "{more:?}");

    std::fs::remove_file(&file).unwrap();
    let commit = store.commit(&upload, std::slice::from_ref(&part), &part.sha256).await;
    assert!(matches!(commit, Err(StorageError::UploadLost)), "{commit:?}");
    let more = BlobStore::local(dir.path()).unwrap().write_part(&upload, part.size, chunk(b" and more")).await;
    assert!(matches!(more, Err(StorageError::UploadLost)), "{more:?}");
    assert!(!file.exists(), "no file re-created with a hole");
    assert!(!store.exists(&part.sha256).await.unwrap(), "nothing published");
}
