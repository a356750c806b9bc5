//! Checks on layer tarballs (plain, gzip or zstd, told apart by their magic bytes): secrets in
//! small files of every layer, and setuid/setgid or world-writable entries in the final filesystem
//! (OCI whiteouts applied).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};

use super::{secrets, Finding, Policy, Rule, Severity};

/// Files larger than this are not searched for secrets (credentials are small; binaries are not).
const MAX_SECRET_SCAN: u64 = 1 << 20;
/// Package databases larger than this are not read (a dpkg status file is a few MiB at most).
const MAX_PACKAGE_DB: u64 = 16 << 20;

#[derive(Debug, Clone)]
struct Entry {
    mode: u32,
    is_dir: bool,
    is_file: bool,
    layer: String,
}

/// Scans the layers of one image, in order from the base up.
#[derive(Debug, Default)]
pub struct ImageScan {
    files: BTreeMap<String, Entry>,
    /// Package databases of the final filesystem: path → (layer, contents).
    package_dbs: BTreeMap<String, (String, String)>,
    findings: Vec<Finding>,
    total_bytes: u64,
    layers: usize,
}

/// The layer could not be read (corrupt compression or tar).
#[derive(Debug, thiserror::Error)]
#[error("layer {layer}: {message}")]
pub struct LayerError {
    pub layer: String,
    pub message: String,
}

fn normalise(path: &str) -> String {
    path.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/').to_owned()
}

fn decompressed<'a>(reader: impl Read + 'a) -> std::io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(256 * 1024, reader);
    let magic = buffered.fill_buf()?;
    Ok(if magic.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(buffered))
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(ruzstd::decoding::StreamingDecoder::new(buffered).map_err(std::io::Error::other)?)
    } else {
        Box::new(buffered)
    })
}

impl ImageScan {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the size of a blob (config or layer) to the image total.
    pub fn count_bytes(&mut self, bytes: u64) {
        self.total_bytes += bytes;
    }

    /// Scans one layer; `layer` names it in findings (its digest).
    pub fn scan_layer(&mut self, layer: &str, reader: impl Read) -> Result<(), LayerError> {
        let err = |message: String| LayerError { layer: layer.to_owned(), message };
        self.layers += 1;
        let mut archive = tar::Archive::new(decompressed(reader).map_err(|e| err(e.to_string()))?);
        for entry in archive.entries().map_err(|e| err(e.to_string()))? {
            let mut entry = entry.map_err(|e| err(format!("corrupt tar: {e}")))?;
            let path = normalise(&entry.path().map_err(|e| err(e.to_string()))?.to_string_lossy());
            let (dir, name) = match path.rsplit_once('/') {
                Some((d, n)) => (d.to_owned(), n.to_owned()),
                None => (String::new(), path.clone()),
            };
            // Whiteouts hide what lower layers had; this layer's own entries stay.
            if name == ".wh..wh..opq" {
                let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
                self.files.retain(|p, e| e.layer == layer || !p.starts_with(&prefix) || *p == dir);
                self.package_dbs.retain(|p, (l, _)| l == layer || !p.starts_with(&prefix));
                continue;
            }
            if let Some(hidden) = name.strip_prefix(".wh.") {
                let target = if dir.is_empty() { hidden.to_owned() } else { format!("{dir}/{hidden}") };
                let children = format!("{target}/");
                self.files.retain(|p, e| e.layer == layer || (*p != target && !p.starts_with(&children)));
                self.package_dbs.retain(|p, (l, _)| l == layer || (*p != target && !p.starts_with(&children)));
                continue;
            }
            let header = entry.header();
            let kind = header.entry_type();
            let mode = header.mode().unwrap_or(0);
            let size = header.size().unwrap_or(0);
            let is_file = kind.is_file();
            let package_db = is_file && size <= MAX_PACKAGE_DB && super::packages::is_package_db(&path);
            if is_file && size > 0 && (size <= MAX_SECRET_SCAN || package_db) {
                let mut content = Vec::with_capacity(size as usize);
                entry
                    .by_ref()
                    .take(MAX_PACKAGE_DB)
                    .read_to_end(&mut content)
                    .map_err(|e| err(format!("corrupt tar: {e}")))?;
                if package_db {
                    self.package_dbs
                        .insert(path.clone(), (layer.to_owned(), String::from_utf8_lossy(&content).into_owned()));
                }
                for kind in secrets::find(&content) {
                    self.findings.push(Finding {
                        rule: Rule::SecretInFile,
                        severity: Severity::Critical,
                        message: format!("/{path} contains a {kind}"),
                        path: Some(format!("/{path}")),
                        layer: Some(layer.to_owned()),
                    });
                }
            }
            self.files.insert(path, Entry { mode, is_dir: kind.is_dir(), is_file, layer: layer.to_owned() });
        }
        Ok(())
    }

    /// The packages the final filesystem's package databases list.
    pub fn packages(&self) -> Vec<super::packages::Package> {
        self.package_dbs.iter().flat_map(|(path, (_, text))| super::packages::parse_db(path, text)).collect()
    }

    /// All findings: secrets from every layer, file modes of the final filesystem, and size.
    pub fn finish(mut self, policy: &Policy) -> Vec<Finding> {
        for (path, e) in &self.files {
            let at = |rule, severity, message: String| Finding {
                rule,
                severity,
                message,
                path: Some(format!("/{path}")),
                layer: Some(e.layer.clone()),
            };
            if e.is_file && e.mode & 0o6000 != 0 {
                let bits = if e.mode & 0o4000 != 0 { "setuid" } else { "setgid" };
                self.findings.push(at(
                    Rule::SetuidFile,
                    Severity::Medium,
                    format!("/{path} is {bits} ({:o})", e.mode & 0o7777),
                ));
            }
            let world_writable = e.mode & 0o002 != 0;
            if (e.is_file && world_writable) || (e.is_dir && world_writable && e.mode & 0o1000 == 0) {
                let what = if e.is_dir { "directory without the sticky bit" } else { "file" };
                self.findings.push(at(
                    Rule::WorldWritable,
                    Severity::Low,
                    format!("/{path} is a world-writable {what}"),
                ));
            }
        }
        if self.total_bytes > policy.max_image_bytes {
            self.findings.push(Finding {
                rule: Rule::ImageTooLarge,
                severity: Severity::Low,
                message: format!(
                    "the image is {} bytes, above the limit of {}",
                    self.total_bytes, policy.max_image_bytes
                ),
                path: None,
                layer: None,
            });
        }
        self.findings
    }
}
