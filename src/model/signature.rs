//! The words of the signature policy: a namespace's mode and why the gate refused an image that
//! has no valid signature.

use serde::{Deserialize, Serialize};

use super::{Digest, Target};

/// What a namespace asks of the signatures of the images pulled from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SignatureMode {
    /// Signatures are not checked.
    #[default]
    Off,
    /// An unsigned image is served, and the pull is logged and counted.
    Warn,
    /// An image without a valid signature by a trusted key is not served to ordinary readers.
    Require,
}

impl SignatureMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureMode::Off => "off",
            SignatureMode::Warn => "warn",
            SignatureMode::Require => "require",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(SignatureMode::Off),
            "warn" => Some(SignatureMode::Warn),
            "require" => Some(SignatureMode::Require),
            _ => None,
        }
    }
}

/// A trusted public key of a namespace's policy: a name and a PEM `PUBLIC KEY` (ECDSA P-256 or
/// Ed25519, as cosign writes them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKey {
    pub name: String,
    pub pem: String,
}

/// Why the signature gate refused: what was asked for, the image (or images) that decide, and
/// what is missing.
#[derive(Debug, Clone, PartialEq)]
pub struct Unsigned {
    pub target: Target,
    pub manifests: Vec<Digest>,
    pub reason: String,
}

/// The reason names the repository, the digest and the keys: it is the whole message.
impl std::fmt::Display for Unsigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}
