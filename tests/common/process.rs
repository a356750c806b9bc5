//! A real `portcullis serve` process on a loopback port, for end-to-end and crash tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Self::start_on(data_dir, free_port())
    }

    pub fn start_on(data_dir: &Path, port: u16) -> Server {
        Self::start_with_config(data_dir, port, None)
    }

    /// Starts with a configuration file (besides the environment the harness sets).
    pub fn start_with_config(data_dir: &Path, port: u16, config: Option<&Path>) -> Server {
        let env = super::backends::for_data_dir(data_dir).map(|name| super::backends::env(&name)).unwrap_or_default();
        Self::start_with_env(data_dir, port, config, &env)
    }

    /// Starts on the test's backends (PostgreSQL and S3 under `TESTBED_BACKEND=scaleout`) with extra
    /// environment variables.
    pub fn start_with_extra_env(data_dir: &Path, port: u16, extra: &[(String, String)]) -> Server {
        let mut env =
            super::backends::for_data_dir(data_dir).map(|name| super::backends::env(&name)).unwrap_or_default();
        env.extend(extra.iter().cloned());
        Self::start_with_env(data_dir, port, None, &env)
    }

    /// Starts with a configuration file and extra environment variables (which win).
    pub fn start_with_env(data_dir: &Path, port: u16, config: Option<&Path>, env: &[(String, String)]) -> Server {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data_dir.join("server.log")).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        if let Some(file) = config {
            command.env("PORTCULLIS_CONFIG", file);
        }
        let child = command
            .arg("serve")
            .env("PORTCULLIS_LISTEN", format!("127.0.0.1:{port}"))
            .env("PORTCULLIS_DATA_DIR", data_dir)
            .env("PORTCULLIS_LOG", std::env::var("PORTCULLIS_LOG").unwrap_or_else(|_| "info".into()))
            .env("PORTCULLIS_ADMIN_PASSWORD", super::ADMIN_PASSWORD)
            // As in test_config: attachments off unless a test turns them on (its env wins).
            .env("PORTCULLIS_SCAN_ATTEST", "false")
            .env("PORTCULLIS_SCAN_SBOM", "false")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("portcullis binary starts");
        let mut server = Server { child: Some(child), port, data_dir: data_dir.to_path_buf() };
        // The start-up line is awaited when the log level lets it through.
        let level = env
            .iter()
            .rev()
            .find(|(k, _)| k == "PORTCULLIS_LOG")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var("PORTCULLIS_LOG").ok())
            .unwrap_or_else(|| "info".into());
        let logged = ["info", "debug", "trace"].iter().any(|l| level.contains(l));
        if !server.wait_ready(logged) {
            // The port was taken between free_port() and the bind (another test's server, or a
            // connection's source port): another one. Never talk to whoever holds it.
            return Self::start_with_env(data_dir, free_port(), config, env);
        }
        server
    }

    pub fn ca_path(&self) -> PathBuf {
        self.data_dir.join("tls/ca.crt")
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A client that trusts only this registry's development CA.
    pub fn client(&self) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(self.ca_path()).unwrap()).unwrap();
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap()
    }

    /// A token from the real token endpoint, for `user` with `password`, covering `scopes`.
    pub async fn token(&self, user: &str, password: &str, scopes: &[&str]) -> String {
        let mut url = self.url("/token?service=portcullis");
        for s in scopes {
            url.push_str(&format!("&scope={}", url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()));
        }
        let reply = self.client().get(url).basic_auth(user, Some(password)).send().await.unwrap();
        assert_eq!(reply.status(), 200, "token request failed");
        reply.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
    }

    /// A client that sends an admin token for `scopes` with every request.
    pub async fn admin_client(&self, scopes: &[&str]) -> reqwest::Client {
        self.client_with_token(&self.token("admin", super::ADMIN_PASSWORD, scopes).await)
    }

    /// The scan state of `repo@digest` through the admin API, long-polling up to `wait`.
    pub async fn scan_state(&self, repo: &str, digest: &str, wait: &str) -> String {
        let url = self.url(&format!("/api/v1/scans?repository={repo}&digest={digest}&wait={wait}"));
        let reply = self.client().get(url).basic_auth("admin", Some(super::ADMIN_PASSWORD)).send().await.unwrap();
        reply.json::<serde_json::Value>().await.unwrap()["state"].as_str().unwrap_or("").to_owned()
    }

    /// An admin API call as `admin`; panics unless it succeeds. The JSON answer (null if none).
    pub async fn api(&self, method: reqwest::Method, path: &str, body: serde_json::Value) -> serde_json::Value {
        let reply = self
            .client()
            .request(method, self.url(path))
            .basic_auth("admin", Some(super::ADMIN_PASSWORD))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(reply.status().is_success(), "{path}: {}", reply.status());
        // (GET requests carry a JSON null body, which the API ignores.)
        reply.json().await.unwrap_or(serde_json::Value::Null)
    }

    /// Starts a registry with its data in `parent/data` (and `env`); also returns a `--cert-dir`.
    pub fn start_with_cert_dir(parent: &Path, env: &[(String, String)]) -> (Server, PathBuf) {
        let data = parent.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let server = Server::start_with_extra_env(&data, free_port(), env);
        let certs = server.cert_dir(parent);
        (server, certs)
    }

    /// Creates namespace `ns` and user `user` (password `<user>-password-long`, returned) with
    /// `role` in it, as admin.
    pub async fn member(&self, ns: &str, user: &str, role: &str) -> String {
        let password = format!("{user}-password-long");
        self.api(reqwest::Method::POST, "/api/v1/namespaces", serde_json::json!({"name": ns})).await;
        self.api(reqwest::Method::POST, "/api/v1/users", serde_json::json!({"username": user, "password": password}))
            .await;
        let membership = format!("/api/v1/namespaces/{ns}/members/{user}");
        self.api(reqwest::Method::PUT, &membership, serde_json::json!({"role": role})).await;
        password
    }

    /// A directory holding only the development CA's certificate, for `--cert-dir` options.
    pub fn cert_dir(&self, parent: &Path) -> PathBuf {
        let certs = parent.join("certs");
        std::fs::create_dir_all(&certs).unwrap();
        std::fs::copy(self.ca_path(), certs.join("ca.crt")).unwrap();
        certs
    }

    /// A client that trusts this registry's CA and sends `token` with every request.
    pub fn client_with_token(&self, token: &str) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        let ca = reqwest::Certificate::from_pem(&std::fs::read(self.ca_path()).unwrap()).unwrap();
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .default_headers(headers)
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap()
    }

    /// Waits until this server's own process listens (false if it could not bind its port). A
    /// process that exited is never mistaken for another one answering on the same port.
    fn wait_ready(&mut self, logged: bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        let log = |dir: &Path| std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
        while Instant::now() < deadline {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                self.child = None;
                let text = log(&self.data_dir);
                if text.contains(&format!("binding 127.0.0.1:{}", self.port)) {
                    return false;
                }
                panic!("portcullis exited ({status}) before it served on port {}:\n{text}", self.port);
            }
            let serving = !logged || log(&self.data_dir).contains("Portcullis is serving HTTPS");
            if serving && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() && self.ca_path().exists() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("portcullis did not start on port {}:\n{}", self.port, log(&self.data_dir));
    }

    /// kill -9: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            Command::new("kill").arg("-TERM").arg(c.id().to_string()).status().unwrap();
            let status = c.wait().unwrap();
            assert!(status.success(), "portcullis exited with {status}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Fails the test when `tool` is missing. Tests that need a tool or a service are marked
/// `#[ignore = "needs ..."]`, so a plain `cargo test` lists them as ignored rather than passing
/// them; `scripts/test.sh` installs everything and runs them with `--include-ignored`. A test that
/// runs never passes without what it needs.
pub fn require_tool(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(found, "{tool} is not installed: run the tests through scripts/test.sh, which installs it");
}

/// Pushes a blob through a real socket in `chunk`-sized PATCHes; `Ok` only after a 201.
pub async fn push_blob_chunked(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    data: &[u8],
    chunk: usize,
) -> Result<portcullis::domain::Digest, String> {
    let started = client.post(format!("{base}/v2/{repo}/blobs/uploads/")).send().await.map_err(|e| e.to_string())?;
    if started.status() != 202 {
        return Err(format!("POST answered {}", started.status()));
    }
    let mut location = started.headers()["location"].to_str().unwrap().to_owned();
    let mut offset = 0;
    for part in data.chunks(chunk.max(1)) {
        let reply = client
            .patch(format!("{base}{location}"))
            .header("content-range", format!("{}-{}", offset, offset + part.len() - 1))
            .body(part.to_vec())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if reply.status() != 202 {
            return Err(format!("PATCH answered {}", reply.status()));
        }
        location = reply.headers()["location"].to_str().unwrap().to_owned();
        offset += part.len();
    }
    let digest = super::sha256(data);
    let put = client.put(format!("{base}{location}?digest={digest}")).send().await.map_err(|e| e.to_string())?;
    if put.status() != 201 {
        return Err(format!("PUT answered {}", put.status()));
    }
    Ok(digest)
}

/// Pushes config, layer (in 256 KiB chunks) and manifest as `repo:tag`; returns the manifest.
pub async fn push_image(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    layer: &[u8],
) -> Result<Vec<u8>, String> {
    let config_bytes = super::images::with_diff_ids(super::images::config_json(tag).as_bytes(), &[layer]);
    let config = push_blob_chunked(client, base, repo, &config_bytes, 1 << 20).await?;
    let layer_digest = push_blob_chunked(client, base, repo, layer, 256 * 1024).await?;
    let manifest = super::images::oci_manifest(&config, config_bytes.len(), &[(layer_digest, layer.len())], None);
    let reply = client
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", super::images::OCI_MANIFEST)
        .body(manifest.clone())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if reply.status() != 201 {
        return Err(format!("manifest PUT answered {}", reply.status()));
    }
    Ok(manifest)
}

/// Pushes `repo:tag`: one small tar layer and a config that runs as `user` (`None`: as root, which
/// the default policy quarantines). The manifest PUT carries `X-Request-Id: push-<tag>`. Returns
/// the manifest's digest.
pub async fn push_small_image(
    client: &reqwest::Client,
    base: &str,
    repo: &str,
    tag: &str,
    user: Option<&str>,
) -> String {
    use sha2::Digest as _;
    let layer = super::images::layer_tar_gz(&format!("app/{tag}"), tag.as_bytes(), 0o755);
    let mut config = serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/app"]},
                                        "rootfs": {"type": "layers", "diff_ids": []}});
    if let Some(u) = user {
        config["config"]["User"] = u.into();
    }
    let config = super::images::with_diff_ids(&serde_json::to_vec(&config).unwrap(), &[&layer]);
    let config_digest = push_blob_chunked(client, base, repo, &config, 1 << 20).await.unwrap();
    let layer_digest = push_blob_chunked(client, base, repo, &layer, 1 << 20).await.unwrap();
    let manifest = super::images::oci_manifest(&config_digest, config.len(), &[(layer_digest, layer.len())], None);
    let reply = client
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", super::images::OCI_MANIFEST)
        .header("x-request-id", format!("push-{tag}"))
        .body(manifest.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 201);
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(&manifest)))
}

/// `len` pseudo-random bytes from `seed` (incompressible, reproducible).
pub fn layer_bytes(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Every blob in the store of the registry whose data lives in `data_dir` (files under `blobs/`
/// on local disk, or its S3 prefix in scale-out mode), with its size.
pub async fn stored_blobs(data_dir: &Path) -> std::collections::BTreeMap<String, u64> {
    use futures::TryStreamExt;
    let blobs: Vec<_> = store_of(data_dir).list_blobs().try_collect().await.unwrap();
    blobs.into_iter().map(|b| (b.digest.to_string(), b.size)).collect()
}

fn store_of(data_dir: &Path) -> portcullis::storage::BlobStore {
    match super::backends::for_data_dir(data_dir) {
        Some(name) => portcullis::storage::BlobStore::s3(&super::backends::s3_config(&name)).unwrap(),
        None => portcullis::storage::BlobStore::local(data_dir.join("blobs")).unwrap(),
    }
}

/// Verifies that every blob object of the registry whose data lives in `data_dir` (on local disk,
/// or in its S3 prefix in scale-out mode) hashes to its name; returns how many were checked.
pub async fn verify_blobs(data_dir: &Path) -> usize {
    verify_store(&store_of(data_dir)).await
}

/// Reads every blob of `store` back and checks its digest; returns how many were checked.
pub async fn verify_store(store: &portcullis::storage::BlobStore) -> usize {
    use futures::TryStreamExt;
    let blobs: Vec<_> = store.list_blobs().try_collect().await.unwrap();
    for portcullis::storage::StoredBlob { digest, size, .. } in &blobs {
        let mut hasher = portcullis::domain::digest::DigestHasher::new(digest.algorithm());
        let mut stream = store.read(digest, None).await.unwrap();
        let mut read = 0u64;
        while let Some(chunk) = stream.try_next().await.unwrap() {
            hasher.update(&chunk);
            read += chunk.len() as u64;
        }
        assert_eq!(&hasher.finish(), digest, "blob object {digest} does not match its digest");
        assert_eq!(read, *size, "blob object {digest} is not as long as listed");
    }
    blobs.len()
}
