//! The SBOM of an image: the packages the scan found (dpkg, apk, Python distributions), as an
//! SPDX 2.3 JSON document with a package URL for each, attached to the image by the registry
//! (`application/spdx+json`).
//!
//! Rule: the document is a pure function of the image, its packages and a time, and carries a
//! fingerprint of the package list, so a rescan that finds the same packages attaches nothing new.

use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::packages::{Distro, Ecosystem, Inventory, Package};
use crate::model::{Digest, RepoName};

/// The package URL of `p` (purl-spec) in an image of `distro`: a distribution package's
/// namespace is the distribution (`debian`, `ubuntu`, `alpine`), with a `distro` qualifier
/// (`debian-12`) when the image's `os-release` says which release it is.
pub fn purl(p: &Package, distro: Option<&Distro>) -> String {
    let enc = |s: &str| percent_encoding::utf8_percent_encode(s, PURL_ESCAPES).to_string();
    let vendor = |default: &str| {
        let id =
            distro.map(|d| d.id.as_str()).filter(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()));
        id.unwrap_or(default).to_owned()
    };
    let qualifier = distro.and_then(Distro::purl_qualifier).map(|q| format!("?distro={}", enc(&q))).unwrap_or_default();
    match p.ecosystem {
        Ecosystem::Debian => format!("pkg:deb/{}/{}@{}{qualifier}", vendor("debian"), enc(&p.name), enc(&p.version)),
        Ecosystem::Alpine => format!("pkg:apk/{}/{}@{}{qualifier}", vendor("alpine"), enc(&p.name), enc(&p.version)),
        Ecosystem::PyPI => {
            let name = p.name.to_ascii_lowercase().replace(['_', '.'], "-");
            format!("pkg:pypi/{}@{}", enc(&name), enc(&p.version))
        }
    }
}

/// What purl components escape: everything but unreserved characters.
const PURL_ESCAPES: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~').remove(b'+');

/// A fingerprint of the package list (sorted), to tell whether a new SBOM says anything new.
pub fn fingerprint(inventory: &Inventory) -> String {
    let distro = inventory.distro.as_ref();
    let mut lines: Vec<String> = inventory.packages.iter().map(|p| purl(p, distro)).collect();
    lines.sort();
    hex::encode(Sha256::digest(lines.join("\n")))
}

/// The SPDX 2.3 document for `repo@digest` holding the inventory's packages, created at
/// `created` (RFC 3339).
pub fn spdx(repo: &RepoName, digest: &Digest, inventory: &Inventory, created: &str) -> Vec<u8> {
    let (packages, distro) = (&inventory.packages, inventory.distro.as_ref());
    let mut spdx_packages: Vec<Value> = vec![json!({
        "name": repo.as_str(),
        "SPDXID": "SPDXRef-Image",
        "versionInfo": digest.as_str(),
        "downloadLocation": "NOASSERTION",
        "primaryPackagePurpose": "CONTAINER",
        "checksums": [{"algorithm": "SHA256", "checksumValue": digest.hex()}],
    })];
    let mut relationships = vec![json!({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
        "relatedSpdxElement": "SPDXRef-Image"})];
    for (i, p) in packages.iter().enumerate() {
        let id = format!("SPDXRef-Package-{i}");
        let mut package = json!({
            "name": p.name,
            "SPDXID": id,
            "versionInfo": p.version,
            "downloadLocation": "NOASSERTION",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": purl(p, distro)}],
        });
        if let Some(source) = &p.source {
            package["sourceInfo"] = json!(format!("built from source package {source}"));
        }
        spdx_packages.push(package);
        relationships.push(json!({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS",
            "relatedSpdxElement": id}));
    }
    let document = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{repo}@{digest}"),
        "documentNamespace": format!("https://portcullis.dev/spdx/{repo}/{}/{}", digest.hex(), fingerprint(inventory)),
        "creationInfo": {"created": created, "creators": [format!("Tool: portcullis-{}", env!("CARGO_PKG_VERSION"))]},
        "packages": spdx_packages,
        "relationships": relationships,
    });
    serde_json::to_vec_pretty(&document).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(ecosystem: Ecosystem, name: &str, version: &str) -> Package {
        Package { ecosystem, name: name.into(), source: None, version: version.into() }
    }

    #[test]
    fn purls_follow_the_spec_per_ecosystem() {
        assert_eq!(purl(&p(Ecosystem::Debian, "libc6", "2.36-9+deb12u4"), None), "pkg:deb/debian/libc6@2.36-9+deb12u4");
        assert_eq!(purl(&p(Ecosystem::Alpine, "musl", "1.2.4-r2"), None), "pkg:apk/alpine/musl@1.2.4-r2");
        assert_eq!(purl(&p(Ecosystem::PyPI, "Typing_Extensions", "4.9.0"), None), "pkg:pypi/typing-extensions@4.9.0");
        assert_eq!(purl(&p(Ecosystem::Debian, "we/ird", "1:2"), None), "pkg:deb/debian/we%2Fird@1%3A2");
        let bookworm = crate::scan::packages::os_release("ID=debian\nVERSION_ID=\"12\"\n");
        assert_eq!(
            purl(&p(Ecosystem::Debian, "libc6", "2.36-9+deb12u4"), bookworm.as_ref()),
            "pkg:deb/debian/libc6@2.36-9+deb12u4?distro=debian-12"
        );
        let jammy = crate::scan::packages::os_release("ID=ubuntu\nVERSION_ID=\"22.04\"\n");
        assert_eq!(
            purl(&p(Ecosystem::Debian, "bash", "5.1"), jammy.as_ref()),
            "pkg:deb/ubuntu/bash@5.1?distro=ubuntu-22.04"
        );
        let odd = crate::scan::packages::os_release("ID=\"x/../y\"\nVERSION_ID=1\n");
        assert_eq!(purl(&p(Ecosystem::Alpine, "musl", "1"), odd.as_ref()), "pkg:apk/alpine/musl@1");
    }

    #[test]
    fn the_document_lists_every_package_and_its_fingerprint_ignores_order() {
        let repo: RepoName = "team/app".parse().unwrap();
        let digest = Digest::of(crate::model::Algorithm::Sha256, b"m");
        let packages = vec![p(Ecosystem::Debian, "bash", "5.2.15-2+b2"), p(Ecosystem::PyPI, "requests", "2.31.0")];
        let of = |packages: Vec<Package>| Inventory { packages, distro: None };
        let inventory = of(packages.clone());
        let doc: Value = serde_json::from_slice(&spdx(&repo, &digest, &inventory, "2026-12-03T00:00:00Z")).unwrap();
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["packages"].as_array().unwrap().len(), 3, "the image and two packages");
        assert_eq!(doc["packages"][1]["versionInfo"], "5.2.15-2+b2");
        assert_eq!(doc["relationships"].as_array().unwrap().len(), 3);
        let reversed = of(vec![packages[1].clone(), packages[0].clone()]);
        assert_eq!(fingerprint(&inventory), fingerprint(&reversed));
        assert_ne!(fingerprint(&inventory), fingerprint(&of(packages[..1].to_vec())));
        let bookworm =
            Inventory { distro: crate::scan::packages::os_release("ID=debian\nVERSION_ID=12\n"), ..inventory.clone() };
        assert_ne!(fingerprint(&inventory), fingerprint(&bookworm), "the release is part of what the SBOM says");
    }
}
