//! Offline vulnerability matching against the imported OSV records.
//!
//! Rules: a record matches a package when one of its `affected` entries names the package's
//! ecosystem and name (Debian and Alpine advisories name the source package) and the version is
//! in `versions` or inside an `ECOSYSTEM` range (`introduced` ≤ v < `fixed`, or ≤
//! `last_affected`), compared with the ecosystem's own ordering. Severity comes from a CVSS v3 or
//! v4 vector (scored here) or the record's severity label. Findings at or above the threshold
//! block; allowlisted ids are skipped until their entry expires.
//!
//! Invariant: what an image says of itself can only add records, never remove them. Entries for
//! one release (`Debian:12`) are left out only when the release is confirmed three ways (its
//! `os-release`, the release package among its packages, and records for that release in the
//! data); otherwise every release's entries apply.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use super::packages::{osv_release_from, Distro, Ecosystem, Package};
use super::{versions, Finding, Rule, Severity};
use crate::model::osv::{split_ecosystem, Affected, Record};

pub use crate::model::Allow;

/// The records naming one package, each with the index of the `affected` entry that does.
type Entries = Vec<(Arc<Record>, usize)>;

/// Records indexed by (ecosystem, package name), as of one version of the vulnerability data.
#[derive(Debug, Default)]
pub struct OsvDb {
    index: HashMap<(Ecosystem, String), Entries>,
    pub records: usize,
    /// The version of the imported data this was built from (0: none imported).
    pub version: i64,
    /// The releases the records name (`(Debian, "12")`, `(Alpine, "v3.19")`).
    releases: std::collections::HashSet<(Ecosystem, String)>,
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

/// Whether `alias` is a CVE id (`CVE-2024-12345`), as a finding names it beside the record's id.
pub fn is_cve(alias: &str) -> bool {
    alias.strip_prefix("CVE-").is_some_and(|rest| {
        let (year, number) = rest.split_once('-').unwrap_or(("", ""));
        year.len() == 4
            && year.bytes().all(|b| b.is_ascii_digit())
            && (4..=7).contains(&number.len())
            && number.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Whether an `affected` entry for `ecosystem` (`Debian:12`, `Alpine:v3.19`, `PyPI`) applies to a
/// package in an image of confirmed `release` (see [`OsvDb::confirmed_release`]): a
/// release-specific entry applies only to that release; without a confirmed release, every
/// release's entries apply.
fn applies(release: Option<&str>, ecosystem: &str) -> bool {
    match (split_ecosystem(ecosystem).1, release) {
        (Some(wanted), Some(image)) => wanted == image,
        _ => true,
    }
}

/// The package whose version names the distribution release (`base-files` 12.4+deb12u2 is Debian
/// 12; `alpine-release` 3.19.1-r0 is Alpine v3.19).
fn release_of_packages(eco: Ecosystem, packages: &[Package]) -> Option<String> {
    let name = match eco {
        Ecosystem::Debian => "base-files",
        Ecosystem::Alpine => "alpine-release",
        Ecosystem::PyPI => return None,
    };
    let version = &packages.iter().find(|p| p.ecosystem == eco && p.name == name)?.version;
    osv_release_from(eco, version.split(['.', '-', '+', '~']))
}

impl OsvDb {
    /// The index of `records`, as of data version `version`.
    pub fn new(records: impl IntoIterator<Item = Record>, version: i64) -> OsvDb {
        let mut db = OsvDb { version, ..OsvDb::default() };
        for record in records {
            db.add(record);
        }
        db
    }

    /// The release whose records alone apply to the image's packages of `eco`: the one its
    /// `os-release` names, when the image's own packages say the same (`base-files`,
    /// `alpine-release`) and the data has records for that release. Otherwise `None`, and every
    /// release's records apply: an image cannot turn records off by claiming a release that does
    /// not exist, a neighbouring one, or one the data does not cover yet.
    pub fn confirmed_release(&self, eco: Ecosystem, distro: Option<&Distro>, packages: &[Package]) -> Option<String> {
        let claimed = distro?.osv_release(eco)?;
        let known = self.releases.contains(&(eco, claimed.clone()));
        (known && release_of_packages(eco, packages).as_deref() == Some(claimed.as_str())).then_some(claimed)
    }

    fn add(&mut self, record: Record) {
        self.records += 1;
        let record = Arc::new(record);
        for a in &record.affected {
            if let (Some(eco), (_, Some(release))) =
                (Ecosystem::from_osv(&a.package.ecosystem), split_ecosystem(&a.package.ecosystem))
            {
                self.releases.insert((eco, release.to_owned()));
            }
        }
        for (i, a) in record.affected.iter().enumerate() {
            if let Some(eco) = Ecosystem::from_osv(&a.package.ecosystem) {
                let name = if eco == Ecosystem::PyPI {
                    a.package.name.to_ascii_lowercase().replace(['_', '.'], "-")
                } else {
                    a.package.name.clone()
                };
                self.index.entry((eco, name)).or_default().push((Arc::clone(&record), i));
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

    /// Vulnerability findings for `packages` of an image whose `os-release` names `distro` (see
    /// [`confirmed_release`](Self::confirmed_release) for when that narrows the records). At or above `threshold` they are `Vulnerability` (blocking by default);
    /// below it `VulnerabilityLow` (a warning). Allowlisted ids are skipped.
    pub fn scan(
        &self,
        packages: &[Package],
        distro: Option<&Distro>,
        threshold: Severity,
        allow: &[Allow],
        now: i64,
    ) -> Vec<Finding> {
        let mut findings = Vec::new();
        let allowed = |r: &Record| {
            allow.iter().any(|a| a.until.is_none_or(|u| u > now) && (a.id == r.id || r.aliases.contains(&a.id)))
        };
        let mut releases: HashMap<Ecosystem, Option<String>> = HashMap::new();
        for p in packages {
            let release =
                releases.entry(p.ecosystem).or_insert_with(|| self.confirmed_release(p.ecosystem, distro, packages));
            let name = p.source.clone().unwrap_or_else(|| p.name.clone());
            // Records already reported for this package: a record is one finding, but each of
            // its entries (one per release, say) is looked at until one matches.
            let mut found = std::collections::HashSet::new();
            for key in [(p.ecosystem, name), (p.ecosystem, p.name.clone())] {
                for (record, i) in self.index.get(&key).into_iter().flatten() {
                    let affected = &record.affected[*i];
                    if !applies(release.as_deref(), &affected.package.ecosystem)
                        || found.contains(&record.id)
                        || allowed(record)
                    {
                        continue;
                    }
                    if let Some(fixed) = Self::affected(p.ecosystem, affected, &p.version) {
                        found.insert(record.id.clone());
                        let severity = severity_of(record, affected);
                        let fix = fixed.map(|f| format!(", fixed in {f}")).unwrap_or_else(|| ", no fix yet".into());
                        let summary = record.summary.as_deref().map(|s| format!(": {s}")).unwrap_or_default();
                        let cves: Vec<&str> =
                            record.aliases.iter().map(String::as_str).filter(|a| is_cve(a)).take(4).collect();
                        let cves = if cves.is_empty() { String::new() } else { format!(" ({})", cves.join(", ")) };
                        findings.push(Finding {
                            rule: if severity >= threshold { Rule::Vulnerability } else { Rule::VulnerabilityLow },
                            severity,
                            message: format!("{}{cves} in {} {}{fix}{summary}", record.id, p.name, p.version),
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
