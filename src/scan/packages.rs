//! Installed packages read from an image's package databases: dpkg's status file, apk's installed
//! database, and Python distributions' `METADATA`; and the distribution release the image says
//! it is (`/etc/os-release`), which decides the release-specific vulnerability records that apply.

use serde::{Deserialize, Serialize};

/// A package ecosystem, as OSV names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Ecosystem {
    Debian,
    Alpine,
    PyPI,
}

impl Ecosystem {
    /// The ecosystem of an OSV `ecosystem` value (`Debian:12`, `Alpine:v3.19`, `PyPI`).
    pub fn from_osv(s: &str) -> Option<Ecosystem> {
        match crate::model::osv::split_ecosystem(s).0 {
            "Debian" => Some(Ecosystem::Debian),
            "Alpine" => Some(Ecosystem::Alpine),
            "PyPI" => Some(Ecosystem::PyPI),
            _ => None,
        }
    }
}

/// The distribution an image says it is, from `/etc/os-release` (or `/usr/lib/os-release`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distro {
    /// `ID` (`debian`, `alpine`, `ubuntu`...).
    pub id: String,
    /// `VERSION_ID` (`12`, `3.19.1`), empty when the file has none (Debian testing).
    pub version_id: String,
}

impl Distro {
    /// The release, as OSV names it after the ecosystem (`Debian:12`, `Alpine:v3.19`), of this
    /// distribution's packages of `eco`; `None` when the scanner cannot tell (another
    /// distribution, no version, or an ecosystem without releases).
    pub fn osv_release(&self, eco: Ecosystem) -> Option<String> {
        match (eco, self.id.as_str()) {
            (Ecosystem::Debian, "debian") | (Ecosystem::Alpine, "alpine") => {
                osv_release_from(eco, self.version_id.split('.'))
            }
            _ => None,
        }
    }

    /// The purl `distro` qualifier (`debian-12`, `alpine-3.19.1`).
    pub fn purl_qualifier(&self) -> Option<String> {
        let safe = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        (safe(&self.id) && safe(&self.version_id)).then(|| format!("{}-{}", self.id, self.version_id))
    }
}

/// The release, as OSV names it after the ecosystem (`12` for Debian, `v3.19` for Alpine), that a
/// version's leading components name (`12`, `3.19`; each all digits); `None` for PyPI or when
/// they are not numbers. Used for `os-release`'s `VERSION_ID` and for the release packages.
pub fn osv_release_from<'a>(eco: Ecosystem, parts: impl Iterator<Item = &'a str>) -> Option<String> {
    let digits = match eco {
        Ecosystem::Debian => 1,
        Ecosystem::Alpine => 2,
        Ecosystem::PyPI => return None,
    };
    let taken: Vec<&str> = parts.take(digits).collect();
    if taken.len() < digits || taken.iter().any(|n| n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    Some(match eco {
        Ecosystem::Alpine => format!("v{}", taken.join(".")),
        _ => taken.join("."),
    })
}

/// `os-release(5)`: `ID` and `VERSION_ID`, unquoted; `None` without an `ID`.
pub fn os_release(text: &str) -> Option<Distro> {
    let get = |key: &str| {
        text.lines().find_map(|l| {
            let (k, v) = l.trim().split_once('=')?;
            (k == key).then(|| v.trim().trim_matches(|c| c == '"' || c == '\'').to_owned())
        })
    };
    let id = get("ID")?.to_ascii_lowercase();
    (!id.is_empty() && id.len() <= 64).then(|| Distro { id, version_id: get("VERSION_ID").unwrap_or_default() })
}

/// What a rescan matches without reading the layers again: an image's packages and distribution.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inventory {
    pub packages: Vec<Package>,
    #[serde(default)]
    pub distro: Option<Distro>,
}

/// An installed package. `source` is the source package (Debian) or origin (Alpine), which is
/// what the distributions' advisories name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Package {
    pub ecosystem: Ecosystem,
    pub name: String,
    pub source: Option<String>,
    pub version: String,
}

/// Paragraphs of `Key: value` lines separated by blank lines (continuation lines ignored).
fn paragraphs(text: &str) -> impl Iterator<Item = Vec<(&str, &str)>> {
    text.split("\n\n").map(|p| {
        p.lines()
            .filter(|l| !l.starts_with(' ') && !l.starts_with('\t'))
            .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim(), v.trim())))
            .collect()
    })
}

/// `var/lib/dpkg/status`: installed packages only. `Source: name (version)` carries the source
/// package's own version when it differs.
pub fn dpkg_status(text: &str) -> Vec<Package> {
    paragraphs(text)
        .filter_map(|p| {
            let get = |k: &str| p.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
            if !get("Status")?.ends_with("installed") || get("Status")?.contains("not-installed") {
                return None;
            }
            let name = get("Package")?.to_owned();
            let mut version = get("Version")?.to_owned();
            let source = get("Source").map(|s| {
                let mut parts = s.splitn(2, ' ');
                let source = parts.next().unwrap_or("").to_owned();
                if let Some(v) = parts.next().map(|v| v.trim_matches(|c| c == '(' || c == ')')) {
                    version = v.to_owned();
                }
                source
            });
            Some(Package { ecosystem: Ecosystem::Debian, name, source, version })
        })
        .collect()
}

/// `lib/apk/db/installed`: `P:` name, `V:` version, `o:` origin.
pub fn apk_installed(text: &str) -> Vec<Package> {
    text.split("\n\n")
        .filter_map(|p| {
            let get = |k: &str| p.lines().find_map(|l| l.strip_prefix(k)).map(str::trim);
            Some(Package {
                ecosystem: Ecosystem::Alpine,
                name: get("P:")?.to_owned(),
                source: get("o:").map(str::to_owned),
                version: get("V:")?.to_owned(),
            })
        })
        .collect()
}

/// A `*.dist-info/METADATA` (or `PKG-INFO`) file.
pub fn python_metadata(text: &str) -> Option<Package> {
    let header = text.split("\n\n").next()?;
    let get = |k: &str| header.lines().find_map(|l| l.strip_prefix(k)).map(str::trim);
    Some(Package {
        ecosystem: Ecosystem::PyPI,
        // PyPI names compare normalised (PEP 503).
        name: get("Name:")?.to_ascii_lowercase().replace(['_', '.'], "-"),
        source: None,
        version: get("Version:")?.to_owned(),
    })
}

/// Whether a layer path is a package database these parsers read.
pub fn is_package_db(path: &str) -> bool {
    path == "var/lib/dpkg/status"
        || path.starts_with("var/lib/dpkg/status.d/")
        || path == "lib/apk/db/installed"
        || (path.ends_with(".dist-info/METADATA") || path.ends_with(".egg-info/PKG-INFO"))
}

/// The packages a database file lists.
pub fn parse_db(path: &str, text: &str) -> Vec<Package> {
    if path == "lib/apk/db/installed" {
        apk_installed(text)
    } else if path.starts_with("var/lib/dpkg/") {
        dpkg_status(text)
    } else {
        python_metadata(text).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_release() {
        let debian =
            os_release("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\n").unwrap();
        assert_eq!(debian.osv_release(Ecosystem::Debian).as_deref(), Some("12"));
        assert_eq!(debian.osv_release(Ecosystem::Alpine), None);
        assert_eq!(debian.osv_release(Ecosystem::PyPI), None);
        assert_eq!(debian.purl_qualifier().as_deref(), Some("debian-12"));
        let alpine = os_release("NAME=\"Alpine Linux\"\nID=alpine\nVERSION_ID=3.19.1\n").unwrap();
        assert_eq!(alpine.osv_release(Ecosystem::Alpine).as_deref(), Some("v3.19"));
        let testing = os_release("ID=debian\n").unwrap();
        assert_eq!(testing.osv_release(Ecosystem::Debian), None);
        let ubuntu = os_release("ID=ubuntu\nVERSION_ID=\"22.04\"\n").unwrap();
        assert_eq!(ubuntu.osv_release(Ecosystem::Debian), None);
        assert_eq!(os_release("NAME=x\n"), None);
        let odd = os_release("ID=debian\nVERSION_ID=\"12 <b>\"\n").unwrap();
        assert_eq!((odd.osv_release(Ecosystem::Debian), odd.purl_qualifier()), (None, None));
    }

    #[test]
    fn parses_the_three_databases() {
        let status = "Package: libssl3\nStatus: install ok installed\nSource: openssl (3.0.11-1~deb12u1)\nVersion: 3.0.11-1~deb12u1\nDescription: x\n more\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n\nPackage: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b2\n";
        let p = dpkg_status(status);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].name.as_str(), p[0].source.as_deref(), p[0].version.as_str()),
            ("libssl3", Some("openssl"), "3.0.11-1~deb12u1")
        );
        assert_eq!((p[1].name.as_str(), p[1].source.as_deref()), ("bash", None));
        let apk = apk_installed("C:Q1abc=\nP:libcrypto3\nV:3.1.4-r5\no:openssl\n\nP:musl\nV:1.2.4-r2\no:musl\n");
        assert_eq!(
            (apk[0].name.as_str(), apk[0].source.as_deref(), apk[0].version.as_str()),
            ("libcrypto3", Some("openssl"), "3.1.4-r5")
        );
        let py = python_metadata("Metadata-Version: 2.1\nName: Requests_OAuth\nVersion: 2.31.0\n\nbody").unwrap();
        assert_eq!((py.name.as_str(), py.version.as_str()), ("requests-oauth", "2.31.0"));
        assert!(is_package_db("usr/lib/python3/dist-packages/requests-2.31.0.dist-info/METADATA"));
        assert!(!is_package_db("etc/passwd"));
    }
}
