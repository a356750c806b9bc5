//! Shared test harness: an in-process registry on a temporary data dir, a real TLS listener for
//! it, and a real `portcullis` process for end-to-end tests.
#![allow(dead_code)]

pub mod auth;
pub mod backends;
pub mod cosign;
pub mod docker;
pub mod images;
pub mod layers;
pub mod process;
pub mod proxied;
pub mod receiver;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use bytes::Bytes;
use portcullis::auth::jwt::TokenUse;
use portcullis::auth::service::Authenticated;
use portcullis::auth::{ActionSet, Principal, Scope};
use portcullis::domain::digest::Algorithm;
use portcullis::domain::Digest;
use portcullis::http::v2::route::V2Route;
use portcullis::{App, Config};
use tower::ServiceExt;

pub struct TestRegistry {
    pub dir: tempfile::TempDir,
    /// The first replica; tests read state through it.
    pub app: App,
    /// In scale-out mode, two more replicas on the same database and bucket. Requests go to the
    /// three in turn, so every in-process test also runs across replicas.
    pub others: Vec<App>,
    turn: std::sync::atomic::AtomicUsize,
}

/// The password every test registry's `admin` user gets.
pub const ADMIN_PASSWORD: &str = "test-admin-password-1";

/// A response with its body collected.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {:?}", self.body))
    }
    /// The first OCI error code of the body.
    pub fn code(&self) -> String {
        self.json()["errors"][0]["code"].as_str().unwrap_or("").to_owned()
    }
    /// Asserts status and (for errors) the OCI code.
    #[track_caller]
    pub fn expect(&self, status: u16, code: Option<&str>) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", String::from_utf8_lossy(&self.body));
        if let Some(code) = code {
            assert_eq!(self.code(), code, "body: {}", String::from_utf8_lossy(&self.body));
        }
        self
    }
}

/// A time `days` from now, as the admin API takes expiry times (Unix seconds).
pub fn in_days(days: i64) -> serde_json::Value {
    (portcullis::domain::now() + days * 86_400).into()
}

pub fn sha256(bytes: &[u8]) -> Digest {
    Digest::of(Algorithm::Sha256, bytes)
}

pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config =
        Config { data_dir: dir.to_path_buf(), listen: "127.0.0.1:0".parse().unwrap(), ..Config::default() };
    // The test binary is not `portcullis`: scans run in the real binary's sandbox.
    config.scan.sandbox_program = Some(env!("CARGO_BIN_EXE_portcullis").into());
    // What the registry attaches to images (signed verdicts, SBOMs) would change every count of
    // manifests and blobs the other tests make; their own tests turn them on.
    config.scan.attest = false;
    config.scan.sbom = false;
    config
}

impl TestRegistry {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self::with_config(dir, |_| {}).await
    }

    /// A registry that attaches signed verdicts and SBOMs to what it scans, as by default
    /// ([`test_config`] turns them off for the other tests).
    pub async fn attaching() -> Self {
        Self::with_config(tempfile::tempdir().unwrap(), |c| {
            c.scan.attest = true;
            c.scan.sbom = true;
        })
        .await
    }

    pub async fn with_config(dir: tempfile::TempDir, edit: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config(dir.path());
        if let Some(name) = backends::for_data_dir(dir.path()) {
            backends::apply(&mut config, &name);
        }
        edit(&mut config);
        let replicas = if backends::scaleout() { 3 } else { 1 };
        let mut apps = Vec::new();
        for _ in 0..replicas {
            // The same configuration: one database, one bucket, one signing key file.
            let app = App::build(config.clone()).await.expect("app builds");
            app.auth.bootstrap_admin(dir.path(), Some(ADMIN_PASSWORD.to_owned().into())).await.unwrap();
            app.spawn_scan_worker().expect("scan workers start");
            apps.push(app);
        }
        let app = apps.remove(0);
        TestRegistry { dir, app, others: apps, turn: Default::default() }
    }

    /// Another replica on the same database and blob store, with `edit` applied to a copy of this
    /// registry's configuration (a rolling restart with new settings, say).
    pub async fn beside(&self, edit: impl FnOnce(&mut Config)) -> TestRegistry {
        let mut config = self.app.config.clone();
        edit(&mut config);
        let app = App::build(config).await.expect("app builds");
        TestRegistry { dir: tempfile::tempdir().unwrap(), app, others: Vec::new(), turn: Default::default() }
    }

    /// The bootstrap admin, as a token names it.
    pub async fn admin(&self) -> Authenticated {
        let id = self.app.auth.user("admin").await.unwrap().id;
        Authenticated {
            principal: Principal::User { name: "admin".into(), admin: true },
            uid: Some(format!("u:{id}")),
            pat: None,
        }
    }

    /// A token for `who` with what it may have of `scopes`, through the same grant logic as /token.
    pub async fn token_for(&self, who: &Authenticated, scopes: &[Scope]) -> String {
        let access = self.app.auth.grant(who, scopes).await.unwrap();
        self.app.auth.issue(who, access, TokenUse::Access).unwrap().token
    }

    /// An admin token covering the repository of `uri` (and a mount source), for breadth tests.
    async fn admin_token(&self, uri: &str) -> String {
        let path = uri.split('?').next().unwrap_or(uri);
        let mut scopes = vec![Scope::Catalog];
        if let Ok(route) = V2Route::parse(path) {
            if let Some(repo) = route.repository() {
                scopes.push(Scope::Repository(repo.clone(), ActionSet::ALL));
            }
        }
        let query = uri.split_once('?').map(|(_, q)| q).unwrap_or("");
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            if let (true, Ok(from)) = (k == "from", v.parse()) {
                scopes.push(Scope::Repository(from, ActionSet::ALL));
            }
        }
        self.token_for(&self.admin().await, &scopes).await
    }

    /// Sends a request as the admin (a token is added unless `headers` carry `authorization`).
    pub async fn send(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Reply {
        if uri.starts_with("/v2") && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization")) {
            let auth = format!("Bearer {}", self.admin_token(uri).await);
            let mut with_token = headers.to_vec();
            with_token.push(("authorization", &auth));
            return self.send_raw(method, uri, &with_token, body).await;
        }
        self.send_raw(method, uri, headers, body).await
    }

    /// Sends a request exactly as given.
    pub async fn send_raw(&self, method: &str, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Reply {
        let mut req = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % (1 + self.others.len());
        let app = if turn == 0 { &self.app } else { &self.others[turn - 1] };
        let response = app.router.clone().oneshot(req.body(body.into()).unwrap()).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.unwrap();
        Reply { status, headers, body }
    }

    pub async fn get(&self, uri: &str) -> Reply {
        self.send("GET", uri, &[], Body::empty()).await
    }

    /// Waits (up to 20 s) until the scan of `repo@digest` has a verdict; returns its state.
    pub async fn wait_scan(&self, repo: &str, digest: &Digest) -> String {
        let repo: portcullis::domain::RepoName = repo.parse().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let record = self.app.registry.scan_record(&repo, digest).await.unwrap().expect("a scan record");
            let state = record.state.as_str();
            if !matches!(state, "pending" | "scanning") && !record.rescan_requested {
                return state.to_owned();
            }
            assert!(std::time::Instant::now() < deadline, "scan of {repo}@{digest} did not finish");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Uploads a blob monolithically and returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: &[u8]) -> Digest {
        let digest = sha256(bytes);
        self.send("POST", &format!("/v2/{repo}/blobs/uploads/?digest={digest}"), &[], bytes.to_vec())
            .await
            .expect(201, None);
        digest
    }

    /// Puts a manifest and returns the reply.
    pub async fn put_manifest(&self, repo: &str, reference: &str, media_type: &str, body: &[u8]) -> Reply {
        self.send("PUT", &format!("/v2/{repo}/manifests/{reference}"), &[("content-type", media_type)], body.to_vec())
            .await
    }

    /// Pushes an image of `config` and `layers` (in that order, repeats allowed) as `repo:tag`;
    /// returns the manifest's digest and body, and the config's and each distinct layer's digests.
    pub async fn push_layers(
        &self,
        repo: &str,
        tag: &str,
        config: &[u8],
        layers: &[&[u8]],
    ) -> (Digest, Vec<u8>, Digest, Vec<Digest>) {
        let config = &images::with_diff_ids(config, layers);
        let config_digest = self.push_blob(repo, config).await;
        let mut listed = Vec::new();
        let mut distinct: Vec<Digest> = Vec::new();
        for layer in layers {
            let d = sha256(layer);
            if !distinct.contains(&d) {
                self.push_blob(repo, layer).await;
                distinct.push(d.clone());
            }
            listed.push((d, layer.len()));
        }
        let manifest = images::oci_manifest(&config_digest, config.len(), &listed, None);
        self.put_manifest(repo, tag, images::OCI_MANIFEST, &manifest).await.expect(201, None);
        (sha256(&manifest), manifest, config_digest, distinct)
    }

    /// The scan record of `repo@digest` through the admin API, once it has a verdict.
    pub async fn verdict(&self, repo: &str, digest: &Digest) -> serde_json::Value {
        self.wait_scan(repo, digest).await;
        let uri = format!("/api/v1/scans?repository={repo}&digest={digest}");
        let basic = auth::basic("admin", ADMIN_PASSWORD);
        self.send_raw("GET", &uri, &[("authorization", &basic)], Body::empty()).await.json()
    }

    /// Pushes a small image (config + one layer) and tags it; returns the manifest digest and bytes.
    pub async fn push_image(&self, repo: &str, tag: &str, seed: &str) -> (Digest, Vec<u8>) {
        let layer_bytes = images::layer_tar_gz(&format!("app/{seed}.txt"), seed.as_bytes(), 0o644);
        let config_bytes = images::with_diff_ids(images::config_json(seed).as_bytes(), &[&layer_bytes]);
        let config = self.push_blob(repo, &config_bytes).await;
        let layer = self.push_blob(repo, &layer_bytes).await;
        let manifest = images::oci_manifest(&config, config_bytes.len(), &[(layer, layer_bytes.len())], None);
        self.put_manifest(repo, tag, images::OCI_MANIFEST, &manifest).await.expect(201, None);
        (sha256(&manifest), manifest)
    }
}

impl TestRegistry {
    /// Moves every replica's clock forward (requests go to the replicas in turn).
    pub fn advance_clocks(&self, by: std::time::Duration) {
        for app in std::iter::once(&self.app).chain(&self.others) {
            app.registry.clock().advance(by);
        }
    }

    /// The blob store's objects, bypassing the registry (to damage them in fsck tests).
    pub fn raw_objects(&self) -> std::sync::Arc<dyn object_store::ObjectStore> {
        let config = &self.app.config;
        match config.storage.backend {
            portcullis::config::StorageBackend::Local => {
                std::sync::Arc::new(object_store::local::LocalFileSystem::new_with_prefix(config.blob_dir()).unwrap())
            }
            portcullis::config::StorageBackend::S3 => {
                let options = portcullis::storage::s3::S3Options::try_from(&config.storage.s3).unwrap();
                portcullis::storage::s3::store(&options).unwrap()
            }
        }
    }
}
