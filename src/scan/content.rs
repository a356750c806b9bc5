//! What the scanner reads from an image or an artifact: every byte of every blob, through the
//! strict readers, into findings and the list of installed packages.
//!
//! Rules:
//! - Secrets are searched in every byte of every file of every layer, whatever its size, and in
//!   every layer (a file deleted later can still be downloaded from the layer that has it).
//! - File modes, the user and package databases are judged on the final filesystem ([`fs`]) of
//!   the layers a client would apply: their unpacked digests must be the config's diff ids, as
//!   every client checks ([`runnable_view`]), so what is judged is what runs. A layer that is
//!   not a tar archive at all cannot be unpacked; an image no client can run (a signature, an
//!   attestation) is judged as an artifact.
//! - A distinct layer is read once however often the manifest lists it; its effects apply at each
//!   of its places.
//! - An artifact's blobs are searched the same way (as tar archives when they are tar archives,
//!   as bytes otherwise); an artifact has no filesystem, so no user or file-mode rules apply.
//! - Nothing here does I/O beyond reading the readers it is handed; everything it keeps is
//!   counted against [`ScanLimits`].

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::archive::decompress::{self, Compression};
use super::archive::tar::{is_header, EntryKind, TarBounds, TarReader};
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
    /// The distribution the image's `os-release` names (`/etc/os-release`, else `/usr/lib/os-release`).
    #[serde(default)]
    pub distro: Option<packages::Distro>,
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
    OsRelease,
}

fn parse_as(path: &[Vec<u8>]) -> Option<Parse> {
    let joined = path.join(&b'/');
    let text = std::str::from_utf8(&joined).ok()?;
    if text == "etc/passwd" {
        Some(Parse::Passwd)
    } else if text == "etc/os-release" || text == "usr/lib/os-release" {
        Some(Parse::OsRelease)
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

/// A layer as the manifest lists it (repeats kept): its digest, and whether containerd unpacks
/// a layer of its type (it skips the others).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedLayer {
    pub digest: String,
    pub containerd: bool,
}

/// One distinct layer, read.
struct LayerRead {
    /// Its place among the distinct layers (for findings).
    index: u32,
    /// Its effects on the filesystem; `None` when its bytes are not a tar archive at all (the
    /// first block is short or fails its checksum), which no client can unpack.
    ops: Option<Rc<Vec<Op>>>,
    /// `sha256:` of its decompressed bytes: what clients check against the config's diff ids.
    diff_id: String,
}

/// A reader that hashes what it yields.
struct Hashing<R> {
    inner: R,
    hasher: Rc<RefCell<Sha256>>,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.borrow_mut().update(&buf[..n]);
        Ok(n)
    }
}

/// Searches a stream's bytes for secrets, as one blob.
fn search_bytes(mut reader: impl Read, digest: &str, findings: &mut Findings) -> Result<(), ScanError> {
    let mut search = secrets::Stream::default();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = fill(&mut buf, |b| reader.read(b).map_err(from_io))?;
        if n == 0 {
            break;
        }
        search.update(&buf[..n]);
    }
    for kind in search.finish() {
        findings.push(Finding {
            rule: Rule::SecretInFile,
            severity: Severity::Critical,
            message: format!("blob {digest} contains a {kind}"),
            path: None,
            layer: Some(digest.to_owned()),
        });
    }
    Ok(())
}

/// Which of the listed layers a client would run: the ones whose unpacked digests it checks
/// against the config's `rootfs.diff_ids`. `None` when no client can run the image.
///
/// - docker applies every layer; it refuses the image unless the diff ids are those of all
///   layers, each unpacked as the scanner unpacked it. podman 5.3 and later do the same;
/// - containerd applies only the layers of types it knows; it refuses unless the diff ids are
///   those of exactly these;
/// - podman, skopeo and CRI-O before 5.3 (containers/image 5.33) apply every layer, whatever
///   its type, and check no diff id at all. So when podman would pull the image (`podman`) and
///   can unpack every layer, containerd's subset is not the whole truth: that fails closed.
///
/// A client that decompresses a layer otherwise than the scanner gets other bytes, hence another
/// digest, and refuses; so diff ids that match neither set, or a config without diff ids under
/// tar layers (which podman would apply unchecked), fail closed.
fn runnable_view<'a>(
    listed: &[ListedLayer],
    read: &[&'a LayerRead],
    wanted: &[String],
    podman: bool,
) -> Result<Option<Vec<&'a LayerRead>>, ScanError> {
    let ids = |layers: &[&LayerRead]| layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>();
    let unpackable = |layers: &[&LayerRead]| layers.iter().all(|l| l.ops.is_some());
    if wanted.is_empty() && !read.is_empty() && unpackable(read) {
        return Err(ScanError::unreadable(
            "the config lists no rootfs.diff_ids: podman would unpack the layers unchecked",
        ));
    }
    if wanted == ids(read).as_slice() {
        return Ok(unpackable(read).then(|| read.to_vec()));
    }
    let known: Vec<&LayerRead> = listed.iter().zip(read).filter(|(l, _)| l.containerd).map(|(_, r)| *r).collect();
    if known.len() != read.len() && wanted == ids(&known).as_slice() {
        if podman && unpackable(read) {
            return Err(ScanError::unreadable(
                "the config's rootfs.diff_ids name only the layers containerd unpacks, but podman before 5.3 \
                 would unpack all of them unchecked: clients would run different files",
            ));
        }
        // containerd unpacks these and nothing else; with none of them it unpacks nothing.
        return Ok((!known.is_empty() && unpackable(&known)).then_some(known));
    }
    Err(ScanError::unreadable(format!(
        "the config's rootfs.diff_ids ({} listed) do not match the {} layers as clients unpack them: a client \
         that reads them otherwise could run other files",
        wanted.len(),
        read.len()
    )))
}

/// Scans the layers and config of one image.
pub struct ImageScan {
    budgets: Budgets,
    layers: HashMap<String, LayerRead>,
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
        if self.layers.contains_key(digest) {
            return Ok(());
        }
        let index = self.names.len() as u32;
        self.names.push(digest.to_owned());
        let opened = decompress::open(reader, &self.budgets.decompressed)?;
        if let Compression::Unsupported(format) = opened.compression {
            return Err(ScanError::unreadable(format!(
                "layer {digest} is {format}-compressed, which the scanner does not read"
            )));
        }
        if opened.skippable_start {
            return Err(ScanError::unreadable(format!(
                "layer {digest} starts with a zstd skippable frame: docker and containerd read it as zstd, podman \
                 reads it as it is"
            )));
        }
        let hasher = Rc::new(RefCell::new(Sha256::new()));
        let mut hashing = Hashing { inner: opened.reader, hasher: hasher.clone() };
        let mut head = vec![0u8; 512];
        let n = fill(&mut head, |b| hashing.read(b).map_err(from_io))?;
        head.truncate(n);
        // As Go's tar reader starts: no bytes at all or a zero block is an empty archive; a short
        // first block or one whose checksum fails is an error, so no client unpacks the layer.
        let is_tar = n == 0 || (n == 512 && (head.iter().all(|&b| b == 0) || is_header(&head)));
        let rest = std::io::Cursor::new(head).chain(hashing);
        let ops = if is_tar {
            Some(Rc::new(self.read_tar(digest, rest)?))
        } else {
            search_bytes(rest, digest, &mut self.findings)?;
            None
        };
        let diff_id = format!("sha256:{}", hex::encode(hasher.borrow_mut().finalize_reset()));
        self.layers.insert(digest.to_owned(), LayerRead { index, ops, diff_id });
        Ok(())
    }

    /// The entries of one layer's tar archive, read to the end of its stream.
    fn read_tar(&mut self, digest: &str, reader: impl Read) -> Result<Vec<Op>, ScanError> {
        let mut tar = TarReader::new(reader, self.budgets.tar_bounds());
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
        let mut rest = tar.into_inner();
        if std::io::copy(&mut rest, &mut std::io::sink()).map_err(from_io)? != 0 {
            return Err(ScanError::unreadable(format!("layer {digest} has bytes after its archive")));
        }
        Ok(ops)
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
            Some(Parse::OsRelease) => {
                Some(Captured::OsRelease(packages::os_release(&String::from_utf8_lossy(content))))
            }
        })
    }

    /// Judges the image as the client that would run it would see it: the layers it applies
    /// ([`runnable_view`]) in the manifest's order, then the config and the final filesystem.
    /// An image no client can run is judged as an artifact is: secrets only.
    /// `podman`: podman would pull the image (see [`runnable_view`]).
    pub fn finish(self, listed: &[ListedLayer], config: &[u8], podman: bool) -> Result<Outcome, ScanError> {
        let ImageScan { budgets, layers, mut findings, names } = self;
        let read = listed
            .iter()
            .map(|l| {
                layers
                    .get(&l.digest)
                    .ok_or_else(|| ScanError::unreadable(format!("layer {} was listed but not read", l.digest)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let wanted = image_config::diff_ids(config).map_err(ScanError::Unreadable)?;
        let Some(view) = runnable_view(listed, &read, &wanted, podman)? else {
            for f in image_config::check(config, None).map_err(ScanError::Unreadable)? {
                findings.push(f);
            }
            return Ok(Outcome {
                findings: findings.into_vec(),
                packages: Vec::new(),
                distro: None,
                decompressed_bytes: budgets.decompressed.used(),
                entries: budgets.entries.used(),
            });
        };
        let mut tree = Tree::default();
        for layer in &view {
            let ops = layer.ops.as_ref().expect("a runnable view has only tar layers");
            tree.apply(layer.index, ops)?;
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
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
        for e in &tree.escalations {
            let bits = if e.mode & 0o6000 != 0 { "setuid or setgid" } else { "world-writable" };
            findings.push(Finding {
                rule: if e.mode & 0o6000 != 0 { Rule::SetuidFile } else { Rule::WorldWritable },
                severity: Severity::Medium,
                message: format!(
                    "the hard link {} makes {} {bits} ({:o}), and every other name of that file with it",
                    shown(&e.link),
                    shown(&e.target),
                    e.mode
                ),
                path: Some(shown(&e.target)),
                layer: names.get(e.layer as usize).map(|d| (*d).to_owned()),
            });
        }
        let passwd = tree.lookup(b"etc/passwd");
        for f in image_config::check(config, Some(&passwd)).map_err(ScanError::Unreadable)? {
            findings.push(f);
        }
        packages.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        packages.dedup();
        // What the image runs with: the file `/etc/os-release` leads to (often a link into
        // /usr/lib), else the one systemd falls back to.
        let distro = [&b"etc/os-release"[..], b"usr/lib/os-release"].iter().find_map(|p| match tree.lookup(p) {
            Lookup::File(Some(Captured::OsRelease(d))) => Some(d.clone()),
            _ => None,
        });
        Ok(Outcome {
            findings: findings.into_vec(),
            packages,
            distro: distro.flatten(),
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
        let looks_like_tar = n == 512 && head.iter().any(|&b| b != 0) && is_header(&head);
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
            search_bytes(rest, digest, &mut self.findings)?;
        }
        Ok(())
    }

    pub fn finish(self) -> Outcome {
        Outcome {
            findings: self.findings.into_vec(),
            packages: Vec::new(),
            distro: None,
            decompressed_bytes: self.budgets.decompressed.used(),
            entries: self.budgets.entries.used(),
        }
    }
}
