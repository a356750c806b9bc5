//! Builders for manifests and image content used across tests.

use portcullis::domain::Digest;
use serde_json::json;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// What a client computes as a layer's diff_id: the sha256 of its uncompressed bytes (every gzip
/// member, every zstd frame, skippable frames skipped), or of the bytes as they are when they are
/// not compressed (or not decodable). Decoded here with flate2 and ruzstd directly, not with the
/// registry's own reader, so a fault in that reader cannot hide behind a matching fixture.
pub fn diff_id(layer: &[u8]) -> String {
    use sha2::Digest as _;
    use std::io::Read;
    // Streamed: some test layers unpack to gigabytes.
    let hash = |mut reader: Box<dyn Read + '_>| -> Option<String> {
        let mut h = sha2::Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            match reader.read(&mut buf).ok()? {
                0 => return Some(format!("sha256:{}", hex::encode(h.finalize()))),
                n => h.update(&buf[..n]),
            }
        }
    };
    let plain = if layer.starts_with(&[0x1f, 0x8b]) {
        hash(Box::new(flate2::read::MultiGzDecoder::new(layer)))
    } else {
        ZstdFrames::new(layer).and_then(|frames| hash(Box::new(frames)))
    };
    plain.unwrap_or_else(|| super::sha256(layer).to_string())
}

/// Every frame of a zstd stream, skippable frames skipped (`None` if it is not zstd).
struct ZstdFrames<'a> {
    rest: &'a [u8],
    frame: Option<ruzstd::decoding::StreamingDecoder<&'a [u8], ruzstd::decoding::FrameDecoder>>,
}

impl<'a> ZstdFrames<'a> {
    fn new(layer: &'a [u8]) -> Option<Self> {
        let m = u32::from_le_bytes(layer.get(..4)?.try_into().unwrap());
        (m == 0xFD2FB528 || m & 0xFFFF_FFF0 == 0x184D2A50).then_some(ZstdFrames { rest: layer, frame: None })
    }
}

impl std::io::Read for ZstdFrames<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
        loop {
            if let Some(frame) = &mut self.frame {
                let n = frame.read(buf)?;
                if n > 0 {
                    return Ok(n);
                }
                // The frame is done: what it did not consume is the rest.
                self.rest = self.frame.take().unwrap().into_inner();
                continue;
            }
            if self.rest.is_empty() {
                return Ok(0);
            }
            let m = u32::from_le_bytes(self.rest.get(..4).ok_or_else(|| bad("cut magic"))?.try_into().unwrap());
            if m & 0xFFFF_FFF0 == 0x184D2A50 {
                let len = u32::from_le_bytes(self.rest.get(4..8).ok_or_else(|| bad("cut"))?.try_into().unwrap());
                self.rest = self.rest.get(8 + len as usize..).ok_or_else(|| bad("cut skippable frame"))?;
                continue;
            }
            self.frame = Some(ruzstd::decoding::StreamingDecoder::new(self.rest).map_err(|e| bad(&e.to_string()))?);
        }
    }
}

/// `config` with `rootfs.diff_ids` naming `layers` as a client would: the empty list of a config
/// is filled, or a `rootfs` is added to an object that has none. Done on the text, so configs
/// written with repeated or odd keys on purpose keep them.
pub fn with_diff_ids(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let ids = serde_json::to_string(&layers.iter().map(|l| diff_id(l)).collect::<Vec<_>>()).unwrap();
    let text = String::from_utf8_lossy(config);
    for empty in [r#""diff_ids":[]"#, r#""diff_ids": []"#] {
        if text.contains(empty) {
            return text.replacen(empty, &format!(r#""diff_ids":{ids}"#), 1).into_bytes();
        }
    }
    let trimmed = text.trim_start();
    if text.contains("\"rootfs\"") || !trimmed.starts_with('{') {
        return config.to_vec();
    }
    let inner = trimmed[1..].trim_start();
    let sep = if inner.starts_with('}') { "" } else { "," };
    format!(r#"{{"rootfs":{{"type":"layers","diff_ids":{ids}}}{sep}{inner}"#).into_bytes()
}

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

/// A real gzip-compressed layer tarball holding `files` (path, content), each mode 0644.
pub fn layer_files_tar_gz(files: &[(&str, &str)]) -> Vec<u8> {
    use std::io::Write;
    let mut b = tar::Builder::new(Vec::new());
    for (path, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, content.as_bytes()).unwrap();
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&b.into_inner().unwrap()).unwrap();
    gz.finish().unwrap()
}
