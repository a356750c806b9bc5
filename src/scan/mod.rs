//! Built-in image policy checks: what an image's config and layers reveal, as findings with a
//! rule and a severity, and the verdict a policy draws from them.
//!
//! Rules:
//! - Secrets are searched in every layer, since a file deleted in a later layer is still
//!   downloadable from the earlier one; file-mode rules (setuid, world-writable) look at the final
//!   filesystem, with whiteouts applied.
//! - Each rule is blocking, a warning, or off; the verdict blocks if any blocking rule fired.
//! - Nothing here does I/O beyond reading the bytes it is handed: callers stream blobs in.
//!
//! Every pushed image gets a scan job ([`worker`]); until it passes (or an admin releases it) only
//! admins may pull it (the gate is in `domain::scans`).

pub mod archive;
pub mod content;
pub mod fs;
pub mod hook;
pub mod image_config;
pub mod limits;
pub mod osv;
pub mod packages;
pub mod sandbox;
pub mod secrets;
pub mod versions;
pub mod worker;

use std::collections::BTreeMap;

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

/// One thing a check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub rule: Rule,
    pub severity: Severity,
    pub message: String,
    /// The file, when the finding is about one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The layer (digest) it was found in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
}

/// Which rules block, warn or are off, and the size limit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Policy {
    pub rules: BTreeMap<Rule, RuleAction>,
    /// Total compressed size of config and layers above which `ImageTooLarge` fires.
    pub max_image_bytes: u64,
}

impl Default for Policy {
    /// The hardened default: secrets and running as root block; the rest warns.
    fn default() -> Self {
        let rules = [
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
        Policy { rules: rules.into_iter().collect(), max_image_bytes: 4 << 30 }
    }
}

/// The outcome of applying a policy to findings.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    pub blocking: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

impl Assessment {
    pub fn passed(&self) -> bool {
        self.blocking.is_empty()
    }
}

impl Policy {
    pub fn action(&self, rule: Rule) -> RuleAction {
        match rule {
            // The hook's own verdict is final; what it reports alongside is information.
            Rule::Hook => RuleAction::Block,
            Rule::HookFinding => RuleAction::Warn,
            _ => self.rules.get(&rule).copied().unwrap_or(RuleAction::Warn),
        }
    }

    /// Sorts findings into blocking and warnings; findings of rules that are off are dropped.
    pub fn assess(&self, findings: Vec<Finding>) -> Assessment {
        let mut a = Assessment { blocking: Vec::new(), warnings: Vec::new() };
        for f in findings {
            match self.action(f.rule) {
                RuleAction::Block => a.blocking.push(f),
                RuleAction::Warn => a.warnings.push(f),
                RuleAction::Off => {}
            }
        }
        a
    }
}
