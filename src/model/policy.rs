//! The words of the scan policy that configuration and scanner share: rules, actions, severities,
//! the budgets of one scan, allowlist entries and the hook's user.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// The built-in checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    RootUser,
    SecretInFile,
    SecretInEnv,
    /// A secret elsewhere in the image config (labels, history) or in a manifest's annotations.
    SecretInMetadata,
    SetuidFile,
    WorldWritable,
    ExposedSsh,
    ImageTooLarge,
    /// The external hook rejected the image (exit 1).
    Hook,
    /// Something the external hook reported (informational unless it rejected the image).
    HookFinding,
    /// A known vulnerability at or above the severity threshold.
    Vulnerability,
    /// A known vulnerability below the threshold.
    VulnerabilityLow,
}

/// What a policy does when a rule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    Block,
    Warn,
    Off,
}

/// The hardened default: secrets and running as root block; the rest warns.
pub const DEFAULT_RULES: [(Rule, RuleAction); 10] = [
    (Rule::RootUser, RuleAction::Block),
    (Rule::SecretInFile, RuleAction::Block),
    (Rule::SecretInEnv, RuleAction::Block),
    (Rule::SecretInMetadata, RuleAction::Block),
    (Rule::SetuidFile, RuleAction::Warn),
    (Rule::WorldWritable, RuleAction::Warn),
    (Rule::ExposedSsh, RuleAction::Warn),
    (Rule::ImageTooLarge, RuleAction::Warn),
    (Rule::Vulnerability, RuleAction::Block),
    (Rule::VulnerabilityLow, RuleAction::Warn),
];

/// Total compressed size of config and layers above which `ImageTooLarge` fires, by default.
pub const DEFAULT_MAX_IMAGE_BYTES: u64 = 4 << 30;

/// A configurable rule's default action (warn for a rule not in [`DEFAULT_RULES`]).
pub fn default_action(rule: Rule) -> RuleAction {
    DEFAULT_RULES.iter().find(|(r, _)| *r == rule).map_or(RuleAction::Warn, |(_, a)| *a)
}

/// Budgets of one scan (`[scan.limits]` in the configuration).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanLimits {
    /// Decompressed bytes of all layers of one image (or blobs of one artifact) together.
    pub max_decompressed_bytes: u64,
    /// Tar entries (headers) of all layers of one image together.
    pub max_entries: u64,
    /// Longest path or link target, after PAX records and GNU long names are applied.
    pub max_path_bytes: usize,
    /// Largest PAX extended header or GNU long name/link record (Go's tar reader allows 1 MiB).
    pub max_header_bytes: u64,
    /// Largest file the scanner reads into memory to parse (`/etc/passwd`, package databases).
    pub max_file_bytes: u64,
    /// Installed packages listed by an image's package databases.
    pub max_packages: usize,
    /// Memory of the sandbox process that decompresses and parses (its address-space limit).
    pub memory: u64,
    /// Wall-clock time of one scan's sandbox process (its CPU time is limited to the same).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            max_decompressed_bytes: 32 << 30,
            max_entries: 1_000_000,
            max_path_bytes: 4096,
            max_header_bytes: 1 << 20,
            max_file_bytes: 16 << 20,
            max_packages: 200_000,
            memory: 1 << 30,
            timeout: Duration::from_secs(600),
        }
    }
}

impl ScanLimits {
    /// Checks the values an operator set: zero would make every scan fail.
    pub fn validate(&self) -> Result<(), String> {
        let zero = [
            ("max_decompressed_bytes", self.max_decompressed_bytes == 0),
            ("max_entries", self.max_entries == 0),
            ("max_path_bytes", self.max_path_bytes == 0),
            ("max_header_bytes", self.max_header_bytes == 0),
            ("max_file_bytes", self.max_file_bytes == 0),
            ("max_packages", self.max_packages == 0),
            ("timeout", self.timeout.is_zero()),
        ];
        if let Some((key, _)) = zero.iter().find(|(_, z)| *z) {
            return Err(format!("scan.limits.{key} must be positive"));
        }
        if self.memory < 64 << 20 {
            return Err("scan.limits.memory must be at least 64 MiB".into());
        }
        Ok(())
    }
}

/// An allowlist entry: the id (or alias, such as a CVE) and when the exception ends.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct Allow {
    pub id: String,
    /// Unix seconds; `None` never expires.
    pub until: Option<i64>,
}

/// A `uid:gid` the hook runs as.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HookUser {
    pub uid: u32,
    pub gid: u32,
}

impl std::str::FromStr for HookUser {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (u, g) = s.split_once(':').ok_or("scan.hook_user must be uid:gid (numbers)")?;
        let num = |v: &str| v.parse::<u32>().map_err(|_| "scan.hook_user must be uid:gid (numbers)".to_owned());
        Ok(HookUser { uid: num(u)?, gid: num(g)? })
    }
}
