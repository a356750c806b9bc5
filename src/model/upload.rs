//! Upload sessions and the bytes they carry.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use futures::stream::BoxStream;

use super::Digest;

/// A stream of body bytes, as the HTTP layer hands it over.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// An upload session id: a random UUID, so it is unguessable and safe in a path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    pub fn new() -> Self {
        UploadId(uuid::Uuid::new_v4().to_string())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for UploadId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for UploadId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let u = uuid::Uuid::parse_str(s).map_err(|_| ())?;
        // Only the canonical hyphenated form, so one session has exactly one spelling.
        if u.to_string() == s {
            Ok(UploadId(s.to_owned()))
        } else {
            Err(())
        }
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A chunk written to an upload: where the backend put it (`part_id`), its length and the SHA-256
/// of its own bytes, on every backend. A single-chunk upload (the usual push) is thereby verified
/// against its digest without reading its bytes again.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenPart {
    pub part_id: String,
    pub size: u64,
    pub sha256: Digest,
}
