//! The admin API's answers as its OpenAPI document describes them. These types are the
//! description only; the handlers build their JSON from the records they serve. That the two
//! agree is what `tests/openapi.rs` checks: it validates the API's real answers against these
//! schemas. Times are RFC 3339 strings (`admin::json` writes them so).

#![allow(dead_code)]

use utoipa::ToSchema;

/// The one error shape of the whole API.
#[derive(ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// Snake case: `invalid_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`,
    /// `too_large`, `unsupported_media_type`, `too_many_requests`, `unavailable`, `internal`...
    pub code: String,
    /// What was refused and why; a `403` names what would grant it.
    pub message: String,
}

/// A page of a list: `{"items": [...], "next": ...}`, paged with `limit` and `after`.
#[derive(ToSchema)]
pub struct Page<T: ToSchema> {
    pub items: Vec<T>,
    /// The `after` value of the next page; null on the last.
    pub next: Option<String>,
}

#[derive(ToSchema)]
pub struct User {
    pub username: String,
    pub admin: bool,
    pub disabled: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(ToSchema)]
pub struct Namespace {
    pub name: String,
    pub public: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(ToSchema)]
pub struct Member {
    pub username: String,
    /// `owner`, `maintainer`, `developer` or `reader`.
    pub role: String,
}

#[derive(ToSchema)]
pub struct Membership {
    pub namespace: String,
    pub username: String,
    pub role: String,
}

#[derive(ToSchema)]
pub struct Robot {
    /// `robot$<namespace>+<name>`: the username docker logs in with.
    pub username: String,
    pub namespace: String,
    pub name: String,
    pub actions: Vec<String>,
    /// Repository patterns it is limited to; null for every repository of the namespace.
    pub repositories: Option<Vec<String>>,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub revoked: bool,
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
}

/// A robot just created or rotated, with its secret (shown once).
#[derive(ToSchema)]
pub struct RobotWithSecret {
    #[schema(inline)]
    #[serde(flatten)]
    pub robot: Robot,
    pub secret: String,
}

#[derive(ToSchema)]
pub struct Token {
    pub id: String,
    pub name: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub revoked: bool,
    #[schema(format = DateTime)]
    pub last_used_at: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// The personal token this one was created with: revoking it revokes this one.
    pub parent_id: Option<String>,
}

/// A personal access token just created, with its secret (shown once).
#[derive(ToSchema)]
pub struct TokenWithSecret {
    #[schema(inline)]
    #[serde(flatten)]
    pub token_record: Token,
    /// `pcp_<id>_<secret>`: the password for `docker login`.
    pub token: String,
}

#[derive(ToSchema)]
pub struct Repository {
    pub name: String,
    pub tags: u64,
    /// Manifests (images, indexes and artifacts).
    pub manifests: u64,
    /// The sizes of the blobs linked to it, each counted once.
    pub bytes: u64,
    /// Images whose verdict is `quarantined`.
    pub quarantined: u64,
    #[schema(format = DateTime)]
    pub created_at: String,
    /// When its newest manifest was pushed; null without manifests.
    #[schema(format = DateTime)]
    pub last_pushed_at: Option<String>,
    /// The worst scan state in effect among its manifests (a lapsed release counts as
    /// quarantined): `quarantined`, `error`, `pending`, `released` or `passed`; null without any.
    pub worst_state: Option<String>,
}

#[derive(ToSchema)]
pub struct TagItem {
    pub name: String,
    pub digest: String,
    pub media_type: String,
    /// The manifest's size in bytes.
    pub size: u64,
    #[schema(format = DateTime)]
    pub pushed_at: String,
    /// The scan state in effect of the manifest it names; null without a scan record.
    pub state: Option<String>,
}

#[derive(ToSchema)]
pub struct Finding {
    pub rule: String,
    /// `low`, `medium`, `high` or `critical`.
    pub severity: String,
    pub message: String,
    /// The file, when the finding is about one.
    pub path: Option<String>,
    /// The layer (digest) it was found in.
    pub layer: Option<String>,
}

#[derive(ToSchema)]
pub struct ScanReport {
    pub repository: String,
    pub digest: String,
    /// The state in effect now (a lapsed release reads `quarantined`): `pending`, `scanning`,
    /// `passed`, `quarantined`, `error` or `released`.
    pub state: String,
    /// The state as recorded.
    pub stored_state: String,
    pub findings: Vec<Finding>,
    pub summary: Option<String>,
    pub attempts: u32,
    pub rescan_requested: bool,
    pub released_by: Option<String>,
    pub release_reason: Option<String>,
    #[schema(format = DateTime)]
    pub release_until: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

#[derive(ToSchema)]
pub struct Rejected {
    pub repository: String,
    pub digest: String,
    /// Always `rejected`.
    pub state: String,
    pub reason: String,
}

#[derive(ToSchema)]
pub struct ScanPolicy {
    pub namespace: String,
    /// Rule → `block`, `warn` or `off`, overriding the registry's rules.
    pub overrides: serde_json::Map<String, serde_json::Value>,
    /// Scanning inside the manifest PUT, up to this long (`30s`); null when off.
    pub sync_timeout: Option<String>,
}

#[derive(ToSchema)]
pub struct SignaturePolicy {
    pub namespace: String,
    /// `off`, `warn` or `require`.
    pub mode: String,
    pub keys: Vec<serde_json::Map<String, serde_json::Value>>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

#[derive(ToSchema)]
pub struct QuotaAnswer {
    pub namespace: String,
    /// `{"bytes", "repositories", "tags"}`, each a limit or null.
    pub quota: serde_json::Map<String, serde_json::Value>,
}

#[derive(ToSchema)]
pub struct ImmutableTags {
    pub namespace: String,
    pub patterns: Vec<String>,
}

#[derive(ToSchema)]
pub struct RetentionAnswer {
    pub namespace: String,
    /// The rules, or null when none are set.
    pub rules: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(ToSchema)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    /// The namespace whose events it receives; null for every namespace (admins' hooks).
    pub namespace: Option<String>,
    pub created_by: String,
    pub created_ms: i64,
    #[schema(format = DateTime)]
    pub created_at: String,
}

#[derive(ToSchema)]
pub struct WebhookWithSecret {
    #[schema(inline)]
    #[serde(flatten)]
    pub webhook: Webhook,
    /// The HMAC key of its signatures (shown once).
    pub secret: String,
}

#[derive(ToSchema)]
pub struct DeliveryPage {
    pub items: Vec<serde_json::Map<String, serde_json::Value>>,
    pub next: Option<String>,
}

#[derive(ToSchema)]
pub struct TestDelivery {
    /// The id of the queued delivery (in the webhook's delivery history).
    pub delivery: i64,
}

#[derive(ToSchema)]
pub struct AuditPage {
    pub items: Vec<serde_json::Map<String, serde_json::Value>>,
    /// The `after` value of the next (older) page.
    pub next: Option<i64>,
}

#[derive(ToSchema)]
pub struct VulnDbStatus {
    /// Goes up with every import that changed something; 0 before the first.
    pub version: i64,
    #[schema(format = DateTime)]
    pub imported_at: Option<String>,
    pub records: u64,
    /// Passed images due to be matched again.
    pub rescans_due: u64,
}

#[derive(ToSchema)]
pub struct VulnDbImport {
    pub version: i64,
    #[schema(format = DateTime)]
    pub imported_at: Option<String>,
    pub records: u64,
    pub added: u64,
    pub changed: u64,
    pub unchanged: u64,
    pub removed: u64,
    pub skipped: u64,
}

#[derive(ToSchema)]
pub struct ImageLayer {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
}

#[derive(ToSchema)]
pub struct ImagePlatform {
    pub os: String,
    pub architecture: String,
    pub digest: String,
}

#[derive(ToSchema)]
pub struct ImageReferrer {
    pub digest: String,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub size: u64,
}

/// An image config as the runtime reads it.
#[derive(ToSchema)]
pub struct ImageConfig {
    pub os: Option<String>,
    pub architecture: Option<String>,
    pub created: Option<String>,
    /// Empty or null: root.
    pub user: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
    /// `NAME=value`, values that look secret replaced by `•••••• (masked)`.
    pub env: Vec<String>,
    /// `[name, value]` pairs in order.
    pub labels: Vec<Vec<String>>,
}

#[derive(ToSchema)]
pub struct Image {
    pub repository: String,
    pub digest: String,
    /// Why pulls are refused (the gate's message); null when they are not.
    pub pulls_refused: Option<String>,
    /// Whether the content (media type, layers, platforms, config, referrers) could be read by
    /// the caller: not when the gate refuses it to them.
    pub content_shown: bool,
    pub media_type: Option<String>,
    pub layers: Vec<ImageLayer>,
    pub platforms: Vec<ImagePlatform>,
    pub config: Option<ImageConfig>,
    /// Why the config is not shown (too large, or read differently by different clients).
    pub config_error: Option<String>,
    pub referrers: Vec<ImageReferrer>,
    pub scan: Option<ScanReport>,
}

/// `GET /scans` answers one report (with `repository` and `digest`) or a page of them.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum ScanOrPage {
    One(ScanReport),
    Page(Page<ScanReport>),
}
