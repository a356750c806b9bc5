//! The ways around the quarantine gate that were found, and their variants: each must fail.
//!
//! The invariant under test (`domain::gate`): a non-admin never receives a byte of a blob unless
//! some image that contains it has passed or been released, in a repository they may read. Every
//! image here is built in the test, crafted ones included.

mod common;

use axum::body::Body;
use common::images::{self, OCI_INDEX, OCI_MANIFEST};
use common::layers::{config, gzip, skippable, tar, tar_unterminated, zstd, Entry, PRIVATE_KEY};
use common::{sha256, TestRegistry};
use portcullis::domain::Digest;
use serde_json::json;

/// A registry with a developer `dev` (pushes to `team`) and a reader `eve` (only pulls there).
async fn setup() -> (TestRegistry, String, String) {
    let r = TestRegistry::new().await;
    let dev = r.user_with_role("dev", "team", "developer").await;
    let eve = r.user_with_role("eve", "team", "reader").await;
    (r, dev, eve)
}

async fn reader_token(r: &TestRegistry, eve: &str, repo: &str) -> String {
    r.login("eve", eve, &[&format!("repository:{repo}:pull")]).await
}

/// Eve's GET of `path` in `repo`: its status and OCI code.
async fn eve_gets(r: &TestRegistry, eve: &str, repo: &str, path: &str) -> (u16, String) {
    let token = reader_token(r, eve, repo).await;
    let reply = r.v2_as(&token, "GET", &format!("/v2/{repo}/{path}"), Body::empty()).await;
    let code = if reply.status.is_success() { String::new() } else { reply.code() };
    (reply.status.as_u16(), code)
}

#[track_caller]
fn refused((status, code): (u16, String), what: &str) {
    assert_eq!(status, 403, "{what} was served");
    assert!(["QUARANTINED", "SCAN_FAILED", "SCAN_PENDING"].contains(&code.as_str()), "{what}: {code}");
}

/// A root image (quarantined by the default policy) whose one layer holds nothing bad.
async fn quarantined_image(r: &TestRegistry, repo: &str) -> (Digest, Vec<u8>, Digest, Digest) {
    let layer = gzip(&tar(&[Entry::File("app/run", b"#!/bin/sh\necho hi\n", 0o755)]));
    let (digest, manifest, config_digest, layers) = r.push_layers(repo, "v1", &config(None), &[&layer]).await;
    assert_eq!(r.wait_scan(repo, &digest).await, "quarantined");
    (digest, manifest, config_digest, layers[0].clone())
}

fn with(manifest: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let mut m: serde_json::Value = serde_json::from_slice(manifest).unwrap();
    edit(&mut m);
    serde_json::to_vec(&m).unwrap()
}

#[tokio::test]
async fn an_image_dressed_as_an_artifact_is_still_an_image() {
    let (r, _dev, eve) = setup().await;
    let (digest, manifest, config_digest, layer) = quarantined_image(&r, "team/app").await;
    let subject = json!({"mediaType": OCI_MANIFEST, "digest": digest.to_string(), "size": manifest.len()});
    let disguises = [
        with(&manifest, |m| m["subject"] = subject.clone()),
        with(&manifest, |m| m["artifactType"] = "application/vnd.example.sbom".into()),
        with(&manifest, |m| {
            m["subject"] = subject.clone();
            m["artifactType"] = "application/vnd.dev.cosign.artifact.sig.v1+json".into();
            m["annotations"] = json!({"org.opencontainers.image.created": "2026-01-01T00:00:00Z"});
        }),
        // containerd ignores the config's type: layers it unpacks still make an image.
        with(&manifest, |m| m["config"]["mediaType"] = "application/vnd.oci.empty.v1+json".into()),
        with(&manifest, |m| m["layers"][0]["mediaType"] = "APPLICATION/VND.OCI.IMAGE.LAYER.V1.TAR+GZIP".into()),
        with(&manifest, |m| m["layers"][0]["mediaType"] = "".into()),
        with(&manifest, |m| m["layers"][0]["mediaType"] = "text/html".into()),
        with(&manifest, |m| {
            m["layers"][0]["mediaType"] = "application/vnd.doc\u{212A}er.image.rootfs.diff.tar.gzip".into()
        }),
        // A layer no client knows next to one containerd unpacks (docker refuses the whole).
        with(&manifest, |m| {
            m["config"]["mediaType"] = "application/vnd.example.config".into();
            let extra =
                json!({"mediaType": "application/vnd.example.data", "digest": config_digest.to_string(), "size": 1});
            m["layers"].as_array_mut().unwrap().push(extra);
        }),
    ];
    for disguise in disguises {
        let d = sha256(&disguise);
        r.put_manifest("team/app", &d.to_string(), OCI_MANIFEST, &disguise).await.expect(201, None);
        // Quarantined for its root user, or failed closed (a layer no reader unpacks).
        let state = r.wait_scan("team/app", &d).await;
        assert!(["quarantined", "error"].contains(&state.as_str()), "{state}: {}", String::from_utf8_lossy(&disguise));
        refused(eve_gets(&r, &eve, "team/app", &format!("manifests/{d}")).await, "the disguised manifest");
    }
    // Layers of a type no client unpacks make an artifact: it is scanned for secrets and may pass,
    // but it cannot open the image's blobs, which an image of the repository contains. So do
    // layers only docker would take under a config type docker refuses (and containerd skips).
    let artifacts = [
        with(&manifest, |m| {
            m["config"]["mediaType"] = "application/vnd.oci.empty.v1+json".into();
            m["layers"][0]["mediaType"] = "application/vnd.example.data".into();
            m["subject"] = subject.clone();
        }),
        with(&manifest, |m| {
            m["config"]["mediaType"] = "application/vnd.oci.empty.v1+json".into();
            m["layers"][0]["mediaType"] = "application/octet-stream".into();
        }),
    ];
    for artifact in artifacts {
        let a = sha256(&artifact);
        r.put_manifest("team/app", &a.to_string(), OCI_MANIFEST, &artifact).await.expect(201, None);
        assert_eq!(r.wait_scan("team/app", &a).await, "passed");
        assert_eq!(eve_gets(&r, &eve, "team/app", &format!("manifests/{a}")).await.0, 200);
        refused(eve_gets(&r, &eve, "team/app", &format!("blobs/{layer}")).await, "the layer through an artifact");
        refused(eve_gets(&r, &eve, "team/app", &format!("blobs/{config_digest}")).await, "the config through one");
    }

    // Indexes, nested, of both formats, reach the image.
    let index = images::index(&[(digest.clone(), manifest.len(), "amd64")]);
    r.put_manifest("team/app", "index", OCI_INDEX, &index).await.expect(201, None);
    let outer = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_INDEX, "digest": sha256(&index).to_string(), "size": index.len()}]}))
    .unwrap();
    r.put_manifest("team/app", "outer", OCI_INDEX, &outer).await.expect(201, None);
    let list_type = "application/vnd.docker.distribution.manifest.list.v2+json";
    let list = serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": list_type,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": digest.to_string(), "size": manifest.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}]}))
    .unwrap();
    r.put_manifest("team/app", "list", list_type, &list).await.expect(201, None);
    for (tag, d) in [("index", sha256(&index)), ("outer", sha256(&outer)), ("list", sha256(&list))] {
        r.wait_scan("team/app", &d).await;
        refused(eve_gets(&r, &eve, "team/app", &format!("manifests/{tag}")).await, tag);
    }
    let reply =
        r.v2_as(&reader_token(&r, &eve, "team/app").await, "GET", "/v2/team/app/manifests/outer", Body::empty()).await;
    let message = reply.json()["errors"][0]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(&digest.to_string()) && message.contains("runs as root"), "{message}");

    // A blob that no manifest references is not readable, nor one of a pending image.
    let loose = r.push_blob("team/app", b"pushed alone").await;
    refused(eve_gets(&r, &eve, "team/app", &format!("blobs/{loose}")).await, "a blob with no manifest");
    // HEAD still answers (re-pushes depend on it), with no body.
    let token = reader_token(&r, &eve, "team/app").await;
    let head = r.v2_as(&token, "HEAD", &format!("/v2/team/app/blobs/{layer}"), Body::empty()).await;
    assert_eq!((head.status.as_u16(), head.body.len()), (200, 0));
}

#[tokio::test]
async fn every_frame_member_and_entry_is_scanned() {
    let (r, _dev, eve) = setup().await;
    let harmless = tar_unterminated(&[Entry::File("app/readme", b"nothing to see", 0o644)]);
    let hidden = tar(&[Entry::File("root/.ssh/id_rsa", PRIVATE_KEY, 0o600), Entry::File("bin/su", b"\x7fELF", 0o4755)]);
    let mut two_frames = zstd(&harmless);
    two_frames.extend(zstd(&hidden));
    let mut with_skippable = zstd(&harmless);
    with_skippable.extend(skippable(b"padding a scanner might stop at"));
    with_skippable.extend(zstd(&hidden));
    let mut two_members = gzip(&harmless);
    two_members.extend(gzip(&hidden));
    let mut uncompressed = harmless.clone();
    uncompressed.extend(&hidden);
    for (what, layer) in [
        ("two zstd frames", two_frames),
        ("a skippable zstd frame", with_skippable),
        ("two gzip members", two_members),
        ("two concatenated tars", uncompressed),
    ] {
        let (d, _, _, layers) =
            r.push_layers("team/frames", what.replace(' ', "-").as_str(), &config(Some("1000")), &[&layer]).await;
        let v = r.verdict("team/frames", &d).await;
        assert_eq!(v["state"], "quarantined", "{what}: {v}");
        let rules: Vec<&str> = v["findings"].as_array().unwrap().iter().map(|f| f["rule"].as_str().unwrap()).collect();
        assert!(rules.contains(&"secret_in_file") && rules.contains(&"setuid_file"), "{what}: {rules:?}");
        refused(eve_gets(&r, &eve, "team/frames", &format!("blobs/{}", layers[0])).await, what);
    }

    // What a client would not unpack the same way, or at all, fails closed: `error`, blocked.
    let mut after_end = tar(&[Entry::File("a", b"a", 0o644)]);
    after_end.extend(tar(&[Entry::File("root/.ssh/id_rsa", PRIVATE_KEY, 0o600)]));
    let mut dir_with_data = Vec::new();
    {
        // A directory entry that claims 512 bytes of data, which is really another header.
        let mut h = tar::Header::new_ustar();
        h.set_path("d/").unwrap();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_size(512);
        h.set_mode(0o755);
        h.set_cksum();
        dir_with_data.extend_from_slice(h.as_bytes());
        dir_with_data.extend(tar(&[Entry::File("x", b"x", 0o644)]));
    }
    let mut truncated = gzip(&tar(&[Entry::File("big", &[7u8; 100_000], 0o644)]));
    truncated.truncate(truncated.len() / 2);
    let mut xz = b"\xfd7zXZ\x00".to_vec();
    xz.extend([0u8; 64]);
    let mut trailing = gzip(&tar(&[Entry::File("a", b"a", 0o644)]));
    trailing.extend_from_slice(b"not a gzip member");
    let hostile_whiteout = tar(&[Entry::File("etc/.wh..", b"", 0o644)]);
    for (what, layer) in [
        ("data after the end-of-archive marker", after_end),
        ("a directory with data", dir_with_data),
        ("a truncated layer", truncated),
        ("an xz layer", xz),
        ("bytes after the last gzip member", trailing),
        ("a whiteout of ..", hostile_whiteout),
        ("a PAX global header", tar(&[Entry::GlobalHeader("etc"), Entry::File("a", b"a", 0o644)])),
    ] {
        let (d, _, _, layers) = r.push_layers("team/odd", "v1", &config(Some("1000")), &[&layer]).await;
        let v = r.verdict("team/odd", &d).await;
        assert_eq!(v["state"], "error", "{what}: {v}");
        assert!(v["summary"].as_str().unwrap().contains("failed closed"), "{what}: {v}");
        refused(eve_gets(&r, &eve, "team/odd", &format!("blobs/{}", layers[0])).await, what);
        refused(eve_gets(&r, &eve, "team/odd", &format!("manifests/{d}")).await, what);
    }
    // Bytes that are no tar at all under a layer type (the diff id their own digest): every client
    // fails to unpack them, so nothing runs, and they are searched for secrets as an artifact is.
    let random: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let (d, ..) = r.push_layers("team/odd", "opaque", &config(Some("0")), &[&random]).await;
    assert_eq!(r.wait_scan("team/odd", &d).await, "passed");
    let mut with_key = random.clone();
    with_key.splice(1000..1000, PRIVATE_KEY.iter().copied());
    let (d, _, _, layers) = r.push_layers("team/odd", "opaque-key", &config(Some("0")), &[&with_key]).await;
    let v = r.verdict("team/odd", &d).await;
    assert_eq!(v["state"], "quarantined", "{v}");
    assert_eq!(v["findings"][0]["rule"], "secret_in_file", "{v}");
    refused(eve_gets(&r, &eve, "team/odd", &format!("blobs/{}", layers[0])).await, "an opaque layer with a key");
}

#[tokio::test]
async fn a_mount_applies_the_source_gate() {
    let (r, _dev, eve) = setup().await;
    r.admin_api("POST", "/api/v1/namespaces", json!({"name": "mine"})).await.expect(201, None);
    r.admin_api("PUT", "/api/v1/namespaces/mine/members/eve", json!({"role": "developer"})).await.expect(200, None);
    let (digest, _, _, layer) = quarantined_image(&r, "team/app").await;
    let token = r.login("eve", &eve, &["repository:team/app:pull", "repository:mine/copy:pull,push"]).await;
    let mount = format!("/v2/mine/copy/blobs/uploads/?mount={layer}&from=team/app");
    let reply = r.v2_as(&token, "POST", &mount, Body::empty()).await;
    assert_eq!(reply.status.as_u16(), 202, "a blocked blob is not mounted; the client is asked to upload it");
    r.v2_as(&token, "GET", &format!("/v2/mine/copy/blobs/{layer}"), Body::empty())
        .await
        .expect(404, Some("BLOB_UNKNOWN"));
    // An admin may mount it; it still is closed to eve in her repository, where no image has passed.
    r.send("POST", &mount, &[], Body::empty()).await.expect(201, None);
    refused(eve_gets(&r, &eve, "mine/copy", &format!("blobs/{layer}")).await, "an admin-mounted blocked blob");
    // Once released at the source, the mount works.
    let release = json!({"repository": "team/app", "digest": digest.to_string(), "reason": "accepted"});
    r.admin_api("POST", "/api/v1/scans/release", release).await.expect(200, None);
    let mount2 = format!("/v2/mine/other/blobs/uploads/?mount={layer}&from=team/app");
    let token = r.login("eve", &eve, &["repository:team/app:pull", "repository:mine/other:pull,push"]).await;
    r.v2_as(&token, "POST", &mount2, Body::empty()).await.expect(201, None);
}

#[tokio::test]
async fn a_rejected_or_deleted_image_keeps_its_layers_blocked() {
    let (r, _dev, eve) = setup().await;
    let (digest, manifest, config_digest, layer) = quarantined_image(&r, "team/app").await;
    let reject = json!({"repository": "team/app", "digest": digest.to_string(), "reason": "root"});
    r.admin_api("POST", "/api/v1/scans/reject", reject).await.expect(200, None);
    refused(eve_gets(&r, &eve, "team/app", &format!("blobs/{layer}")).await, "a rejected image's layer");
    refused(eve_gets(&r, &eve, "team/app", &format!("blobs/{config_digest}")).await, "a rejected image's config");
    // An artifact listing them afterwards opens nothing: they were image content.
    let artifact = with(&manifest, |m| m["layers"][0]["mediaType"] = "application/octet-stream".into());
    let a = sha256(&artifact);
    r.put_manifest("team/app", &a.to_string(), OCI_MANIFEST, &artifact).await.expect(201, None);
    r.wait_scan("team/app", &a).await;
    refused(eve_gets(&r, &eve, "team/app", &format!("blobs/{layer}")).await, "a rejected layer through an artifact");
    // A manifest DELETE (by someone allowed to) does the same.
    let (d2, _, _, layer2) = {
        let layer = gzip(&tar(&[Entry::File("other", b"other", 0o644)]));
        let (d, m, c, l) = r.push_layers("team/del", "v1", &config(None), &[&layer]).await;
        assert_eq!(r.wait_scan("team/del", &d).await, "quarantined");
        (d, m, c, l[0].clone())
    };
    r.send("DELETE", &format!("/v2/team/del/manifests/{d2}"), &[], Body::empty()).await.expect(202, None);
    refused(eve_gets(&r, &eve, "team/del", &format!("blobs/{layer2}")).await, "a deleted image's layer");
}

/// `User` values and image files that make an image run as root, each quarantined.
#[tokio::test]
async fn every_way_to_say_root_is_root() {
    let (r, _dev, _eve) = setup().await;
    let plain = gzip(&tar(&[Entry::File("app/run", b"x", 0o755)]));
    for (i, user) in ["00", "+0", "0000:0", "-0", "0:0:ignored"].iter().enumerate() {
        let (d, ..) = r.push_layers("team/users", &format!("n{i}"), &config(Some(user)), &[&plain]).await;
        assert_eq!(r.wait_scan("team/users", &d).await, "quarantined", "User {user:?}");
    }
    // Go reads keys case-insensitively, the last one winning; so does the scanner.
    for (i, cfg) in [
        r#"{"config":{"User":"1000","user":"0"}}"#,
        r#"{"config":{"User":"1000","U\u017fER":"0"}}"#,
        r#"{"CONFIG":{"User":"0"}}"#,
        // Go ignores a key with a Turkish dotless i: the real `config` says root.
        r#"{"config":{"User":"0"},"conf\u0131g":{"User":"1000"}}"#,
    ]
    .iter()
    .enumerate()
    {
        let (d, ..) = r.push_layers("team/users", &format!("k{i}"), cfg.as_bytes(), &[&plain]).await;
        assert_eq!(r.wait_scan("team/users", &d).await, "quarantined", "{cfg}");
    }
    // docker reads `null` after the object as no config (root), podman and containerd keep the
    // object: clients disagree, so it fails closed.
    let cfg = br#"{"config":{"User":"1000"},"config":null}"#;
    let (d, ..) = r.push_layers("team/users", "null-after", cfg, &[&plain]).await;
    let v = r.verdict("team/users", &d).await;
    assert_eq!(v["state"], "error", "{v}");
    assert!(v["summary"].as_str().unwrap().contains("null after an object"), "{v}");
    // Names are resolved in the image's own final /etc/passwd.
    let passwd = |line: &str| {
        gzip(&tar(&[Entry::File("etc/passwd", format!("root:x:0:0::/root:/bin/sh\n{line}\n").as_bytes(), 0o644)]))
    };
    let cases: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
        ("mapped to 0", vec![passwd("app:x:0:0::/:/bin/sh")], "quarantined"),
        ("an unreadable uid", vec![passwd("app:x:zero:0::/:/bin/sh")], "quarantined"),
        ("not in passwd", vec![passwd("other:x:1000:1000::/:/bin/sh")], "quarantined"),
        ("no passwd at all", vec![plain.clone()], "quarantined"),
        ("mapped to 1000", vec![passwd("app:x:1000:1000::/:/bin/sh")], "passed"),
        // setuid takes 32 bits: 4294967296 is uid 0 to the kernel.
        ("a uid that wraps to 0", vec![passwd("app:x:4294967296:0::/:/bin/sh")], "quarantined"),
        // Go trims Unicode white space off each line, so these lines name `app` first.
        (
            "a line led by a no-break space",
            vec![passwd("\u{a0}app:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh")],
            "quarantined",
        ),
        (
            "a line led by a vertical tab",
            vec![passwd("\u{b}app:x:0:0::/:/bin/sh\napp:x:1000:1000::/:/bin/sh")],
            "quarantined",
        ),
        // A later layer replaces /etc/passwd; the final one decides.
        ("replaced above", vec![passwd("app:x:1000:1000::/:/bin/sh"), passwd("app:x:0:0::/:/bin/sh")], "quarantined"),
        // /etc becomes a link to a directory whose passwd maps app to 0.
        (
            "a link to another passwd",
            vec![
                passwd("app:x:1000:1000::/:/bin/sh"),
                gzip(&tar(&[
                    Entry::Symlink("etc", "/opt/etc"),
                    Entry::File("opt/etc/passwd", b"app:x:0:0::/:/bin/sh\n", 0o644),
                ])),
            ],
            "quarantined",
        ),
    ];
    for (i, (what, layers, expected)) in cases.iter().enumerate() {
        let refs: Vec<&[u8]> = layers.iter().map(Vec::as_slice).collect();
        let (d, ..) = r.push_layers("team/names", &format!("c{i}"), &config(Some("app")), &refs).await;
        assert_eq!(r.wait_scan("team/names", &d).await, *expected, "User app, {what}");
    }
    // A layer listed again after another applies again: here its passwd wins over the middle one's.
    let zero = passwd("app:x:0:0::/:/bin/sh");
    let thousand = passwd("app:x:1000:1000::/:/bin/sh");
    let (d, ..) = r.push_layers("team/names", "repeat", &config(Some("app")), &[&zero, &thousand, &zero]).await;
    assert_eq!(r.wait_scan("team/names", &d).await, "quarantined", "the repeated layer's passwd is the final one");
    let (d, ..) = r.push_layers("team/names", "repeat-ok", &config(Some("app")), &[&thousand, &zero, &thousand]).await;
    assert_eq!(r.wait_scan("team/names", &d).await, "passed");
}

/// Work is bounded per scan, each distinct layer is read once, one namespace cannot starve
/// another, and a manifest with more references than the limit is refused at push.
#[tokio::test]
async fn scans_are_bounded_deduplicated_and_fair() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestRegistry::with_config(dir, |c| {
        // Five reads of the 8 MiB layer would exceed this; one does not.
        c.scan.limits.max_decompressed_bytes = 24 << 20;
        c.scan.workers = 1;
        c.scan.hook = Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            r#"cat > /dev/null; case "$PORTCULLIS_REPOSITORY" in flood/*) sleep 1;; esac"#.into(),
        ]);
        c.limits.max_references = 50;
    })
    .await;
    let big = zstd(&tar(&[Entry::File("data/blob", &vec![3u8; 8 << 20], 0o644)]));
    let (d, ..) = r.push_layers("team/five", "v1", &config(Some("1000")), &[&big, &big, &big, &big, &big]).await;
    let v = r.verdict("team/five", &d).await;
    assert_eq!(v["state"], "passed", "a layer listed five times is read once: {v}");
    // Over the budget, the scan fails closed and names the key.
    let bigger = zstd(&tar(&[Entry::File("data/blob", &vec![4u8; 30 << 20], 0o644)]));
    let (d, ..) = r.push_layers("team/bomb", "v1", &config(Some("1000")), &[&bigger]).await;
    let v = r.verdict("team/bomb", &d).await;
    assert_eq!(v["state"], "error");
    assert!(v["summary"].as_str().unwrap().contains("scan.limits.max_decompressed_bytes"), "{v}");
    // 20,000 files and 20,000 whiteouts of them: linear work, a verdict well within the scan timeout.
    let names: Vec<String> = (0..20_000).map(|i| format!("d/f{i}")).collect();
    let lower = zstd(&tar(&names.iter().map(|n| Entry::File(n, b"", 0o644)).collect::<Vec<_>>()));
    let wh: Vec<String> = (0..20_000).map(|i| format!("d/.wh.f{i}")).collect();
    let upper = zstd(&tar(&wh.iter().map(|n| Entry::File(n, b"", 0o644)).collect::<Vec<_>>()));
    let (d, ..) = r.push_layers("team/wh", "v1", &config(Some("1000")), &[&lower, &upper]).await;
    assert_eq!(r.wait_scan("team/wh", &d).await, "passed");

    // Too many references: refused at push, with the limit named.
    let layers: Vec<(Digest, usize)> = (0..60).map(|i| (sha256(format!("{i}").as_bytes()), 1)).collect();
    let cfg = r.push_blob("team/wide", b"{}").await;
    let wide = images::oci_manifest(&cfg, 2, &layers, None);
    let reply = r.put_manifest("team/wide", "v1", OCI_MANIFEST, &wide).await;
    reply.expect(400, Some("MANIFEST_INVALID"));
    assert!(String::from_utf8_lossy(&reply.body).contains("limits.max_references"));

    // Fairness: twelve slow images in one namespace, then one in another. Served in push order,
    // the latter would wait for all twelve; namespaces in turn, it waits for one at most per worker.
    let mut flood = Vec::new();
    for i in 0..12 {
        let layer = gzip(&tar(&[Entry::File("f", format!("{i}").as_bytes(), 0o644)]));
        flood.push(r.push_layers("flood/app", &format!("v{i}"), &config(Some("1000")), &[&layer]).await.0);
    }
    let (calm, ..) = r.push_layers("calm/app", "v1", &config(Some("1000")), &[&gzip(&tar(&[]))]).await;
    assert_eq!(r.wait_scan("calm/app", &calm).await, "passed");
    let mut done = 0;
    for d in &flood {
        let repo: portcullis::domain::RepoName = "flood/app".parse().unwrap();
        let state = r.app.registry.scan_record(&repo, d).await.unwrap().unwrap().state;
        done += usize::from(!matches!(state.as_str(), "pending" | "scanning"));
    }
    assert!(done + 3 <= flood.len(), "{done} of {} flood verdicts came before the other namespace's", flood.len());
}

#[tokio::test]
async fn a_sandbox_that_keeps_dying_ends_in_error_after_max_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("dies.sh");
    std::fs::write(&script, "#!/bin/sh\nkill -9 $$\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let r = TestRegistry::with_config(dir, |c| {
        c.scan.sandbox_program = Some(script.clone());
        c.scan.max_attempts = 2;
        c.scan.attest = true;
    })
    .await;
    let (d, ..) = r.push_layers("team/crash", "v1", &config(Some("1000")), &[&gzip(&tar(&[]))]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let repo: portcullis::domain::RepoName = "team/crash".parse().unwrap();
    let record = loop {
        let record = r.app.registry.scan_record(&repo, &d).await.unwrap().unwrap();
        if record.state.as_str() == "error" {
            break record;
        }
        assert!(std::time::Instant::now() < deadline, "still {:?} after 30 s", record.state);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(record.summary.unwrap().contains("sandbox"), "the reason names the sandbox");
    // Giving up is a verdict like any other: signed and attached.
    let uri = format!("/v2/team/crash/referrers/{d}?artifactType=application/vnd.in-toto%2Bjson");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let listed = r.get(&uri).await.json();
        let verdicts: Vec<&str> = listed["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["annotations"]["dev.portcullis.verdict"].as_str())
            .collect();
        if verdicts.contains(&"error") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no attestation of the error: {listed}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Manifests are read as Go reads them, layers as containerd and docker would both unpack them,
/// and nothing a blocked manifest holds leaks through the referrers listing.
#[tokio::test]
async fn what_clients_read_is_what_the_gate_reads() {
    let (r, _dev, eve) = setup().await;
    let (digest, manifest, _config, _layer) = quarantined_image(&r, "team/go").await;
    // Keys Go would fold onto a field, or a field twice: refused at push, naming the key.
    let evil = r#"{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1}"#;
    let text = String::from_utf8(manifest.clone()).unwrap();
    for variant in [
        text.replacen("{", &format!("{{\"LAYERS\":[{evil}],"), 1),
        text.replacen("{", "{\"\\u017fubject\":{},", 1),
        text.replacen("\"layers\"", "\"Layers\"", 1),
    ] {
        let reply = r.put_manifest("team/go", "folded", OCI_MANIFEST, variant.as_bytes()).await;
        reply.expect(400, Some("MANIFEST_INVALID"));
        assert!(reply.json()["errors"][0]["message"].as_str().unwrap().contains("clients would read"), "{variant}");
    }

    // Clients unpack by the bytes, not the declared type, and check what they unpacked against the
    // config's rootfs.diff_ids: gzip under the uncompressed type is the tar the gate read.
    let plain = tar(&[Entry::File("app/run", b"x", 0o755)]);
    let (d, m, ..) = r.push_layers("team/go", "raw", &config(Some("1000")), &[&gzip(&plain)]).await;
    assert_eq!(r.wait_scan("team/go", &d).await, "passed");
    let declared_raw = with(&m, |m| m["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar".into());
    r.put_manifest("team/go", "declared-raw", OCI_MANIFEST, &declared_raw).await.expect(201, None);
    assert_eq!(r.wait_scan("team/go", &sha256(&declared_raw)).await, "passed");
    // Diff ids that name other bytes (a client would unpack something else, or refuse), or none
    // at all (podman unpacks unchecked): the gate cannot know what runs, so it fails closed.
    let wrong = format!(
        r#"{{"config":{{"User":"1000"}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
        sha256(b"something else")
    );
    let missing = r#"{"config":{"User":"1000"},"rootfs":{"type":"layers"}}"#.to_owned();
    for (tag, config) in [("wrong-ids", wrong), ("no-ids", missing)] {
        let (d, ..) = r.push_layers("team/go", tag, config.as_bytes(), &[&gzip(&plain)]).await;
        let v = r.verdict("team/go", &d).await;
        assert_eq!(v["state"], "error", "{tag}: {v}");
        assert!(v["summary"].as_str().unwrap().contains("rootfs.diff_ids"), "{tag}: {v}");
    }
    // A layer docker applies but containerd skips (octet-stream): the diff ids say which client
    // can run the image, and the gate judges the filesystem that client builds. Here containerd's
    // /etc/passwd makes `app` root; docker's (the octet-stream layer on top) does not. podman
    // before 5.3 applies both and checks no diff id: under a config podman pulls, the two
    // readings cannot be told apart and the image fails closed.
    let known = gzip(&tar(&[Entry::File("etc/passwd", b"app:x:0:0::/:/bin/sh\n", 0o644)]));
    let extra = gzip(&tar(&[Entry::File("etc/passwd", b"app:x:1000:1000::/:/bin/sh\n", 0o644)]));
    let app = br#"{"config":{"User":"app"},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let mut states = Vec::new();
    for (tag, ids, config_type) in [
        ("docker-view", vec![&known[..], &extra[..]], images::OCI_CONFIG),
        ("podman-unchecked", vec![&known[..]], images::OCI_CONFIG),
        ("containerd-view", vec![&known[..]], "application/vnd.example.config"),
    ] {
        let config = images::with_diff_ids(app, &ids);
        let (_, m, ..) = r.push_layers("team/go", &format!("{tag}-base"), &config, &[&known, &extra]).await;
        let m = with(&m, |m| {
            m["layers"][1]["mediaType"] = "application/octet-stream".into();
            m["config"]["mediaType"] = config_type.into();
        });
        r.put_manifest("team/go", tag, OCI_MANIFEST, &m).await.expect(201, None);
        states.push(r.wait_scan("team/go", &sha256(&m)).await);
    }
    assert_eq!(states, ["passed", "error", "quarantined"]);
    // Layers with a table of contents for partial pulls: podman and the stargz snapshotter build
    // files from the table, not from the tar.
    for key in ["io.github.containers.zstd-chunked.manifest-checksum", "containerd.io/snapshot/stargz/toc.digest"] {
        let (_, m, ..) = r.push_layers("team/go", "toc-base", &config(Some("1000")), &[&gzip(&plain)]).await;
        let m = with(&m, |m| m["layers"][0]["annotations"] = json!({key: "sha256:0"}));
        r.put_manifest("team/go", "toc", OCI_MANIFEST, &m).await.expect(201, None);
        let v = r.verdict("team/go", &sha256(&m)).await;
        assert_eq!(v["state"], "error", "{key}: {v}");
        assert!(v["summary"].as_str().unwrap().contains("table of contents"), "{key}: {v}");
    }
    // A cosign-like signature: an OCI image config over a JSON layer no client unpacks, its diff id
    // the JSON's own digest. Nothing can run it; it is judged as an artifact is, and passes.
    let payload =
        br#"{"critical":{"identity":{"docker-reference":"team/go"},"type":"cosign container image signature"}}"#;
    let (_, m, ..) = r.push_layers("team/go", "sig-base", &config(Some("0")), &[payload]).await;
    let sig_manifest =
        with(&m, |m| m["layers"][0]["mediaType"] = "application/vnd.dev.cosign.simplesigning.v1+json".into());
    r.put_manifest("team/go", "sha256-x.sig", OCI_MANIFEST, &sig_manifest).await.expect(201, None);
    assert_eq!(r.wait_scan("team/go", &sha256(&sig_manifest)).await, "passed");
    assert_eq!(eve_gets(&r, &eve, "team/go", "manifests/sha256-x.sig").await.0, 200);
    // A zstd stream that starts with a skippable frame: the scanner refuses to guess.
    let mut skip_first = skippable(b"hello");
    skip_first.extend(zstd(&plain));
    let (d, ..) = r.push_layers("team/go", "skip-first", &config(Some("1000")), &[&skip_first]).await;
    let v = r.verdict("team/go", &d).await;
    assert_eq!(v["state"], "error", "{v}");
    assert!(v["summary"].as_str().unwrap().contains("skippable frame"), "{v}");
    // The same type over tar bytes is fine.
    let (d, m, ..) = r.push_layers("team/go", "plain", &config(Some("1000")), &[&plain]).await;
    r.wait_scan("team/go", &d).await;
    let honest = with(&m, |m| m["layers"][0]["mediaType"] = "application/vnd.oci.image.layer.v1.tar".into());
    r.put_manifest("team/go", "honest", OCI_MANIFEST, &honest).await.expect(201, None);
    assert_eq!(r.wait_scan("team/go", &sha256(&honest)).await, "passed");

    // A foreign layer is fetched from elsewhere by clients: the image cannot be scanned.
    let foreign = with(&honest, |m| {
        let layer = json!({"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "digest": sha256(b"elsewhere").to_string(), "size": 9, "urls": ["https://example.com/layer"]});
        m["layers"].as_array_mut().unwrap().push(layer);
    });
    r.put_manifest("team/go", "foreign", OCI_MANIFEST, &foreign).await.expect(201, None);
    let v = r.verdict("team/go", &sha256(&foreign)).await;
    assert_eq!(v["state"], "error", "{v}");
    assert!(v["summary"].as_str().unwrap().contains("foreign layer"), "{v}");

    // A hard link whose header says setuid makes its target setuid; file capabilities count too.
    let links = gzip(&tar(&[
        Entry::File("usr/bin/tool", b"\x7fELF", 0o755),
        Entry::HardLinkMode("usr/bin/alias", "usr/bin/tool", 0o4755),
        Entry::WithPax(
            "usr/bin/ping",
            b"\x7fELF",
            0o755,
            &[("SCHILY.xattr.security.capability", b"\x01\x00\x00\x02\x00\x20")],
        ),
    ]));
    let (d, ..) = r.push_layers("team/go", "links", &config(Some("1000")), &[&links]).await;
    let v = r.verdict("team/go", &d).await;
    let messages: Vec<&str> =
        v["findings"].as_array().unwrap().iter().map(|f| f["message"].as_str().unwrap()).collect();
    assert!(messages.iter().any(|m| m.contains("/usr/bin/tool is setuid")), "{messages:?}");
    assert!(messages.iter().any(|m| m.contains("/usr/bin/ping has file capabilities")), "{messages:?}");

    // A quarantined referrer's annotations and artifact type are its bytes: listed without them
    // for a reader, and left out of a listing filtered by type (which would tell the type).
    let referrer = with(&manifest, |m| {
        m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": sha256(&honest).to_string(), "size": honest.len()});
        m["annotations"] = json!({"note": "what the quarantined manifest says"});
        m["artifactType"] = "application/vnd.example.plan".into();
    });
    r.put_manifest("team/go", &sha256(&referrer).to_string(), OCI_MANIFEST, &referrer).await.expect(201, None);
    assert_eq!(r.wait_scan("team/go", &sha256(&referrer)).await, "quarantined");
    let path = format!("/v2/team/go/referrers/{}", sha256(&honest));
    let listed = r.v2_as(&reader_token(&r, &eve, "team/go").await, "GET", &path, Body::empty()).await;
    let entry = &listed.json()["manifests"][0];
    assert_eq!(entry["digest"], sha256(&referrer).to_string());
    assert!(entry.get("annotations").is_none() && entry.get("artifactType").is_none(), "{entry}");
    let filtered = format!("{path}?artifactType=application/vnd.example.plan");
    let listed = r.v2_as(&reader_token(&r, &eve, "team/go").await, "GET", &filtered, Body::empty()).await;
    assert_eq!(listed.json()["manifests"], json!([]), "a filter is no oracle for a blocked type");
    let admin = r.send("GET", &path, &[], Body::empty()).await;
    assert_eq!(admin.json()["manifests"][0]["annotations"]["note"], "what the quarantined manifest says");
    assert_eq!(admin.json()["manifests"][0]["artifactType"], "application/vnd.example.plan");
    let admin = r.send("GET", &filtered, &[], Body::empty()).await;
    assert_eq!(admin.json()["manifests"][0]["digest"], sha256(&referrer).to_string());
    let _ = digest;
}

/// An index may not reach more manifests than `limits.max_index_reach`, a manifest counted once
/// for each index that lists it: nested indexes sharing children would make one small manifest
/// cost the gate millions of rows.
#[tokio::test]
async fn an_index_reaches_a_bounded_number_of_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestRegistry::with_config(dir, |c| c.limits.max_index_reach = 6).await;
    let (a, am) = r.push_image("team/reach", "a", "a").await;
    let (b, bm) = r.push_image("team/reach", "b", "b").await;
    let entry = |d: &Digest, len: usize, t: &str| json!({"mediaType": t, "digest": d.to_string(), "size": len});
    let index = |children: Vec<serde_json::Value>| {
        serde_json::to_vec(&json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children})).unwrap()
    };
    let inner = index(vec![entry(&a, am.len(), OCI_MANIFEST), entry(&b, bm.len(), OCI_MANIFEST)]);
    r.put_manifest("team/reach", "inner", OCI_INDEX, &inner).await.expect(201, None);
    let mid = index(vec![entry(&sha256(&inner), inner.len(), OCI_INDEX), entry(&a, am.len(), OCI_MANIFEST)]);
    r.put_manifest("team/reach", "mid", OCI_INDEX, &mid).await.expect(201, None);
    // mid and inner (2), what mid lists (inner, a) and what inner lists (a, b): 6, the limit.
    let top = index(vec![entry(&sha256(&mid), mid.len(), OCI_INDEX), entry(&sha256(&inner), inner.len(), OCI_INDEX)]);
    r.put_manifest("team/reach", "top", OCI_INDEX, &top).await.expect(201, None);
    // One more level: 7, refused.
    let over = index(vec![entry(&sha256(&top), top.len(), OCI_INDEX)]);
    let reply = r.put_manifest("team/reach", "over", OCI_INDEX, &over).await;
    reply.expect(400, Some("MANIFEST_INVALID"));
    assert!(reply.json()["errors"][0]["message"].as_str().unwrap().contains("limits.max_index_reach"));
}
