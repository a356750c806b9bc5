//! The rules of the registry: repositories, blobs, uploads, manifests, tags and referrers.
//!
//! Rule: no HTTP types here. Handlers call [`Registry`] with parsed, validated values and get back
//! domain values or an [`Error`]; storage and metadata are reached only through their traits.

mod attach;
pub mod attestations;
pub mod audit;
pub mod config_view;
mod gate;
pub mod gc;
pub mod gojson;
pub mod health;
pub mod index;
mod lifecycle;
pub mod manifest;
mod manifests;
mod registry;
pub mod retention;
mod scans;
pub mod signatures;
mod uploads;
pub mod vulndb;
pub mod webhooks;

// The vocabulary lives in the leaf `model`; re-exported for the layers above the domain.
/// What the listings hand to the layers above.
pub use crate::metadata::{RepositorySummary, TagDetail};
pub use crate::model::{digest, names};
pub use crate::model::{now, Blocked, Clock, Digest, Error, Reference, RepoName, Result, Tag, Target};
pub use crate::model::{DEFAULT_GC_GRACE, DEFAULT_MAX_INDEX_REACH, DEFAULT_MAX_REFERENCES, DEFAULT_SCAN_POLL};
pub use gate::{ManifestHead, Reader};
pub use manifests::PutManifest;
pub use registry::{BlobRead, ByteRange, Limits, Page, Registry};
pub use uploads::UploadState;
