//! A soak: for `SOAK_SECONDS` (default 180), 32 honest clients push images (scanned inside the
//! push, synchronous mode), pull them back and list tags, while from other addresses 500
//! connections sit idle (and are opened again as the registry closes them) and a flood of logins
//! (right and wrong passwords) runs. Honest requests must all succeed, every push must be there
//! at the end, and the registry's memory must stay bounded; the figures are printed.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::layers::{config, gzip, tar, Entry};
use common::process::{free_port, push_blob_chunked, Server};
use common::{images, sha256, ADMIN_PASSWORD};
use futures::TryStreamExt;
use tokio::net::TcpSocket;

/// A TCP connection to the registry from a chosen loopback address (127.0.0.0/8 is all local),
/// so that the registry tells these clients apart from the honest ones.
async fn connect_from(source: IpAddr, port: u16) -> Option<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind(SocketAddr::new(source, 0)).ok()?;
    socket.connect(SocketAddr::from(([127, 0, 0, 1], port))).await.ok()
}

fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| -> u64 {
        status.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
    };
    (kib("VmHWM:") / 1024, kib("VmRSS:") / 1024)
}

#[derive(Default)]
struct Tally {
    pushes: AtomicU64,
    pulls: AtomicU64,
    listings: AtomicU64,
    failures: AtomicU64,
}

async fn honest(
    server: &Server,
    client: &reqwest::Client,
    worker: usize,
    until: Instant,
    tally: &Tally,
) -> Vec<(String, String)> {
    let base = server.url("");
    let repo = format!("soak/w{worker}");
    let mut pushed = Vec::new();
    let mut round = 0;
    let fail = |what: String| {
        eprintln!("honest request failed: {what}");
        tally.failures.fetch_add(1, Ordering::Relaxed);
    };
    while Instant::now() < until {
        round += 1;
        let tag = format!("r{round}");
        let layer = gzip(&tar(&[Entry::File("app/data", format!("{worker}-{round}").repeat(1000).as_bytes(), 0o644)]));
        let cfg = images::with_diff_ids(&config(Some("1000")), &[&layer]);
        let (c, l) = match (
            push_blob_chunked(client, &base, &repo, &cfg, 1 << 20).await,
            push_blob_chunked(client, &base, &repo, &layer, 256 << 10).await,
        ) {
            (Ok(c), Ok(l)) => (c, l),
            (c, l) => {
                fail(format!("blob push: {:?} {:?}", c.err(), l.err()));
                continue;
            }
        };
        let manifest = images::oci_manifest(&c, cfg.len(), &[(l.clone(), layer.len())], None);
        let put = client
            .put(format!("{base}/v2/{repo}/manifests/{tag}"))
            .header("content-type", images::OCI_MANIFEST)
            .body(manifest.clone())
            .send()
            .await;
        match put {
            Ok(r) if r.status() == 201 && r.headers().get("portcullis-scan-state").is_some_and(|v| v == "passed") => {
                tally.pushes.fetch_add(1, Ordering::Relaxed);
                pushed.push((repo.clone(), sha256(&manifest).to_string()));
            }
            Ok(r) => {
                fail(format!("manifest push: {} {:?}", r.status(), r.headers().get("portcullis-scan-state")));
                continue;
            }
            Err(e) => {
                fail(format!("manifest push: {e}"));
                continue;
            }
        }
        // Pull it back, byte for byte.
        let blob = async {
            let r = client.get(format!("{base}/v2/{repo}/blobs/{l}")).send().await.map_err(|e| e.to_string())?;
            if r.status() != 200 {
                return Err(format!("blob pull: {}", r.status()));
            }
            let bytes: Vec<u8> = r
                .bytes_stream()
                .map_err(|e| e.to_string())
                .try_fold(Vec::new(), |mut v, c| async move {
                    v.extend_from_slice(&c);
                    Ok(v)
                })
                .await?;
            if sha256(&bytes) != l {
                return Err("blob pull: the bytes differ".into());
            }
            Ok(())
        };
        match blob.await {
            Ok(()) => {
                tally.pulls.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => fail(e),
        }
        match client.get(format!("{base}/v2/{repo}/tags/list?n=10")).send().await {
            Ok(r) if r.status() == 200 => {
                tally.listings.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => fail(format!("listing: {}", r.status())),
            Err(e) => fail(format!("listing: {e}")),
        }
    }
    pushed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_soak_of_pushes_pulls_idlers_and_a_login_flood() {
    let seconds: u64 = std::env::var("SOAK_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(180);
    let dir = tempfile::tempdir().unwrap();
    let env = common::backends::for_data_dir(dir.path()).map(|n| common::backends::env(&n)).unwrap_or_default();
    let server = Server::start_with_env(dir.path(), free_port(), None, &env);
    let pid = server.child.as_ref().unwrap().id();
    let port = server.port;
    let admin = |method, path: &str, body: serde_json::Value| {
        server.client().request(method, server.url(path)).basic_auth("admin", Some(ADMIN_PASSWORD)).json(&body).send()
    };
    use reqwest::Method;
    admin(Method::POST, "/api/v1/namespaces", serde_json::json!({"name": "soak"})).await.unwrap();
    admin(Method::PUT, "/api/v1/namespaces/soak/scan-policy", serde_json::json!({"sync_timeout": "60s"}))
        .await
        .unwrap();
    for (user, password) in [("ci", "ci-password-long"), ("flooder", "flooder-password-long")] {
        admin(Method::POST, "/api/v1/users", serde_json::json!({"username": user, "password": password}))
            .await
            .unwrap();
        admin(
            Method::PUT,
            &format!("/api/v1/namespaces/soak/members/{user}"),
            serde_json::json!({"role": "developer"}),
        )
        .await
        .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let until = Instant::now() + Duration::from_secs(seconds);

    // 500 idle connections from 127.0.0.2, opened again when the registry closes them.
    let idlers = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut held: Vec<tokio::net::TcpStream> = Vec::new();
            let mut opened = 0u64;
            while !stop.load(Ordering::Relaxed) {
                held.retain(|s| s.try_read(&mut [0u8; 1]).is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock));
                while held.len() < 500 {
                    match connect_from(IpAddr::from([127, 0, 0, 2]), port).await {
                        Some(s) => {
                            held.push(s);
                            opened += 1;
                        }
                        None => break,
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            opened
        }
    });
    // A login flood from 127.0.0.3: right and wrong passwords, as fast as it goes.
    let flood_ca = reqwest::Certificate::from_pem(&std::fs::read(server.ca_path()).unwrap()).unwrap();
    let flood = tokio::spawn({
        let stop = stop.clone();
        let url = server.url("/token?service=portcullis");
        async move {
            let client = reqwest::Client::builder()
                .tls_built_in_root_certs(false)
                .add_root_certificate(flood_ca)
                .local_address(IpAddr::from([127, 0, 0, 3]))
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut tasks = Vec::new();
            for t in 0..16 {
                let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let password =
                            if t % 2 == 0 { "flooder-password-long".to_owned() } else { format!("wrong-{n}") };
                        let _ = client.get(&url).basic_auth("flooder", Some(password)).send().await;
                        n += 1;
                    }
                    n
                }));
            }
            futures::future::join_all(tasks).await.into_iter().map(|n| n.unwrap_or(0)).sum::<u64>()
        }
    });

    // 32 honest clients with a developer's token.
    let scopes: Vec<String> = (0..32).map(|w| format!("repository:soak/w{w}:pull,push")).collect();
    let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let token = server.token("ci", "ci-password-long", &scopes).await;
    let client = server.client_with_token(&token);
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let workers: Vec<_> = (0..32)
        .map(|w| {
            let (client, tally) = (client.clone(), tally.clone());
            let server = Server { child: None, port, data_dir: std::path::PathBuf::new() };
            tokio::spawn(async move { honest(&server, &client, w, until, &tally).await })
        })
        .collect();
    let mut peak = 0;
    let mut pushed = Vec::new();
    for w in workers {
        pushed.extend(w.await.unwrap());
        peak = peak.max(rss(pid).0);
    }
    stop.store(true, Ordering::Relaxed);
    let opened = idlers.await.unwrap();
    let logins = flood.await.unwrap();
    let (hwm, now) = rss(pid);
    let elapsed = started.elapsed();
    println!(
        "soak of {elapsed:?}: {} pushes, {} pulls, {} listings, {} failures; {opened} idle connections opened, {logins} flood logins; registry RSS {now} MiB, peak {hwm} MiB",
        tally.pushes.load(Ordering::Relaxed),
        tally.pulls.load(Ordering::Relaxed),
        tally.listings.load(Ordering::Relaxed),
        tally.failures.load(Ordering::Relaxed)
    );
    assert_eq!(tally.failures.load(Ordering::Relaxed), 0, "honest requests failed");
    assert!(tally.pushes.load(Ordering::Relaxed) >= 32, "too few pushes to mean anything");
    assert!(hwm < 512, "the registry's peak RSS was {hwm} MiB");
    // Every acknowledged push is there.
    let admin_client = server.admin_client(&scopes).await;
    for (repo, digest) in &pushed {
        let r = admin_client.head(server.url(&format!("/v2/{repo}/manifests/{digest}"))).send().await.unwrap();
        assert_eq!(r.status(), 200, "{repo}@{digest} was lost");
    }
}
