//! Manifest parsing and validation.
//!
//! Rule: a manifest is stored byte for byte as pushed; parsing only extracts what the registry must
//! check or index (referenced blobs and child manifests, `subject`, `artifactType`, annotations).
//! Four media types are accepted; Docker schema 1 and anything unknown are refused.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Digest, Error, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_SCHEMA1: [&str; 2] = [
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Media types of manifests this registry stores.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST];

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: String,
    size: i64,
    #[serde(default)]
    urls: Vec<String>,
    artifact_type: Option<String>,
    annotations: Option<Map<String, Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<Map<String, Value>>,
}

/// A descriptor as the registry needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub artifact_type: Option<String>,
    pub annotations: Option<Map<String, Value>>,
}

/// What the registry learns from a pushed manifest.
#[derive(Debug, Clone)]
pub struct ParsedManifest {
    pub media_type: String,
    /// `artifactType`, or for an image manifest without one, the config's media type (as the
    /// referrers API requires).
    pub artifact_type: Option<String>,
    pub subject: Option<Digest>,
    /// Config and layers that must be present in the repository (foreign layers with `urls` excepted).
    pub blobs: Vec<Digest>,
    /// Child manifests of an index that must be present in the repository.
    pub children: Vec<Descriptor>,
    pub annotations: Option<Map<String, Value>>,
    /// The config's media type (image manifests only).
    pub config_media_type: Option<String>,
    /// Whether `artifactType` was set explicitly.
    pub explicit_artifact_type: bool,
}

/// Config media types of runnable images.
const IMAGE_CONFIGS: [&str; 2] =
    ["application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"];

impl ParsedManifest {
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    /// A runnable image, as opposed to an index or an artifact (a signature, SBOM or attestation
    /// with a `subject`, or anything whose config is not an image config). Only images are scanned.
    pub fn is_image(&self) -> bool {
        !self.is_index()
            && self.subject.is_none()
            && !self.explicit_artifact_type
            && self.config_media_type.as_deref().is_some_and(|t| IMAGE_CONFIGS.contains(&t))
    }
}

fn descriptor(raw: RawDescriptor, what: &str) -> Result<Descriptor> {
    let digest: Digest =
        raw.digest.parse().map_err(|_| Error::ManifestInvalid(format!("{what} has an invalid digest")))?;
    if raw.size < 0 {
        return Err(Error::ManifestInvalid(format!("{what} has a negative size")));
    }
    Ok(Descriptor {
        media_type: raw.media_type.ok_or_else(|| Error::ManifestInvalid(format!("{what} has no mediaType")))?,
        digest,
        size: raw.size as u64,
        artifact_type: raw.artifact_type,
        annotations: raw.annotations,
    })
}

/// Parses and validates a manifest body. `content_type` is the request's `Content-Type`, if any.
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<ParsedManifest> {
    let content_type = content_type.map(|c| c.split(';').next().unwrap_or("").trim()).filter(|c| !c.is_empty());
    if let Some(ct) = content_type {
        if DOCKER_SCHEMA1.contains(&ct) {
            return Err(Error::ManifestInvalid("Docker schema 1 manifests are not supported".into()));
        }
    }
    let raw: RawManifest = serde_json::from_slice(bytes)
        .map_err(|e| Error::ManifestInvalid(format!("manifest is not valid JSON: {e}")))?;
    if raw.schema_version != Some(2) {
        return Err(Error::ManifestInvalid("schemaVersion must be 2 (Docker schema 1 is not supported)".into()));
    }
    // The media type comes from the body when it names one; it must then agree with the header.
    let media_type = match (raw.media_type.as_deref(), content_type) {
        (Some(body), Some(header)) if body != header && header != "application/json" => {
            return Err(Error::ManifestInvalid(format!(
                "Content-Type {header:?} does not match the manifest's mediaType {body:?}"
            )))
        }
        (Some(body), _) => body.to_owned(),
        (None, Some(header)) if header != "application/json" => header.to_owned(),
        (None, _) if raw.manifests.is_some() => OCI_INDEX.to_owned(),
        (None, _) if raw.config.is_some() => OCI_MANIFEST.to_owned(),
        (None, _) => return Err(Error::ManifestInvalid("cannot tell the manifest's media type".into())),
    };
    if !MANIFEST_MEDIA_TYPES.contains(&media_type.as_str()) {
        return Err(Error::ManifestInvalid(format!("unsupported manifest media type {media_type:?}")));
    }
    let subject = raw.subject.map(|s| descriptor(s, "subject")).transpose()?.map(|d| d.digest);
    let explicit_artifact_type = raw.artifact_type.is_some();
    let mut parsed = ParsedManifest {
        media_type,
        explicit_artifact_type,
        config_media_type: None,
        artifact_type: raw.artifact_type,
        subject,
        blobs: Vec::new(),
        children: Vec::new(),
        annotations: raw.annotations,
    };
    if parsed.is_index() {
        if raw.config.is_some() || raw.layers.is_some() {
            return Err(Error::ManifestInvalid("an index has no config or layers".into()));
        }
        let manifests =
            raw.manifests.ok_or_else(|| Error::ManifestInvalid("an index needs a manifests array".into()))?;
        for m in manifests {
            parsed.children.push(descriptor(m, "manifests[]")?);
        }
    } else {
        if raw.manifests.is_some() {
            return Err(Error::ManifestInvalid("an image manifest has no manifests array".into()));
        }
        let config = descriptor(
            raw.config.ok_or_else(|| Error::ManifestInvalid("an image manifest needs a config".into()))?,
            "config",
        )?;
        let layers =
            raw.layers.ok_or_else(|| Error::ManifestInvalid("an image manifest needs a layers array".into()))?;
        if parsed.artifact_type.is_none() {
            parsed.artifact_type = Some(config.media_type.clone());
        }
        parsed.config_media_type = Some(config.media_type.clone());
        parsed.blobs.push(config.digest);
        for layer in layers {
            // Foreign layers live elsewhere (`urls`) and are never pushed here.
            let foreign = !layer.urls.is_empty();
            let d = descriptor(layer, "layers[]")?;
            if !foreign && !parsed.blobs.contains(&d.digest) {
                parsed.blobs.push(d.digest);
            }
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::digest::Algorithm;

    fn d(s: &str) -> String {
        Digest::of(Algorithm::Sha256, s.as_bytes()).to_string()
    }

    #[test]
    fn image_manifest_lists_blobs_and_artifact_type() {
        let body = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d("c"), "size": 1},
            "layers": [{"mediaType": "l", "digest": d("l"), "size": 1},
                       {"mediaType": "l", "digest": d("f"), "size": 1, "urls": ["https://x"]}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": d("s"), "size": 1}
        });
        let m = parse(body.to_string().as_bytes(), Some(OCI_MANIFEST)).unwrap();
        assert_eq!(m.blobs.len(), 2);
        assert_eq!(m.artifact_type.as_deref(), Some("application/vnd.oci.image.config.v1+json"));
        assert_eq!(m.subject.unwrap().to_string(), d("s"));
    }

    #[test]
    fn refuses_bad_manifests() {
        let schema1 = r#"{"schemaVersion":1,"name":"x","tag":"y","fsLayers":[]}"#;
        assert!(matches!(parse(schema1.as_bytes(), None), Err(Error::ManifestInvalid(_))));
        let ct = "application/vnd.docker.distribution.manifest.v1+prettyjws";
        assert!(parse(b"{}", Some(ct)).is_err());
        assert!(parse(b"not json", None).is_err());
        let mismatch = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#);
        assert!(parse(mismatch.as_bytes(), Some(OCI_MANIFEST)).is_err());
        let bad_digest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"m","digest":"sha256:zz","size":1}}]}}"#
        );
        assert!(parse(bad_digest.as_bytes(), None).is_err());
        assert!(parse(br#"{"schemaVersion":2,"mediaType":"text/plain"}"#, None).is_err());
    }
}
