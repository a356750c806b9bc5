//! Uploads through the router: monolithic, POST+PUT, chunked, streamed, status, cancel, mount,
//! digest mismatch and out-of-order chunks.

mod common;

use axum::body::Body;
use common::{sha256, TestRegistry};

#[tokio::test]
async fn monolithic_upload_then_get_and_head() {
    let r = TestRegistry::new().await;
    let digest = r.push_blob("a/b", b"hello").await;
    let got = r.get(&format!("/v2/a/b/blobs/{digest}")).await;
    got.expect(200, None);
    assert_eq!(&got.body[..], b"hello");
    assert_eq!(got.header("docker-content-digest"), digest.as_str());
    let head = r.send("HEAD", &format!("/v2/a/b/blobs/{digest}"), &[], Body::empty()).await;
    head.expect(200, None);
    assert_eq!(head.header("content-length"), "5");
    assert!(head.body.is_empty());
    // Another repository cannot read it: blobs are readable only where they are linked.
    r.get(&format!("/v2/other/blobs/{digest}")).await.expect(404, Some("BLOB_UNKNOWN"));
}

#[tokio::test]
async fn post_then_put_with_body() {
    let r = TestRegistry::new().await;
    let started = r.send("POST", "/v2/x/blobs/uploads/", &[], Body::empty()).await;
    started.expect(202, None);
    let location = started.header("location").to_owned();
    assert!(location.starts_with("/v2/x/blobs/uploads/"));
    assert_eq!(started.header("range"), "0-0");
    let digest = sha256(b"payload");
    let done = r.send("PUT", &format!("{location}?digest={digest}"), &[("content-length", "7")], &b"payload"[..]).await;
    done.expect(201, None);
    assert_eq!(done.header("location"), format!("/v2/x/blobs/{digest}"));
    assert_eq!(&r.get(&format!("/v2/x/blobs/{digest}")).await.body[..], b"payload");
}

#[tokio::test]
async fn chunked_upload_in_order_with_status() {
    let r = TestRegistry::new().await;
    let location = r.send("POST", "/v2/x/blobs/uploads/", &[], Body::empty()).await.header("location").to_owned();
    let data: Vec<u8> = (0..30_000u32).map(|i| (i % 251) as u8).collect();
    let mut offset = 0;
    for chunk in data.chunks(7_000) {
        let range = format!("{}-{}", offset, offset + chunk.len() - 1);
        let len = chunk.len().to_string();
        let reply =
            r.send("PATCH", &location, &[("content-range", &range), ("content-length", &len)], chunk.to_vec()).await;
        reply.expect(202, None);
        offset += chunk.len();
        assert_eq!(reply.header("range"), format!("0-{}", offset - 1));
    }
    let status = r.get(&location).await;
    status.expect(204, None);
    assert_eq!(status.header("range"), format!("0-{}", data.len() - 1));
    assert_eq!(status.header("location"), location);
    let digest = sha256(&data);
    r.send("PUT", &format!("{location}?digest={digest}"), &[], Body::empty()).await.expect(201, None);
    assert_eq!(&r.get(&format!("/v2/x/blobs/{digest}")).await.body[..], &data[..]);
    // The session is gone once the blob landed.
    r.get(&location).await.expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
}

#[tokio::test]
async fn streamed_patch_without_content_range() {
    let r = TestRegistry::new().await;
    let location = r.send("POST", "/v2/x/blobs/uploads/", &[], Body::empty()).await.header("location").to_owned();
    r.send("PATCH", &location, &[], &b"abc"[..]).await.expect(202, None);
    let second = r.send("PATCH", &location, &[], &b"def"[..]).await;
    second.expect(202, None);
    assert_eq!(second.header("range"), "0-5");
    let digest = sha256(b"abcdef");
    r.send("PUT", &format!("{location}?digest={digest}"), &[], Body::empty()).await.expect(201, None);
    assert_eq!(&r.get(&format!("/v2/x/blobs/{digest}")).await.body[..], b"abcdef");
}

#[tokio::test]
async fn out_of_order_and_repeated_chunks_get_416() {
    let r = TestRegistry::new().await;
    let location = r.send("POST", "/v2/x/blobs/uploads/", &[], Body::empty()).await.header("location").to_owned();
    r.send("PATCH", &location, &[("content-range", "5-9")], &b"12345"[..]).await.expect(416, Some("RANGE_INVALID"));
    r.send("PATCH", &location, &[("content-range", "0-4")], &b"12345"[..]).await.expect(202, None);
    // The same chunk again, and a chunk that skips ahead.
    r.send("PATCH", &location, &[("content-range", "0-4")], &b"12345"[..]).await.expect(416, Some("RANGE_INVALID"));
    r.send("PATCH", &location, &[("content-range", "6-8")], &b"678"[..]).await.expect(416, Some("RANGE_INVALID"));
    // A Content-Length that disagrees with the range, and a range that is not one.
    r.send("PATCH", &location, &[("content-range", "5-9"), ("content-length", "3")], &b"678"[..])
        .await
        .expect(416, Some("RANGE_INVALID"));
    r.send("PATCH", &location, &[("content-range", "bogus")], &b"678"[..]).await.expect(416, Some("RANGE_INVALID"));
    // A body shorter than its range is refused and not kept.
    r.send("PATCH", &location, &[("content-range", "5-9")], &b"67"[..]).await.expect(400, Some("BLOB_UPLOAD_INVALID"));
    assert_eq!(r.get(&location).await.header("range"), "0-4");
    let digest = sha256(b"12345");
    r.send("PUT", &format!("{location}?digest={digest}"), &[], Body::empty()).await.expect(201, None);
}

#[tokio::test]
async fn digest_mismatch_leaves_nothing_behind() {
    let r = TestRegistry::new().await;
    let wrong = sha256(b"something else");
    r.send("POST", &format!("/v2/x/blobs/uploads/?digest={wrong}"), &[], &b"actual"[..])
        .await
        .expect(400, Some("DIGEST_INVALID"));
    r.get(&format!("/v2/x/blobs/{wrong}")).await.expect(404, Some("BLOB_UNKNOWN"));
    r.get(&format!("/v2/x/blobs/{}", sha256(b"actual"))).await.expect(404, Some("BLOB_UNKNOWN"));
    let location = r.send("POST", "/v2/x/blobs/uploads/", &[], Body::empty()).await.header("location").to_owned();
    r.send("PATCH", &location, &[], &b"first"[..]).await.expect(202, None);
    r.send("PATCH", &location, &[], &b"second"[..]).await.expect(202, None);
    r.send("PUT", &format!("{location}?digest={wrong}"), &[], Body::empty()).await.expect(400, Some("DIGEST_INVALID"));
    r.get(&location).await.expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    // No object is left in the store: neither a blob nor upload parts.
    let blobs = r.dir.path().join("blobs");
    let files: Vec<_> = walk(&blobs);
    assert!(files.is_empty(), "left behind: {files:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

#[tokio::test]
async fn put_requires_a_valid_digest() {
    let r = TestRegistry::new().await;
    let location = r.send("POST", "/v2/x/blobs/uploads/", &[], Body::empty()).await.header("location").to_owned();
    r.send("PUT", &location, &[], Body::empty()).await.expect(400, Some("DIGEST_INVALID"));
    r.send("PUT", &format!("{location}?digest=sha256:nothex"), &[], Body::empty())
        .await
        .expect(400, Some("DIGEST_INVALID"));
    r.send("PUT", &format!("{location}?digest=md5:d41d8cd98f00b204e9800998ecf8427e"), &[], Body::empty())
        .await
        .expect(400, Some("DIGEST_INVALID"));
    r.send("POST", "/v2/x/blobs/uploads/?digest=bad", &[], &b"x"[..]).await.expect(400, Some("DIGEST_INVALID"));
}

#[tokio::test]
async fn sha512_and_empty_blobs() {
    let r = TestRegistry::new().await;
    let d512 = portcullis::domain::Digest::of(portcullis::domain::digest::Algorithm::Sha512, b"long hash");
    r.send("POST", &format!("/v2/x/blobs/uploads/?digest={d512}"), &[], &b"long hash"[..]).await.expect(201, None);
    assert_eq!(&r.get(&format!("/v2/x/blobs/{d512}")).await.body[..], b"long hash");
    let empty = sha256(b"");
    r.send("POST", &format!("/v2/x/blobs/uploads/?digest={empty}"), &[], Body::empty()).await.expect(201, None);
    let got = r.get(&format!("/v2/x/blobs/{empty}")).await;
    got.expect(200, None);
    assert!(got.body.is_empty());
}

#[tokio::test]
async fn cancel_and_unknown_sessions() {
    let r = TestRegistry::new().await;
    let location = r.send("POST", "/v2/x/blobs/uploads/", &[], Body::empty()).await.header("location").to_owned();
    r.send("PATCH", &location, &[], &b"data"[..]).await.expect(202, None);
    r.send("DELETE", &location, &[], Body::empty()).await.expect(204, None);
    r.get(&location).await.expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    r.send("PATCH", &location, &[], &b"more"[..]).await.expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    r.send("DELETE", &location, &[], Body::empty()).await.expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    // A session belongs to its repository.
    let other =
        r.send("POST", "/v2/x/blobs/uploads/", &[], Body::empty()).await.header("location").replace("/v2/x/", "/v2/y/");
    r.get(&other).await.expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    r.get("/v2/x/blobs/uploads/not-a-uuid").await.expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
}

#[tokio::test]
async fn cross_repository_mount() {
    let r = TestRegistry::new().await;
    let digest = r.push_blob("src/repo", b"shared layer").await;
    let mounted =
        r.send("POST", &format!("/v2/dst/blobs/uploads/?mount={digest}&from=src/repo"), &[], Body::empty()).await;
    mounted.expect(201, None);
    assert_eq!(mounted.header("location"), format!("/v2/dst/blobs/{digest}"));
    assert_eq!(&r.get(&format!("/v2/dst/blobs/{digest}")).await.body[..], b"shared layer");
    // Not in the source: the spec's fallback is a regular upload session.
    let missing = sha256(b"nowhere");
    let fallback =
        r.send("POST", &format!("/v2/dst/blobs/uploads/?mount={missing}&from=src/repo"), &[], Body::empty()).await;
    fallback.expect(202, None);
    assert!(fallback.header("location").starts_with("/v2/dst/blobs/uploads/"));
    let no_from = r.send("POST", &format!("/v2/third/blobs/uploads/?mount={digest}"), &[], Body::empty()).await;
    no_from.expect(202, None);
    r.send("POST", &format!("/v2/dst/blobs/uploads/?mount={digest}&from=BAD..name"), &[], Body::empty())
        .await
        .expect(400, Some("NAME_INVALID"));
}

#[tokio::test]
async fn expiry_sweep_removes_stale_sessions_and_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestRegistry::with_config(dir, |c| c.uploads.expiry = std::time::Duration::from_secs(600)).await;
    let location = r.send("POST", "/v2/x/blobs/uploads/", &[], Body::empty()).await.header("location").to_owned();
    r.send("PATCH", &location, &[], &b"stale"[..]).await.expect(202, None);
    // An orphan part, as a crash between writing a part and recording it would leave (on local
    // disk or in the bucket, whichever this registry runs on).
    let orphan: portcullis::storage::UploadId = uuid_like().parse().unwrap();
    let bytes = futures::stream::iter([Ok(bytes::Bytes::from_static(b"orphan"))]);
    r.app.registry.blobs().write_part(&orphan, 0, Box::pin(bytes)).await.unwrap();
    assert_eq!(r.app.registry.blobs().stored_uploads().await.unwrap().len(), 2);
    // Before the expiry only the orphan goes; the session idle for less than that stays.
    assert_eq!(r.app.registry.expire_uploads().await.unwrap(), 1);
    r.get(&location).await.expect(204, None);
    r.advance_clocks(std::time::Duration::from_secs(601));
    let removed = r.app.registry.expire_uploads().await.unwrap();
    assert_eq!(removed, 1);
    r.get(&location).await.expect(404, Some("BLOB_UPLOAD_UNKNOWN"));
    assert_eq!(r.app.registry.blobs().stored_uploads().await.unwrap(), vec![]);
    if !common::backends::scaleout() {
        // Local disk: not even an empty directory is left.
        assert!(walk(&r.dir.path().join("blobs/uploads")).is_empty());
    }
}

fn uuid_like() -> String {
    "0b7e5f0e-3f0a-4a43-9d6c-2a7f3c1e9b11".to_owned()
}
