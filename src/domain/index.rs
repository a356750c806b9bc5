//! The image indexes the registry writes itself, built with `oci-spec`'s image types: the
//! referrers response (`GET /v2/<name>/referrers/<digest>`) and the `index.json` of an image
//! layout handed to a scan hook.
//!
//! Rule: what goes out is shaped by the spec's types, not assembled by hand; the push
//! validator (`manifest.rs`) stays separate and byte-exact, because it must read manifests the way
//! Go clients do, which a general-purpose model does not.

use std::collections::HashMap;

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType, OciLayout, OciLayoutBuilder};
use serde_json::{Map, Value};

use crate::model::{Digest, Error, Result};

/// A descriptor of `size` bytes at `digest`.
pub fn descriptor(media_type: &str, digest: &Digest, size: u64) -> Result<Descriptor> {
    let digest: oci_spec::image::Digest =
        digest.as_str().parse().map_err(|e| Error::Internal(format!("digest {digest} for oci-spec: {e}")))?;
    Ok(Descriptor::new(MediaType::from(media_type), size, digest))
}

/// Annotations as a descriptor carries them: string values only, as the spec requires. A
/// manifest's annotations are stored as pushed, so a value that is not a string is left out
/// here rather than handed to clients that read `map[string]string`.
pub fn annotations(map: &Map<String, Value>) -> HashMap<String, String> {
    map.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned()))).collect()
}

/// An OCI image index of `manifests`.
pub fn image_index(manifests: Vec<Descriptor>) -> Result<ImageIndex> {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(|e| Error::Internal(format!("building an image index: {e}")))
}

/// The `oci-layout` file of an image layout.
pub fn layout_marker() -> Result<OciLayout> {
    OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()
        .map_err(|e| Error::Internal(format!("building oci-layout: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::digest::Algorithm;

    /// The JSON a client receives: the spec's field names, absent optionals left out, string
    /// annotations only, unknown media types kept verbatim.
    #[test]
    fn an_index_serialises_as_the_spec_names_it() {
        let digest = Digest::of(Algorithm::Sha256, b"x");
        let mut d = descriptor("application/vnd.example+json", &digest, 1).unwrap();
        let pushed: Map<String, Value> =
            serde_json::from_str(r#"{"org.example.s":"v","org.example.n":1,"org.example.o":{}}"#).unwrap();
        d.set_annotations(Some(annotations(&pushed)));
        d.set_artifact_type(Some(MediaType::from("application/vnd.example.sbom")));
        let index = serde_json::to_value(image_index(vec![d]).unwrap()).unwrap();
        assert_eq!(
            index,
            serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{
                    "mediaType": "application/vnd.example+json",
                    "digest": digest.as_str(),
                    "size": 1,
                    "artifactType": "application/vnd.example.sbom",
                    "annotations": {"org.example.s": "v"}
                }]
            })
        );
        let empty = serde_json::to_value(image_index(Vec::new()).unwrap()).unwrap();
        assert_eq!(empty["manifests"], serde_json::json!([]));
        assert_eq!(
            serde_json::to_value(layout_marker().unwrap()).unwrap(),
            serde_json::json!({"imageLayoutVersion": "1.0.0"})
        );
    }
}
