//! Online garbage collection and fsck against a real registry (SQLite + local disk by default,
//! PostgreSQL + Garage with three replicas under `TESTBED_BACKEND=scaleout`). The app's clock is
//! moved past the grace period instead of waiting for it.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use common::{images, sha256, TestRegistry};
use futures::TryStreamExt;
use portcullis::domain::Digest;
use serde_json::json;

const GRACE: Duration = Duration::from_secs(60);

async fn registry() -> TestRegistry {
    let dir = tempfile::tempdir().unwrap();
    TestRegistry::with_config(dir, |c| {
        c.gc.grace = GRACE;
        c.gc.interval = Duration::ZERO;
    })
    .await
}

/// Moves every replica's clock past the grace period.
fn age(r: &TestRegistry) {
    r.advance_clocks(GRACE + Duration::from_secs(1));
}

fn layer(seed: &str, len: usize) -> Vec<u8> {
    let mut content = Vec::with_capacity(len);
    let mut x = sha256(seed.as_bytes()).hex().as_bytes().to_vec();
    while content.len() < len {
        x = sha256(&x).hex().as_bytes().to_vec();
        content.extend_from_slice(&x);
    }
    content.truncate(len);
    images::layer_tar_gz(&format!("data/{seed}"), &content, 0o644)
}

async fn stored(r: &TestRegistry) -> HashSet<Digest> {
    r.app.registry.blobs().list_blobs().map_ok(|b| b.digest).try_collect().await.unwrap()
}

/// Reads the image back as the admin: the manifest by tag, every blob whole, each re-hashed.
async fn pulls_intact(r: &TestRegistry, repo: &str, tag: &str, manifest: &[u8]) {
    let got = r.get(&format!("/v2/{repo}/manifests/{tag}")).await;
    got.expect(200, None);
    assert_eq!(got.body.as_ref(), manifest, "{repo}:{tag}");
    let m: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    let blobs = std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap());
    for d in blobs {
        let digest = d["digest"].as_str().unwrap();
        let blob = r.get(&format!("/v2/{repo}/blobs/{digest}")).await;
        blob.expect(200, None);
        assert_eq!(sha256(&blob.body).to_string(), digest, "{repo}:{tag} blob {digest}");
    }
}

#[tokio::test]
async fn collection_frees_what_nothing_references_and_keeps_the_rest() {
    let r = registry().await;
    let base = layer("shared base", 200_000);
    let only_a = layer("only in a", 50_000);
    let only_b = layer("only in b", 70_000);
    let (_, a_manifest, ..) =
        r.push_layers("team/app", "a", images::config_json("a").as_bytes(), &[&base, &only_a]).await;
    let (b_digest, _, b_config, _) =
        r.push_layers("team/app", "b", images::config_json("b").as_bytes(), &[&base, &only_b]).await;
    let stray = r.push_blob("team/app", b"a blob no manifest ever named").await;
    r.send("DELETE", &format!("/v2/team/app/manifests/{b_digest}"), &[], Body::empty()).await.expect(202, None);

    // Within the grace period nothing goes, however unreferenced.
    let early = r.admin_api("POST", "/api/v1/gc", serde_json::Value::Null).await;
    early.expect(200, None);
    assert_eq!((early.json()["blobs_deleted"].as_u64(), early.json()["links_deleted"].as_u64()), (Some(0), Some(0)));

    age(&r);
    let freed: HashSet<Digest> = [b_config.clone(), sha256(&only_b), stray.clone()].into();
    let b_config_len = images::with_diff_ids(images::config_json("b").as_bytes(), &[&base, &only_b]).len();
    let freed_bytes = (b_config_len + only_b.len() + b"a blob no manifest ever named".len()) as u64;

    let dry = r.admin_api("POST", "/api/v1/gc?dry_run=true", serde_json::Value::Null).await;
    dry.expect(200, None);
    let dry = dry.json();
    assert_eq!(dry["dry_run"], true, "{dry}");
    assert_eq!(dry["blobs_deleted"], 3, "{dry}");
    assert_eq!(dry["bytes_freed"], freed_bytes, "{dry}");
    assert_eq!(dry["links_deleted"], 3, "{dry}");
    assert!(freed.is_subset(&stored(&r).await), "a dry run removed something");

    let run = r.admin_api("POST", "/api/v1/gc", serde_json::Value::Null).await;
    run.expect(200, None);
    let run = run.json();
    for key in ["blobs_deleted", "bytes_freed", "links_deleted"] {
        assert_eq!(run[key], dry[key], "{key}: {run} vs the dry run's {dry}");
    }
    assert_eq!(run["dry_run"], false);
    assert_eq!(run["manifests_deleted"], 0);
    let left = stored(&r).await;
    assert!(left.is_disjoint(&freed), "freed blobs are still stored: {left:?}");
    assert!(left.contains(&sha256(&base)) && left.contains(&sha256(&only_a)));
    pulls_intact(&r, "team/app", "a", &a_manifest).await;
    r.send("HEAD", &format!("/v2/team/app/blobs/{stray}"), &[], Body::empty()).await.expect(404, None);

    // A second run finds nothing, and the store agrees with the database.
    age(&r);
    let again = r.admin_api("POST", "/api/v1/gc", serde_json::Value::Null).await.json();
    assert_eq!((again["blobs_deleted"].as_u64(), again["links_deleted"].as_u64()), (Some(0), Some(0)), "{again}");
    let fsck = r.admin_api("GET", "/api/v1/fsck?verify=true", serde_json::Value::Null).await;
    fsck.expect(200, None);
    let fsck = fsck.json();
    assert_eq!((&fsck["missing"], &fsck["orphaned"], &fsck["corrupt"]), (&json!([]), &json!([]), &json!([])), "{fsck}");
    let stored_bytes: u64 =
        r.app.registry.blobs().list_blobs().map_ok(|b| b.size).try_collect::<Vec<_>>().await.unwrap().iter().sum();
    assert_eq!(fsck["bytes_verified"], stored_bytes, "every stored byte re-hashed: {fsck}");
    assert_eq!(fsck["blobs_checked"], 3, "{fsck}");
}

/// A blob a HEAD just reported present stays for the grace period, so the client's manifest PUT
/// that follows succeeds; a link left alone past it goes, and a PUT naming it then fails cleanly.
#[tokio::test]
async fn a_head_keeps_a_blob_for_the_manifest_that_follows() {
    let r = registry().await;
    let l = layer("headed", 10_000);
    let config = images::with_diff_ids(images::config_json("h").as_bytes(), &[&l]);
    let (layer_digest, config_digest) = (r.push_blob("team/h", &l).await, r.push_blob("team/h", &config).await);
    let manifest = images::oci_manifest(&config_digest, config.len(), &[(layer_digest.clone(), l.len())], None);
    age(&r);
    // The client HEADs both (docker does, before deciding to skip the upload)...
    for d in [&layer_digest, &config_digest] {
        r.send("HEAD", &format!("/v2/team/h/blobs/{d}"), &[], Body::empty()).await.expect(200, None);
    }
    // ...a collection runs before its manifest arrives...
    let run = r.app.registry.collect_garbage("test", false).await.unwrap();
    assert_eq!(run.links_deleted, 0, "{run:?}");
    // ...and the manifest still finds everything.
    r.put_manifest("team/h", "v1", images::OCI_MANIFEST, &manifest).await.expect(201, None);
    pulls_intact(&r, "team/h", "v1", &manifest).await;

    // Untouched past the grace period, an unreferenced link goes; a manifest naming it is refused.
    let lonely = r.push_blob("team/h", b"pushed, then forgotten").await;
    age(&r);
    r.app.registry.collect_garbage("test", false).await.unwrap();
    let late = images::oci_manifest(&config_digest, config.len(), &[(lonely, 22)], None);
    r.put_manifest("team/h", "late", images::OCI_MANIFEST, &late).await.expect(404, Some("MANIFEST_BLOB_UNKNOWN"));
}

#[tokio::test]
async fn only_admins_collect_and_only_one_collection_runs_at_a_time() {
    let r = registry().await;
    let pw = r.user_with_role("dev", "team", "owner").await;
    let basic = common::auth::basic("dev", &pw);
    for (method, uri) in [("POST", "/api/v1/gc"), ("POST", "/api/v1/gc?dry_run=true"), ("GET", "/api/v1/fsck")] {
        let denied = r.send_raw(method, uri, &[("authorization", &basic)], Body::empty()).await;
        denied.expect(403, None);
        assert_eq!(denied.json()["error"]["code"], "forbidden", "{method} {uri}");
        r.send_raw(method, uri, &[], Body::empty()).await.expect(401, None);
    }
    r.admin_api("POST", "/api/v1/gc?dry_run=maybe", serde_json::Value::Null).await.expect(400, None);
    // Another replica (here: a holder that is not the API) holds the lease: the API says so.
    let now = portcullis::domain::now();
    use portcullis::metadata::LeaseStore;
    assert!(r.app.metadata().take_lease("gc", "another-replica", now, now + 600).await.unwrap());
    let busy = r.admin_api("POST", "/api/v1/gc", serde_json::Value::Null).await;
    busy.expect(503, None);
    assert!(busy.json()["error"]["message"].as_str().unwrap().contains("already running"), "{:?}", busy.json());
    assert!(!busy.header("retry-after").is_empty());
    // A dry run takes no lease.
    r.admin_api("POST", "/api/v1/gc?dry_run=true", serde_json::Value::Null).await.expect(200, None);
}

/// fsck names what is missing, orphaned and corrupt, and the images that use a damaged blob get
/// an `error` verdict: they are not served as if intact.
#[tokio::test]
async fn fsck_finds_damage_and_fails_the_images_that_use_it() {
    let r = registry().await;
    let (digest, manifest) = r.push_image("team/f", "v1", "fsck").await;
    assert_eq!(r.wait_scan("team/f", &digest).await, "passed");
    let m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let layer: Digest = m["layers"][0]["digest"].as_str().unwrap().parse().unwrap();
    let blobs = r.app.registry.blobs();
    let orphan = blobs.put_verified(bytes::Bytes::from_static(b"bytes no row records")).await.unwrap();
    let clean = r.admin_api("GET", "/api/v1/fsck", serde_json::Value::Null).await.json();
    assert_eq!(clean["orphaned"], json!([orphan.to_string()]), "{clean}");
    assert_eq!((&clean["missing"], &clean["corrupt"]), (&json!([]), &json!([])), "{clean}");

    // The layer's bytes replaced by others of the same length (silent corruption).
    let raw = r.raw_objects();
    let len = r.get(&format!("/v2/team/f/blobs/{layer}")).await.body.len();
    let path = object_store::path::Path::from(format!("blobs/sha256/{}/{}", &layer.hex()[..2], layer.hex()));
    raw.put(&path, vec![b'x'; len].into()).await.unwrap();
    let unverified = r.admin_api("GET", "/api/v1/fsck", serde_json::Value::Null).await.json();
    assert_eq!(unverified["corrupt"], json!([]), "sizes match: only verify re-hashes: {unverified}");
    let verified = r.admin_api("GET", "/api/v1/fsck?verify=true", serde_json::Value::Null).await.json();
    assert_eq!(verified["corrupt"], json!([layer.to_string()]), "{verified}");
    assert_eq!(verified["images_failed"], 1, "{verified}");
    assert_eq!(r.verdict("team/f", &digest).await["state"], "error");
    let pw = r.user_with_role("puller", "team", "reader").await;
    let token = r.login("puller", &pw, &["repository:team/f:pull"]).await;
    r.v2_as(&token, "GET", "/v2/team/f/manifests/v1", Body::empty()).await.expect(403, Some("SCAN_FAILED"));

    // The config's bytes gone: missing.
    let config: Digest = m["config"]["digest"].as_str().unwrap().parse().unwrap();
    blobs.delete_blob(&config).await.unwrap();
    let missing = r.admin_api("GET", "/api/v1/fsck", serde_json::Value::Null).await.json();
    assert_eq!(missing["missing"], json!([config.to_string()]), "{missing}");
}

/// The race the collector must never lose: sixteen pushers that share layers (skipping uploads
/// after a HEAD, mounting across repositories) while collections run back to back with the clock
/// past the grace period each time, and manifests are deleted under them. Every manifest PUT that
/// got a 201 and was not deleted pulls intact afterwards, and a final collection leaves nothing
/// unreferenced in the store.
#[tokio::test]
async fn pushes_racing_collections_never_lose_an_acknowledged_blob() {
    let r = Arc::new(registry().await);
    let shared: Arc<Vec<Vec<u8>>> = Arc::new((0..4).map(|i| layer(&format!("shared {i}"), 40_000)).collect());
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collector = {
        let (r, done) = (r.clone(), done.clone());
        tokio::spawn(async move {
            let mut runs = 0;
            let mut aged = std::time::Instant::now();
            // Pushes take about ten times longer through PostgreSQL and S3 than on SQLite and disk.
            let window = match std::env::var("TESTBED_BACKEND").as_deref() {
                Ok("scaleout") => Duration::from_secs(3),
                _ => Duration::from_millis(800),
            };
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                // Every `window` all that came before is past the grace period: a push has about
                // that long between its uploads and its manifest, as if that were the grace.
                if aged.elapsed() >= window {
                    age(&r);
                    aged = std::time::Instant::now();
                }
                match r.app.registry.collect_garbage("racing-collector", false).await {
                    Ok(_) => runs += 1,
                    Err(portcullis::domain::Error::Busy(_)) => {}
                    Err(e) => panic!("collection failed: {e}"),
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            runs
        })
    };
    let pushers: Vec<_> = (0..16)
        .map(|p| {
            let (r, shared) = (r.clone(), shared.clone());
            tokio::spawn(async move {
                let repo = format!("race/p{p}");
                let mut kept: BTreeMap<String, Vec<u8>> = BTreeMap::new();
                let (mut refused, mut deleted) = (0, 0);
                for k in 0..6 {
                    let own = layer(&format!("own {p} {k}"), 8_000);
                    let layers: Vec<&[u8]> = vec![&shared[(p + k) % 4], &shared[(p + k + 1) % 4], &own];
                    let config = images::with_diff_ids(images::config_json(&format!("{p}-{k}")).as_bytes(), &layers);
                    let mut listed = Vec::new();
                    let mut abandoned = false;
                    for blob in std::iter::once(&config[..]).chain(layers.iter().copied()) {
                        let d = sha256(blob);
                        if !abandoned && !ensure_blob(&r, &repo, p, blob, &d).await {
                            abandoned = true;
                        }
                        listed.push((d, blob.len()));
                    }
                    let (config_ref, layer_refs) = listed.split_first().unwrap();
                    let manifest = images::oci_manifest(&config_ref.0, config_ref.1, layer_refs, None);
                    let tag = format!("t{k}");
                    let put = r.put_manifest(&repo, &tag, images::OCI_MANIFEST, &manifest).await;
                    match put.status.as_u16() {
                        201 => {
                            kept.insert(tag, manifest);
                        }
                        404 if put.code() == "MANIFEST_BLOB_UNKNOWN" => {
                            if std::env::var_os("GC_DEBUG").is_some() {
                                eprintln!("refused {}", String::from_utf8_lossy(&put.body));
                            }
                            refused += 1
                        }
                        other => panic!("{repo}:{tag}: unexpected {other} {}", String::from_utf8_lossy(&put.body)),
                    }
                    if k % 3 == 2 {
                        if let Some((tag, manifest)) = kept.pop_first() {
                            let d = sha256(&manifest);
                            r.send("DELETE", &format!("/v2/{repo}/manifests/{d}"), &[], Body::empty())
                                .await
                                .expect(202, None);
                            deleted += 1;
                            let _ = tag;
                        }
                    }
                }
                (repo, kept, refused, deleted)
            })
        })
        .collect();
    let mut acknowledged = Vec::new();
    let (mut refused, mut deleted) = (0, 0);
    for p in pushers {
        let (repo, kept, n, gone) = p.await.unwrap();
        refused += n;
        deleted += gone;
        acknowledged.extend(kept.into_iter().map(|(tag, m)| (repo.clone(), tag, m)));
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let runs = collector.await.unwrap();
    let succeeded = acknowledged.len() + deleted;
    eprintln!("{succeeded} pushes succeeded ({deleted} then deleted), {refused} refused, {runs} collections");
    assert!(runs >= 3, "only {runs} collections ran during the pushes");
    assert!(succeeded >= 32, "too few pushes succeeded to mean much: {succeeded} (refused {refused})");
    for (repo, tag, manifest) in &acknowledged {
        pulls_intact(&r, repo, tag, manifest).await;
    }
    // A final collection leaves exactly what the kept manifests reference.
    age(&r);
    r.app.registry.collect_garbage("final", false).await.unwrap();
    let referenced: HashSet<Digest> = acknowledged
        .iter()
        .flat_map(|(_, _, m)| {
            let m: serde_json::Value = serde_json::from_slice(m).unwrap();
            std::iter::once(m["config"]["digest"].as_str().unwrap().parse::<Digest>().unwrap())
                .chain(m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().parse().unwrap()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(stored(&r).await, referenced, "the store holds exactly the referenced blobs");
    for (repo, tag, manifest) in &acknowledged {
        pulls_intact(&r, repo, tag, manifest).await;
    }
    let fsck = r.app.registry.fsck(true).await.unwrap();
    assert!(fsck.missing.is_empty() && fsck.orphaned.is_empty() && fsck.corrupt.is_empty(), "{fsck:?}");
}

/// Makes `blob` present in `repo` as a client would: HEAD (skip if there), else a mount from a
/// neighbour, else an upload. False when the registry refused because the collector was deleting
/// those very bytes (the client pushes again later).
async fn ensure_blob(r: &TestRegistry, repo: &str, p: usize, blob: &[u8], d: &Digest) -> bool {
    if r.send("HEAD", &format!("/v2/{repo}/blobs/{d}"), &[], Body::empty()).await.status == 200 {
        return true;
    }
    let from = format!("race/p{}", (p + 1) % 16);
    let mount = r.send("POST", &format!("/v2/{repo}/blobs/uploads/?mount={d}&from={from}"), &[], Body::empty()).await;
    if mount.status == 201 {
        return true;
    }
    // Not mountable: the 202 opened an upload session, which the bytes finish (as docker does).
    mount.expect(202, None);
    let location = mount.header("location");
    let sep = if location.contains('?') { '&' } else { '?' };
    let len = blob.len().to_string();
    let pushed = r.send("PUT", &format!("{location}{sep}digest={d}"), &[("content-length", &len)], blob.to_vec()).await;
    match pushed.status.as_u16() {
        201 => true,
        503 if pushed.code() == "UNAVAILABLE" => false,
        other => panic!("{repo}: upload of {d}: {other} {}", String::from_utf8_lossy(&pushed.body)),
    }
}

/// A collection stopped at any point (its task dropped between two steps, as a crash would stop
/// it) leaves no row pointing at missing bytes and loses nothing referenced; the next run
/// finishes the job.
#[tokio::test]
async fn an_interrupted_collection_loses_nothing_and_the_next_finishes() {
    let r = Arc::new(registry().await);
    let (kept_digest, kept) = r.push_image("team/keep", "v1", "kept").await;
    let _ = kept_digest;
    for i in 0..40 {
        r.push_blob("team/junk", &layer(&format!("junk {i}"), 20_000)).await;
    }
    age(&r);
    for stop_after_ms in [1u64, 3, 7, 15, 30] {
        let task = {
            let r = r.clone();
            tokio::spawn(async move { r.app.registry.collect_garbage("interrupted", false).await })
        };
        tokio::time::sleep(Duration::from_millis(stop_after_ms)).await;
        task.abort();
        let _ = task.await;
        // The dropped run still holds the lease until it lapses; a crash's would too.
        use portcullis::metadata::LeaseStore;
        r.app.metadata().release_lease("gc", "interrupted").await.unwrap();
        let fsck = r.app.registry.fsck(false).await.unwrap();
        assert!(fsck.missing.is_empty(), "after {stop_after_ms} ms: a row points at missing bytes: {fsck:?}");
        pulls_intact(&r, "team/keep", "v1", &kept).await;
    }
    let report = r.app.registry.collect_garbage("finisher", false).await.unwrap();
    let fsck = r.app.registry.fsck(true).await.unwrap();
    assert!(
        fsck.missing.is_empty() && fsck.orphaned.is_empty() && fsck.corrupt.is_empty(),
        "{fsck:?} after {report:?}"
    );
    let left = stored(&r).await;
    assert_eq!(left.len(), 2, "only the kept image's config and layer remain: {left:?}");
    pulls_intact(&r, "team/keep", "v1", &kept).await;
}

/// The repository listing counts tags, manifests, linked bytes and quarantined images, pages by
/// name, and is open to the namespace's members; deleting a repository (its owners) takes its
/// manifests and tags at once and its bytes at the next collection, leaving shared ones.
#[tokio::test]
async fn repositories_are_listed_and_deleted_with_what_they_hold() {
    let r = registry().await;
    let (_, app_v1) = r.push_image("team/app", "v1", "one").await;
    r.push_image("team/app", "v2", "two").await;
    let (deep_digest, _) = r.push_image("team/other/deep", "v1", "three").await;
    r.push_image("elsewhere/x", "v1", "four").await;
    let listed = r.admin_api("GET", "/api/v1/repositories?namespace=team", serde_json::Value::Null).await;
    listed.expect(200, None);
    let items = listed.json()["items"].clone();
    let names: Vec<&str> = items.as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["team/app", "team/other/deep"], "{items}");
    assert_eq!((items[0]["tags"].as_u64(), items[0]["manifests"].as_u64()), (Some(2), Some(2)), "{items}");
    let app_bytes: u64 = {
        let mut total = 0;
        for d in stored(&r).await {
            if r.send("HEAD", &format!("/v2/team/app/blobs/{d}"), &[], Body::empty()).await.status == 200 {
                total += r.app.registry.stat_blob(&"team/app".parse().unwrap(), &d).await.unwrap();
            }
        }
        total
    };
    assert_eq!(items[0]["bytes"], app_bytes, "{items}");
    let first = r.admin_api("GET", "/api/v1/repositories?namespace=team&limit=1", serde_json::Value::Null).await.json();
    assert_eq!(first["next"], "team/app", "{first}");
    let second =
        r.admin_api("GET", "/api/v1/repositories?namespace=team&limit=1&after=team/app", serde_json::Value::Null).await;
    assert_eq!(second.json()["items"][0]["name"], "team/other/deep");

    let reader = common::auth::basic("rita", &r.user_with_role("rita", "team", "reader").await);
    let dev = common::auth::basic("dave", &r.user_with_role("dave", "team", "developer").await);
    let owner = common::auth::basic("olga", &r.user_with_role("olga", "team", "owner").await);
    r.send_raw("GET", "/api/v1/repositories?namespace=team", &[("authorization", &reader)], Body::empty())
        .await
        .expect(200, None);
    r.send_raw("GET", "/api/v1/repositories?namespace=elsewhere", &[("authorization", &reader)], Body::empty())
        .await
        .expect(403, None);
    r.send_raw("GET", "/api/v1/repositories", &[("authorization", &reader)], Body::empty()).await.expect(403, None);
    let uri = "/api/v1/repositories/team/other/deep";
    r.send_raw("DELETE", uri, &[("authorization", &dev)], Body::empty()).await.expect(403, None);
    r.send_raw("DELETE", uri, &[("authorization", &owner)], Body::empty()).await.expect(204, None);
    r.send_raw("DELETE", uri, &[("authorization", &owner)], Body::empty()).await.expect(404, None);
    r.get(&format!("/v2/team/other/deep/manifests/{deep_digest}")).await.expect(404, None);
    let after = r.admin_api("GET", "/api/v1/repositories?namespace=team", serde_json::Value::Null).await.json();
    assert_eq!(after["items"].as_array().unwrap().len(), 1, "{after}");

    age(&r);
    let run = r.app.registry.collect_garbage("test", false).await.unwrap();
    assert_eq!(run.blobs_deleted, 2, "the deleted repository's config and layer: {run:?}");
    pulls_intact(&r, "team/app", "v1", &app_v1).await;
}
