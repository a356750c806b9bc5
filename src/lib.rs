//! Portcullis: a hardened private OCI container registry.
//!
//! Layers point one way: `http` → `domain` → `storage` (blob bytes) and `metadata` (rows, the
//! source of truth). [`App::build`] wires them from a [`Config`]; `main` and the tests both use it.
//!
//! The rule (checked by `tests/layering.rs`): a module imports only the modules below it.
//! - `model`: the shared vocabulary; imports nothing of ours. `config`: imports only `model`.
//! - `storage` and `metadata`: only `model`. `domain`: `storage`, `metadata`, `model`.
//! - `auth`: `metadata`, `model`. `scan`: `domain`, `metadata`, `storage`, `model`.
//! - `notify` (webhook deliveries): `domain`, `model`.
//! - `http`: `domain`, `auth`, `model`. `server` (the listener): `http`, `model`. `tls`: `config`, `model`.
//! - `client` (the `portcullis` client commands, over HTTP): `model` only.
//! - This file, `main.rs` and `bin/` are the wiring: they may use every module.

pub mod auth;
pub mod client;
pub mod config;
pub mod domain;
pub mod http;
pub mod metadata;
pub mod model;
pub mod notify;
pub mod scan;
pub mod server;
pub mod storage;
pub mod tls;

use std::sync::Arc;

use anyhow::Context;
use secrecy::ExposeSecret;
use sha2::Digest as _;

use auth::service::AuthSettings;
use auth::AuthService;
pub use config::Config;
use domain::{Clock, Limits, Registry};
use metadata::sql::SqlMetadata;
use storage::BlobStore;

/// The process's Prometheus recorder, installed by the first app built with metrics on (the
/// `metrics` facade has one recorder per process; apps built later in the same process, as in
/// tests, share it). A thread drains its histograms every few seconds, so samples never pile up
/// between scrapes.
fn metrics_recorder() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use model::metrics as m;
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let builder = PrometheusBuilder::new()
        .set_buckets(m::SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(m::SCAN_DURATION.into()), m::LONG_SECONDS_BUCKETS)?
        .set_buckets_for_metric(Matcher::Full(m::GC_DURATION.into()), m::LONG_SECONDS_BUCKETS)?;
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    if HANDLE.set(handle.clone()).is_err() {
        // Another app of this process won the race; its recorder is the one installed.
        return Ok(HANDLE.get().expect("set").clone());
    }
    metrics::set_global_recorder(recorder).context("installing the metrics recorder")?;
    m::describe();
    metrics::gauge!(m::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    let upkeep = handle.clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(5));
            upkeep.run_upkeep();
        })
        .context("starting the metrics upkeep thread")?;
    Ok(handle)
}

/// A built registry: configuration, domain service and HTTP router.
pub struct App {
    pub config: Config,
    pub registry: Registry,
    pub auth: Arc<AuthService>,
    pub router: axum::Router,
    /// This process's name among replicas (the holder of its leases).
    pub instance: String,
    meta: Arc<SqlMetadata>,
}

impl App {
    /// Opens storage and metadata (running migrations) and builds the router.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        // A hook run as another user must pass through the data directory to its layout.
        private_dir(&config.data_dir, if config.scan.hook_user.is_some() { 0o711 } else { 0o700 })?;
        let blobs = open_blobs(&config)?;
        let meta = Arc::new(open_metadata(&config).await?);
        let limits = Limits {
            max_manifest_bytes: config.limits.max_manifest_bytes,
            upload_expiry: config.uploads.expiry,
            max_page: config.limits.max_page,
            max_references: config.limits.max_references,
            max_index_reach: config.limits.max_index_reach,
            upload_sessions: metadata::SessionCaps {
                per_principal: config.uploads.max_per_principal,
                per_repository: config.uploads.max_per_repository,
            },
            gc_grace: config.gc.grace,
            gc_lease: config.gc.lease,
        };
        // The one clock of this app: everything that decides expiry holds a clone.
        let clock = Clock::system();
        let registry =
            Registry::new(meta.clone(), blobs, limits).with_scan_poll(config.scan.poll).with_clock(clock.clone());
        let settings = AuthSettings {
            issuer: config.auth.issuer.clone().unwrap_or_else(|| config.public_url()),
            service: config.auth.service.clone(),
            access_lifetime: config.auth.token_lifetime,
            refresh_lifetime: config.auth.refresh_lifetime,
            free_failures: config.auth.login_free_failures,
            backoff_base: config.auth.login_backoff,
            backoff_max: config.auth.login_backoff_max,
            password_cache: config.auth.password_cache,
            max_token_lifetime: config.auth.max_token_lifetime,
            max_robot_lifetime: config.auth.max_robot_lifetime,
            console_idle: config.auth.console_idle_timeout,
            console_max_age: config.auth.console_max_age,
        };
        let auth = Arc::new(
            AuthService::new(meta.clone(), &config.signing_key_path(), &config.auth.verify_keys, settings)
                .with_context(|| format!("loading token signing key {}", config.signing_key_path().display()))?
                .with_clock(clock),
        );
        // The key that derives webhook secrets and seals the audit log's head comes from the
        // token signing key, which every replica already shares and the database never holds.
        let signing_key = std::fs::read(config.signing_key_path())
            .with_context(|| format!("reading {}", config.signing_key_path().display()))?;
        let registry_key = sha2::Sha256::digest([b"portcullis-registry-key\n".as_slice(), &signing_key].concat());
        let registry = registry.with_registry_key(registry_key.to_vec());
        let registry = if config.scan.attest {
            let attestation_key = auth::jwt::p256_key_file(&config.attestation_key_path())
                .and_then(|pem| domain::attestations::Attestor::from_pem(&pem))
                .with_context(|| format!("loading the attestation key {}", config.attestation_key_path().display()))?;
            registry.with_attestor(attestation_key)
        } else {
            registry
        };
        let limits =
            http::rate::RateLimits::new(config.server.rate_limit_per_address, config.server.rate_limit_per_principal);
        let router = http::router(http::AppState {
            registry: registry.clone(),
            auth: auth.clone(),
            public_url: config.public_url(),
            limits: Arc::new(limits),
            metrics: config.metrics.enabled.then(metrics_recorder).transpose()?,
            scrape_token: config.metrics.scrape_token_digest().map(Arc::new),
            access_log: config.server.access_log,
            webhooks_allow_private: config.webhooks.allow_private_targets,
            vulndb_max_bytes: config.scan.vulndb_max_bytes,
            spool_dir: Arc::from(config.data_dir.as_path()),
            vulndb_imports: Arc::new(tokio::sync::Semaphore::new(1)),
            dev_ca: config.dev_ca_certificate().map(Arc::from),
        });
        let instance = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
        Ok(App { config, registry, auth, router, instance, meta })
    }

    /// The metadata store (leases and checks in tests and tools).
    pub fn metadata(&self) -> &Arc<SqlMetadata> {
        &self.meta
    }

    /// Sweeps expired uploads every `uploads.sweep_interval` until the task is dropped; with several
    /// replicas on one database, the one holding the sweep's lease does it.
    pub fn spawn_upload_sweeper(&self) -> tokio::task::JoinHandle<()> {
        let registry = self.registry.clone();
        let every = self.config.uploads.sweep_interval;
        let holder = self.instance.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                match registry.expire_uploads_leased(&holder, every).await {
                    Ok(None | Some(0)) => {}
                    Ok(Some(n)) => tracing::info!(removed = n, "expired upload sessions removed"),
                    Err(e) => tracing::warn!(error = %e, "upload sweep failed"),
                }
            }
        })
    }

    /// Chains new audit records every second, and drops those past `audit.retention` every hour
    /// (on one replica at a time: the `audit-retention` lease), until the task is dropped.
    pub fn spawn_audit_chainer(&self) -> tokio::task::JoinHandle<()> {
        let registry = self.registry.clone();
        let retention = self.config.audit.retention;
        let holder = self.instance.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_expiry: Option<std::time::Instant> = None;
            loop {
                tick.tick().await;
                if let Err(e) = registry.chain_audit().await {
                    tracing::warn!(error = %e, "chaining audit records failed");
                }
                let due = last_expiry.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(3600));
                if !retention.is_zero() && due {
                    last_expiry = Some(std::time::Instant::now());
                    match registry.expire_audit_leased(&holder, retention).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(dropped = n, "audit records past audit.retention dropped"),
                        Err(e) => tracing::warn!(error = %e, "dropping old audit records failed"),
                    }
                }
            }
        })
    }

    /// Sends webhook deliveries (and turns new audit records into them) until the task is dropped.
    pub fn spawn_webhook_sender(&self) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let w = &self.config.webhooks;
        let roots = match &w.ca_file {
            Some(file) => {
                let pem =
                    std::fs::read(file).with_context(|| format!("reading webhooks.ca_file {}", file.display()))?;
                reqwest::Certificate::from_pem_bundle(&pem)
                    .with_context(|| format!("webhooks.ca_file {} holds no PEM certificate", file.display()))?
            }
            None => Vec::new(),
        };
        let settings = notify::Settings {
            source: self.config.public_url(),
            allow_private: w.allow_private_targets,
            roots,
            timeout: w.timeout,
            backoff: w.backoff,
            max_age: w.max_age,
        };
        Ok(notify::spawn(self.registry.clone(), settings, std::time::Duration::from_secs(1)))
    }

    /// Collects garbage every `gc.interval` (off when zero) until the task is dropped; with several
    /// replicas, the one that takes the `gc` lease does it.
    pub fn spawn_collector(&self) -> Option<tokio::task::JoinHandle<()>> {
        let every = self.config.gc.interval;
        if every.is_zero() {
            return None;
        }
        let registry = self.registry.clone();
        let holder = self.instance.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tick.tick().await;
                match registry.collect_garbage_scheduled(&holder).await {
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
                }
            }
        }))
    }

    /// Runs the scan workers (with the configured policy, sandbox and hook) and the rescanner until
    /// the task is dropped.
    pub fn spawn_scan_worker(&self) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let c = &self.config.scan;
        let program = match &c.sandbox_program {
            Some(p) => p.clone(),
            None => std::env::current_exe().context("finding this program, to run it as the scan sandbox")?,
        };
        let settings = scan::worker::ScanSettings {
            vulndb: scan::vulndb::VulnDb::default(),
            vulnerability_threshold: c.vulnerability_threshold,
            allowlist: c.allowlist.clone(),
            policy: c.policy(),
            hook: c.hook.clone(),
            hook_timeout: c.hook_timeout,
            hook_user: c.hook_user.as_deref().map(str::parse).transpose().map_err(|e: String| anyhow::anyhow!(e))?,
            work_dir: self.config.data_dir.join("scan-work"),
            lease: c.lease,
            max_attempts: c.max_attempts,
            workers: c.workers,
            sandbox: scan::sandbox::Sandbox { program, limits: c.limits.clone() },
            max_references: self.config.limits.max_references,
            sbom: self.config.scan.sbom,
            rescan_interval: c.rescan_interval,
            rescan_workers: c.rescan_workers,
            poll: c.poll,
        };
        let registry = self.registry.clone();
        let osv_dir = c.osv_dir.clone();
        let max_bytes = c.vulndb_max_bytes;
        Ok(tokio::spawn(async move {
            // The configured directory is imported first (unchanged records change nothing), so
            // the first verdicts already use it.
            if let Some(dir) = osv_dir {
                let export = domain::vulndb::Export::lenient();
                match import_vulndb(&registry, export, vec![dir.clone()], max_bytes, "system:config").await {
                    Ok((report, unreadable)) => {
                        tracing::info!(
                            dir = %dir.display(),
                            version = report.count.state.version,
                            added = report.count.added,
                            changed = report.count.changed,
                            skipped = report.skipped,
                            unreadable = unreadable.len(),
                            "scan.osv_dir imported"
                        );
                        for why in unreadable {
                            tracing::warn!(file = %why, "scan.osv_dir: a file that is not an OSV record was skipped");
                        }
                    }
                    Err(e) => tracing::error!(dir = %dir.display(), error = %e, "cannot import scan.osv_dir"),
                }
            }
            // No verdict before the stored data is loaded: a scan with none would pass everything.
            while let Err(e) = settings.vulndb.reload_if_changed(&registry).await {
                tracing::error!(error = %e, "cannot load the vulnerability data; scans wait for it");
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            }
            // The workers and the rescanner share the loaded vulnerability data (`settings.vulndb`).
            let rescans = scan::rescan::run(registry.clone(), settings.clone());
            tokio::join!(scan::worker::run(registry, settings), rescans);
        }))
    }

    /// Proves that the database and the blob store are reachable and writable (`check-config`).
    pub async fn check(&self) -> anyhow::Result<()> {
        self.meta.check_writable().await.context("the database does not accept writes")?;
        self.registry.blobs().check_writable().await.context("the blob store does not accept writes")?;
        Ok(())
    }

    /// Flushes and closes the database.
    pub async fn close(&self) {
        self.meta.close().await;
    }
}

/// Imports OSV exports (zip files, JSON files, or directories of them) as `portcullis vulndb
/// import` and `scan.osv_dir` do: read off the async threads, then one transaction.
/// Also returns why files were skipped, when `export` reads leniently.
pub async fn import_vulndb(
    registry: &domain::Registry,
    mut export: domain::vulndb::Export,
    paths: Vec<std::path::PathBuf>,
    max_bytes: u64,
    actor: &str,
) -> anyhow::Result<(domain::vulndb::ImportReport, Vec<String>)> {
    let export = tokio::task::spawn_blocking(move || {
        for path in &paths {
            export.add_path(path, max_bytes)?;
        }
        Ok::<_, domain::Error>(export)
    })
    .await??;
    let unreadable = export.unreadable_names.clone();
    Ok((registry.import_vulnerabilities(export, actor).await?, unreadable))
}

/// Creates the data directory readable by this user only, and makes an existing one so: it holds
/// the database, the blobs (quarantined ones too) and the keys.
/// Takes `<database>.lock` (an exclusive `flock`) beside the SQLite database a server is about to
/// use (the embedded `<data_dir>/portcullis.db`, `database.path`, or a `sqlite:` URL), so that a
/// second server on the same database refuses to start instead of writing the same file and
/// scanning the same images. Replicas on PostgreSQL take no lock. The lock goes with the process
/// (a `kill -9` releases it).
pub fn lock_data_dir(config: &Config) -> anyhow::Result<Option<std::fs::File>> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let database = match &config.database.url {
        None => config.database_path(),
        Some(url) => {
            let url = secrecy::ExposeSecret::expose_secret(url);
            let Some(rest) = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) else {
                return Ok(None);
            };
            let path = rest.split('?').next().unwrap_or("");
            if path.is_empty() || path == ":memory:" {
                return Ok(None);
            }
            std::path::PathBuf::from(path)
        }
    };
    private_dir(&config.data_dir, if config.scan.hook_user.is_some() { 0o711 } else { 0o700 })?;
    let mut name = database.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    let path = database.with_file_name(name);
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => {}
        Err(rustix::io::Errno::WOULDBLOCK) => {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            anyhow::bail!(
                "another Portcullis is already serving the SQLite database {} (it holds {}{}); two servers would write one database and scan every image twice. Stop it first, or run replicas on PostgreSQL (database.url)",
                database.display(),
                path.display(),
                if holder.is_empty() { String::new() } else { format!(", process {holder}") },
            );
        }
        Err(e) => return Err(anyhow::anyhow!("locking {}: {e}", path.display())),
    }
    file.set_len(0).and_then(|()| write!(file, "{}", std::process::id())).ok();
    Ok(Some(file))
}

fn private_dir(dir: &std::path::Path, wanted: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(wanted)
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    let mode =
        std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?.permissions().mode() & 0o777;
    if mode & !wanted != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "the data directory was open to others; narrowing it");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(wanted))
            .with_context(|| format!("setting {} to {wanted:o}", dir.display()))?;
    }
    Ok(())
}

/// The blob store the configuration names.
fn open_blobs(config: &Config) -> anyhow::Result<BlobStore> {
    match config.storage.backend {
        config::StorageBackend::Local => BlobStore::local_with(config.blob_dir(), config.storage.direct_writes)
            .with_context(|| format!("opening blob store {}", config.blob_dir().display())),
        config::StorageBackend::S3 => BlobStore::s3(&config.storage.s3).context("opening the S3 blob store"),
    }
}

/// The database the configuration names, migrated.
async fn open_metadata(config: &Config) -> anyhow::Result<SqlMetadata> {
    match config.database_url()? {
        // The URL may hold a password: it is never part of an error message.
        Some(url) => SqlMetadata::connect(url.expose_secret(), config.database.max_connections)
            .await
            .context("opening the database at database.url"),
        // The operator starting the server needs the detail a client never sees (a failed
        // migration, an unreadable file).
        None => SqlMetadata::open(&config.database_path())
            .await
            .map_err(|e| match e {
                model::Error::Internal(detail) => anyhow::anyhow!(detail),
                e => anyhow::anyhow!(e),
            })
            .with_context(|| format!("opening database {}", config.database_path().display())),
    }
}

// Config types hold plain values; what turns them into the settings of higher modules is wiring.

impl config::ScanConfig {
    pub fn policy(&self) -> scan::Policy {
        let rules = [
            (scan::Rule::RootUser, self.root_user),
            (scan::Rule::SecretInEnv, self.secret_in_env),
            (scan::Rule::SecretInFile, self.secret_in_file),
            (scan::Rule::SecretInMetadata, self.secret_in_metadata),
            (scan::Rule::SetuidFile, self.setuid_file),
            (scan::Rule::WorldWritable, self.world_writable),
            (scan::Rule::ExposedSsh, self.exposed_ssh),
            (scan::Rule::ImageTooLarge, self.image_too_large),
            (scan::Rule::Vulnerability, self.vulnerability),
            (scan::Rule::VulnerabilityLow, self.vulnerability_low),
        ];
        scan::Policy { rules: rules.into_iter().collect(), max_image_bytes: self.max_image_bytes }
    }
}

impl Config {
    /// The listener's settings, with the connection cap fitted to `open_files` (the process's
    /// limit on open files, less what the database, blobs and scans need).
    pub fn server_settings(&self, open_files: u64) -> crate::server::ServerSettings {
        let s = &self.server;
        let fits = open_files.saturating_sub(256).max(64) as usize;
        crate::server::ServerSettings {
            header_timeout: s.header_timeout,
            idle_timeout: s.idle_timeout,
            body_min_rate: crate::server::body_rate::MinRate {
                bytes_per_second: s.body_min_rate,
                window: s.body_rate_window,
            },
            max_connections: s.max_connections.min(fits),
            max_connections_per_address: s.max_connections_per_address,
            proxy_protocol: s.proxy_protocol,
            // Checked in `validate`.
            trusted_proxies: s.trusted_proxies.iter().filter_map(|p| p.parse().ok()).collect(),
        }
    }
}

impl TryFrom<&config::S3Config> for storage::s3::S3Options {
    type Error = anyhow::Error;
    fn try_from(c: &config::S3Config) -> anyhow::Result<Self> {
        let secret_access_key = match (&c.secret_access_key, &c.secret_access_key_file) {
            (Some(secret), _) => Some(secret.expose_secret().into()),
            (None, Some(file)) => Some(config::read_secret_file(file)?.expose_secret().into()),
            (None, None) => None,
        };
        Ok(storage::s3::S3Options {
            bucket: c.bucket.clone(),
            endpoint: c.endpoint.clone(),
            region: c.region.clone(),
            path_style: c.path_style,
            access_key_id: c.access_key_id.clone(),
            secret_access_key,
            allow_http: c.allow_http,
            prefix: c.prefix.clone(),
            part_size: c.part_size,
            max_retries: c.max_retries,
            retry_timeout: c.retry_timeout,
        })
    }
}
