//! Offline vulnerability matching against a directory of OSV records.
//!
//! Rules: a record matches a package when its `affected` entry names the package's ecosystem and
//! name (Debian and Alpine advisories name the source package) and the version is in `versions`
//! or inside an `ECOSYSTEM` range (`introduced` ≤ v < `fixed`, or ≤ `last_affected`), compared
//! with the ecosystem's own ordering. Severity comes from a CVSS v3 vector (scored here) or the
//! record's severity label. Findings at or above the threshold block; allowlisted ids are skipped
//! until their entry expires.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::packages::{Ecosystem, Package};
use super::{versions, Finding, Rule, Severity};

#[derive(Debug, Clone, Deserialize)]
struct Record {
    id: String,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    severity: Vec<SeverityEntry>,
    #[serde(default)]
    affected: Vec<Affected>,
    #[serde(default)]
    database_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
struct SeverityEntry {
    #[serde(rename = "type")]
    kind: String,
    score: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Affected {
    package: AffectedPackage,
    #[serde(default)]
    ranges: Vec<Range>,
    #[serde(default)]
    versions: Vec<String>,
    #[serde(default)]
    ecosystem_specific: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
struct AffectedPackage {
    ecosystem: String,
    name: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Range {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    events: Vec<serde_json::Map<String, serde_json::Value>>,
}

pub use crate::model::Allow;

/// Records indexed by (ecosystem, package name).
#[derive(Debug, Default)]
pub struct OsvDb {
    index: HashMap<(Ecosystem, String), Vec<(Record, usize)>>,
    pub records: usize,
}

fn compare(eco: Ecosystem, a: &str, b: &str) -> Ordering {
    match eco {
        Ecosystem::Debian => versions::dpkg(a, b),
        Ecosystem::Alpine => versions::apk(a, b),
        Ecosystem::PyPI => versions::pep440(a, b),
    }
}

/// The base score of a CVSS v3.0, v3.1 or v4.0 vector (`CVSS:3.1/AV:N/...`, `CVSS:4.0/AV:N/...`),
/// scored by the RustSec `cvss` crate; `None` for a vector it cannot read.
pub fn cvss_score(vector: &str) -> Option<f64> {
    vector.trim().parse::<cvss::Cvss>().ok().map(|v| v.score())
}

fn label(s: &str) -> Option<Severity> {
    Some(match s.to_ascii_uppercase().as_str() {
        "LOW" | "NEGLIGIBLE" | "UNIMPORTANT" => Severity::Low,
        "MEDIUM" | "MODERATE" => Severity::Medium,
        "HIGH" | "IMPORTANT" => Severity::High,
        "CRITICAL" => Severity::Critical,
        _ => return None,
    })
}

fn severity_of(record: &Record, affected: &Affected) -> Severity {
    let from_cvss = record
        .severity
        .iter()
        .filter(|s| s.kind.starts_with("CVSS_V3") || s.kind.starts_with("CVSS_V4"))
        .filter_map(|s| cvss_score(&s.score))
        .fold(None, |best: Option<f64>, s| Some(best.map_or(s, |b| b.max(s))))
        .map(|score| match score {
            s if s >= 9.0 => Severity::Critical,
            s if s >= 7.0 => Severity::High,
            s if s >= 4.0 => Severity::Medium,
            _ => Severity::Low,
        });
    let labelled = [affected.ecosystem_specific.as_ref(), record.database_specific.as_ref()]
        .into_iter()
        .flatten()
        .find_map(|v| v.get("severity").and_then(|s| s.as_str()).and_then(label));
    from_cvss.or(labelled).unwrap_or(Severity::Medium)
}

impl OsvDb {
    /// Loads every `*.json` record under `dir` (recursively). Unreadable files are skipped and counted.
    pub fn load_dir(dir: &Path) -> std::io::Result<(OsvDb, usize)> {
        let mut db = OsvDb::default();
        let mut skipped = 0;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d)? {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "json") {
                    match std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<Record>(&b).ok()) {
                        Some(r) => db.add(r),
                        None => skipped += 1,
                    }
                }
            }
        }
        Ok((db, skipped))
    }

    fn add(&mut self, record: Record) {
        self.records += 1;
        for (i, a) in record.affected.iter().enumerate() {
            if let Some(eco) = Ecosystem::from_osv(&a.package.ecosystem) {
                let name = if eco == Ecosystem::PyPI {
                    a.package.name.to_ascii_lowercase().replace(['_', '.'], "-")
                } else {
                    a.package.name.clone()
                };
                self.index.entry((eco, name)).or_default().push((record.clone(), i));
            }
        }
    }

    fn affected(eco: Ecosystem, a: &Affected, version: &str) -> Option<Option<String>> {
        if a.versions.iter().any(|v| v == version) {
            return Some(None);
        }
        for range in a.ranges.iter().filter(|r| r.kind == "ECOSYSTEM") {
            let mut introduced: Option<String> = None;
            for event in &range.events {
                let get = |k: &str| event.get(k).and_then(|v| v.as_str()).map(str::to_owned);
                if let Some(i) = get("introduced") {
                    introduced = Some(i);
                } else if let Some(f) = get("fixed") {
                    if let Some(i) = introduced.take() {
                        if (i == "0" || compare(eco, version, &i).is_ge()) && compare(eco, version, &f).is_lt() {
                            return Some(Some(f));
                        }
                    }
                } else if let Some(l) = get("last_affected") {
                    if let Some(i) = introduced.take() {
                        if (i == "0" || compare(eco, version, &i).is_ge()) && compare(eco, version, &l).is_le() {
                            return Some(None);
                        }
                    }
                }
            }
            if let Some(i) = introduced {
                if i == "0" || compare(eco, version, &i).is_ge() {
                    return Some(None);
                }
            }
        }
        None
    }

    /// Vulnerability findings for `packages`. At or above `threshold` they are `Vulnerability`
    /// (blocking by default); below it `VulnerabilityLow` (a warning). Allowlisted ids are skipped.
    pub fn scan(&self, packages: &[Package], threshold: Severity, allow: &[Allow], now: i64) -> Vec<Finding> {
        let mut findings = Vec::new();
        let allowed = |r: &Record| {
            allow.iter().any(|a| a.until.is_none_or(|u| u > now) && (a.id == r.id || r.aliases.contains(&a.id)))
        };
        for p in packages {
            let name = p.source.clone().unwrap_or_else(|| p.name.clone());
            let mut seen = std::collections::HashSet::new();
            for key in [(p.ecosystem, name), (p.ecosystem, p.name.clone())] {
                for (record, i) in self.index.get(&key).into_iter().flatten() {
                    let affected = &record.affected[*i];
                    if !seen.insert(record.id.clone()) || allowed(record) {
                        continue;
                    }
                    if let Some(fixed) = Self::affected(p.ecosystem, affected, &p.version) {
                        let severity = severity_of(record, affected);
                        let fix = fixed.map(|f| format!(", fixed in {f}")).unwrap_or_else(|| ", no fix yet".into());
                        let summary = record.summary.as_deref().map(|s| format!(": {s}")).unwrap_or_default();
                        findings.push(Finding {
                            rule: if severity >= threshold { Rule::Vulnerability } else { Rule::VulnerabilityLow },
                            severity,
                            message: format!("{} in {} {}{fix}{summary}", record.id, p.name, p.version),
                            path: None,
                            layer: None,
                        });
                    }
                }
            }
        }
        findings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cvss_scores() {
        assert_eq!(cvss_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"), Some(9.8));
        assert_eq!(cvss_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H"), Some(10.0));
        assert_eq!(cvss_score("CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:N/A:N"), Some(5.5));
        assert_eq!(cvss_score("CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:N/A:N"), Some(3.1));
        assert_eq!(cvss_score("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N"), Some(0.0));
        assert_eq!(cvss_score("nonsense"), None);
        // v4.0 vectors are scored (they used to fall back to a label or Medium).
        assert_eq!(cvss_score("CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"), Some(9.3));
        assert_eq!(cvss_score("CVSS:4.0/AV:L/AC:H/AT:P/PR:H/UI:A/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N"), Some(1.0));
        assert_eq!(cvss_score("CVSS:4.0/AV:X"), None);
    }
}
