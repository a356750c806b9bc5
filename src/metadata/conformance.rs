//! The metadata conformance suite: every [`Metadata`] implementation must pass [`run`] on an
//! empty database (SQLite now; PostgreSQL runs the same suite).

use super::scans::{GiveUp, ScanState};
use super::{ManifestKind, Metadata, NewManifest, PutManifestRefused, SessionCap, SessionCaps};
use crate::model::digest::Algorithm;
use crate::model::{Digest, RepoName, Tag};
use crate::model::{UploadId, WrittenPart};

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
        kind: ManifestKind::Image,
        pushed_at: 1_000,
        audit: None,
    }
}

const CAPS: SessionCaps = SessionCaps { per_principal: 100, per_repository: 100 };

fn artifact(r: &str, body: &str, blobs: Vec<Digest>, subject: Option<Digest>) -> NewManifest {
    NewManifest { kind: ManifestKind::Artifact, ..manifest(r, body, blobs, subject, None) }
}

/// Claims every job there is and passes it.
async fn drain(meta: &dyn Metadata, now: i64) {
    while let Some(job) = meta.claim_scan(now, now + 1, 100).await.unwrap() {
        meta.finish_scan(&job, &verdict(ScanState::Passed, "ok"), now).await.unwrap();
    }
}

async fn readable(meta: &dyn Metadata, r: &RepoName, blob: &Digest, now: i64) -> bool {
    meta.blob_access(r, blob, now).await.unwrap().expect("the blob is linked").readable
}

pub async fn run(meta: &dyn Metadata) {
    // Blobs are readable only where linked.
    let a = repo("team/a");
    assert_eq!(meta.linked_blob(&a, &d("x")).await.unwrap(), None);
    meta.link_blob(&a, &d("x"), 3, 1_000).await.unwrap();
    meta.link_blob(&a, &d("x"), 3, 1_000).await.unwrap();
    assert_eq!(meta.linked_blob(&a, &d("x")).await.unwrap().map(|l| l.size), Some(3));
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
        meta.link_blob(&repo(r), &d("x"), 3, 1_000).await.unwrap();
    }
    assert_eq!(meta.list_repositories(None, 2).await.unwrap(), ["m/mid", "team/a"]);
    assert_eq!(meta.list_repositories(Some("team/a"), 2).await.unwrap(), ["z/last"]);

    // Scans: every manifest starts pending; jobs are claimed once per lease; verdicts gate blobs.
    let pending = meta.manifest_by_tag(&a, &tag("v1")).await.unwrap().unwrap();
    assert_eq!(pending.verdict.map(|v| v.state), Some(ScanState::Pending), "a manifest comes with its verdict");
    drain(meta, 900).await;
    let s = repo("scan/app");
    meta.link_blob(&s, &d("layer"), 5, 1_000).await.unwrap();
    meta.put_manifest(&manifest("scan/app", "img", vec![d("layer")], None, Some("v1"))).await.unwrap().unwrap();
    assert_eq!(meta.scan(&s, &d("img")).await.unwrap().unwrap().state, ScanState::Pending);
    assert!(!readable(meta, &s, &d("layer"), 1000).await, "a pending image's layer is closed");
    let job = meta.claim_scan(1000, 1300, 5).await.unwrap().expect("a job");
    assert_eq!((job.repo.clone(), job.digest.clone(), job.attempts), (s.clone(), d("img"), 1));
    assert!(meta.claim_scan(1001, 1301, 5).await.unwrap().is_none(), "leased jobs are not claimed twice");
    let again = meta.claim_scan(1400, 1700, 5).await.unwrap().expect("a lapsed lease is claimable");
    assert_eq!(again.attempts, 2, "every claim counts an attempt");
    meta.fail_scan(&again, Some(1500), GiveUp::KeepVerdict, "boom", 1400).await.unwrap();
    assert_eq!(meta.scan(&s, &d("img")).await.unwrap().unwrap().state, ScanState::Pending);
    assert!(meta.claim_scan(1450, 1750, 5).await.unwrap().is_none(), "not before its retry time");
    let job = meta.claim_scan(1500, 1800, 5).await.unwrap().unwrap();
    meta.finish_scan(&job, &verdict(ScanState::Quarantined, "runs as root"), 1500).await.unwrap();
    // An artifact that lists the image's layer does not open it, even once it passed.
    meta.put_manifest(&artifact("scan/app", "sig", vec![d("layer")], Some(d("img")))).await.unwrap().unwrap();
    drain(meta, 1500).await;
    assert_eq!(meta.scan(&s, &d("sig")).await.unwrap().unwrap().state, ScanState::Passed);
    assert!(!readable(meta, &s, &d("layer"), 1500).await, "an artifact cannot open an image's layer");
    // An artifact's own blob opens once the artifact passed.
    meta.link_blob(&s, &d("sig-blob"), 2, 1_000).await.unwrap();
    assert!(!readable(meta, &s, &d("sig-blob"), 1500).await, "a blob no manifest references is closed");
    meta.put_manifest(&artifact("scan/app", "sig2", vec![d("sig-blob")], Some(d("img")))).await.unwrap().unwrap();
    assert!(!readable(meta, &s, &d("sig-blob"), 1500).await, "closed while its artifact is pending");
    drain(meta, 1500).await;
    assert!(readable(meta, &s, &d("sig-blob"), 1500).await);
    assert_eq!(meta.blob_access(&s, &d("nothing"), 1500).await.unwrap(), None);
    assert_eq!(meta.list_scans(Some(ScanState::Quarantined), 10).await.unwrap().len(), 1);
    assert!(meta.request_rescan(&s, &d("img"), 1600).await.unwrap());
    let rescan = meta.claim_scan(1600, 1900, 5).await.unwrap().expect("a rescan job");
    assert_eq!(
        meta.scan(&s, &d("img")).await.unwrap().unwrap().state,
        ScanState::Quarantined,
        "the verdict serves meanwhile"
    );
    meta.finish_scan(&rescan, &verdict(ScanState::Quarantined, "still root"), 1600).await.unwrap();
    assert!(meta.release_scan(&s, &d("img"), "admin", "accepted", None, 1700).await.unwrap());
    let released = meta.scan(&s, &d("img")).await.unwrap().unwrap();
    assert_eq!((released.state, released.released_by.as_deref()), (ScanState::Released, Some("admin")));
    assert!(readable(meta, &s, &d("layer"), 1700).await);
    // A release with an expiry lapses.
    assert!(meta.release_scan(&s, &d("img"), "admin", "for a week", Some(2000), 1700).await.unwrap());
    let timed = meta.scan(&s, &d("img")).await.unwrap().unwrap();
    assert_eq!(
        (timed.effective_state(1999), timed.effective_state(2000)),
        (ScanState::Released, ScanState::Quarantined)
    );
    assert!(readable(meta, &s, &d("layer"), 1999).await);
    assert!(!readable(meta, &s, &d("layer"), 2000).await);
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
    // An index reaches its manifests at any depth, each once.
    let mut index = manifest("scan/app", "index", vec![], None, None);
    (index.kind, index.children) = (ManifestKind::Index, vec![d("img"), d("sig")]);
    meta.put_manifest(&index).await.unwrap().unwrap();
    let mut outer = manifest("scan/app", "outer", vec![], None, None);
    (outer.kind, outer.children) = (ManifestKind::Index, vec![d("index"), d("img")]);
    meta.put_manifest(&outer).await.unwrap().unwrap();
    let mut reached = meta.manifest_closure(&s, &d("outer"), 100).await.unwrap();
    reached.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
    let mut expected = vec![d("outer"), d("index"), d("img"), d("sig")];
    expected.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    assert_eq!(reached.iter().map(|r| r.0.clone()).collect::<Vec<_>>(), expected);
    let img = reached.iter().find(|r| r.0 == d("img")).unwrap();
    assert_eq!(img.1.as_ref().map(|v| v.state), Some(ScanState::Released));
    assert_eq!(meta.manifest_closure(&s, &d("outer"), 2).await.unwrap().len(), 2, "bounded");
    assert_eq!(
        meta.blob_referrers(&s, &d("layer"), 10).await.unwrap().iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
        {
            let mut both = vec![d("img"), d("sig")];
            both.sort_by(|x, y| x.as_str().cmp(y.as_str()));
            both
        }
    );
    // Once the image is gone its layer stays closed: it was image content, and the artifact that
    // still lists it cannot open it.
    assert!(meta.delete_manifest(&s, &d("img")).await.unwrap());
    assert!(!readable(meta, &s, &d("layer"), 2500).await, "a deleted image's layer stays closed");
    drain(meta, 2500).await;

    // A job whose worker dies every time is claimed `max_attempts` times, then ends in `error`.
    meta.put_manifest(&manifest("scan/app", "crash", vec![], None, None)).await.unwrap().unwrap();
    for attempt in 1..=3 {
        let job = meta.claim_scan(3000 + attempt * 10, 3000 + attempt * 10 + 5, 3).await.unwrap().unwrap();
        assert_eq!(job.attempts as i64, attempt);
    }
    assert!(meta.claim_scan(3100, 3105, 3).await.unwrap().is_none(), "not claimed a fourth time");
    let crashed = meta.scan(&s, &d("crash")).await.unwrap().unwrap();
    assert_eq!(crashed.state, ScanState::Error);
    assert!(crashed.summary.unwrap().contains("3 times"));

    // Namespaces take turns: a flood in one does not hold back another.
    for i in 0..5 {
        meta.put_manifest(&manifest("flood/app", &format!("flood-{i}"), vec![], None, None)).await.unwrap().unwrap();
    }
    let first = meta.claim_scan(4000, 4100, 5).await.unwrap().unwrap();
    assert_eq!(first.repo.namespace(), "flood");
    meta.put_manifest(&manifest("calm/app", "calm", vec![], None, None)).await.unwrap().unwrap();
    let next = meta.claim_scan(4001, 4100, 5).await.unwrap().unwrap();
    assert_eq!(next.digest, d("calm"), "the namespace served longest ago goes first");
    drain(meta, 4200).await;
    // A content failure ends a rescan in `error`; trouble around it keeps the verdict.
    meta.put_manifest(&manifest("calm/app", "kept", vec![], None, None)).await.unwrap().unwrap();
    drain(meta, 4300).await;
    assert!(meta.request_rescan(&repo("calm/app"), &d("kept"), 4300).await.unwrap());
    let job = meta.claim_scan(4300, 4400, 5).await.unwrap().unwrap();
    meta.fail_scan(&job, None, GiveUp::KeepVerdict, "storage down", 4300).await.unwrap();
    assert_eq!(meta.scan(&repo("calm/app"), &d("kept")).await.unwrap().unwrap().state, ScanState::Passed);
    assert!(meta.request_rescan(&repo("calm/app"), &d("kept"), 4300).await.unwrap());
    let job = meta.claim_scan(4300, 4400, 5).await.unwrap().unwrap();
    meta.fail_scan(&job, None, GiveUp::Fail, "unreadable layer", 4300).await.unwrap();
    assert_eq!(meta.scan(&repo("calm/app"), &d("kept")).await.unwrap().unwrap().state, ScanState::Error);

    // Uploads: parts in order, optimistic concurrency, completion, staleness.
    let id = UploadId::new();
    meta.create_upload(&id, &a, "alice", 100, CAPS).await.unwrap().unwrap();
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
    meta.complete_upload(&id, &a, &d("blob"), 12, 1_000).await.unwrap();
    assert_eq!(meta.linked_blob(&a, &d("blob")).await.unwrap().map(|l| l.size), Some(12));
    assert!(!meta.upload_exists(&id).await.unwrap());
    assert!(meta.complete_upload(&id, &a, &d("blob"), 12, 1_000).await.is_err(), "a session completes once");
    let other = UploadId::new();
    meta.create_upload(&other, &a, "alice", 100, CAPS).await.unwrap().unwrap();
    assert!(meta.delete_upload(&other).await.unwrap());
    assert!(!meta.delete_upload(&other).await.unwrap());
    // Open sessions are capped per principal and per repository; a touch keeps one from going stale.
    let two = SessionCaps { per_principal: 2, per_repository: 3 };
    let opened: Vec<UploadId> = (0..2).map(|_| UploadId::new()).collect();
    for id in &opened {
        meta.create_upload(id, &repo("caps/a"), "bob", 100, two).await.unwrap().unwrap();
    }
    let refused = meta.create_upload(&UploadId::new(), &repo("caps/b"), "bob", 100, two).await.unwrap();
    assert_eq!(refused, Err(SessionCap::Principal(2)));
    meta.create_upload(&UploadId::new(), &repo("caps/a"), "carol", 100, two).await.unwrap().unwrap();
    let refused = meta.create_upload(&UploadId::new(), &repo("caps/a"), "dave", 100, two).await.unwrap();
    assert_eq!(refused, Err(SessionCap::Repository(3)));
    meta.touch_upload(&opened[0], 500).await.unwrap();
    let stale = meta.stale_uploads(400).await.unwrap();
    assert!(stale.contains(&opened[1]) && !stale.contains(&opened[0]), "the touched session is not stale");

    // Concurrency, as several replicas on one database see it (each call may get its own
    // connection): one job is claimed by exactly one of many racing workers, and of many writers
    // racing to extend an upload at the same offset exactly one wins.
    drain(meta, 4900).await;
    meta.put_manifest(&manifest("race/app", "race-img", vec![], None, Some("v1"))).await.unwrap().unwrap();
    let claims = futures::future::join_all((0..8).map(|_| meta.claim_scan(5000, 5300, 5))).await;
    let won: Vec<_> = claims.into_iter().filter_map(|c| c.unwrap()).collect();
    assert_eq!(won.len(), 1, "exactly one worker holds the job");
    assert_eq!(won[0].digest, d("race-img"));
    let id = UploadId::new();
    meta.create_upload(&id, &a, "alice", 100, CAPS).await.unwrap().unwrap();
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

    // Login attempts: each of many concurrent ones gets its own number, a success clears, idle
    // keys are forgotten, keys are independent.
    let key = "pair:mallory@192.0.2.7";
    let counted = futures::future::join_all((0..8).map(|i| meta.login_attempt(key, 10_000 + i, 0))).await;
    let mut numbers: Vec<u32> = counted.into_iter().map(|c| c.unwrap().0).collect();
    numbers.sort();
    assert_eq!(numbers, (1..=8).collect::<Vec<_>>(), "no attempt lost in the race, none counted twice");
    let (ninth, previous) = meta.login_attempt(key, 10_100, 0).await.unwrap();
    assert_eq!(ninth, 9);
    assert!((10_000..10_008).contains(&previous), "the time of the attempt before");
    assert_eq!(meta.login_attempt("unknown:192.0.2.7", 10_100, 0).await.unwrap().0, 1, "keys are independent");
    meta.clear_login_failures(key).await.unwrap();
    assert_eq!(meta.login_attempt(key, 10_200, 0).await.unwrap(), (1, 0), "a success starts over");
    meta.login_attempt("pair:other@x", 50_000, 20_000).await.unwrap();
    assert_eq!(meta.login_attempt(key, 50_001, 20_000).await.unwrap().0, 1, "idle keys are forgotten");
    // Stamps: unset is 0; a bump sets it.
    assert_eq!(meta.stamp("anonymous").await.unwrap(), 0);
    meta.bump_stamp("anonymous", 77).await.unwrap();
    assert_eq!(meta.stamp("anonymous").await.unwrap(), 77);
    assert_eq!(meta.get_upload(&a, &id).await.unwrap().unwrap().parts.len(), 1);

    // Lexical means bytewise, whatever the database's collation: digits, upper case, `_`, then
    // lower case, with `-` before `.`. An empty page is empty.
    let sorted = repo("sort/order");
    meta.link_blob(&sorted, &d("x"), 3, 1_000).await.unwrap();
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
        meta.link_blob(&big, layer, 1, 1_000).await.unwrap();
    }
    let mut gap = layers.clone();
    gap.insert(1000, d("big-absent"));
    let refused = meta.put_manifest(&manifest("team/big", "big-gap", gap, None, None)).await.unwrap();
    assert!(matches!(refused, Err(PutManifestRefused::MissingBlob(m)) if m == d("big-absent")));
    let mut twice = layers.clone();
    twice.push(layers[0].clone());
    meta.put_manifest(&manifest("team/big", "big", twice, None, None)).await.unwrap().unwrap();
    for layer in [&layers[0], &layers[500], &layers[1000]] {
        let referrers = meta.blob_referrers(&big, layer, 10).await.unwrap();
        assert_eq!(referrers.len(), 1, "every batch of references is recorded");
        assert!(!readable(meta, &big, layer, 0).await);
    }
    // Every batch is image content: an artifact listing the last layer cannot open it.
    meta.put_manifest(&artifact("team/big", "big-art", vec![layers[1000].clone()], None)).await.unwrap().unwrap();
    drain(meta, 6000).await;
    assert!(meta.delete_manifest(&big, &d("big")).await.unwrap());
    assert!(!readable(meta, &big, &layers[1000], 6000).await);

    signatures(meta).await;
    vulnerability_data(meta).await;
    console_sessions(meta).await;
    repository_listing(meta).await;
}

/// Imports raise the version only when something changed; rematches are read in push order with
/// a cursor and written only onto the row that was read.
/// Repository summaries (last push, worst state in effect) and tag details, each one query.
async fn repository_listing(meta: &dyn Metadata) {
    drain(meta, 9_000).await;
    for (body, t, at) in [("l1", "v1", 9_100), ("l2", "v2", 9_200)] {
        let m = NewManifest { pushed_at: at, ..manifest("listing/app", body, Vec::new(), None, Some(t)) };
        meta.put_manifest(&m).await.unwrap().unwrap();
    }
    let app = repo("listing/app");
    let summary = |now| async move { meta.repository_summaries(Some("listing"), None, 10, now, None).await.unwrap() };
    let s = summary(9_300).await;
    assert_eq!((s.len(), s[0].last_pushed_at, s[0].worst_state), (1, Some(9_200), Some(ScanState::Pending)));
    while let Some(job) = meta.claim_scan(9_300, 9_400, 5).await.unwrap() {
        let state = if job.digest == d("l1") { ScanState::Quarantined } else { ScanState::Passed };
        meta.finish_scan(&job, &verdict(state, "x"), 9_300).await.unwrap();
    }
    assert_eq!(summary(9_300).await[0].worst_state, Some(ScanState::Quarantined));
    assert!(meta.release_scan(&app, &d("l1"), "admin", "ok", Some(9_600), 9_400).await.unwrap());
    assert_eq!(summary(9_500).await[0].worst_state, Some(ScanState::Released));
    assert_eq!(summary(9_600).await[0].worst_state, Some(ScanState::Quarantined), "a lapsed release");
    let tags = meta.tag_details(&app, None, 10, 9_500).await.unwrap();
    let seen: Vec<_> = tags.iter().map(|t| (t.name.as_str(), t.size, t.pushed_at, t.state)).collect();
    assert_eq!(seen, vec![("v1", 2, 9_100, Some(ScanState::Released)), ("v2", 2, 9_200, Some(ScanState::Passed))]);
    assert_eq!(tags[0].digest, d("l1").to_string());
    assert_eq!(meta.tag_details(&app, None, 10, 9_600).await.unwrap()[0].state, Some(ScanState::Quarantined));
    let page = meta.tag_details(&app, Some("v1"), 1, 9_500).await.unwrap();
    assert_eq!(page.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), vec!["v2"]);
    assert!(meta.tag_details(&repo("listing/none"), None, 10, 0).await.unwrap().is_empty());
    // Searches: any case, anywhere in the name, `_` and `%` meaning themselves.
    let found = |q: &'static str| async move {
        let list = meta.repository_summaries(None, None, 100, 9_500, Some(q)).await.unwrap();
        list.into_iter().map(|r| r.name).collect::<Vec<_>>()
    };
    assert_eq!(found("STING/AP").await, vec!["listing/app"]);
    assert!(found("zzz").await.is_empty());
    assert!(found("listing_app").await.is_empty(), "_ is no wildcard");
    for name in ["s_a", "sxa", "s%b"] {
        assert!(meta.create_user(name, "x", false, 1).await.unwrap());
    }
    let users = |q: &'static str| async move {
        meta.list_users(None, 100, Some(q)).await.unwrap().into_iter().map(|u| u.username).collect::<Vec<_>>()
    };
    assert_eq!(users("S_A").await, vec!["s_a"]);
    assert_eq!(users("s%").await, vec!["s%b"]);
    assert!(meta.list_users(None, 100, None).await.unwrap().len() >= 3);
    assert!(meta.create_namespace("search-ns", false, 1).await.unwrap());
    let names: Vec<_> =
        meta.list_namespaces(None, 100, Some("H-N")).await.unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(names, vec!["search-ns"]);
}

/// Console sessions: found by hash with their account, touched forward only, ended by logout, by
/// idling and with their account.
async fn console_sessions(meta: &dyn Metadata) {
    assert!(meta.create_user("sess-user", "x", false, 1).await.unwrap());
    let id = meta.user("sess-user").await.unwrap().unwrap().id;
    meta.create_console_session("h1", id, "t", 1_000).await.unwrap();
    meta.create_console_session("h2", id, "t", 1_000).await.unwrap();
    let (s, u) = meta.console_session("h1").await.unwrap().unwrap();
    assert_eq!((s.created_ms, s.last_seen_ms, u.username.as_str(), u.id), (1_000, 1_000, "sess-user", id));
    assert_eq!(s.password_tag, "t");
    assert!(meta.console_session("nope").await.unwrap().is_none());
    meta.touch_console_session("h1", 5_000).await.unwrap();
    meta.touch_console_session("h1", 4_000).await.unwrap();
    assert_eq!(meta.console_session("h1").await.unwrap().unwrap().0.last_seen_ms, 5_000);
    assert!(meta.delete_console_session("h1").await.unwrap());
    assert!(!meta.delete_console_session("h1").await.unwrap());
    assert!(meta.console_session("h1").await.unwrap().is_none());
    meta.create_console_session("h3", id, "t", 9_000).await.unwrap();
    assert_eq!(meta.purge_console_sessions(2_000).await.unwrap(), 1, "only h2 idled");
    assert!(meta.console_session("h3").await.unwrap().is_some());
    assert!(meta.delete_user("sess-user").await.unwrap());
    assert!(meta.console_session("h3").await.unwrap().is_none(), "a deleted account's sessions end with it");
}

async fn vulnerability_data(meta: &dyn Metadata) {
    use super::vulndb::ImportedRecord;
    let rec =
        |id: &str, body: &str| ImportedRecord { id: id.into(), body: body.into(), fingerprint: format!("f-{body}") };
    assert_eq!(meta.vulndb_state().await.unwrap().version, 0);
    // More rows than one INSERT statement carries.
    let many: Vec<ImportedRecord> = (0..1_203).map(|i| rec(&format!("M-{i:04}"), &format!("m{i}"))).collect();
    let first = meta.import_vulnerabilities(many, vec!["never-stored".into()], 7_000).await.unwrap();
    assert_eq!((first.added, first.removed, first.state.version, first.state.records), (1_203, 0, 1, 1_203));
    assert_eq!(first.state.imported_at, Some(7_000));
    let gone: Vec<String> = (0..1_203).map(|i| format!("M-{i:04}")).collect();
    let cleared = meta.import_vulnerabilities(vec![rec("A-1", "a1"), rec("B-1", "b1")], gone, 7_001).await.unwrap();
    assert_eq!((cleared.added, cleared.removed, cleared.state.version, cleared.state.records), (2, 1_203, 2, 2));
    let same = meta.import_vulnerabilities(vec![rec("A-1", "a1")], vec!["M-0001".into()], 7_002).await.unwrap();
    assert_eq!((same.unchanged, same.state.version, same.state.imported_at), (1, 2, Some(7_001)));
    let changed = meta.import_vulnerabilities(vec![rec("A-1", "a2"), rec("C-1", "c1")], vec![], 7_003).await.unwrap();
    assert_eq!((changed.added, changed.changed, changed.state.version, changed.state.records), (1, 1, 3, 3));
    let (state, bodies) = meta.vulnerability_records().await.unwrap();
    assert_eq!((state.version, bodies), (3, vec!["a2".to_owned(), "b1".to_owned(), "c1".to_owned()]));

    for body in ["v-one", "v-two", "v-old"] {
        meta.put_manifest(&manifest("vuln/app", body, vec![], None, None)).await.unwrap().unwrap();
    }
    while let Some(job) = meta.claim_scan(7_010, 7_011, 100).await.unwrap() {
        let ours = job.repo.as_str() == "vuln/app" && job.digest != d("v-old");
        let inventory = ours.then_some(r#"{"packages":[]}"#);
        let verdict = super::scans::NewVerdict {
            state: ScanState::Passed,
            findings: "[]",
            summary: "ok",
            inventory,
            matched_version: 2,
        };
        meta.finish_scan(&job, &verdict, 7_010).await.unwrap();
    }
    assert!(meta.rematch_pending(3, i64::MIN).await.unwrap());
    assert!(!meta.rematch_pending(2, i64::MIN).await.unwrap());
    assert!(meta.rematch_pending(2, 7_011).await.unwrap(), "matched before the cut-off");
    assert_eq!(meta.count_rematch_due(3, i64::MIN).await.unwrap(), 2, "the image without an inventory is not due");
    assert_eq!(meta.count_rematch_due(2, 7_011).await.unwrap(), 2, "matched before the cut-off: due again");
    assert_eq!(meta.count_rematch_due(2, 7_010).await.unwrap(), 0);
    let page = meta.rematch_due(3, i64::MIN, None, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    let cursor = (page[0].created_at, page[0].repository_id, page[0].digest.to_string());
    let next = meta.rematch_due(3, i64::MIN, Some(&cursor), 10).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_ne!(page[0].digest, next[0].digest);
    assert!(meta
        .rematch_due(2, i64::MIN, Some(&(next[0].created_at, next[0].repository_id, next[0].digest.to_string())), 10)
        .await
        .unwrap()
        .is_empty());
    // The first is quarantined; a second write from the same read changes nothing.
    assert!(meta.record_rematch(&page[0], ScanState::Quarantined, "[1]", "DSA-1", 3, 7_020).await.unwrap());
    assert!(!meta.record_rematch(&page[0], ScanState::Passed, "[]", "ok", 3, 7_021).await.unwrap());
    let stored = meta.scan(&page[0].repo, &page[0].digest).await.unwrap().unwrap();
    assert_eq!((stored.state, stored.summary.as_deref()), (ScanState::Quarantined, Some("DSA-1")));
    // Something else wrote the second row after it was read: the rematch loses.
    meta.release_scan(&next[0].repo, &next[0].digest, "admin", "x", None, 7_030).await.unwrap();
    assert!(!meta.record_rematch(&next[0], ScanState::Quarantined, "[1]", "DSA-1", 3, 7_031).await.unwrap());
    assert_eq!(meta.scan(&next[0].repo, &next[0].digest).await.unwrap().unwrap().state, ScanState::Released);
    assert_eq!(meta.count_rematch_due(3, i64::MIN).await.unwrap(), 0);
    // The image scanned before inventories were kept gets one full rescan.
    // (Every passed image of the suite so far was stored without one.)
    assert!(meta.queue_uninventoried(7_040).await.unwrap() >= 1);
    assert_eq!(meta.queue_uninventoried(7_041).await.unwrap(), 0, "already queued");
    let old = repo("vuln/app");
    assert!(meta.scan(&old, &d("v-old")).await.unwrap().unwrap().rescan_requested);
    assert!(!meta.scan(&old, &page[0].digest).await.unwrap().unwrap().rescan_requested, "it has an inventory");
    while let Some(job) = meta.claim_scan(7_050, 7_051, 100).await.unwrap() {
        let still = meta.scan(&job.repo, &job.digest).await.unwrap().unwrap();
        assert_eq!(still.state, ScanState::Passed, "the verdict serves while the rescan runs");
        meta.finish_scan(&job, &verdict(ScanState::Passed, "ok"), 7_050).await.unwrap();
    }
}

/// Signature policies are read with manifests and blobs; an index's parents are found.
async fn signatures(meta: &dyn Metadata) {
    use crate::model::SignatureMode;
    let r = repo("signed/app");
    meta.link_blob(&r, &d("s-layer"), 3, 1_000).await.unwrap();
    meta.put_manifest(&manifest("signed/app", "s-image", vec![d("s-layer")], None, Some("v1"))).await.unwrap().unwrap();
    let mut index = manifest("signed/app", "s-index", vec![], None, Some("multi"));
    index.children = vec![d("s-image")];
    meta.put_manifest(&index).await.unwrap().unwrap();
    assert_eq!(meta.manifest_parents(&r, &d("s-image"), 10).await.unwrap(), [d("s-index")]);
    assert!(meta.manifest_parents(&r, &d("s-index"), 10).await.unwrap().is_empty());

    assert!(!meta.set_signature_policy("signed", "require", "[]", 5).await.unwrap(), "no such namespace");
    assert_eq!(meta.signature_policy("signed").await.unwrap(), None);
    let mode = |m: &Option<super::StoredManifest>| m.as_ref().unwrap().signatures;
    assert_eq!(mode(&meta.manifest_by_tag(&r, &tag("v1")).await.unwrap()), SignatureMode::Off);
    meta.create_namespace("signed", false, 1).await.unwrap();
    assert!(meta.set_signature_policy("signed", "require", "[]", 5).await.unwrap());
    assert!(meta.set_signature_policy("signed", "warn", r#"[{"name":"k","pem":"p"}]"#, 6).await.unwrap());
    let stored = meta.signature_policy("signed").await.unwrap().unwrap();
    assert_eq!(
        (stored.mode.as_str(), stored.keys.as_str(), stored.updated_at),
        ("warn", r#"[{"name":"k","pem":"p"}]"#, 6)
    );
    assert_eq!(mode(&meta.manifest_by_tag(&r, &tag("v1")).await.unwrap()), SignatureMode::Warn);
    assert_eq!(mode(&meta.manifest_by_digest(&r, &d("s-image")).await.unwrap()), SignatureMode::Warn);
    let access = meta.blob_access(&r, &d("s-layer"), 1).await.unwrap().unwrap();
    assert_eq!((access.signatures, access.image_content), (SignatureMode::Warn, true));
    assert_eq!(meta.signature_policy("other").await.unwrap(), None, "per namespace");
}

/// A verdict without findings or inventory.
fn verdict(state: ScanState, summary: &str) -> crate::metadata::scans::NewVerdict<'_> {
    crate::metadata::scans::NewVerdict { state, findings: "[]", summary, inventory: None, matched_version: 0 }
}
