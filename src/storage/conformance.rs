//! The storage conformance suite: every [`BlobStore`] backend must have each property below.
//!
//! [`storage_conformance!`](crate::storage_conformance) turns the list into one named test per
//! property for a backend, so a failure names the property that broke.

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::{BlobStore, ByteStream, Commit, StorageError, UploadId, WrittenPart};
use crate::model::digest::{Algorithm, DigestHasher};
use crate::model::Digest;

fn stream(chunks: &[&[u8]]) -> ByteStream {
    let owned: Vec<_> = chunks.iter().map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    futures::stream::iter(owned).boxed()
}

async fn read_all(store: &BlobStore, digest: &Digest, range: Option<std::ops::Range<u64>>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut s = store.read(digest, range).await.expect("readable");
    while let Some(chunk) = s.try_next().await.expect("chunk") {
        out.extend_from_slice(&chunk);
    }
    out
}

/// Writes `pieces` as consecutive chunks of `upload`.
async fn write_in_pieces(store: &BlobStore, upload: &UploadId, pieces: &[&[u8]]) -> Vec<WrittenPart> {
    let mut parts = Vec::new();
    let mut offset = 0;
    for p in pieces {
        parts.push(store.write_part(upload, offset, stream(&[p])).await.unwrap());
        offset += p.len() as u64;
    }
    parts
}

/// One `#[tokio::test]` per property, each on a fresh store from `$make`: an async block that
/// yields the store and whatever must live as long as it (a temporary directory). With
/// `ignore = "reason",` first, the tests are `#[ignore]`d (backends that need a service).
#[macro_export]
macro_rules! storage_conformance {
    (@one [$($attr:tt)*] $make:expr; $property:ident) => {
        #[tokio::test]
        $($attr)*
        async fn $property() {
            let (store, _keep) = $make.await;
            $crate::storage::conformance::$property(&store).await;
        }
    };
    (@each $attrs:tt $make:expr; $($property:ident),*) => {
        $( $crate::storage_conformance!(@one $attrs $make; $property); )*
    };
    (@all $attrs:tt $make:expr) => {
        $crate::storage_conformance!(@each $attrs $make;
            one_part_is_verified_by_its_own_digest,
            several_parts_are_assembled_in_order,
            a_long_body_is_written_in_bounded_parts,
            sha512_blobs_are_verified_under_sha512,
            a_mismatch_stores_nothing,
            committing_an_existing_blob_keeps_its_bytes,
            a_failing_body_is_reported_as_such,
            bytes_past_the_recorded_end_never_reach_the_blob,
            a_refused_chunk_sent_again_is_replaced,
            a_chunk_dropped_mid_write_never_reaches_the_blob,
            missing_blobs_deletes_and_listing
        );
    };
    (ignore = $why:literal, $make:expr) => {
        $crate::storage_conformance!(@all [#[ignore = $why]] $make);
    };
    ($make:expr) => {
        $crate::storage_conformance!(@all [] $make);
    };
}

/// One part whose own hash is the digest: committed without a re-read, readable whole and by
/// range, and listed as an upload until the upload is deleted.
pub async fn one_part_is_verified_by_its_own_digest(store: &BlobStore) {
    let upload = UploadId::new();
    let part = store.write_part(&upload, 0, stream(&[b"hello ", b"world"])).await.unwrap();
    assert_eq!(part.size, 11);
    let digest = Digest::of(Algorithm::Sha256, b"hello world");
    assert_eq!(part.sha256, digest);
    assert!(store.stored_uploads().await.unwrap().contains(&upload));
    assert_eq!(store.commit(&upload, &[part], &digest).await.unwrap(), Commit::Stored { size: 11 });
    assert!(store.exists(&digest).await.unwrap());
    assert_eq!(read_all(store, &digest, None).await, b"hello world");
    assert_eq!(read_all(store, &digest, Some(6..11)).await, b"world");
    store.delete_upload(&upload).await.unwrap();
    assert!(!store.stored_uploads().await.unwrap().contains(&upload));
}

/// Several parts, a large one among them, each with the digest of its own bytes, assembled in order.
pub async fn several_parts_are_assembled_in_order(store: &BlobStore) {
    let upload = UploadId::new();
    let big: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let mut parts = Vec::new();
    let mut offset = 0;
    for piece in [&b"head-"[..], &big[..], &b"-tail"[..]] {
        let part = store.write_part(&upload, offset, stream(&[piece])).await.unwrap();
        assert_eq!(part.sha256, Digest::of(Algorithm::Sha256, piece), "a part's digest is of its own bytes");
        parts.push(part);
        offset += piece.len() as u64;
    }
    let mut hasher = DigestHasher::new(Algorithm::Sha256);
    for piece in [&b"head-"[..], &big[..], &b"-tail"[..]] {
        hasher.update(piece);
    }
    let whole = hasher.finish();
    assert_eq!(store.commit(&upload, &parts, &whole).await.unwrap(), Commit::Stored { size: big.len() as u64 + 10 });
    let back = read_all(store, &whole, None).await;
    assert_eq!(Digest::of(Algorithm::Sha256, &back), whole);
    store.delete_upload(&upload).await.unwrap();
}

/// A body longer than two write buffers, in small network-sized chunks: on S3 a multipart upload
/// whose parts are all full size but the last; read back whole and by range across a part edge.
pub async fn a_long_body_is_written_in_bounded_parts(store: &BlobStore) {
    let upload = UploadId::new();
    let len = 2 * store.options().write_chunk + 12_345;
    let long: Vec<u8> = (0..len as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let pieces: Vec<&[u8]> = long.chunks(64 * 1024).collect();
    let part = store.write_part(&upload, 0, stream(&pieces)).await.unwrap();
    let long_digest = Digest::of(Algorithm::Sha256, &long);
    assert_eq!((part.size, &part.sha256), (len as u64, &long_digest));
    assert_eq!(store.commit(&upload, &[part], &long_digest).await.unwrap(), Commit::Stored { size: len as u64 });
    assert_eq!(read_all(store, &long_digest, None).await, long);
    let edge = store.options().write_chunk as u64;
    assert_eq!(
        read_all(store, &long_digest, Some(edge - 10..edge + 10)).await,
        &long[edge as usize - 10..edge as usize + 10]
    );
    store.delete_upload(&upload).await.unwrap();
}

/// A sha512 digest is checked under sha512, for one part and for several.
pub async fn sha512_blobs_are_verified_under_sha512(store: &BlobStore) {
    for pieces in [vec![&b"five twelve"[..]], vec![&b"five "[..], &b"twelve"[..]]] {
        let upload = UploadId::new();
        let parts = write_in_pieces(store, &upload, &pieces).await;
        let d512 = Digest::of(Algorithm::Sha512, b"five twelve");
        assert_eq!(store.commit(&upload, &parts, &d512).await.unwrap(), Commit::Stored { size: 11 });
        assert_eq!(read_all(store, &d512, None).await, b"five twelve");
        store.delete_upload(&upload).await.unwrap();
        store.delete_blob(&d512).await.unwrap();
    }
}

/// A mismatch stores nothing and names the actual digest, for one part and for several.
pub async fn a_mismatch_stores_nothing(store: &BlobStore) {
    for pieces in [vec![&b"abc"[..]], vec![&b"a"[..], &b"bc"[..]]] {
        let upload = UploadId::new();
        let parts = write_in_pieces(store, &upload, &pieces).await;
        let claimed = Digest::of(Algorithm::Sha256, b"not abc");
        match store.commit(&upload, &parts, &claimed).await.unwrap() {
            Commit::Mismatch { actual } => assert_eq!(actual, Digest::of(Algorithm::Sha256, b"abc")),
            other => panic!("expected a mismatch, got {other:?}"),
        }
        assert!(!store.exists(&claimed).await.unwrap());
        store.delete_upload(&upload).await.unwrap();
    }
}

/// Committing a blob that already exists is harmless and keeps its bytes.
pub async fn committing_an_existing_blob_keeps_its_bytes(store: &BlobStore) {
    let digest = Digest::of(Algorithm::Sha256, b"hello again");
    for _ in 0..2 {
        let upload = UploadId::new();
        let part = store.write_part(&upload, 0, stream(&[b"hello again"])).await.unwrap();
        assert_eq!(store.commit(&upload, &[part], &digest).await.unwrap(), Commit::Stored { size: 11 });
        assert_eq!(read_all(store, &digest, None).await, b"hello again");
        store.delete_upload(&upload).await.unwrap();
    }
}

/// A failing body is reported as such (not as a storage fault) and leaves no part.
pub async fn a_failing_body_is_reported_as_such(store: &BlobStore) {
    let upload = UploadId::new();
    let failing: ByteStream = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "client went away")),
    ])
    .boxed();
    assert!(matches!(store.write_part(&upload, 0, failing).await, Err(StorageError::Body(_))));
    store.delete_upload(&upload).await.unwrap();
}

/// Bytes written past the recorded end (a refused chunk) never reach the blob.
pub async fn bytes_past_the_recorded_end_never_reach_the_blob(store: &BlobStore) {
    let upload = UploadId::new();
    let first = store.write_part(&upload, 0, stream(&[b"keep"])).await.unwrap();
    let refused = store.write_part(&upload, 4, stream(&[b"refused tail"])).await.unwrap();
    store.delete_part(&upload, &refused.part_id).await.unwrap();
    let keep = Digest::of(Algorithm::Sha256, b"keep");
    assert_eq!(store.commit(&upload, &[first], &keep).await.unwrap(), Commit::Stored { size: 4 });
    assert_eq!(read_all(store, &keep, None).await, b"keep");
    store.delete_upload(&upload).await.unwrap();
}

/// A chunk refused, then the right one at the same offset: the blob is the recorded chunks only.
pub async fn a_refused_chunk_sent_again_is_replaced(store: &BlobStore) {
    let upload = UploadId::new();
    let first = store.write_part(&upload, 0, stream(&[b"head-"])).await.unwrap();
    let refused = store.write_part(&upload, 5, stream(&[b"a refused chunk, longer than the real one"])).await.unwrap();
    store.delete_part(&upload, &refused.part_id).await.unwrap();
    let second = store.write_part(&upload, 5, stream(&[b"tail"])).await.unwrap();
    let head_tail = Digest::of(Algorithm::Sha256, b"head-tail");
    assert_eq!(store.commit(&upload, &[first, second], &head_tail).await.unwrap(), Commit::Stored { size: 9 });
    assert_eq!(read_all(store, &head_tail, None).await, b"head-tail");
    store.delete_upload(&upload).await.unwrap();
}

/// A request dropped in the middle of a chunk (a reset stream) leaves nothing that reaches the
/// blob: the chunk sent again and committed is exactly what is stored, however the dropped
/// chunk's writes end.
pub async fn a_chunk_dropped_mid_write_never_reaches_the_blob(store: &BlobStore) {
    let upload = UploadId::new();
    let junk: Vec<Result<Bytes, std::io::Error>> = (0..48).map(|i| Ok(Bytes::from(vec![i as u8; 64 * 1024]))).collect();
    let stalled: ByteStream = futures::stream::iter(junk).chain(futures::stream::pending()).boxed();
    let writing = {
        let (store, upload) = (store.clone(), upload.clone());
        tokio::spawn(async move { store.write_part(&upload, 0, stalled).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    writing.abort();
    let _ = writing.await;
    let good = b"the chunk that was sent again";
    let part = store.write_part(&upload, 0, stream(&[good])).await.unwrap();
    let digest = Digest::of(Algorithm::Sha256, good);
    assert_eq!(store.commit(&upload, &[part], &digest).await.unwrap(), Commit::Stored { size: good.len() as u64 });
    assert_eq!(read_all(store, &digest, None).await, good);
    store.delete_upload(&upload).await.unwrap();
    // Still exactly those bytes once anything the dropped chunk left running has stopped.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(read_all(store, &digest, None).await, good);
}

/// Missing blobs read as not found; deletion is idempotent; listing names every blob with its size.
pub async fn missing_blobs_deletes_and_listing(store: &BlobStore) {
    let absent = Digest::of(Algorithm::Sha256, b"absent");
    assert!(matches!(store.read(&absent, None).await, Err(StorageError::NotFound)));
    assert!(!store.exists(&absent).await.unwrap());
    store.delete_blob(&absent).await.unwrap();
    let one = store.put_verified(Bytes::from_static(b"listed one")).await.unwrap();
    let two = store.put_verified(Bytes::from_static(b"listed, two")).await.unwrap();
    let listed: Vec<(Digest, u64)> = store.list_blobs().map_ok(|b| (b.digest, b.size)).try_collect().await.unwrap();
    assert!(listed.contains(&(one.clone(), 10)), "{listed:?}");
    assert!(listed.contains(&(two.clone(), 11)), "{listed:?}");
    // Listed with the time they were published: the collector's "old enough" depends on it.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for blob in store.list_blobs().try_collect::<Vec<_>>().await.unwrap() {
        if blob.digest == one || blob.digest == two {
            assert!((now - 120..=now + 120).contains(&blob.modified), "{blob:?} published at {now}");
        }
    }
    store.delete_blob(&one).await.unwrap();
    assert!(!store.exists(&one).await.unwrap());
    assert!(store.exists(&two).await.unwrap());
    store.delete_blob(&two).await.unwrap();
}
