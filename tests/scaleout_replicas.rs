//! Several `portcullis` processes as stateless replicas: one PostgreSQL database and one S3 bucket
//! (the real servers scripts/test.sh starts), the same TLS certificate, signing keys and public URL.
//!
//! What a load balancer in front of them needs: any replica serves any request (an upload started
//! on one continues on another), a token from one verifies on all, and killing one replica loses
//! nothing a client was told had been stored, including a scan job it held.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::process::{free_port, layer_bytes, push_image, verify_store, Server};
use common::{backends, images, sha256};

/// Replicas sharing one database, one bucket prefix, one certificate and one signing key.
struct Cluster {
    root: tempfile::TempDir,
    name: String,
    public_url: String,
    replicas: Vec<Server>,
}

impl Cluster {
    /// Starts `n` replicas; replica `i` reads `configs[i]` when given.
    fn start(n: usize, configs: &[Option<PathBuf>]) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let name = backends::name_for(&format!("cluster-{}", uuid::Uuid::new_v4()));
        let first_port = free_port();
        let mut cluster =
            Cluster { root, name, public_url: format!("https://127.0.0.1:{first_port}"), replicas: Vec::new() };
        for i in 0..n {
            let port = if i == 0 { first_port } else { free_port() };
            cluster.add(port, configs.get(i).cloned().flatten().as_deref());
        }
        cluster
    }

    /// Starts one more replica on `port`, as an operator adds one behind the load balancer.
    fn add(&mut self, port: u16, config: Option<&Path>) {
        let dir = self.root.path().join(format!("replica{}", self.replicas.len() + 1));
        std::fs::create_dir_all(&dir).unwrap();
        let mut env = backends::env(&self.name);
        env.push(("PORTCULLIS_PUBLIC_URL".into(), self.public_url.clone()));
        if let Some(first) = self.replicas.first() {
            // The files an operator mounts into every replica: certificate and token signing key.
            let tls = dir.join("tls");
            std::fs::create_dir_all(&tls).unwrap();
            for file in ["ca.crt", "server.crt", "server.key"] {
                let from = match file {
                    "ca.crt" => first.data_dir.join("tls").join(file),
                    _ => first.data_dir.join("tls/private").join(file),
                };
                std::fs::copy(from, tls.join(file)).unwrap();
            }
            env.push(("PORTCULLIS_TLS_CERT".into(), tls.join("server.crt").display().to_string()));
            env.push(("PORTCULLIS_TLS_KEY".into(), tls.join("server.key").display().to_string()));
            let key = first.data_dir.join("keys/token-signing.pem");
            env.push(("PORTCULLIS_AUTH_SIGNING_KEY".into(), key.display().to_string()));
            let key = first.data_dir.join("keys/attestation.pem");
            env.push(("PORTCULLIS_SCAN_ATTESTATION_KEY".into(), key.display().to_string()));
        }
        self.replicas.push(Server::start_with_env(&dir, port, config, &env));
    }

    fn url(&self, replica: usize, path: &str) -> String {
        self.replicas[replica].url(path)
    }

    /// The bucket prefix all replicas write, to re-hash every blob object in it.
    fn store(&self) -> portcullis::storage::BlobStore {
        portcullis::storage::BlobStore::s3(&backends::s3_config(&self.name)).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Garage: scripts/test.sh runs it"]
async fn chunks_alternate_between_replicas_and_a_third_serves_the_pull() {
    let cluster = Cluster::start(3, &[]);
    let r = &cluster.replicas;
    // A token issued by replica 1 works on all three.
    let token = r[0].token("admin", common::ADMIN_PASSWORD, &["repository:spread/app:pull,push"]).await;
    let http = r[0].client_with_token(&token);

    // 22 MiB in 6 MiB chunks: POST on replica 1, PATCHes alternating 1, 2, 1, 2, PUT on replica 1.
    let layer = layer_bytes(7, 22 * 1024 * 1024 + 321);
    let started = http.post(cluster.url(0, "/v2/spread/app/blobs/uploads/")).send().await.unwrap();
    assert_eq!(started.status(), 202);
    let mut location = started.headers()["location"].to_str().unwrap().to_owned();
    let mut offset = 0;
    for (i, chunk) in layer.chunks(6 * 1024 * 1024).enumerate() {
        let via = i % 2;
        let reply = http
            .patch(cluster.url(via, &location))
            .header("content-range", format!("{}-{}", offset, offset + chunk.len() - 1))
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 202, "PATCH {i} through replica {}", via + 1);
        location = reply.headers()["location"].to_str().unwrap().to_owned();
        offset += chunk.len();
        // The session as any other replica sees it.
        let status = http.get(cluster.url(2, &location)).send().await.unwrap();
        assert_eq!(status.status(), 204);
        assert_eq!(status.headers()["range"].to_str().unwrap(), format!("0-{}", offset - 1));
    }
    // A chunk that does not start at the end is refused by the other replica too.
    let stale =
        http.patch(cluster.url(1, &location)).header("content-range", "0-3").body(&b"late"[..]).send().await.unwrap();
    assert_eq!(stale.status(), 416);
    let digest = sha256(&layer);
    let put = http.put(cluster.url(0, &format!("{location}?digest={digest}"))).send().await.unwrap();
    assert_eq!(put.status(), 201);

    let config_bytes = images::with_diff_ids(images::config_json("spread").as_bytes(), &[&layer]);
    let config = common::process::push_blob_chunked(&http, &cluster.url(1, ""), "spread/app", &config_bytes, 1 << 20)
        .await
        .unwrap();
    let manifest = images::oci_manifest(&config, config_bytes.len(), &[(digest.clone(), layer.len())], None);
    let put = http
        .put(cluster.url(0, "/v2/spread/app/manifests/v1"))
        .header("content-type", images::OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);

    // Replica 3 never saw the push; with a token of its own issuing, it serves the whole image.
    let token3 = r[2].token("admin", common::ADMIN_PASSWORD, &["repository:spread/app:pull"]).await;
    let pull = r[2].client_with_token(&token3);
    let got = pull
        .get(cluster.url(2, "/v2/spread/app/manifests/v1"))
        .header("accept", images::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap(), manifest);
    let blob = pull.get(cluster.url(2, &format!("/v2/spread/app/blobs/{digest}"))).send().await.unwrap();
    assert_eq!(blob.status(), 200);
    assert_eq!(sha256(&blob.bytes().await.unwrap()), digest, "the layer pulled from replica 3 is intact");
    // And the token of replica 3 is good on replica 1.
    let head = pull.head(cluster.url(0, &format!("/v2/spread/app/blobs/{digest}"))).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(verify_store(&cluster.store()).await >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Garage: scripts/test.sh runs it"]
async fn kill_9_of_a_replica_loses_no_acknowledged_push() {
    let mut cluster = Cluster::start(3, &[]);
    let mut scopes = Vec::new();
    for p in 0..6 {
        scopes.push(format!("repository:fleet/p{p}:pull,push"));
    }
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let token = cluster.replicas[0].token("admin", common::ADMIN_PASSWORD, &scopes).await;
    let http = cluster.replicas[0].client_with_token(&token);
    let bases: Vec<String> = (0..3).map(|i| cluster.url(i, "")).collect();

    // Six pushers, each spreading its images over the three replicas in turn.
    let pushers: Vec<_> = (0..6u32)
        .map(|p| {
            let (http, bases) = (http.clone(), bases.clone());
            tokio::spawn(async move {
                let mut outcomes = Vec::new();
                for k in 0..6u32 {
                    let via = ((p + k) % 3) as usize;
                    let layer = layer_bytes(p * 100 + k, 1024 * 1024 + (p * 7919 + k * 104_729) as usize % 2_000_000);
                    let (repo, tag) = (format!("fleet/p{p}"), format!("v{k}"));
                    let pushed = push_image(&http, &bases[via], &repo, &tag, &layer).await;
                    outcomes.push((via, repo, tag, layer, pushed));
                }
                outcomes
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.replicas[0].kill9();
    let mut acknowledged = 0;
    let mut refused = 0;
    let reader = &cluster.replicas[2];
    for pusher in pushers {
        for (via, repo, tag, layer, pushed) in pusher.await.unwrap() {
            let Ok(manifest) = pushed else {
                refused += 1;
                continue;
            };
            acknowledged += 1;
            // Pulled back from a surviving replica, whichever replica took the push.
            let got = http
                .get(reader.url(&format!("/v2/{repo}/manifests/{tag}")))
                .header("accept", images::OCI_MANIFEST)
                .send()
                .await
                .unwrap();
            assert_eq!(got.status(), 200, "{repo}:{tag} (pushed through replica {}) is gone", via + 1);
            assert_eq!(got.bytes().await.unwrap(), manifest);
            let blob = http.get(reader.url(&format!("/v2/{repo}/blobs/{}", sha256(&layer)))).send().await.unwrap();
            assert_eq!(blob.status(), 200);
            assert_eq!(sha256(&blob.bytes().await.unwrap()), sha256(&layer), "{repo}:{tag} layer");
        }
    }
    eprintln!("kill -9 of replica 1: {acknowledged} acknowledged pushes intact on replica 3, {refused} refused");
    assert!(acknowledged >= 20, "the surviving replicas kept serving ({acknowledged} acknowledged)");
    assert!(refused > 0, "replica 1 was killed while pushes through it were under way");
    let checked = verify_store(&cluster.store()).await;
    assert!(checked >= acknowledged, "{checked} blob objects re-hashed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Garage: scripts/test.sh runs it"]
async fn a_scan_held_by_a_killed_replica_completes_on_another() {
    let dir = tempfile::tempdir().unwrap();
    // Replica 1's hook never finishes in time; the others' pass at once. Leases are short.
    let slow = dir.path().join("slow.toml");
    std::fs::write(&slow, "[scan]\nhook = [\"/bin/sh\", \"-c\", \"sleep 60\"]\nlease = \"2s\"\n").unwrap();
    let fast = dir.path().join("fast.toml");
    std::fs::write(&fast, "[scan]\nhook = [\"/bin/sh\", \"-c\", \"exit 0\"]\nlease = \"2s\"\n").unwrap();
    let mut cluster = Cluster::start(1, &[Some(slow)]);
    let token = cluster.replicas[0].token("admin", common::ADMIN_PASSWORD, &["repository:held/app:pull,push"]).await;
    let http = cluster.replicas[0].client_with_token(&token);
    let layer = images::layer_tar_gz("app/bin", b"binary", 0o755);
    let manifest = push_image(&http, &cluster.url(0, ""), "held/app", "v1", &layer).await.unwrap();
    let digest = sha256(&manifest).to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while cluster.replicas[0].scan_state("held/app", &digest, "0s").await != "scanning" {
        assert!(Instant::now() < deadline, "replica 1 never took the job");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Two more replicas join; then the one holding the job dies in the middle of it.
    cluster.add(free_port(), Some(&fast));
    cluster.add(free_port(), Some(&fast));
    cluster.replicas[0].kill9();
    assert_eq!(cluster.replicas[1].scan_state("held/app", &digest, "60s").await, "passed");
    let pulled = http
        .get(cluster.url(2, "/v2/held/app/manifests/v1"))
        .header("accept", images::OCI_MANIFEST)
        .send()
        .await
        .unwrap();
    assert_eq!(pulled.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Garage: scripts/test.sh runs it"]
async fn wrong_passwords_spread_over_replicas_are_throttled_as_one() {
    let cluster = Cluster::start(3, &[]);
    let (mut refused, mut rejected) = (0, 0);
    for attempt in 0..30 {
        let server = &cluster.replicas[attempt % 3];
        let reply = server
            .client()
            .get(server.url("/token?service=portcullis"))
            .basic_auth("admin", Some("not the password at all"))
            .send()
            .await
            .unwrap();
        match reply.status().as_u16() {
            429 => refused += 1,
            401 => rejected += 1,
            other => panic!("a wrong password got {other}"),
        }
    }
    // Five free failures in all, not five per replica; then the account is locked out everywhere.
    assert!(rejected <= 8, "{rejected} wrong passwords were checked, {refused} refused");
    assert!(refused >= 22, "{refused} refused");
}

/// Three replicas write audit records at once (admin changes and failed logins on each): the
/// one chain they make verifies on any replica and offline, and holds every record once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL and Garage: scripts/test.sh runs it"]
async fn three_replicas_write_one_audit_chain() {
    let cluster = Cluster::start(3, &[]);
    // One stream of requests per replica, the three at once (one address's logins in flight at
    // once are throttled past a few, which would make this a test of the throttle).
    let streams = (0..3).map(|r| {
        let replica = &cluster.replicas[r];
        let (client, users, token) = (replica.client(), replica.url("/api/v1/users"), replica.url("/token"));
        async move {
            for i in (r..45).step_by(3) {
                let user = serde_json::json!({"username": format!("user{i}"), "password": "a-long-password"});
                let created =
                    client.post(&users).basic_auth("admin", Some(common::ADMIN_PASSWORD)).json(&user).send().await;
                let created = created.unwrap();
                let status = created.status();
                assert_eq!(status, 201, "{}", created.text().await.unwrap_or_default());
                let failed = client.get(&token).basic_auth(format!("nobody{i}"), Some("wrong-password")).send().await;
                let status = failed.unwrap().status().as_u16();
                assert!(status == 401 || status == 429, "{status}");
            }
        }
    });
    futures::future::join_all(streams).await;
    let admin = |i: usize, path: &str| {
        let url = cluster.url(i, path);
        let client = cluster.replicas[i].client();
        async move {
            let reply = client.get(url).basic_auth("admin", Some(common::ADMIN_PASSWORD)).send().await.unwrap();
            assert_eq!(reply.status(), 200);
            reply.json::<serde_json::Value>().await.unwrap()
        }
    };
    let verified = admin(1, "/api/v1/audit/verify").await;
    assert_eq!(verified["ok"], true, "{verified}");
    assert!(verified["records"].as_u64().unwrap() >= 135, "45 creations, 45 failed and 45 good logins: {verified}");
    let created = admin(2, "/api/v1/audit?action=user.create&limit=1000").await;
    let mut objects: Vec<&str> =
        created["items"].as_array().unwrap().iter().map(|i| i["object"].as_str().unwrap()).collect();
    objects.sort();
    objects.dedup();
    assert_eq!(objects.len(), 45, "each creation recorded once");
    let failed = admin(0, "/api/v1/audit?action=login&limit=1000").await;
    let failures = failed["items"].as_array().unwrap().iter().filter(|i| i["outcome"] != "ok").count();
    assert_eq!(failures, 45, "each refused login recorded once, failed or throttled");
    // Offline, against the same database.
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["audit", "verify"])
        .env("PORTCULLIS_DATA_DIR", dir.path())
        .env("PORTCULLIS_LOG", "error")
        .envs(backends::env(&cluster.name))
        // The key every replica shares: it also seals the audit log's head.
        .env("PORTCULLIS_AUTH_SIGNING_KEY", cluster.replicas[0].data_dir.join("keys/token-signing.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}
