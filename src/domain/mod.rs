//! The rules of the registry: repositories, blobs, uploads, manifests, tags and referrers.
//!
//! Rule: no HTTP types here. Handlers call [`Registry`] with parsed, validated values and get back
//! domain values or an [`Error`]; storage and metadata are reached only through their traits.

pub mod digest;
mod error;
mod gate;
pub mod gojson;
pub mod manifest;
mod manifests;
pub mod names;
mod registry;
mod scans;
mod uploads;

pub use digest::Digest;
pub use error::{Error, Result};
pub use gate::{Blocked, ManifestHead, Reader, Target};
pub use manifests::PutManifest;
pub use names::{Reference, RepoName, Tag};
pub use registry::{BlobRead, ByteRange, Limits, Page, Registry, DEFAULT_MAX_INDEX_REACH, DEFAULT_MAX_REFERENCES};
pub use scans::DEFAULT_SCAN_POLL;
pub use uploads::UploadState;

/// Seconds since the Unix epoch: the one clock for stored timestamps.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
