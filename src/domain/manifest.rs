//! Manifest parsing and validation.
//!
//! Rules:
//! - A manifest is stored byte for byte as pushed; parsing only extracts what the registry must
//!   check or index (referenced blobs and child manifests, `subject`, `artifactType`, annotations).
//!   Four media types are accepted; Docker schema 1 and anything unknown are refused.
//! - Clients read manifests with Go's `encoding/json`, which matches keys to fields ignoring case
//!   (with Unicode folding) and lets the last of two keys win. A manifest is refused if any
//!   object in it has a key that Go would read as a descriptor or manifest field but that is not
//!   spelled exactly as that field, or has one field twice: the registry and every client then
//!   read the same `layers`, `config`, `digest` and `mediaType`.
//! - What a manifest is to the quarantine gate ([`ParsedManifest::classify`]) is decided from what
//!   a client might run, never from `subject` or `artifactType`, which the pusher may add to
//!   anything: docker pulls a manifest whose config and layers all have types it accepts
//!   ([`docker_accepts`]); podman (containers/image) pulls any layers under an OCI image config
//!   type, and any Docker schema 2 manifest; containerd unpacks the layers it knows
//!   ([`containerd_unpacks`]) under any config that has a `rootfs`, which only the config's bytes
//!   can tell. Whichever client might run it makes it an image; the scan then judges what each
//!   client would really run (`scan::content`), and one that no client can run is judged as an
//!   artifact would be.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::gojson::{self, GoValue};
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

/// The largest config the gate reads to tell an image from an artifact; a larger one under a
/// runnable layer makes the manifest an image.
pub const MAX_CLASSIFIED_CONFIG: u64 = 4 << 20;

/// Every field of the Go structs clients decode manifests, indexes, descriptors and platforms
/// into. `annotations` is a map (its keys are kept as they are), so its contents are not checked.
const GO_FIELDS: [&str; 19] = [
    "schemaVersion",
    "mediaType",
    "artifactType",
    "config",
    "layers",
    "manifests",
    "subject",
    "annotations",
    "digest",
    "size",
    "urls",
    "data",
    "platform",
    "architecture",
    "os",
    "os.version",
    "os.features",
    "variant",
    "features",
];

/// Refuses keys that Go would read differently from the registry (see the module doc).
fn check_keys(value: &GoValue) -> Result<()> {
    match value {
        GoValue::Array(items) => items.iter().try_for_each(check_keys),
        GoValue::Object(entries) => {
            let mut seen: Vec<&str> = Vec::new();
            for (key, value) in entries {
                if let Some(field) = GO_FIELDS.iter().find(|f| gojson::field_matches(key, f)) {
                    if key != field {
                        return Err(Error::ManifestInvalid(format!(
                            "the key {:?} is not spelled {field:?}, but clients would read it as {field:?}",
                            key.chars().take(64).collect::<String>()
                        )));
                    }
                    if seen.contains(field) {
                        return Err(Error::ManifestInvalid(format!(
                            "the key {field:?} appears twice in one object; clients would read the last one"
                        )));
                    }
                    seen.push(field);
                    if *field == "annotations" {
                        continue;
                    }
                }
                check_keys(value)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}
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
    /// The config (image manifests only).
    pub config: Option<Descriptor>,
    /// The layers in their listed order, repeats and foreign layers included.
    pub layers: Vec<Layer>,
}

/// A layer as listed in a manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub media_type: String,
    pub digest: Digest,
    /// The size the manifest declares.
    pub size: u64,
    /// A foreign layer (`urls`): clients fetch it from elsewhere, so it is never stored here.
    pub foreign: bool,
    /// Annotated with a table of contents for lazy or partial pulls (zstd:chunked, eStargz):
    /// clients that use it build files from the TOC, not from the tar the scanner reads.
    pub lazy_toc: bool,
}

/// Layer annotations through which podman (partial pulls) or containerd's stargz snapshotter
/// find a layer's table of contents.
pub const LAZY_TOC_ANNOTATIONS: [&str; 3] = [
    "io.github.containers.zstd-chunked.manifest-checksum",
    "io.github.containers.zstd-chunked.manifest-position",
    "containerd.io/snapshot/stargz/toc.digest",
];

/// Whether docker pulls a blob of this type as a layer or an image config: moby's
/// `checkSupportedMediaType`, which lower-cases the type (Go's `strings.ToLower`) and takes these
/// exactly or followed by `.` and anything. The empty type is on the list, so a type starting
/// with `.` is accepted too.
pub fn docker_accepts(media_type: &str) -> bool {
    const SUPPORTED: [&str; 6] = [
        "application/vnd.oci.image",
        "application/vnd.docker",
        "application/octet-stream",
        "application/json",
        "text/html",
        "",
    ];
    let t = gojson::lower(media_type);
    SUPPORTED.iter().any(|s| t == *s || t.strip_prefix(s).is_some_and(|rest| rest.starts_with('.')))
}

/// The config type containers/image (podman, skopeo, CRI-O) requires of an OCI image.
pub const OCI_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

/// Whether containerd unpacks a layer of this type (its `images.IsLayerType`, case-sensitive).
pub fn containerd_unpacks(media_type: &str) -> bool {
    if media_type.starts_with("application/vnd.oci.image.layer.") {
        return true;
    }
    let base = media_type.split('+').next().unwrap_or("");
    matches!(
        base,
        "application/vnd.docker.image.rootfs.diff.tar"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.zstd"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    )
}

/// What the gate can tell about a manifest from the manifest alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classified {
    Known(ManifestKind),
    /// A layer some client would unpack under a config docker does not take: an image if the
    /// config is an image config ([`kind_by_config`]).
    ByConfig,
}

/// An image if the config (at most [`MAX_CLASSIFIED_CONFIG`] bytes) has a `rootfs`, as Go would
/// read it: containerd takes the layers' diff ids from there, and without it runs nothing. A
/// config the registry cannot parse is an image: Go accepts some JSON serde refuses.
pub fn kind_by_config(config: &[u8]) -> ManifestKind {
    match gojson::parse(config) {
        Ok(GoValue::Object(entries)) if !entries.iter().any(|(k, _)| gojson::field_matches(k, "rootfs")) => {
            ManifestKind::Artifact
        }
        Ok(GoValue::Object(_)) | Err(_) => ManifestKind::Image,
        Ok(_) => ManifestKind::Artifact,
    }
}

impl ParsedManifest {
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_LIST
    }

    /// What the manifest is to the gate. An image is what some client would run: a config and
    /// layers docker takes, or a layer docker or containerd would unpack under a config that
    /// turns out to be an image config. Anything else (a cosign signature, an SBOM, a chart) is
    /// an artifact, whose blobs are searched for secrets; it can never open a blob that an image
    /// of its repository contains.
    /// Whether podman, skopeo and CRI-O (containers/image) would pull this as an image: layers,
    /// and the OCI config type exactly, or a Docker schema 2 manifest. Before containers/image
    /// 5.33 (podman 5.3) they applied every layer, whatever its type, without checking diff ids.
    pub fn podman_pulls(&self) -> bool {
        let config_type = self.config.as_ref().map(|c| c.media_type.as_str()).unwrap_or("");
        !self.is_index()
            && !self.layers.is_empty()
            && (config_type == OCI_IMAGE_CONFIG || self.media_type == DOCKER_MANIFEST)
    }

    pub fn classify(&self) -> Classified {
        if self.is_index() {
            return Classified::Known(ManifestKind::Index);
        }
        let config_type = self.config.as_ref().map(|c| c.media_type.as_str()).unwrap_or("");
        let docker = docker_accepts(config_type) && self.layers.iter().all(|l| docker_accepts(&l.media_type));
        if docker || self.podman_pulls() {
            Classified::Known(ManifestKind::Image)
        } else if self.layers.iter().any(|l| containerd_unpacks(&l.media_type)) {
            Classified::ByConfig
        } else {
            Classified::Known(ManifestKind::Artifact)
        }
    }

    /// The sizes declared for the config and the layers (repeats and foreign layers included), summed.
    pub fn declared_size(&self) -> u64 {
        let config = self.config.as_ref().map_or(0, |c| c.size);
        self.layers.iter().map(|l| l.size).fold(config, u64::saturating_add)
    }

    /// How many blobs or manifests the manifest references (the config counts as one).
    pub fn references(&self) -> usize {
        if self.is_index() {
            self.children.len()
        } else {
            self.layers.len() + 1
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
    check_keys(&gojson::parse(bytes).map_err(|e| Error::ManifestInvalid(format!("manifest is {e}")))?)?;
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
        config: None,
        layers: Vec::new(),
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
        parsed.blobs.push(config.digest.clone());
        parsed.config = Some(config);
        for layer in layers {
            // Foreign layers live elsewhere (`urls`) and are never pushed here.
            let foreign = !layer.urls.is_empty();
            let lazy_toc =
                layer.annotations.as_ref().is_some_and(|a| LAZY_TOC_ANNOTATIONS.iter().any(|k| a.contains_key(*k)));
            let d = descriptor(layer, "layers[]")?;
            if !foreign && !parsed.blobs.contains(&d.digest) {
                parsed.blobs.push(d.digest.clone());
            }
            parsed.layers.push(Layer { media_type: d.media_type, digest: d.digest, size: d.size, foreign, lazy_toc });
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
        use Classified::{ByConfig, Known};
        const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
        const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
        const IMAGE: Classified = Known(ManifestKind::Image);
        const ARTIFACT: Classified = Known(ManifestKind::Artifact);
        let none = serde_json::json!({});
        let subject = serde_json::json!({"subject": {"mediaType": OCI_MANIFEST, "digest": d("s"), "size": 1}});
        let typed = serde_json::json!({"artifactType": "application/vnd.example.sbom"});
        for extra in [none.clone(), subject, typed] {
            assert_eq!(manifest(CONFIG, &[LAYER], extra).classify(), IMAGE);
        }
        // Types docker takes, however they are written, under a config docker takes.
        let docker_config = "application/vnd.docker.container.image.v1+json";
        for layer in [
            "Application/VND.OCI.Image.Layer.v1.tar+zstd",
            "application/octet-stream",
            "application/json",
            "text/html",
            "",
            ".anything",
            "application/vnd.docker.anything",
            "application/vnd.doc\u{212A}er.image.rootfs.diff.tar.gzip",
        ] {
            assert_eq!(manifest(docker_config, &[layer], none.clone()).classify(), IMAGE, "{layer:?}");
        }
        assert_eq!(manifest(CONFIG, &[], none.clone()).classify(), IMAGE);
        // podman pulls any layer under the OCI image config type: a cosign signature or a buildx
        // attestation is an image here, and its scan finds that no client can run it.
        for layer in ["application/vnd.dev.cosign.simplesigning.v1+json", "application/vnd.in-toto+json", "x/y"] {
            assert_eq!(manifest(CONFIG, &[layer], none.clone()).classify(), IMAGE, "{layer:?}");
        }
        // A layer containerd unpacks under a config nobody else takes: the config's bytes decide.
        let empty = "application/vnd.oci.empty.v1+json";
        assert_eq!(manifest(empty, &[LAYER], none.clone()).classify(), ByConfig);
        assert_eq!(manifest("x/config", &[LAYER, "application/x-unknown"], none.clone()).classify(), ByConfig);
        assert_eq!(
            kind_by_config(br#"{"architecture":"amd64","rootfs":{"type":"layers","diff_ids":[]}}"#),
            ManifestKind::Image
        );
        assert_eq!(kind_by_config(br#"{"ROOTF\u017f":null}"#), ManifestKind::Image);
        assert_eq!(kind_by_config(b"{}"), ManifestKind::Artifact);
        assert_eq!(kind_by_config(b"[]"), ManifestKind::Artifact);
        // What the registry cannot parse, Go might: an image.
        assert_eq!(kind_by_config(b"not json"), ManifestKind::Image);
        assert_eq!(kind_by_config(br#"{"x":"\ud800","rootfs":{}}"#), ManifestKind::Image);
        // An SBOM, a chart, an oras file: no client runs these.
        assert_eq!(manifest(empty, &["application/spdx+json"], none.clone()).classify(), ARTIFACT);
        assert_eq!(
            manifest(
                "application/vnd.cncf.helm.config.v1+json",
                &["application/vnd.cncf.helm.chart.content.v1.tar+gzip"],
                none.clone()
            )
            .classify(),
            ARTIFACT
        );
        assert_eq!(manifest(empty, &[empty], none.clone()).classify(), ARTIFACT);
        // Lookalikes of docker's prefixes are not its types.
        assert_eq!(manifest(docker_config, &["application/vnd.oci.images_are_fun"], none).classify(), ARTIFACT);
    }

    #[test]
    fn keys_go_would_read_differently_are_refused() {
        let config =
            serde_json::json!({"mediaType": "application/vnd.oci.image.config.v1+json", "digest": d("c"), "size": 1});
        let layer =
            serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d("l"), "size": 1});
        let base = |extra: &str| {
            format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{config},"layers":[{layer}]{extra}}}"#)
        };
        assert!(parse(base("").as_bytes(), None).is_ok());
        for extra in [
            r#","LAYERS":[]"#.to_owned(),
            r#","Layers":[]"#.to_owned(),
            r#","layer\u017f":[]"#.to_owned(),
            r#","\u017fubject":{}"#.to_owned(),
            r#","layers":[]"#.to_owned(),
            format!(r#","manifests":[],"MediaType":"{OCI_MANIFEST}""#),
        ] {
            let body = base(&extra);
            assert!(matches!(parse(body.as_bytes(), None), Err(Error::ManifestInvalid(_))), "{body}");
        }
        // Inside a descriptor too.
        let folded = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{config},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{}","Digest":"{}","size":1}}]}}"#,
            d("l"),
            d("evil")
        );
        assert!(parse(folded.as_bytes(), None).is_err());
        // Annotation keys are a map's keys: any spelling is kept as it is.
        let annotated = base(r#","annotations":{"Digest":"x","digest":"y","LAYERS":"z"}"#);
        assert!(parse(annotated.as_bytes(), None).is_ok());
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
