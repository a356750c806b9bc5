//! The budgets of one scan, and the error that says which one was hit.
//!
//! Rule: everything a pusher controls the size of has a budget here (decompressed bytes, tar
//! entries, path and header lengths, bytes buffered for one file, packages, layers). Hitting a
//! budget is not a pass: the scan ends in `error` (the image stays blocked) with the budget named,
//! so an operator knows which key to raise. Memory and time of the whole scan are bounded again,
//! from outside, by the sandbox process (`memory`, `timeout`).

use std::borrow::Cow;
use std::cell::Cell;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

pub use crate::model::ScanLimits;

/// Why a scan could not read what it was given. Every variant fails closed (`error`).
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanError {
    /// A budget of [`ScanLimits`] was hit; `key` is its configuration key.
    #[error("{what} exceeds the limit of {limit} (scan.limits.{key})")]
    Limit { what: String, limit: u64, key: Cow<'static, str> },
    /// The bytes are not what a client could unpack unambiguously.
    #[error("{0}")]
    Unreadable(String),
}

impl ScanError {
    pub fn unreadable(message: impl Into<String>) -> Self {
        ScanError::Unreadable(message.into())
    }

    pub fn limit(what: impl Into<String>, limit: u64, key: &'static str) -> Self {
        ScanError::Limit { what: what.into(), limit, key: Cow::Borrowed(key) }
    }

    /// The configuration key of the limit that was hit, if one was.
    pub fn limit_key(&self) -> Option<&str> {
        match self {
            ScanError::Limit { key, .. } => Some(key),
            ScanError::Unreadable(_) => None,
        }
    }
}

/// Reading through a [`std::io::Read`] loses our error type; it travels inside an `io::Error`
/// and is taken out again here.
pub fn from_io(e: std::io::Error) -> ScanError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<ScanError>()) {
        Some(scan) => scan.clone(),
        None => ScanError::Unreadable(e.to_string()),
    }
}

pub fn to_io(e: ScanError) -> std::io::Error {
    std::io::Error::other(e)
}

/// A count shared by every blob of one scan (bytes decompressed, entries read, packages listed),
/// checked against its limit on every spend.
#[derive(Debug, Clone)]
pub struct Allowance {
    used: Rc<Cell<u64>>,
    limit: u64,
    what: &'static str,
    key: &'static str,
}

impl Allowance {
    pub fn new(limit: u64, what: &'static str, key: &'static str) -> Self {
        Allowance { used: Rc::new(Cell::new(0)), limit, what, key }
    }

    pub fn decompressed(limit: u64) -> Self {
        Self::new(limit, "decompressed size of the scanned blobs", "max_decompressed_bytes")
    }

    pub fn entries(limit: u64) -> Self {
        Self::new(limit, "number of tar entries", "max_entries")
    }

    pub fn used(&self) -> u64 {
        self.used.get()
    }

    pub fn spend(&self, n: u64) -> Result<(), ScanError> {
        let used = self.used.get().saturating_add(n);
        self.used.set(used);
        if used > self.limit {
            return Err(ScanError::limit(self.what, self.limit, self.key));
        }
        Ok(())
    }
}
