//! Manifest parsing and validation.
//!
//! Rules:
//! - A manifest is stored byte for byte as pushed; parsing only extracts what the registry must
//!   check or index (referenced blobs and child manifests, `subject`, `artifactType`, annotations).
//!   Four media types are accepted; Docker schema 1 and anything unknown are refused.
//! - What a manifest is to the quarantine gate ([`ParsedManifest::kind`]) is decided from what a
//!   client would run, never from `subject` or `artifactType`, which the pusher may add to anything.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::{Digest, Error, Result};
use crate::metadata::ManifestKind;

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
    /// The media types of the layers, foreign ones included.
    pub layer_media_types: Vec<String>,
}

/// Whether a client unpacks a blob of this media type as a layer (or reads it as an image
/// config). Docker applies any layer whose type starts with one of these prefixes, whatever
/// follows; containerd and podman know a subset of them.
fn runnable_type(media_type: &str) -> bool {
    let t = media_type.to_ascii_lowercase();
    t.starts_with("application/vnd.oci.image.") || t.starts_with("application/vnd.docker.")
}

impl ParsedManifest {
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    /// What the manifest is to the gate. An image is what some client would run: every layer of
    /// a type clients unpack (containerd ignores the config's type, so it does not decide), or,
    /// with no layers, an image config. Anything else with a config and layers (a cosign
    /// signature, an SBOM, a chart) is an artifact, whose blobs are searched for secrets; it can
    /// never open a blob that an image of its repository contains.
    pub fn kind(&self) -> ManifestKind {
        if self.is_index() {
            ManifestKind::Index
        } else if self.layer_media_types.is_empty() {
            match self.config_media_type.as_deref() {
                Some(t) if runnable_type(t) => ManifestKind::Image,
                _ => ManifestKind::Artifact,
            }
        } else if self.layer_media_types.iter().all(|t| runnable_type(t)) {
            ManifestKind::Image
        } else {
            ManifestKind::Artifact
        }
    }

    /// How many blobs or manifests the manifest references (the config counts as one).
    pub fn references(&self) -> usize {
        if self.is_index() {
            self.children.len()
        } else {
            self.layer_media_types.len() + 1
        }
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
    let mut parsed = ParsedManifest {
        media_type,
        config_media_type: None,
        layer_media_types: Vec::new(),
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
            parsed.layer_media_types.push(d.media_type.clone());
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

    fn manifest(config: &str, layers: &[&str], extra: serde_json::Value) -> ParsedManifest {
        let mut body = serde_json::json!({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": config, "digest": d("c"), "size": 1},
            "layers": layers.iter().enumerate().map(|(i, t)| serde_json::json!({"mediaType": t, "digest": d(&i.to_string()), "size": 1})).collect::<Vec<_>>(),
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        parse(body.to_string().as_bytes(), None).unwrap()
    }

    #[test]
    fn what_a_client_would_run_is_an_image_whatever_the_pusher_adds() {
        const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
        const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
        let subject = serde_json::json!({"subject": {"mediaType": OCI_MANIFEST, "digest": d("s"), "size": 1}});
        let typed = serde_json::json!({"artifactType": "application/vnd.example.sbom"});
        for extra in [serde_json::json!({}), subject, typed] {
            assert_eq!(manifest(CONFIG, &[LAYER], extra).kind(), ManifestKind::Image);
        }
        // containerd ignores the config's type: layers it unpacks make an image.
        assert_eq!(
            manifest("application/vnd.oci.empty.v1+json", &[LAYER], serde_json::json!({})).kind(),
            ManifestKind::Image
        );
        assert_eq!(
            manifest(CONFIG, &["Application/VND.OCI.Image.Layer.v1.tar+zstd"], serde_json::json!({})).kind(),
            ManifestKind::Image
        );
        assert_eq!(manifest(CONFIG, &[], serde_json::json!({})).kind(), ManifestKind::Image);
        // A cosign signature (an image config, a simple-signing layer), an SBOM, an oras artifact.
        let cosign = manifest(CONFIG, &["application/vnd.dev.cosign.simplesigning.v1+json"], serde_json::json!({}));
        assert_eq!(cosign.kind(), ManifestKind::Artifact);
        assert_eq!(
            manifest(CONFIG, &[LAYER, "application/spdx+json"], serde_json::json!({})).kind(),
            ManifestKind::Artifact
        );
        let empty = "application/vnd.oci.empty.v1+json";
        assert_eq!(manifest(empty, &[empty], serde_json::json!({})).kind(), ManifestKind::Artifact);
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
