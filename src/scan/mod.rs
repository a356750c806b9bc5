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
pub mod rescan;
pub mod sandbox;
pub mod sbom;
pub mod secrets;
pub mod versions;
pub mod vulndb;
pub mod worker;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::model::{Rule, RuleAction, Severity};
use crate::model::{DEFAULT_MAX_IMAGE_BYTES, DEFAULT_RULES};

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
        Policy { rules: DEFAULT_RULES.iter().copied().collect(), max_image_bytes: DEFAULT_MAX_IMAGE_BYTES }
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
