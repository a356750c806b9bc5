//! OSV vulnerability records (<https://ossf.github.io/osv-schema/>), as the registry stores and
//! matches them: the fields it reads, and which ecosystems it keeps.
//!
//! Rule: a record is kept when one of its `affected` entries names an ecosystem the scanner reads
//! packages of (Debian, Alpine, PyPI, with or without a release such as `Debian:12`); fields the
//! registry does not read are ignored, not refused, so newer OSV exports keep importing.

use serde::Deserialize;

/// The ecosystems the scanner finds packages of, as OSV names them (before any `:release`).
pub const ECOSYSTEMS: &[&str] = &["Debian", "Alpine", "PyPI"];

/// The most bytes one OSV record may have (the largest in OSV's Debian export is a few hundred KiB).
pub const MAX_RECORD_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
pub struct Record {
    pub id: String,
    #[serde(default)]
    pub modified: Option<String>,
    #[serde(default)]
    pub withdrawn: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub summary: Option<String>,
    #[serde(default)]
    pub severity: Vec<SeverityEntry>,
    #[serde(default)]
    pub affected: Vec<Affected>,
    #[serde(default)]
    pub database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SeverityEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub score: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Affected {
    pub package: AffectedPackage,
    #[serde(default)]
    pub ranges: Vec<Range>,
    #[serde(default)]
    pub versions: Vec<String>,
    #[serde(default)]
    pub ecosystem_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AffectedPackage {
    pub ecosystem: String,
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Range {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub events: Vec<serde_json::Map<String, serde_json::Value>>,
}

/// The ecosystem of an OSV `ecosystem` value, and its release: `Debian:12` → (`Debian`, `12`).
pub fn split_ecosystem(value: &str) -> (&str, Option<&str>) {
    match value.split_once(':') {
        Some((eco, release)) => (eco, Some(release)),
        None => (value, None),
    }
}

impl Record {
    /// Reads one record; the error says what is wrong with it.
    pub fn parse(bytes: &[u8]) -> Result<Record, String> {
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(format!("the record has {} bytes, more than {MAX_RECORD_BYTES}", bytes.len()));
        }
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        Self::from_value(&value)
    }

    /// Reads one record from parsed JSON.
    pub fn from_value(value: &serde_json::Value) -> Result<Record, String> {
        let record = Record::deserialize(value).map_err(|e| format!("not an OSV record: {e}"))?;
        let valid_id = !record.id.is_empty()
            && record.id.len() <= 128
            && record.id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !valid_id {
            return Err("an OSV record's id is 1 to 128 letters, digits, '-', '_', '.' or ':'".into());
        }
        Ok(record)
    }

    /// Whether the scanner can match this record to anything (and it is not withdrawn).
    pub fn is_relevant(&self) -> bool {
        self.withdrawn.is_none()
            && self.affected.iter().any(|a| ECOSYSTEMS.contains(&split_ecosystem(&a.package.ecosystem).0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_and_checked() {
        let r = Record::parse(br#"{"id":"DSA-1-1","modified":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"}}],"extra":1}"#).unwrap();
        assert!(r.is_relevant());
        assert_eq!(split_ecosystem(&r.affected[0].package.ecosystem), ("Debian", Some("12")));
        let npm = Record::parse(br#"{"id":"GHSA-x","affected":[{"package":{"ecosystem":"npm","name":"x"}}]}"#).unwrap();
        assert!(!npm.is_relevant());
        let gone = Record::parse(br#"{"id":"X-1","withdrawn":"2024-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"PyPI","name":"x"}}]}"#).unwrap();
        assert!(!gone.is_relevant());
        assert!(Record::parse(b"{}").unwrap_err().contains("not an OSV record"));
        assert!(Record::parse(br#"{"id":"<script>"}"#).unwrap_err().contains("id is"));
        assert!(Record::parse(b"[1").unwrap_err().starts_with("not JSON"));
    }
}
