//! Configuration: one typed tree from embedded defaults, an optional TOML file and the environment.
//!
//! Rules:
//! - Precedence: defaults < file < `PORTCULLIS_*` environment variables.
//! - Every key `section.key` is also `PORTCULLIS_SECTION_KEY`; top-level keys are `PORTCULLIS_KEY`.
//! - Unknown keys and invalid values stop start-up with a message that names the key.
//! - [`Config::load`] validates once; the rest of the program trusts the result.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::model::{default_action, Rule, RuleAction, DEFAULT_MAX_IMAGE_BYTES};

mod describe;

/// Environment variables with our prefix that are not configuration keys. (The client commands read `PORTCULLIS_URL`, `_USERNAME`, `_PASSWORD`, `_CA_FILE` and
/// `_CLIENT_CONFIG`, which a server in the same environment must not take for keys.)
const NOT_CONFIG: &[&str] = &[
    "config",
    "log",
    "admin_password",
    "admin_password_file",
    "url",
    "username",
    "password",
    "ca_file",
    "client_config",
    // scripts/compose-secrets.sh, scripts/compose-topology.sh and the compose `.env`.
    "uid",
    "gid",
    "host",
    "bin",
    "env_file",
];
const SECTIONS: &[&str] = &[
    "server", "tls", "storage", "database", "uploads", "limits", "auth", "scan", "gc", "metrics", "audit", "webhooks",
];

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address of the TLS listener: `ip:port`, or `host:port` resolved once at start-up.
    #[serde(deserialize_with = "listen_address")]
    pub listen: SocketAddr,
    /// Where the embedded defaults keep the database, blobs and generated keys.
    pub data_dir: PathBuf,
    /// The URL clients use to reach the registry; defaults to `https://<listen>`.
    pub public_url: Option<String>,
    /// `text` or `json` logs.
    pub log_format: LogFormat,
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub storage: StorageConfig,
    pub database: DatabaseConfig,
    pub uploads: UploadsConfig,
    pub limits: LimitsConfig,
    pub auth: AuthConfig,
    pub scan: ScanConfig,
    pub gc: GcConfig,
    pub metrics: MetricsConfig,
    pub audit: AuditConfig,
    pub webhooks: WebhooksConfig,
    /// The host name `listen` was written with (`myhost:5000`), which the default `public_url`
    /// and the development certificate use rather than the address it resolved to.
    #[serde(skip)]
    pub listen_host: Option<String>,
}

/// Webhook deliveries (`src/notify/mod.rs` states what they guarantee).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// Let webhooks reach loopback, private and link-local addresses (off: a registry must not
    /// become a way into its own network).
    pub allow_private_targets: bool,
    /// PEM file of extra CAs to trust for webhook targets (besides the system's roots).
    pub ca_file: Option<PathBuf>,
    /// One attempt's limit (connect, send, answer).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The first retry's wait; each next one waits twice as long (at most an hour).
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// A delivery still failing this long after its event is given up (`failed`).
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            allow_private_targets: false,
            ca_file: None,
            timeout: Duration::from_secs(10),
            backoff: Duration::from_secs(2),
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

/// The stored audit log (`src/domain/audit.rs`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Records older than this are dropped from the start of the chain (what remains still
    /// verifies); `0s` keeps every record.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
}

/// `GET /metrics` (Prometheus text format) on the TLS port.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Record metrics and serve `/metrics` (administrators, and the scrape credential if set).
    pub enabled: bool,
    /// The hex SHA-256 of a bearer token that may read `/metrics` and nothing else (for
    /// Prometheus' `authorization` setting): `printf %s "$TOKEN" | sha256sum`. The token itself is
    /// never stored; it should be long and random (32 bytes or more).
    pub scrape_token_sha256: Option<String>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig { enabled: true, scrape_token_sha256: None }
    }
}

impl MetricsConfig {
    /// The scrape token's SHA-256, validated by [`Config::load`].
    pub fn scrape_token_digest(&self) -> Option<[u8; 32]> {
        let hex = self.scrape_token_sha256.as_deref()?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex.trim(), &mut out).ok()?;
        Some(out)
    }
}

/// Online garbage collection (`src/domain/gc.rs` states what it guarantees).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// How often a collection runs in the server; `0s` turns the schedule off (`POST /api/v1/gc`
    /// and `portcullis gc` still work).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// What nobody has touched for this long, and nothing references, may be collected: a client
    /// that learned a blob exists (HEAD, mount, upload) has this long to push the manifest that
    /// references it.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// How long a collection holds the `gc` lease without renewing it (it renews between batches):
    /// when its process dies, another collection can start this long after.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval: crate::model::DEFAULT_GC_INTERVAL,
            grace: crate::model::DEFAULT_GC_GRACE,
            lease: crate::model::DEFAULT_GC_LEASE,
        }
    }
}

/// Scan-on-push: the built-in rules (`block`, `warn` or `off` each), the external hook, and jobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    pub root_user: RuleAction,
    pub secret_in_env: RuleAction,
    pub secret_in_file: RuleAction,
    /// Secrets elsewhere in an image config (labels, history) or in a manifest's annotations.
    pub secret_in_metadata: RuleAction,
    pub setuid_file: RuleAction,
    pub world_writable: RuleAction,
    pub exposed_ssh: RuleAction,
    pub image_too_large: RuleAction,
    /// Known vulnerabilities at or above `vulnerability_threshold` (and, separately, below it).
    pub vulnerability: RuleAction,
    pub vulnerability_low: RuleAction,
    pub vulnerability_threshold: crate::model::Severity,
    /// A directory of OSV records (JSON or zip exports, searched recursively), imported into the
    /// database at start (as `portcullis vulndb import` does); the data can also be imported
    /// later without a restart (`POST /api/v1/vulndb`).
    pub osv_dir: Option<PathBuf>,
    /// The most bytes of vulnerability data one import may hold (uploaded, and inflated).
    pub vulndb_max_bytes: u64,
    /// How often every passed image is matched again against the vulnerability data even when it
    /// has not changed (allowlist entries expire, policies change); 0 turns it off. Images are
    /// matched again at once whenever new data is imported.
    #[serde(with = "humantime_serde")]
    pub rescan_interval: Duration,
    /// Passed images matched again at once (each match is CPU only; a quarantine also writes an
    /// audit record and a signed verdict).
    pub rescan_workers: usize,
    /// Vulnerability ids (or aliases such as CVE ids) to ignore, each until a time (Unix seconds) or for good.
    pub allowlist: Vec<crate::model::Allow>,
    /// Size above which `image_too_large` fires.
    pub max_image_bytes: u64,
    /// An external scanner: argv (no shell). Exit 0 passes, 1 fails, anything else is an error.
    pub hook: Option<Vec<String>>,
    #[serde(with = "humantime_serde")]
    pub hook_timeout: Duration,
    /// `uid:gid` to run the hook as (the registry must run as root for it); the hook then cannot
    /// read the registry's files, only the layout handed to it.
    pub hook_user: Option<String>,
    /// How long a claimed job is held before another worker may take it over.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Attempts before a failing job ends in `error`.
    pub max_attempts: u32,
    /// How often an idle scan worker, and a request waiting for a verdict, look in the database
    /// for what another replica did (this replica's own pushes and verdicts wake them at once).
    #[serde(with = "humantime_serde")]
    pub poll: Duration,
    /// Scans that run at once on this replica (each in its own sandbox process).
    pub workers: usize,
    /// The program run as the scan sandbox (`<program> scan-sandbox`); defaults to this one.
    pub sandbox_program: Option<PathBuf>,
    /// The budgets of one scan; hitting one ends the scan in `error`.
    pub limits: crate::model::ScanLimits,
    /// Whether the SBOM (SPDX 2.3) of each scanned image is attached to it as a referrer.
    pub sbom: bool,
    /// Whether each verdict (and release) is signed and attached to the image as an in-toto
    /// attestation.
    pub attest: bool,
    /// The key (PEM, ECDSA P-256) that signs scan verdicts; defaults to
    /// `<data_dir>/keys/attestation.pem`, created on first start. Replicas must share it.
    pub attestation_key: Option<PathBuf>,
}

impl Default for ScanConfig {
    fn default() -> Self {
        ScanConfig {
            root_user: default_action(Rule::RootUser),
            secret_in_env: default_action(Rule::SecretInEnv),
            secret_in_file: default_action(Rule::SecretInFile),
            secret_in_metadata: default_action(Rule::SecretInMetadata),
            setuid_file: default_action(Rule::SetuidFile),
            world_writable: default_action(Rule::WorldWritable),
            exposed_ssh: default_action(Rule::ExposedSsh),
            image_too_large: default_action(Rule::ImageTooLarge),
            vulnerability: default_action(Rule::Vulnerability),
            vulnerability_low: default_action(Rule::VulnerabilityLow),
            vulnerability_threshold: crate::model::Severity::High,
            osv_dir: None,
            vulndb_max_bytes: 1024 * 1024 * 1024,
            rescan_interval: Duration::from_secs(24 * 3600),
            rescan_workers: 8,
            allowlist: Vec::new(),
            max_image_bytes: DEFAULT_MAX_IMAGE_BYTES,
            hook: None,
            hook_timeout: Duration::from_secs(600),
            hook_user: None,
            lease: Duration::from_secs(300),
            max_attempts: 5,
            poll: crate::model::DEFAULT_SCAN_POLL,
            workers: 2,
            sandbox_program: None,
            limits: crate::model::ScanLimits::default(),
            attestation_key: None,
            sbom: true,
            attest: true,
        }
    }
}

// `ScanConfig::policy` and `Config::server_settings` live in `lib.rs`, the wiring, so that this
// module imports nothing but `model`.

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// The `service` of the token protocol (the JWT audience).
    pub service: String,
    /// The JWT issuer; defaults to the public URL.
    pub issuer: Option<String>,
    /// Lifetime of access tokens. Long enough for a 5 GiB layer on a slow link; revocation does
    /// not wait for it, since every use re-checks the account.
    #[serde(with = "humantime_serde")]
    pub token_lifetime: Duration,
    /// Lifetime of refresh tokens (`docker login` keeps one).
    #[serde(with = "humantime_serde")]
    pub refresh_lifetime: Duration,
    /// Failed logins per account or client address before back-off starts.
    pub login_free_failures: u32,
    /// First back-off after the free failures; it doubles with each further failure.
    #[serde(with = "humantime_serde")]
    pub login_backoff: Duration,
    /// Longest back-off.
    #[serde(with = "humantime_serde")]
    pub login_backoff_max: Duration,
    /// How long a verified password is remembered, so that repeated logins (docker asks for a
    /// token per repository) cost a hash instead of argon2 (0: never).
    #[serde(with = "humantime_serde")]
    pub password_cache: Duration,
    /// Longest lifetime of a personal access token.
    #[serde(with = "humantime_serde")]
    pub max_token_lifetime: Duration,
    /// Longest lifetime of a robot account.
    #[serde(with = "humantime_serde")]
    pub max_robot_lifetime: Duration,
    /// A web console session ends after this long without a request.
    #[serde(with = "humantime_serde")]
    pub console_idle_timeout: Duration,
    /// A web console session ends this long after its login, however busy.
    #[serde(with = "humantime_serde")]
    pub console_max_age: Duration,
    /// ES256 token signing key (PEM); defaults to `<data_dir>/keys/token-signing.pem`, created on
    /// first start. Replicas must share it.
    pub signing_key: Option<PathBuf>,
    /// Earlier signing keys (PEM) whose tokens still verify: kept during a key rotation until
    /// their last token has expired.
    pub verify_keys: Vec<PathBuf>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            service: "portcullis".into(),
            issuer: None,
            token_lifetime: Duration::from_secs(3600),
            refresh_lifetime: Duration::from_secs(30 * 24 * 3600),
            login_free_failures: 5,
            login_backoff: Duration::from_secs(1),
            login_backoff_max: Duration::from_secs(300),
            password_cache: Duration::from_secs(300),
            max_token_lifetime: Duration::from_secs(365 * 86_400),
            max_robot_lifetime: Duration::from_secs(365 * 86_400),
            console_idle_timeout: Duration::from_secs(30 * 60),
            console_max_age: Duration::from_secs(12 * 3600),
            signing_key: None,
            verify_keys: Vec::new(),
        }
    }
}

/// The listener's budgets: how long a connection may take and idle, how slow a body may be, how
/// many connections there may be, and where client addresses come from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// From accept to the first complete request head (PROXY header and TLS handshake included).
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    /// How long a connection may stay without a request in flight (and a later request head take).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Bytes per second a request body must average over each `body_rate_window` (0: no minimum).
    pub body_min_rate: u64,
    #[serde(with = "humantime_serde")]
    pub body_rate_window: Duration,
    /// Connections of this replica at once (also capped by the open-file limit).
    pub max_connections: usize,
    /// Connections from one client address at once (0: no cap). Behind a TCP load balancer without
    /// the PROXY protocol every client has the balancer's address: raise it, or turn that on.
    pub max_connections_per_address: usize,
    /// Every connection starts with a PROXY protocol v2 header from a load balancer.
    pub proxy_protocol: bool,
    /// Addresses or ranges (`10.0.0.0/8`) of the load balancers: with `proxy_protocol`, only they
    /// may connect; their `X-Forwarded-For` names the client. Empty: every peer is believed to be
    /// one (the port must then be reachable by the balancer alone), and `X-Forwarded-For` never is.
    pub trusted_proxies: Vec<String>,
    /// Requests per second one client address may make (bursts of twice that; 0: no limit).
    pub rate_limit_per_address: u32,
    /// Requests per second one account or robot may make (bursts of twice that; 0: no limit).
    pub rate_limit_per_principal: u32,
    /// One log line per request (tracing target `access`; JSON with `log_format = "json"`).
    pub access_log: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_min_rate: 1024,
            body_rate_window: Duration::from_secs(10),
            max_connections: 4096,
            max_connections_per_address: 256,
            proxy_protocol: false,
            trusted_proxies: Vec::new(),
            rate_limit_per_address: 5000,
            rate_limit_per_principal: 2000,
            access_log: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain (server certificate first). Without it, a development CA is used.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
}

/// A secret from the configuration, held by `secrecy`: `[REDACTED]` in every `Debug` output,
/// zeroed when dropped, and read only through an explicit `expose_secret()`. It serialises as
/// `[redacted]` too (the configuration is serialised only for its defaults, where no secret is
/// set), so no dump of the configuration can carry one.
#[derive(Clone, Debug, Deserialize)]
#[serde(transparent)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(SecretString::from(value))
    }
}

impl ExposeSecret<str> for Secret {
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("[redacted]")
    }
}

/// Reads a secret from a file (the whole file, trailing newlines dropped).
pub fn read_secret_file(path: &Path) -> anyhow::Result<Secret> {
    use secrecy::zeroize::Zeroize;
    let mut text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    let secret = Secret::new(text.trim_end_matches(['\r', '\n']).to_owned());
    // The untrimmed copy is wiped too.
    text.zeroize();
    Ok(secret)
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// A directory on local disk (the embedded default).
    #[default]
    Local,
    /// An S3-compatible object store.
    S3,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `local` (default) or `s3`.
    pub backend: StorageBackend,
    /// Directory of the local blob store; defaults to `<data_dir>/blobs`.
    pub path: Option<PathBuf>,
    /// Local disk: write the bulk of uploads past the page cache (`O_DIRECT`) where the filesystem
    /// allows it. Off, uploads fill the page cache and a blob's first pull reads it from there.
    pub direct_writes: bool,
    /// The S3 settings, used when `backend = "s3"`.
    pub s3: S3Config,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { backend: StorageBackend::default(), path: None, direct_writes: true, s3: S3Config::default() }
    }
}

/// An S3-compatible bucket. Credentials not set here come from the usual `AWS_*` variables.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub bucket: Option<String>,
    /// The service URL (`https://s3.example.com`); AWS's own endpoint for the region when unset.
    pub endpoint: Option<String>,
    pub region: String,
    /// Path-style requests (`endpoint/bucket/key`), which most self-hosted stores need.
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// A file holding the secret access key (preferred over `secret_access_key`).
    pub secret_access_key_file: Option<PathBuf>,
    /// Allows an `http://` endpoint (a store on loopback or a private network only).
    pub allow_http: bool,
    /// Key prefix inside the bucket, so several registries (or tests) can share one bucket.
    pub prefix: Option<String>,
    /// Size of each multipart part; S3 needs at least 5 MiB (every part but the last).
    pub part_size: usize,
    /// Retries of a failed request (throttling, 5xx, connection errors) before `UNAVAILABLE`.
    pub max_retries: usize,
    /// Longest time spent retrying one request.
    #[serde(with = "humantime_serde")]
    pub retry_timeout: Duration,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            bucket: None,
            endpoint: None,
            region: "us-east-1".into(),
            path_style: false,
            access_key_id: None,
            secret_access_key: None,
            secret_access_key_file: None,
            allow_http: false,
            prefix: None,
            part_size: 8 * 1024 * 1024,
            max_retries: 10,
            retry_timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// SQLite database file; defaults to `<data_dir>/portcullis.db`. Not used when `url` is set.
    pub path: Option<PathBuf>,
    /// `postgres://USER@HOST:PORT/DB` for PostgreSQL (or `sqlite://PATH`).
    pub url: Option<Secret>,
    /// A file holding the database password, so that the URL can carry none.
    pub password_file: Option<PathBuf>,
    /// Connections of this replica's pool (PostgreSQL).
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { path: None, url: None, password_file: None, max_connections: 16 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadsConfig {
    /// Upload sessions idle this long are removed with their data (a session being written to is
    /// marked in use as it goes, so a long upload is never idle).
    #[serde(with = "humantime_serde")]
    pub expiry: Duration,
    /// Open upload sessions one account or robot may have at once.
    pub max_per_principal: u32,
    /// Open upload sessions one repository may have at once.
    pub max_per_repository: u32,
    /// How often expired sessions are swept.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest manifest accepted; larger ones get 413.
    pub max_manifest_bytes: usize,
    /// Largest page of tags or repositories.
    pub max_page: u32,
    /// Most blobs (config and layers) or manifests one manifest may reference; more is refused
    /// at push with MANIFEST_INVALID (each is scanned).
    pub max_references: usize,
    /// Most manifests an index may reach, a manifest counted once for each index that lists it;
    /// more is refused at push with MANIFEST_INVALID (the gate walks them on every pull).
    pub max_index_reach: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:5000".parse().expect("valid"),
            data_dir: PathBuf::from("./data"),
            public_url: None,
            log_format: LogFormat::Text,
            server: ServerConfig::default(),
            tls: TlsConfig::default(),
            storage: StorageConfig::default(),
            database: DatabaseConfig::default(),
            uploads: UploadsConfig::default(),
            limits: LimitsConfig::default(),
            auth: AuthConfig::default(),
            scan: ScanConfig::default(),
            gc: GcConfig::default(),
            metrics: MetricsConfig::default(),
            audit: AuditConfig::default(),
            webhooks: WebhooksConfig::default(),
            listen_host: None,
        }
    }
}

impl Default for UploadsConfig {
    fn default() -> Self {
        UploadsConfig {
            expiry: Duration::from_secs(3600),
            sweep_interval: Duration::from_secs(300),
            max_per_principal: 256,
            max_per_repository: 256,
        }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_manifest_bytes: 4 * 1024 * 1024,
            max_page: 10_000,
            max_references: crate::model::DEFAULT_MAX_REFERENCES,
            max_index_reach: crate::model::DEFAULT_MAX_INDEX_REACH,
        }
    }
}

/// Tables inside a section, as `section.table`.
const SUBSECTIONS: &[&str] = &["storage.s3", "scan.limits"];

/// Maps `PORTCULLIS_TLS_CERT` to `tls.cert`, `PORTCULLIS_STORAGE_S3_BUCKET` to `storage.s3.bucket`
/// and `PORTCULLIS_DATA_DIR` to `data_dir`.
fn env_key(key: &str) -> String {
    let key = key.to_ascii_lowercase();
    for section in SECTIONS {
        if let Some(rest) = key.strip_prefix(section).and_then(|r| r.strip_prefix('_')) {
            let key = format!("{section}.{rest}");
            for sub in SUBSECTIONS {
                if let Some(rest) = key.strip_prefix(sub).and_then(|r| r.strip_prefix('_')) {
                    return format!("{sub}.{rest}");
                }
            }
            return key;
        }
    }
    key
}

/// `listen`: an `ip:port`, or a `host:port` (such as `localhost:5000`) resolved now, preferring
/// an IPv4 address as `localhost` users expect.
fn listen_address<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    use std::net::ToSocketAddrs;
    let text = String::deserialize(d)?;
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bad = |why: String| serde::de::Error::custom(format!("{text:?} is not an address to listen on: {why}"));
    if !text.contains(':') {
        return Err(bad("write host:port or ip:port, such as 127.0.0.1:5000".into()));
    }
    let addrs: Vec<SocketAddr> = text.to_socket_addrs().map_err(|e| bad(e.to_string()))?.collect();
    addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied().ok_or_else(|| bad("the name has no address".into()))
}

impl Config {
    /// Loads defaults, then `file` (if given), then the environment, and validates the result.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                anyhow::bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(
            Env::prefixed("PORTCULLIS_")
                .filter(|k| !NOT_CONFIG.contains(&k.as_str().to_ascii_lowercase().as_str()))
                .map(|k| env_key(k.as_str()).into()),
        );
        let mut config: Config = figment.extract().map_err(|e| anyhow::anyhow!(describe::describe(e)))?;
        // A listener written as a name keeps the name for the URL clients are given.
        if let Ok(text) = figment.extract_inner::<String>("listen") {
            if text.parse::<SocketAddr>().is_err() {
                config.listen_host = text.rsplit_once(':').map(|(host, _)| host.to_owned()).filter(|h| !h.is_empty());
            }
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let s = &self.server;
        if s.header_timeout.is_zero() || s.idle_timeout.is_zero() || s.body_rate_window.is_zero() {
            anyhow::bail!(
                "invalid configuration: server.header_timeout, server.idle_timeout and server.body_rate_window must be positive"
            );
        }
        if s.max_connections == 0 {
            anyhow::bail!("invalid configuration: server.max_connections must be positive");
        }
        for p in &s.trusted_proxies {
            p.parse::<crate::model::Cidr>()
                .map_err(|e| anyhow::anyhow!("invalid configuration: server.trusted_proxies: {e}"))?;
        }
        if !self.audit.retention.is_zero() && self.audit.retention < Duration::from_secs(86400) {
            anyhow::bail!("invalid configuration: audit.retention must be 0s (keep every record) or at least 1d");
        }
        let w = &self.webhooks;
        if w.timeout.is_zero() || w.backoff.is_zero() || w.max_age < w.backoff {
            anyhow::bail!(
                "invalid configuration: webhooks.timeout and webhooks.backoff must be positive, and webhooks.max_age at least webhooks.backoff"
            );
        }
        if let Some(hex) = &self.metrics.scrape_token_sha256 {
            if self.metrics.scrape_token_digest().is_none() {
                anyhow::bail!(
                    "invalid configuration: metrics.scrape_token_sha256 must be 64 hex digits (the SHA-256 of the token), not {} characters",
                    hex.len()
                );
            }
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            anyhow::bail!("invalid configuration: tls.cert and tls.key must be set together");
        }
        if let Some(url) = &self.public_url {
            let parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("invalid configuration: public_url: {e}"))?;
            if parsed.scheme() != "https" || parsed.host().is_none() {
                anyhow::bail!("invalid configuration: public_url must be an https:// URL with a host");
            }
        }
        if self.limits.max_manifest_bytes < 4 * 1024 * 1024 {
            anyhow::bail!(
                "invalid configuration: limits.max_manifest_bytes must be at least 4 MiB (the spec's minimum)"
            );
        }
        if self.limits.max_page == 0 {
            anyhow::bail!("invalid configuration: limits.max_page must be positive");
        }
        if self.limits.max_references == 0 {
            anyhow::bail!("invalid configuration: limits.max_references must be positive");
        }
        if !(1..=crate::model::DEFAULT_MAX_INDEX_REACH).contains(&self.limits.max_index_reach) {
            anyhow::bail!(
                "invalid configuration: limits.max_index_reach must be between 1 and {} (the gate decides no further)",
                crate::model::DEFAULT_MAX_INDEX_REACH
            );
        }
        if self.scan.workers == 0 || self.scan.workers > 64 {
            anyhow::bail!("invalid configuration: scan.workers must be between 1 and 64");
        }
        self.scan.limits.validate().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        if self.auth.service.is_empty() || self.auth.token_lifetime.is_zero() || self.auth.refresh_lifetime.is_zero() {
            anyhow::bail!(
                "invalid configuration: auth.service, auth.token_lifetime and auth.refresh_lifetime must be set"
            );
        }
        let a = &self.auth;
        if a.console_idle_timeout.is_zero() || a.console_max_age < a.console_idle_timeout {
            anyhow::bail!(
                "invalid configuration: auth.console_idle_timeout must be positive, and auth.console_max_age at least auth.console_idle_timeout"
            );
        }
        if self.scan.hook.as_ref().is_some_and(|h| h.is_empty() || h[0].is_empty()) {
            anyhow::bail!("invalid configuration: scan.hook must be a non-empty argv list");
        }
        if let Some(user) = &self.scan.hook_user {
            user.parse::<crate::model::HookUser>().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        }
        if let Some(dir) = &self.scan.osv_dir {
            if !dir.is_dir() {
                anyhow::bail!("invalid configuration: scan.osv_dir {} is not a directory", dir.display());
            }
        }
        if self.scan.rescan_workers == 0 || self.scan.vulndb_max_bytes == 0 {
            anyhow::bail!("invalid configuration: scan.rescan_workers and scan.vulndb_max_bytes must be positive");
        }
        if self.scan.max_attempts == 0
            || self.scan.lease.is_zero()
            || self.scan.hook_timeout.is_zero()
            || self.scan.poll.is_zero()
        {
            anyhow::bail!(
                "invalid configuration: scan.max_attempts, scan.lease, scan.hook_timeout and scan.poll must be positive"
            );
        }
        if let Some(url) = &self.database.url {
            if crate::model::Engine::of_url(url.expose_secret()).is_none() {
                anyhow::bail!("invalid configuration: database.url must start with postgres:// or sqlite:");
            }
        }
        if self.database.max_connections == 0 {
            anyhow::bail!("invalid configuration: database.max_connections must be positive");
        }
        if self.storage.backend == StorageBackend::S3 {
            let s3 = &self.storage.s3;
            if s3.bucket.as_deref().unwrap_or("").is_empty() {
                anyhow::bail!("invalid configuration: storage.s3.bucket is required with storage.backend = \"s3\"");
            }
            if s3.part_size < 5 * 1024 * 1024 {
                anyhow::bail!("invalid configuration: storage.s3.part_size must be at least 5 MiB (S3's minimum part)");
            }
            if let Some(endpoint) = &s3.endpoint {
                let url = url::Url::parse(endpoint)
                    .map_err(|e| anyhow::anyhow!("invalid configuration: storage.s3.endpoint: {e}"))?;
                if url.scheme() == "http" && !s3.allow_http {
                    anyhow::bail!(
                        "invalid configuration: storage.s3.endpoint is http:// but storage.s3.allow_http is off"
                    );
                }
            }
            if s3.secret_access_key.is_some() && s3.secret_access_key_file.is_some() {
                anyhow::bail!(
                    "invalid configuration: set storage.s3.secret_access_key or storage.s3.secret_access_key_file, not both"
                );
            }
        }
        if self.uploads.max_per_principal == 0 || self.uploads.max_per_repository == 0 {
            anyhow::bail!(
                "invalid configuration: uploads.max_per_principal and uploads.max_per_repository must be positive"
            );
        }
        if self.gc.grace < Duration::from_secs(60) {
            anyhow::bail!(
                "invalid configuration: gc.grace must be at least 60s (clients need time between learning that a blob exists and referencing it)"
            );
        }
        if self.gc.lease < Duration::from_secs(2) || self.gc.lease > Duration::from_secs(3600) {
            anyhow::bail!(
                "invalid configuration: gc.lease must be between 2s and 1h (a collection renews it between batches of 1000 blobs)"
            );
        }
        if self.uploads.expiry.is_zero() || self.uploads.sweep_interval.is_zero() {
            anyhow::bail!("invalid configuration: uploads.expiry and uploads.sweep_interval must be positive");
        }
        Ok(())
    }

    /// The development CA certificate clients are told to trust, when no certificate is configured.
    pub fn dev_ca_certificate(&self) -> Option<PathBuf> {
        self.tls.cert.is_none().then(|| self.data_dir.join("tls").join("ca.crt"))
    }
    /// Why clients could not reach `public_url`, if they could not: a listener on all interfaces
    /// (`0.0.0.0`, `::`) with no `public_url` gives a URL no client can use as a token realm.
    pub fn public_url_problem(&self) -> Option<String> {
        let url = url::Url::parse(&self.public_url()).ok()?;
        let unroutable = match url.host()? {
            url::Host::Ipv4(ip) => ip.is_unspecified() || ip.is_broadcast(),
            url::Host::Ipv6(ip) => ip.is_unspecified(),
            url::Host::Domain(_) => false,
        };
        unroutable.then(|| {
            format!(
                "public_url {} is not an address clients can reach (it becomes the token realm docker is sent to); set public_url (PORTCULLIS_PUBLIC_URL) to the https:// URL clients use",
                self.public_url()
            )
        })
    }
    pub fn public_url(&self) -> String {
        let default = || match &self.listen_host {
            Some(host) => format!("https://{host}:{}", self.listen.port()),
            None => format!("https://{}", self.listen),
        };
        self.public_url.clone().unwrap_or_else(default).trim_end_matches('/').to_owned()
    }
    pub fn blob_dir(&self) -> PathBuf {
        self.storage.path.clone().unwrap_or_else(|| self.data_dir.join("blobs"))
    }
    pub fn signing_key_path(&self) -> PathBuf {
        self.auth.signing_key.clone().unwrap_or_else(|| self.data_dir.join("keys/token-signing.pem"))
    }
    pub fn attestation_key_path(&self) -> PathBuf {
        self.scan.attestation_key.clone().unwrap_or_else(|| self.data_dir.join("keys/attestation.pem"))
    }
    pub fn database_path(&self) -> PathBuf {
        self.database.path.clone().unwrap_or_else(|| self.data_dir.join("portcullis.db"))
    }
    /// `database.url` with the password from `database.password_file` filled in; `None` for the
    /// embedded SQLite file.
    pub fn database_url(&self) -> anyhow::Result<Option<Secret>> {
        let Some(url) = &self.database.url else { return Ok(None) };
        let Some(file) = &self.database.password_file else { return Ok(Some(url.clone())) };
        let password = read_secret_file(file)?;
        let mut parsed = url::Url::parse(url.expose_secret())
            .map_err(|_| anyhow::anyhow!("invalid configuration: database.url is not a URL"))?;
        parsed
            .set_password(Some(password.expose_secret()))
            .map_err(|_| anyhow::anyhow!("invalid configuration: database.url cannot carry a password"))?;
        Ok(Some(Secret::new(parsed.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_map_to_sections() {
        assert_eq!(env_key("DATA_DIR"), "data_dir");
        assert_eq!(env_key("TLS_CERT"), "tls.cert");
        assert_eq!(env_key("LIMITS_MAX_MANIFEST_BYTES"), "limits.max_manifest_bytes");
        assert_eq!(env_key("PUBLIC_URL"), "public_url");
        assert_eq!(env_key("STORAGE_S3_ACCESS_KEY_ID"), "storage.s3.access_key_id");
        assert_eq!(env_key("STORAGE_BACKEND"), "storage.backend");
        assert_eq!(env_key("STORAGE_DIRECT_WRITES"), "storage.direct_writes");
        assert_eq!(env_key("SCAN_POLL"), "scan.poll");
        assert_eq!(env_key("SCAN_LIMITS_MAX_ENTRIES"), "scan.limits.max_entries");
        assert_eq!(env_key("SCAN_WORKERS"), "scan.workers");
        assert_eq!(env_key("SERVER_MAX_CONNECTIONS"), "server.max_connections");
        assert_eq!(env_key("DATABASE_URL"), "database.url");
    }

    #[test]
    fn a_listener_written_as_a_name_keeps_the_name_for_clients() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "listen = \"localhost:5055\"\n").unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.listen.port(), 5055);
        assert!(config.listen.ip().is_loopback());
        assert_eq!(config.public_url(), "https://localhost:5055");
        std::fs::write(&file, "listen = \"127.0.0.1:5055\"\n").unwrap();
        assert_eq!(Config::load(Some(&file)).unwrap().public_url(), "https://127.0.0.1:5055");
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[tls]\ncertificate = \"x\"\n").unwrap();
        let err = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("certificate"), "{err}");
        std::fs::write(&file, "listen = \"not an address\"\n").unwrap();
        let err = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("listen"), "{err}");
    }

    #[test]
    fn the_scrape_token_hash_must_be_a_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[metrics]\nscrape_token_sha256 = \"my-plain-token\"\n").unwrap();
        let err = Config::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("metrics.scrape_token_sha256 must be 64 hex digits"), "{err}");
        let hex = "ab".repeat(32);
        std::fs::write(&file, format!("[metrics]\nscrape_token_sha256 = \"{hex}\"\n")).unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.metrics.scrape_token_digest(), Some([0xab; 32]));
        assert!(config.server.access_log && config.metrics.enabled);
    }

    /// Secrets loaded from the file and from a password file reach their users intact, and appear
    /// in no `Debug` output or serialisation of the configuration.
    #[test]
    fn secrets_are_kept_out_of_debug_and_dumps() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        let password = dir.path().join("db-password");
        std::fs::write(&password, "pg-pass-4f1e\n").unwrap();
        std::fs::write(
            &file,
            format!(
                "[storage]\nbackend = \"s3\"\n[storage.s3]\nbucket = \"b\"\nendpoint = \"https://s3.example\"\n\
                 secret_access_key = \"s3-secret-9c2a\"\n[database]\nurl = \"postgres://app@db/registry\"\n\
                 password_file = {:?}\n",
                password.display().to_string()
            ),
        )
        .unwrap();
        let config = Config::load(Some(&file)).unwrap();
        let url = config.database_url().unwrap().unwrap();
        assert_eq!(url.expose_secret(), "postgres://app:pg-pass-4f1e@db/registry");
        assert_eq!(config.storage.s3.secret_access_key.as_ref().unwrap().expose_secret(), "s3-secret-9c2a");
        for shown in [format!("{config:?}"), format!("{url:?}"), serde_json::to_string(&config).unwrap()] {
            for secret in ["s3-secret-9c2a", "pg-pass-4f1e"] {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
        }
    }
}
