//! The registry's error type, shared by every layer, and the gate's refusal it can carry.
//!
//! Rule: each variant says what went wrong in registry terms; the HTTP layer maps variants to OCI
//! codes and statuses in one table (`http::oci_error`). `Internal` carries detail for the log only.

use super::{Digest, ScanState};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NameInvalid(String),
    #[error("repository name not known to registry")]
    NameUnknown,
    #[error("{0}")]
    TagInvalid(String),
    #[error("{0}")]
    DigestInvalid(String),
    #[error("blob unknown to registry")]
    BlobUnknown,
    #[error("blob upload unknown to registry")]
    UploadUnknown,
    #[error("{0}")]
    UploadInvalid(String),
    /// A chunk does not start where the upload ends (out of order or repeated).
    #[error("{0}")]
    RangeInvalid(String),
    /// A blob `Range` request that cannot be satisfied.
    #[error("requested range not satisfiable")]
    RangeNotSatisfiable { size: u64 },
    #[error("{0}")]
    SizeInvalid(String),
    #[error("manifest unknown to registry")]
    ManifestUnknown,
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("manifest references unknown {kind} {digest}")]
    ManifestBlobUnknown { kind: &'static str, digest: Digest },
    #[error("manifest is larger than the limit of {limit} bytes")]
    ManifestTooLarge { limit: usize },
    #[error("{0}")]
    PaginationInvalid(String),
    #[error("{0}")]
    Unsupported(String),
    /// A request to the admin API that breaks a rule of its own (a webhook's URL, its events);
    /// the text says which.
    #[error("{0}")]
    Invalid(String),
    /// A cap on open upload sessions was reached.
    #[error("{0}")]
    TooManyUploads(String),
    /// A namespace rule refused the change: an immutable tag. The text names the rule.
    #[error("{0}")]
    Denied(String),
    /// The namespace's quota has no room for the change (answered as `DENIED`, and audited).
    #[error("{message}")]
    OverQuota { namespace: String, message: String },
    /// The quarantine gate refused (see `domain::gate`).
    #[error("{0}")]
    Blocked(Box<Blocked>),
    /// The signature gate refused: the namespace requires a signature by a trusted key.
    #[error("{0}")]
    Unsigned(Box<super::Unsigned>),
    /// A backend is temporarily unable to serve (throttling, connection loss); the detail goes to
    /// the log only.
    #[error("service unavailable")]
    Unavailable(String),
    /// The registry itself is busy with what the request needs (a collection running, a blob being
    /// collected): try again shortly. The text, which names what is busy, goes to the client.
    #[error("{0}")]
    Busy(String),
    /// Anything unexpected; the text goes to the log, never to the client.
    #[error("internal error")]
    Internal(String),
}

impl Error {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Error::Internal(e.to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error with its causes, `: `-separated, each text once (HTTP clients' own messages hide the
/// TLS or connection reason in a cause, and often repeat their cause's text).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut texts: Vec<String> = Vec::new();
    let mut source = Some(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !texts.contains(&text) {
            texts.push(text);
        }
        source = s.source();
    }
    texts.join(": ")
}

/// Why the gate refused.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocked {
    /// What was asked for: a manifest or a blob.
    pub target: Target,
    /// The worst state among the verdicts that decide.
    pub state: ScanState,
    pub summary: Option<String>,
    /// The manifests whose verdicts block it (for a blob: the images or artifacts that contain it).
    pub manifests: Vec<Digest>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    Manifest(Digest),
    Blob(Digest),
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.state {
            ScanState::Quarantined => "quarantined",
            ScanState::Error => "blocked: it could not be scanned",
            _ => "waiting for its security scan",
        };
        match &self.target {
            Target::Manifest(d) => write!(f, "image {d} is {what}")?,
            Target::Blob(d) => write!(f, "blob {d} is {what}")?,
        }
        if let Some(s) = &self.summary {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_chain_names_each_cause_once() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "connect failed")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(std::io::Error::other("certificate unknown"));
        assert_eq!(super::error_chain(&e), "connect failed: certificate unknown");
    }
}
