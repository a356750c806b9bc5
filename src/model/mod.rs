//! The shared vocabulary: digests, names, references, upload ids, scan states and verdicts,
//! roles, the error type, the clock, the audit log's records, metric names, namespace lifecycle settings, the scan policy's and the signature policy's words, the OSV records and the default limits.
//!
//! Rule: `model` imports nothing of this crate; every other module may import it. A type goes here
//! when two layers need it and neither owns it; behaviour that needs a service stays with the
//! service (`auth` decides what a [`Role`] may do).

pub mod audit;
pub mod clock;
pub mod credential;
pub mod digest;
pub mod engine;
pub mod error;
pub mod lifecycle;
pub mod limits;
pub mod metrics;
pub mod names;
pub mod net;
pub mod osv;
pub mod policy;
pub mod role;
pub mod scan_state;
pub mod signature;
pub mod upload;
pub mod webhook;

pub use clock::{now, now_ms, rfc3339, rfc3339_ms, Clock};
pub use digest::{Algorithm, Digest, DigestHasher};
pub use engine::Engine;
pub use error::{error_chain, Blocked, Error, Result, Target};
pub use lifecycle::{human_bytes, ImmutableTag, OverQuota, Quota, Retention, TagPatterns, Usage};
pub use limits::{
    DEFAULT_GC_GRACE, DEFAULT_GC_INTERVAL, DEFAULT_GC_LEASE, DEFAULT_MAX_INDEX_REACH, DEFAULT_MAX_REFERENCES,
    DEFAULT_SCAN_POLL,
};
pub use names::{Reference, RepoName, Tag};
pub use net::{authority_of, Cidr};
pub use policy::{
    default_action, Allow, HookUser, Rule, RuleAction, ScanLimits, Severity, DEFAULT_MAX_IMAGE_BYTES, DEFAULT_RULES,
};
pub use role::Role;
pub use scan_state::{ManifestKind, ScanRecord, ScanState, Verdict};
pub use signature::{SignatureMode, TrustedKey, Unsigned};
pub use upload::{ByteStream, UploadId, WrittenPart};
