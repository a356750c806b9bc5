//! The metadata conformance suite: every [`Metadata`] implementation must pass [`run`] on an
//! empty database (SQLite now; PostgreSQL runs the same suite).

use super::scans::ScanState;
use super::{Metadata, NewManifest, PutManifestRefused};
use crate::domain::digest::Algorithm;
use crate::domain::{Digest, RepoName, Tag};
use crate::storage::{UploadId, WrittenPart};

fn d(s: &str) -> Digest {
    Digest::of(Algorithm::Sha256, s.as_bytes())
}
fn repo(s: &str) -> RepoName {
    s.parse().unwrap()
}
fn tag(s: &str) -> Tag {
    s.parse().unwrap()
}

fn manifest(r: &str, body: &str, blobs: Vec<Digest>, subject: Option<Digest>, t: Option<&str>) -> NewManifest {
    NewManifest {
        repo: repo(r),
        digest: d(body),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        artifact_type: Some(format!("type/{body}")),
        subject,
        annotations: Some(r#"{"k":"v"}"#.into()),
        content: body.as_bytes().to_vec(),
        blobs,
        children: Vec::new(),
        tag: t.map(tag),
        scan: false,
    }
}

pub async fn run(meta: &dyn Metadata) {
    // Blobs are readable only where linked.
    let a = repo("team/a");
    assert_eq!(meta.linked_blob(&a, &d("x")).await.unwrap(), None);
    meta.link_blob(&a, &d("x"), 3).await.unwrap();
    meta.link_blob(&a, &d("x"), 3).await.unwrap();
    assert_eq!(meta.linked_blob(&a, &d("x")).await.unwrap(), Some(3));
    assert_eq!(meta.linked_blob(&repo("team/b"), &d("x")).await.unwrap(), None);
    assert_eq!(meta.blob_recorded(&d("x")).await.unwrap(), Some(3));
    assert!(meta.repository_exists(&a).await.unwrap());
    assert!(!meta.repository_exists(&repo("team/b")).await.unwrap());

    // A manifest needs its blobs and child manifests in the same repository.
    let refused =
        meta.put_manifest(&manifest("team/a", "m0", vec![d("x"), d("missing")], None, Some("v0"))).await.unwrap();
    assert!(matches!(refused, Err(PutManifestRefused::MissingBlob(m)) if m == d("missing")));
    let mut index = manifest("team/a", "idx", vec![], None, None);
    index.children = vec![d("no-child")];
    assert!(matches!(meta.put_manifest(&index).await.unwrap(), Err(PutManifestRefused::MissingManifest(_))));
    assert!(meta.manifest_by_tag(&a, &tag("v0")).await.unwrap().is_none(), "a refused push leaves nothing");
    meta.put_manifest(&manifest("team/a", "m1", vec![d("x")], None, Some("v1"))).await.unwrap().unwrap();
    let got = meta.manifest_by_tag(&a, &tag("v1")).await.unwrap().unwrap();
    assert_eq!((got.digest.clone(), got.content.clone()), (d("m1"), b"m1".to_vec()));
    assert_eq!(meta.manifest_by_digest(&a, &d("m1")).await.unwrap().unwrap().content, b"m1");
    // Re-pushing the same manifest and moving a tag.
    meta.put_manifest(&manifest("team/a", "m1", vec![d("x")], None, Some("v1"))).await.unwrap().unwrap();
    meta.put_manifest(&manifest("team/a", "m2", vec![d("x")], None, Some("v1"))).await.unwrap().unwrap();
    assert_eq!(meta.manifest_by_tag(&a, &tag("v1")).await.unwrap().unwrap().digest, d("m2"));

    // Tags page in lexical order.
    for t in ["b", "a", "c", "d"] {
        meta.put_manifest(&manifest("team/a", "m1", vec![d("x")], None, Some(t))).await.unwrap().unwrap();
    }
    assert_eq!(meta.list_tags(&a, None, 3).await.unwrap(), ["a", "b", "c"]);
    assert_eq!(meta.list_tags(&a, Some("c"), 10).await.unwrap(), ["d", "v1"]);
    assert!(meta.delete_tag(&a, &tag("a")).await.unwrap());
    assert!(!meta.delete_tag(&a, &tag("a")).await.unwrap());

    assert!(meta.manifest_by_digest(&a, &d("m1")).await.unwrap().is_some(), "deleting a tag keeps the manifest");

    // Referrers, with the artifact type filter.
    meta.put_manifest(&manifest("team/a", "sig", vec![d("x")], Some(d("m1")), None)).await.unwrap().unwrap();
    meta.put_manifest(&manifest("team/a", "sbom", vec![d("x")], Some(d("m1")), None)).await.unwrap().unwrap();
    let all = meta.referrers(&a, &d("m1"), None).await.unwrap();
    assert_eq!(all.len(), 2);
    let sig = meta.referrers(&a, &d("m1"), Some("type/sig")).await.unwrap();
    assert_eq!(sig.len(), 1);
    assert_eq!(sig[0].digest, d("sig"));
    assert_eq!(sig[0].size, 3);
    assert_eq!(sig[0].annotations.as_deref(), Some(r#"{"k":"v"}"#));

    // Deleting a manifest removes its tags.
    assert!(meta.delete_manifest(&a, &d("m1")).await.unwrap());
    assert!(meta.manifest_by_tag(&a, &tag("b")).await.unwrap().is_none());
    assert!(!meta.delete_manifest(&a, &d("m1")).await.unwrap());
    assert!(meta.unlink_blob(&a, &d("x")).await.unwrap());
    assert_eq!(meta.linked_blob(&a, &d("x")).await.unwrap(), None);

    // Repositories page in lexical order.
    for r in ["z/last", "m/mid"] {
        meta.link_blob(&repo(r), &d("x"), 3).await.unwrap();
    }
    assert_eq!(meta.list_repositories(None, 2).await.unwrap(), ["m/mid", "team/a"]);
    assert_eq!(meta.list_repositories(Some("team/a"), 2).await.unwrap(), ["z/last"]);

    // Scans: a scanned manifest starts pending; jobs are claimed once per lease; verdicts gate blobs.
    let s = repo("scan/app");
    meta.link_blob(&s, &d("layer"), 5).await.unwrap();
    let mut image = manifest("scan/app", "img", vec![d("layer")], None, Some("v1"));
    image.scan = true;
    meta.put_manifest(&image).await.unwrap().unwrap();
    meta.put_manifest(&manifest("scan/app", "sig", vec![d("layer")], Some(d("img")), None)).await.unwrap().unwrap();
    assert!(meta.scan(&s, &d("sig")).await.unwrap().is_none(), "artifacts are not scanned");
    assert_eq!(meta.scan(&s, &d("img")).await.unwrap().unwrap().state, ScanState::Pending);
    let job = meta.claim_scan(1000, 1300).await.unwrap().expect("a job");
    assert_eq!((job.repo.clone(), job.digest.clone(), job.attempts), (s.clone(), d("img"), 1));
    assert!(meta.claim_scan(1001, 1301).await.unwrap().is_none(), "leased jobs are not claimed twice");
    let again = meta.claim_scan(1400, 1700).await.unwrap().expect("a lapsed lease is claimable");
    assert_eq!(again.attempts, 2);
    meta.fail_scan(&again, Some(1500), "boom", 1400).await.unwrap();
    assert_eq!(meta.scan(&s, &d("img")).await.unwrap().unwrap().state, ScanState::Pending);
    assert!(meta.claim_scan(1450, 1750).await.unwrap().is_none(), "not before its retry time");
    let job = meta.claim_scan(1500, 1800).await.unwrap().unwrap();
    meta.finish_scan(&job, ScanState::Quarantined, "[]", "runs as root", 1500).await.unwrap();
    // The artifact still references the layer and is not scanned, so the layer stays readable.
    assert!(meta.blob_pull_allowed(&s, &d("layer"), 1500).await.unwrap());
    assert!(meta.delete_manifest(&s, &d("sig")).await.unwrap());
    assert!(!meta.blob_pull_allowed(&s, &d("layer"), 1500).await.unwrap(), "only blocked images use the layer");
    assert_eq!(meta.list_scans(Some(ScanState::Quarantined), 10).await.unwrap().len(), 1);
    assert!(meta.request_rescan(&s, &d("img"), 1600).await.unwrap());
    let rescan = meta.claim_scan(1600, 1900).await.unwrap().expect("a rescan job");
    assert_eq!(
        meta.scan(&s, &d("img")).await.unwrap().unwrap().state,
        ScanState::Quarantined,
        "the verdict serves meanwhile"
    );
    meta.finish_scan(&rescan, ScanState::Quarantined, "[]", "still root", 1600).await.unwrap();
    assert!(meta.release_scan(&s, &d("img"), "admin", "accepted", None, 1700).await.unwrap());
    let released = meta.scan(&s, &d("img")).await.unwrap().unwrap();
    assert_eq!((released.state, released.released_by.as_deref()), (ScanState::Released, Some("admin")));
    assert!(meta.blob_pull_allowed(&s, &d("layer"), 1700).await.unwrap());
    // A release with an expiry lapses.
    assert!(meta.release_scan(&s, &d("img"), "admin", "for a week", Some(2000), 1700).await.unwrap());
    let timed = meta.scan(&s, &d("img")).await.unwrap().unwrap();
    assert_eq!(
        (timed.effective_state(1999), timed.effective_state(2000)),
        (ScanState::Released, ScanState::Quarantined)
    );
    assert!(meta.blob_pull_allowed(&s, &d("layer"), 1999).await.unwrap());
    assert!(!meta.blob_pull_allowed(&s, &d("layer"), 2000).await.unwrap());
    assert!(meta.release_scan(&s, &d("img"), "admin", "accepted", None, 1700).await.unwrap());
    // Namespace rule overrides.
    assert!(meta.namespace_scan_rules("scan").await.unwrap().is_none());
    assert!(!meta.set_namespace_scan_rules("scan", "{}", None, 1).await.unwrap(), "no such namespace yet");
    meta.create_namespace("scan", false, 1).await.unwrap();
    assert!(meta.set_namespace_scan_rules("scan", r#"{"root_user":"warn"}"#, Some(5000), 1).await.unwrap());
    assert_eq!(meta.namespace_scan_sync("scan").await.unwrap(), Some(5000));
    assert!(meta.set_namespace_scan_rules("scan", r#"{"root_user":"off"}"#, None, 2).await.unwrap());
    assert_eq!(meta.namespace_scan_sync("scan").await.unwrap(), None);
    assert_eq!(meta.namespace_scan_rules("scan").await.unwrap().as_deref(), Some(r#"{"root_user":"off"}"#));
    let mut index = manifest("scan/app", "index", vec![], None, None);
    index.children = vec![d("img")];
    meta.put_manifest(&index).await.unwrap().unwrap();
    let children = meta.child_scans(&s, &d("index")).await.unwrap();
    assert_eq!(children.iter().map(|c| c.state).collect::<Vec<_>>(), [ScanState::Released]);

    // Uploads: parts in order, optimistic concurrency, completion, staleness.
    let id = UploadId::new();
    meta.create_upload(&id, &a, 100).await.unwrap();
    assert!(meta.get_upload(&repo("team/b"), &id).await.unwrap().is_none(), "a session belongs to its repository");
    let part = |n: &str, size| WrittenPart { part_id: n.into(), size, sha256: d(n) };
    assert!(meta.append_part(&id, 0, &part("p1", 5), 101).await.unwrap());
    assert!(!meta.append_part(&id, 0, &part("p2", 5), 102).await.unwrap(), "a stale offset loses");
    assert!(meta.append_part(&id, 5, &part("p3", 7), 103).await.unwrap());
    let upload = meta.get_upload(&a, &id).await.unwrap().unwrap();
    assert_eq!(upload.size, 12);
    assert_eq!(upload.parts.iter().map(|p| p.part_id.as_str()).collect::<Vec<_>>(), ["p1", "p3"]);
    assert_eq!(meta.stale_uploads(103).await.unwrap(), Vec::<UploadId>::new());
    assert_eq!(meta.stale_uploads(104).await.unwrap(), vec![id.clone()]);
    meta.complete_upload(&id, &a, &d("blob"), 12).await.unwrap();
    assert_eq!(meta.linked_blob(&a, &d("blob")).await.unwrap(), Some(12));
    assert!(!meta.upload_exists(&id).await.unwrap());
    assert!(meta.complete_upload(&id, &a, &d("blob"), 12).await.is_err(), "a session completes once");
    let other = UploadId::new();
    meta.create_upload(&other, &a, 100).await.unwrap();
    assert!(meta.delete_upload(&other).await.unwrap());
    assert!(!meta.delete_upload(&other).await.unwrap());

    // Concurrency, as several replicas on one database see it (each call may get its own
    // connection): one job is claimed by exactly one of many racing workers, and of many writers
    // racing to extend an upload at the same offset exactly one wins.
    let mut jobs = manifest("race/app", "race-img", vec![], None, Some("v1"));
    jobs.scan = true;
    meta.put_manifest(&jobs).await.unwrap().unwrap();
    let claims = futures::future::join_all((0..8).map(|_| meta.claim_scan(5000, 5300))).await;
    let won: Vec<_> = claims.into_iter().filter_map(|c| c.unwrap()).collect();
    assert_eq!(won.len(), 1, "exactly one worker holds the job");
    assert_eq!(won[0].digest, d("race-img"));
    let id = UploadId::new();
    meta.create_upload(&id, &a, 100).await.unwrap();
    let appends = futures::future::join_all((0..8).map(|i| {
        let (id, part) = (id.clone(), part(&format!("racer{i}"), 10));
        async move { meta.append_part(&id, 0, &part, 101).await.unwrap() }
    }))
    .await;
    assert_eq!(appends.iter().filter(|w| **w).count(), 1, "exactly one chunk lands at offset 0");

    // Leases for background work: one holder at a time, renewable, taken over once lapsed.
    assert!(meta.take_lease("sweep", "replica-a", 100, 200).await.unwrap());
    assert!(!meta.take_lease("sweep", "replica-b", 150, 250).await.unwrap(), "held by a");
    assert!(meta.take_lease("other", "replica-b", 150, 250).await.unwrap(), "leases are per name");
    assert!(meta.take_lease("sweep", "replica-a", 190, 290).await.unwrap(), "the holder renews");
    assert!(meta.take_lease("sweep", "replica-b", 290, 390).await.unwrap(), "a lapsed lease is taken over");
    assert!(!meta.take_lease("sweep", "replica-a", 300, 400).await.unwrap());
    let racers = futures::future::join_all(
        (0..8).map(|i| async move { meta.take_lease("race", &format!("replica-{i}"), 500, 600).await.unwrap() }),
    )
    .await;
    assert_eq!(racers.iter().filter(|w| **w).count(), 1, "exactly one racing replica holds a new lease");

    // Failed logins: every concurrent failure counts, a success clears, idle keys are forgotten.
    let keys = vec!["account:mallory".to_owned(), "client:192.0.2.7".to_owned()];
    futures::future::join_all((0..8).map(|i| meta.record_login_failure(&keys, 10_000 + i, 0))).await;
    let counts = meta.login_failures(&keys).await.unwrap();
    assert_eq!(counts.iter().map(|c| c.0).collect::<Vec<_>>(), [8, 8], "no failure lost in the race");
    assert!(counts.iter().all(|c| (10_000..10_008).contains(&c.1)));
    meta.clear_login_failures(&keys[..1]).await.unwrap();
    assert_eq!(meta.login_failures(&keys).await.unwrap().len(), 1, "only the account was cleared");
    meta.record_login_failure(&["account:other".to_owned()], 50_000, 20_000).await.unwrap();
    assert!(meta.login_failures(&keys).await.unwrap().is_empty(), "idle keys are forgotten");
    assert_eq!(meta.get_upload(&a, &id).await.unwrap().unwrap().parts.len(), 1);

    // Lexical means bytewise, whatever the database's collation: digits, upper case, `_`, then
    // lower case, with `-` before `.`. An empty page is empty.
    let sorted = repo("sort/order");
    meta.link_blob(&sorted, &d("x"), 3).await.unwrap();
    for t in ["alpha", "a.b", "Zeta", "a-b", "_under", "9nine"] {
        meta.put_manifest(&manifest("sort/order", "m1", vec![d("x")], None, Some(t))).await.unwrap().unwrap();
    }
    assert_eq!(meta.list_tags(&sorted, None, 10).await.unwrap(), ["9nine", "Zeta", "_under", "a-b", "a.b", "alpha"]);
    assert_eq!(meta.list_tags(&sorted, Some("alpha"), 10).await.unwrap(), Vec::<String>::new());

    // Large manifests: their blobs are checked, and their references written, in batches. The
    // first missing blob is named even past the first batch, and a blob listed twice is fine.
    let big = repo("team/big");
    let layers: Vec<Digest> = (0..1001).map(|i| d(&format!("big-layer-{i}"))).collect();
    for layer in &layers {
        meta.link_blob(&big, layer, 1).await.unwrap();
    }
    let mut gap = layers.clone();
    gap.insert(1000, d("big-absent"));
    let refused = meta.put_manifest(&manifest("team/big", "big-gap", gap, None, None)).await.unwrap();
    assert!(matches!(refused, Err(PutManifestRefused::MissingBlob(m)) if m == d("big-absent")));
    let mut twice = layers.clone();
    twice.push(layers[0].clone());
    let mut held = manifest("team/big", "big", twice, None, None);
    held.scan = true;
    meta.put_manifest(&held).await.unwrap().unwrap();
    for layer in [&layers[0], &layers[500], &layers[1000]] {
        assert!(!meta.blob_pull_allowed(&big, layer, 0).await.unwrap(), "every batch of references is recorded");
    }
}
