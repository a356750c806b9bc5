//! Builders for manifests and image content used across tests.

use portcullis::domain::Digest;
use serde_json::json;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

pub fn config_json(seed: &str) -> String {
    json!({"architecture": "amd64", "os": "linux", "config": {"User": "10001", "Labels": {"seed": seed}},
           "rootfs": {"type": "layers", "diff_ids": []}})
    .to_string()
}

pub fn oci_manifest(
    config: &Digest,
    config_size: usize,
    layers: &[(Digest, usize)],
    subject: Option<(&Digest, usize)>,
) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.to_string(), "size": config_size},
        "layers": layers.iter().map(|(d, s)| json!({"mediaType": OCI_LAYER, "digest": d.to_string(), "size": s})).collect::<Vec<_>>(),
    });
    if let Some((d, s)) = subject {
        m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": s});
    }
    serde_json::to_vec(&m).unwrap()
}

/// An artifact manifest (signature-like) pointing at `subject`, with an `artifactType`.
pub fn artifact(artifact_type: &str, config: &Digest, subject: &Digest, subject_size: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config.to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": config.to_string(), "size": 2}],
        "subject": {"mediaType": OCI_MANIFEST, "digest": subject.to_string(), "size": subject_size},
        "annotations": {"org.example.kind": artifact_type},
    }))
    .unwrap()
}

pub fn index(children: &[(Digest, usize, &str)]) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": children.iter().map(|(d, s, arch)| json!({
            "mediaType": OCI_MANIFEST, "digest": d.to_string(), "size": s,
            "platform": {"architecture": arch, "os": "linux"}})).collect::<Vec<_>>(),
    }))
    .unwrap()
}

/// A real gzip-compressed layer tarball holding one file.
pub fn layer_tar_gz(path: &str, content: &[u8], mode: u32) -> Vec<u8> {
    use std::io::Write;
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(content.len() as u64);
    h.set_mode(mode);
    b.append_data(&mut h, path, content).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}
