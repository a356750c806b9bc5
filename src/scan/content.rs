//! What the scanner reads from an image or an artifact: every byte of every blob, through the
//! strict readers, into findings and the list of installed packages.
//!
//! Rules:
//! - Secrets are searched in every byte of every file of every layer, whatever its size, and in
//!   every layer (a file deleted later can still be downloaded from the layer that has it).
//! - File modes, the user and package databases are judged on the final filesystem ([`fs`]).
//! - A distinct layer is read once however often the manifest lists it; its effects apply at each
//!   of its places.
//! - An artifact's blobs are searched the same way (as tar archives when they are tar archives,
//!   as bytes otherwise); an artifact has no filesystem, so no user or file-mode rules apply.
//! - Nothing here does I/O beyond reading the readers it is handed; everything it keeps is
//!   counted against [`ScanLimits`].

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::rc::Rc;

use serde::{Deserialize, Serialize};

use super::archive::decompress::{self, Compression};
use super::archive::tar::{EntryKind, TarBounds, TarReader};
use super::fs::{self, Captured, Lookup, Op, PutKind, Tree};
use super::limits::{from_io, Allowance, ScanError, ScanLimits};
use super::packages::{self, Package};
use super::{image_config, secrets, Finding, Rule, Severity};

/// Findings kept per rule; beyond it they are counted and summarised in one more finding.
const FINDINGS_PER_RULE: usize = 200;
/// Size of the reads a file's data is searched in.
const CHUNK: usize = 64 * 1024;

/// What a scan found and read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    pub packages: Vec<Package>,
    pub decompressed_bytes: u64,
    pub entries: u64,
}

/// Findings with a cap per rule.
#[derive(Debug, Default)]
struct Findings {
    kept: Vec<Finding>,
    per_rule: BTreeMap<Rule, usize>,
    dropped: BTreeMap<Rule, usize>,
}

impl Findings {
    fn push(&mut self, f: Finding) {
        let count = self.per_rule.entry(f.rule).or_default();
        if *count < FINDINGS_PER_RULE {
            *count += 1;
            self.kept.push(f);
        } else {
            *self.dropped.entry(f.rule).or_default() += 1;
        }
    }

    fn into_vec(mut self) -> Vec<Finding> {
        for (rule, n) in std::mem::take(&mut self.dropped) {
            let severity = self.kept.iter().find(|k| k.rule == rule).map_or(Severity::Low, |k| k.severity);
            self.kept.push(Finding {
                rule,
                severity,
                message: format!("{n} more findings of this rule are not listed"),
                path: None,
                layer: None,
            });
        }
        self.kept
    }
}

/// The files the scanner parses besides searching them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Parse {
    Passwd,
    Packages,
}

fn parse_as(path: &[Vec<u8>]) -> Option<Parse> {
    let joined = path.join(&b'/');
    let text = std::str::from_utf8(&joined).ok()?;
    if text == "etc/passwd" {
        Some(Parse::Passwd)
    } else if packages::is_package_db(text) {
        Some(Parse::Packages)
    } else {
        None
    }
}

fn shown(path: &[Vec<u8>]) -> String {
    format!("/{}", String::from_utf8_lossy(&path.join(&b'/')))
}

/// Fills `buf` from `read` as far as the data goes (decoders may return a few bytes at a time).
fn fill(buf: &mut [u8], mut read: impl FnMut(&mut [u8]) -> Result<usize, ScanError>) -> Result<usize, ScanError> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = read(&mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// The budgets one scan shares across its blobs.
struct Budgets {
    limits: ScanLimits,
    decompressed: Allowance,
    entries: Allowance,
    packages: Allowance,
}

impl Budgets {
    fn new(limits: &ScanLimits) -> Self {
        Budgets {
            limits: limits.clone(),
            decompressed: Allowance::decompressed(limits.max_decompressed_bytes),
            entries: Allowance::entries(limits.max_entries),
            packages: Allowance::new(limits.max_packages as u64, "number of installed packages", "max_packages"),
        }
    }

    fn tar_bounds(&self) -> TarBounds {
        TarBounds::from_limits(&self.limits, self.entries.clone())
    }
}

/// Reads the data of the tar's current entry: searched for secrets, and kept for parsing when
/// `keep` (whose size the caller has checked against `max_file_bytes`).
fn read_entry<R: Read>(tar: &mut TarReader<R>, keep: bool) -> Result<(Vec<&'static str>, Vec<u8>), ScanError> {
    let mut search = secrets::Stream::default();
    let mut kept = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = fill(&mut buf, |b| tar.read_data(b))?;
        if n == 0 {
            break;
        }
        search.update(&buf[..n]);
        if keep {
            kept.extend_from_slice(&buf[..n]);
        }
    }
    Ok((search.finish(), kept))
}

/// Scans the layers and config of one image.
pub struct ImageScan {
    budgets: Budgets,
    /// Each distinct layer's digest, its index (for findings) and its effects on the filesystem.
    layers: HashMap<String, (u32, Rc<Vec<Op>>)>,
    names: Vec<String>,
    findings: Findings,
}

impl ImageScan {
    pub fn new(limits: &ScanLimits) -> Self {
        ImageScan {
            budgets: Budgets::new(limits),
            layers: HashMap::new(),
            names: Vec::new(),
            findings: Findings::default(),
        }
    }

    /// Reads one layer (each distinct digest once); `digest` names it in findings.
    pub fn scan_layer(&mut self, digest: &str, reader: impl Read) -> Result<(), ScanError> {
        self.scan_declared_layer(digest, false, reader)
    }

    /// Reads one layer whose media type may say it is uncompressed (`read_raw`): containerd then
    /// reads its bytes as they are while docker sniffs and decompresses them, so compressed bytes
    /// under such a type are two different layers to two clients, and are refused.
    pub fn scan_declared_layer(&mut self, digest: &str, read_raw: bool, reader: impl Read) -> Result<(), ScanError> {
        if self.layers.contains_key(digest) {
            return Ok(());
        }
        let layer = self.names.len() as u32;
        self.names.push(digest.to_owned());
        let opened = decompress::open(reader, &self.budgets.decompressed)?;
        if let Compression::Unsupported(format) = opened.compression {
            return Err(ScanError::unreadable(format!(
                "layer {digest} is {format}-compressed, which the scanner does not read"
            )));
        }
        if read_raw && opened.compression.is_compressed() {
            return Err(ScanError::unreadable(format!(
                "layer {digest} is declared uncompressed but its bytes are {:?}-compressed: containerd would \
                 read them as they are and docker would decompress them, so they would not run the same files",
                opened.compression
            )));
        }
        let mut tar = TarReader::new(opened.reader, self.budgets.tar_bounds());
        let mut ops = Vec::new();
        while let Some(entry) = tar.next_entry()? {
            let path = fs::clean(&entry.path);
            if entry.capability {
                self.findings.push(Finding {
                    rule: Rule::SetuidFile,
                    severity: Severity::Medium,
                    message: format!("{} has file capabilities (security.capability)", shown(&path)),
                    path: Some(shown(&path)),
                    layer: Some(digest.to_owned()),
                });
            }
            let kind = match entry.kind {
                EntryKind::File => {
                    let parse = parse_as(&path);
                    if parse.is_some() && entry.size > self.budgets.limits.max_file_bytes {
                        return Err(ScanError::limit(
                            format!("{} ({} bytes, which the scanner must parse)", shown(&path), entry.size),
                            self.budgets.limits.max_file_bytes,
                            "max_file_bytes",
                        ));
                    }
                    let (kinds, content) = read_entry(&mut tar, parse.is_some())?;
                    for kind in kinds {
                        self.findings.push(Finding {
                            rule: Rule::SecretInFile,
                            severity: Severity::Critical,
                            message: format!("{} contains a {kind}", shown(&path)),
                            path: Some(shown(&path)),
                            layer: Some(digest.to_owned()),
                        });
                    }
                    PutKind::File(self.parse(parse, &path, &content)?.map(Rc::new))
                }
                EntryKind::Dir => PutKind::Dir,
                EntryKind::Symlink => PutKind::Symlink(entry.link),
                EntryKind::HardLink => PutKind::HardLink(entry.link),
                EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo => PutKind::Other,
                EntryKind::GlobalHeader => {
                    return Err(ScanError::unreadable(format!(
                        "layer {digest} has a PAX global header at {}: unpackers remove what stands at its path, \
                         and Go drops the extended headers before it",
                        shown(&path)
                    )))
                }
            };
            ops.push(fs::op_for(path, kind, entry.mode)?);
        }
        self.layers.insert(digest.to_owned(), (layer, Rc::new(ops)));
        Ok(())
    }

    fn parse(&self, parse: Option<Parse>, path: &[Vec<u8>], content: &[u8]) -> Result<Option<Captured>, ScanError> {
        Ok(match parse {
            None => None,
            Some(Parse::Passwd) => {
                Some(Captured::Passwd(content.split(|&b| b == b'\n').filter_map(image_config::passwd_entry).collect()))
            }
            Some(Parse::Packages) => {
                let listed =
                    packages::parse_db(&String::from_utf8_lossy(&path.join(&b'/')), &String::from_utf8_lossy(content));
                self.budgets.packages.spend(listed.len() as u64)?;
                Some(Captured::Packages(listed))
            }
        })
    }

    /// Applies the layers in the manifest's `order`, then judges the config and the final filesystem.
    pub fn finish(self, order: &[String], config: &[u8]) -> Result<Outcome, ScanError> {
        let ImageScan { budgets, layers, mut findings, .. } = self;
        let mut tree = Tree::default();
        for digest in order {
            let (index, ops) = layers
                .get(digest)
                .ok_or_else(|| ScanError::unreadable(format!("layer {digest} was listed but not read")))?;
            tree.apply(*index, ops)?;
        }
        let names: Vec<&str> = {
            let mut by_index: Vec<(&u32, &str)> = layers.iter().map(|(d, (i, _))| (i, d.as_str())).collect();
            by_index.sort();
            by_index.into_iter().map(|(_, d)| d).collect()
        };
        let mut packages = Vec::new();
        tree.walk(|v| {
            let path = format!("/{}", String::from_utf8_lossy(v.path.strip_prefix(b"/").unwrap_or(v.path)));
            let layer = names.get(v.layer as usize).map(|d| (*d).to_owned());
            if v.is_file && v.mode & 0o6000 != 0 {
                let bits = if v.mode & 0o4000 != 0 { "setuid" } else { "setgid" };
                findings.push(Finding {
                    rule: Rule::SetuidFile,
                    severity: Severity::Medium,
                    message: format!("{path} is {bits} ({:o})", v.mode & 0o7777),
                    path: Some(path.clone()),
                    layer: layer.clone(),
                });
            }
            let world_writable = v.mode & 0o002 != 0;
            if (v.is_file && world_writable) || (v.is_dir && world_writable && v.mode & 0o1000 == 0) {
                let what = if v.is_dir { "directory without the sticky bit" } else { "file" };
                findings.push(Finding {
                    rule: Rule::WorldWritable,
                    severity: Severity::Low,
                    message: format!("{path} is a world-writable {what}"),
                    path: Some(path.clone()),
                    layer,
                });
            }
            if let Some(Captured::Packages(listed)) = v.captured {
                packages.extend(listed.iter().cloned());
            }
        });
        // A package database reached through a link is one the walk above did not see as such.
        for db in ["var/lib/dpkg/status", "lib/apk/db/installed"] {
            if let Lookup::File(None) = tree.lookup(db.as_bytes()) {
                return Err(ScanError::unreadable(format!(
                    "/{db} is a link to a file the scanner does not read as a package database"
                )));
            }
        }
        let passwd = tree.lookup(b"etc/passwd");
        for f in image_config::check(config, &passwd).map_err(ScanError::Unreadable)? {
            findings.push(f);
        }
        packages.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        packages.dedup();
        Ok(Outcome {
            findings: findings.into_vec(),
            packages,
            decompressed_bytes: budgets.decompressed.used(),
            entries: budgets.entries.used(),
        })
    }
}

/// Scans the blobs of an artifact (a signature, an SBOM, a chart...): secrets in every byte.
pub struct ArtifactScan {
    budgets: Budgets,
    seen: std::collections::HashSet<String>,
    findings: Findings,
}

impl ArtifactScan {
    pub fn new(limits: &ScanLimits) -> Self {
        ArtifactScan { budgets: Budgets::new(limits), seen: Default::default(), findings: Findings::default() }
    }

    /// Searches one blob: a tar archive (compressed or not) file by file, anything else as bytes.
    pub fn scan_blob(&mut self, digest: &str, reader: impl Read) -> Result<(), ScanError> {
        if !self.seen.insert(digest.to_owned()) {
            return Ok(());
        }
        let mut opened = decompress::open(reader, &self.budgets.decompressed)?;
        let mut head = vec![0u8; 512];
        let n = fill(&mut head, |b| opened.reader.read(b).map_err(from_io))?;
        head.truncate(n);
        let looks_like_tar = n == 512 && head.iter().any(|&b| b != 0) && super::archive::tar::is_header(&head);
        let rest = std::io::Cursor::new(head).chain(opened.reader);
        if looks_like_tar {
            let mut tar = TarReader::new(rest, self.budgets.tar_bounds());
            while let Some(entry) = tar.next_entry()? {
                if entry.kind != EntryKind::File {
                    continue;
                }
                let (kinds, _) = read_entry(&mut tar, false)?;
                let path = shown(&fs::clean(&entry.path));
                for kind in kinds {
                    self.findings.push(Finding {
                        rule: Rule::SecretInFile,
                        severity: Severity::Critical,
                        message: format!("{path} in blob {digest} contains a {kind}"),
                        path: Some(path.clone()),
                        layer: Some(digest.to_owned()),
                    });
                }
            }
        } else {
            let mut search = secrets::Stream::default();
            let mut buf = vec![0u8; CHUNK];
            let mut rest = rest;
            loop {
                let n = fill(&mut buf, |b| rest.read(b).map_err(from_io))?;
                if n == 0 {
                    break;
                }
                search.update(&buf[..n]);
            }
            for kind in search.finish() {
                self.findings.push(Finding {
                    rule: Rule::SecretInFile,
                    severity: Severity::Critical,
                    message: format!("blob {digest} contains a {kind}"),
                    path: None,
                    layer: Some(digest.to_owned()),
                });
            }
        }
        Ok(())
    }

    pub fn finish(self) -> Outcome {
        Outcome {
            findings: self.findings.into_vec(),
            packages: Vec::new(),
            decompressed_bytes: self.budgets.decompressed.used(),
            entries: self.budgets.entries.used(),
        }
    }
}
