//! Importing vulnerability data: OSV exports (a zip such as OSV's per-ecosystem `all.zip`, a
//! directory of records, one record or a JSON array of them) into the database, whose version
//! every replica's scanner reloads from.
//!
//! Rules:
//! - An import through the API or the CLI is all or nothing: a file that is not JSON or not an
//!   OSV record fails the whole import with its name, before anything is written. The
//!   configured `scan.osv_dir` is read leniently instead (unreadable files are skipped, counted
//!   and named in the log), so one bad file does not leave a registry without data.
//! - Only records the scanner can match are kept (ecosystems Debian, Alpine and PyPI); a record
//!   that arrives withdrawn (or no longer names one of them) is removed if it was stored. Within
//!   one import the last record of an id wins.
//! - Reading is bounded: at most `max_bytes` of data in all (zip entries as they inflate, so a
//!   zip bomb stops at the bound), at most [`MAX_RECORD_BYTES`] per record, at most
//!   [`MAX_RECORDS`] records (a zip's entry count is checked before its directory is read), and
//!   a JSON array is read one record at a time. Directory links are not followed.
//! - Errors quote at most 200 characters of what they refuse, without control characters.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use serde::de::{self, Deserializer as _};

use super::{Error, Registry, Result};
use crate::metadata::vulndb::{ImportCount, ImportedRecord, Rematch, RematchCursor, VulnDbState};
use crate::model::audit::NewAudit;
use crate::model::osv::{Record, MAX_RECORD_BYTES};
use crate::model::ScanState;

/// The most records (or zip entries) one import may hold; OSV's largest per-ecosystem export of
/// the ecosystems read here has about a hundred thousand.
pub const MAX_RECORDS: usize = 500_000;

/// What an export held, ready to import.
#[derive(Debug, Default)]
pub struct Export {
    /// By id: the record to store, or `None` to remove a stored one (withdrawn, or no longer
    /// for an ecosystem the scanner reads).
    entries: BTreeMap<String, Option<ImportedRecord>>,
    /// Records for ecosystems the scanner does not read, or withdrawn.
    pub skipped: u64,
    /// Files skipped as unreadable (lenient reading only), with the first few names.
    pub unreadable: u64,
    pub unreadable_names: Vec<String>,
    /// Whether unreadable files are skipped (`scan.osv_dir`) rather than failing the import.
    lenient: bool,
    /// Bytes read (decompressed).
    bytes: u64,
    /// A bound was reached: the import fails, lenient or not.
    limit_hit: bool,
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    pub count: ImportCount,
    pub skipped: u64,
}

/// Text from the input, as an error may quote it: at most 200 characters, no control characters.
fn printable(text: &str) -> String {
    let mut shown: String = text.chars().take(200).map(|c| if c.is_control() { '?' } else { c }).collect();
    if text.chars().nth(200).is_some() {
        shown.push('…');
    }
    shown
}

fn invalid(from: &str, why: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{}: {}", printable(from), printable(&why.to_string())))
}

/// The entry count a zip's end-of-central-directory record declares (zip64 too), read before
/// the directory itself, so a directory of millions of empty entries is refused unread.
fn zip_entries(file: &mut std::fs::File) -> std::io::Result<Option<u64>> {
    let len = file.seek(SeekFrom::End(0))?;
    let tail_len = len.min(22 + 65_535);
    file.seek(SeekFrom::Start(len - tail_len))?;
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact(&mut tail)?;
    let Some(at) = (0..tail.len().saturating_sub(21)).rev().find(|&i| tail[i..i + 4] == [0x50, 0x4b, 0x05, 0x06])
    else {
        return Ok(None);
    };
    let entries = u64::from(u16::from_le_bytes([tail[at + 10], tail[at + 11]]));
    if entries != 0xFFFF || at < 20 || tail[at - 20..at - 16] != [0x50, 0x4b, 0x06, 0x07] {
        return Ok(Some(entries));
    }
    // Zip64: the locator before the record points at the zip64 record, whose count is at +32.
    let offset = u64::from_le_bytes(tail[at - 12..at - 4].try_into().unwrap_or_default());
    file.seek(SeekFrom::Start(offset.saturating_add(32)))?;
    let mut count = [0u8; 8];
    file.read_exact(&mut count)?;
    Ok(Some(u64::from_le_bytes(count)))
}

/// Reads a JSON document that is one record or an array of them, one record at a time.
struct Records<'a> {
    export: &'a mut Export,
    from: &'a str,
}

impl<'de> de::Visitor<'de> for Records<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an OSV record or an array of them")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        while let Some(value) = seq.next_element::<serde_json::Value>()? {
            self.export.push(&value, &format!("{}[{i}]", self.from)).map_err(de::Error::custom)?;
            i += 1;
        }
        Ok(())
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let value = serde::Deserialize::deserialize(de::value::MapAccessDeserializer::new(map))?;
        self.export.push(&value, self.from).map_err(de::Error::custom)
    }
}

impl Export {
    /// An export read leniently (for `scan.osv_dir`): unreadable files are skipped and counted.
    pub fn lenient() -> Export {
        Export { lenient: true, ..Export::default() }
    }

    /// The records to store and the ids to remove.
    pub fn into_parts(self) -> (Vec<ImportedRecord>, Vec<String>) {
        let mut records = Vec::new();
        let mut removed = Vec::new();
        for (id, entry) in self.entries {
            match entry {
                Some(r) => records.push(r),
                None => removed.push(id),
            }
        }
        (records, removed)
    }

    /// How many records it holds (to store or to remove).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn budget(&mut self, n: u64, max_bytes: u64) -> Result<()> {
        self.bytes += n;
        if self.bytes > max_bytes {
            self.limit_hit = true;
            return Err(Error::Invalid(format!(
                "the vulnerability data is larger than scan.vulndb_max_bytes ({max_bytes} bytes)"
            )));
        }
        Ok(())
    }

    fn push(&mut self, value: &serde_json::Value, from: &str) -> Result<()> {
        let record = Record::from_value(value).map_err(|e| invalid(from, e))?;
        if self.entries.len() >= MAX_RECORDS && !self.entries.contains_key(&record.id) {
            self.limit_hit = true;
            return Err(Error::Invalid(format!("more than {MAX_RECORDS} records in one import")));
        }
        if !record.is_relevant() {
            self.skipped += 1;
            self.entries.insert(record.id, None);
            return Ok(());
        }
        let body = value.to_string();
        let fingerprint = crate::model::Digest::of(crate::model::Algorithm::Sha256, body.as_bytes()).to_string();
        self.entries.insert(record.id.clone(), Some(ImportedRecord { id: record.id, body, fingerprint }));
        Ok(())
    }

    /// A file that could not be read: an error, or (lenient) counted and named.
    fn unreadable(&mut self, result: Result<()>) -> Result<()> {
        match result {
            Err(Error::Invalid(why)) if self.lenient && !self.limit_hit => {
                self.unreadable += 1;
                if self.unreadable_names.len() < 10 {
                    self.unreadable_names.push(why);
                }
                Ok(())
            }
            other => other,
        }
    }

    /// Adds the JSON document `bytes`: one record, or an array of them.
    pub fn add_json(&mut self, bytes: &[u8], from: &str) -> Result<()> {
        self.add_json_reader(bytes, from)
    }

    /// Adds the JSON document `reader` holds, one record at a time.
    pub fn add_json_reader(&mut self, reader: impl Read, from: &str) -> Result<()> {
        let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
        let result = de.deserialize_any(Records { export: self, from }).and_then(|()| de.end());
        result.map_err(|e| match e.classify() {
            // The record's own error, already saying where.
            serde_json::error::Category::Data => Error::Invalid(printable(&e.to_string())),
            _ => invalid(from, format!("not JSON: {e}")),
        })
    }

    /// Adds every `*.json` entry of a zip archive.
    pub fn add_zip(&mut self, mut file: std::fs::File, from: &str, max_bytes: u64) -> Result<()> {
        let unreadable = |e: zip::result::ZipError| invalid(from, format!("not a readable zip archive: {e}"));
        match zip_entries(&mut file).map_err(|e| invalid(from, e))? {
            Some(n) if n > MAX_RECORDS as u64 => {
                self.limit_hit = true;
                return Err(invalid(from, format!("{n} entries, more than {MAX_RECORDS}")));
            }
            Some(_) => {}
            None => return Err(invalid(from, "not a readable zip archive: no end of central directory")),
        }
        file.seek(SeekFrom::Start(0)).map_err(|e| invalid(from, e))?;
        let mut archive = zip::ZipArchive::new(file).map_err(unreadable)?;
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(unreadable)?;
            if !entry.is_file() || !entry.name().ends_with(".json") {
                continue;
            }
            let name = format!("{from}:{}", printable(entry.name()));
            let mut bytes = Vec::new();
            // Read one byte past the limit, to tell a record at the limit from one over it.
            (&mut entry)
                .take(MAX_RECORD_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| invalid(&name, format!("cannot be inflated: {e}")))?;
            if bytes.len() > MAX_RECORD_BYTES {
                return Err(invalid(&name, format!("a record of more than {MAX_RECORD_BYTES} bytes")));
            }
            self.budget(bytes.len() as u64, max_bytes)?;
            let added = self.add_json(&bytes, &name);
            self.unreadable(added)?;
        }
        Ok(())
    }

    /// Adds a file (a zip, or JSON) or a directory of them (recursively; `*.json` and `*.zip`;
    /// links to directories are not followed).
    pub fn add_path(&mut self, path: &Path, max_bytes: u64) -> Result<()> {
        let shown = path.display().to_string();
        let io = |e: std::io::Error| invalid(&shown, e);
        if path.is_dir() {
            let mut entries = Vec::new();
            for entry in std::fs::read_dir(path).map_err(io)? {
                let entry = entry.map_err(io)?;
                entries.push((entry.path(), entry.file_type().map_err(io)?));
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (entry, kind) in entries {
                let data_file = entry.extension().is_some_and(|e| e == "json" || e == "zip");
                // Directories are walked, but a link only to a file: a link to a directory may loop.
                let follow = if kind.is_symlink() {
                    data_file && entry.is_file()
                } else {
                    kind.is_dir() || (kind.is_file() && data_file)
                };
                if follow {
                    self.add_path(&entry, max_bytes)?;
                }
            }
            return Ok(());
        }
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut magic = [0u8; 4];
        let n = file.read(&mut magic).map_err(io)?;
        if n == 4 && magic == *b"PK\x03\x04" {
            file.seek(SeekFrom::Start(0)).map_err(io)?;
            let added = self.add_zip(file, &shown, max_bytes);
            return self.unreadable(added);
        }
        let size = file.metadata().map_err(io)?.len();
        self.budget(size, max_bytes)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        let added = self.add_json_reader(file, &shown);
        self.unreadable(added)
    }
}

impl Registry {
    /// The version of the imported vulnerability data.
    pub async fn vulndb_state(&self) -> Result<VulnDbState> {
        self.meta.vulndb_state().await
    }

    /// Imports `export` (one transaction), records who did it, and wakes this replica's rescanner.
    pub async fn import_vulnerabilities(&self, export: Export, actor: &str) -> Result<ImportReport> {
        let skipped = export.skipped;
        let (records, removed) = export.into_parts();
        let count = self.meta.import_vulnerabilities(records, removed, self.clock.now()).await?;
        let record = NewAudit::new("vulndb.import", "vulnerability-data")
            .actor(actor)
            .outcome(crate::model::audit::OK)
            .detail("version", count.state.version.to_string())
            .detail("added", count.added.to_string())
            .detail("changed", count.changed.to_string())
            .detail("removed", count.removed.to_string())
            .detail("records", count.state.records.to_string());
        self.audit(record).await;
        if count.added + count.changed + count.removed > 0 {
            self.scan_signals.vulndb.notify_one();
        }
        Ok(ImportReport { count, skipped })
    }

    /// Every stored record body, with the version they are.
    pub async fn vulnerability_records(&self) -> Result<(VulnDbState, Vec<String>)> {
        self.meta.vulnerability_records().await
    }

    /// For the rescanner: returns when vulnerability data was imported here, or after `limit`.
    pub async fn wait_for_vulndb(&self, limit: std::time::Duration) {
        let _ = tokio::time::timeout(limit, self.scan_signals.vulndb.notified()).await;
    }

    /// Passed images due for matching against `version` (or matched before `stale_before`).
    pub async fn rematch_due(
        &self,
        version: i64,
        stale_before: i64,
        after: Option<&RematchCursor>,
        limit: u32,
    ) -> Result<Vec<Rematch>> {
        self.meta.rematch_due(version, stale_before, after, limit).await
    }

    /// Whether any passed image was matched against data older than `version`, or before `stale_before`.
    pub async fn rematch_pending(&self, version: i64, stale_before: i64) -> Result<bool> {
        self.meta.rematch_pending(version, stale_before).await
    }

    /// How many images are due for matching.
    pub async fn count_rematch_due(&self, version: i64, stale_before: i64) -> Result<u64> {
        self.meta.count_rematch_due(version, stale_before).await
    }

    /// Writes a rematch's verdict onto the row it read; false if the row changed meanwhile.
    pub async fn record_rematch(
        &self,
        read: &Rematch,
        state: ScanState,
        findings: &str,
        summary: &str,
        version: i64,
    ) -> Result<bool> {
        let done = self.meta.record_rematch(read, state, findings, summary, version, self.clock.now()).await?;
        if done && state != ScanState::Passed {
            self.scan_signals.verdict.notify_waiters();
        }
        Ok(done)
    }

    /// Queues full rescans of passed images scanned before inventories were kept.
    pub async fn queue_uninventoried(&self) -> Result<u64> {
        let n = self.meta.queue_uninventoried(self.clock.now()).await?;
        if n > 0 {
            self.scan_queued();
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const DEBIAN: &str = r#"{"id":"DSA-0001-1","affected":[{"package":{"ecosystem":"Debian:12","name":"openssl"}}]}"#;
    const NPM: &str = r#"{"id":"GHSA-0001","affected":[{"package":{"ecosystem":"npm","name":"left-pad"}}]}"#;

    fn zip_of(entries: &[(&str, &[u8])]) -> std::fs::File {
        let mut file = tempfile::tempfile().unwrap();
        let mut zip = zip::ZipWriter::new(&mut file);
        for (name, bytes) in entries {
            zip.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        file
    }

    fn ids(e: Export) -> (Vec<String>, Vec<String>) {
        let (records, removed) = e.into_parts();
        (records.into_iter().map(|r| r.id).collect(), removed)
    }

    #[test]
    fn reads_json_and_zip_exports() {
        let mut e = Export::default();
        e.add_json(format!("[{DEBIAN},{NPM}]").as_bytes(), "body").unwrap();
        assert_eq!(e.skipped, 1);
        let mut z = Export::default();
        z.add_zip(
            zip_of(&[("DSA-0001-1.json", DEBIAN.as_bytes()), ("GHSA-0001.json", NPM.as_bytes())]),
            "all.zip",
            1 << 20,
        )
        .unwrap();
        assert_eq!(z.skipped, 1);
        let (from_json, from_zip) = (e.into_parts().0, z.into_parts().0);
        assert_eq!(from_json[0].id, "DSA-0001-1");
        assert_eq!(from_zip[0].fingerprint, from_json[0].fingerprint);
        // The last record of an id wins; a withdrawn one is to be removed.
        let mut e = Export::default();
        let newer = DEBIAN.replace("openssl", "zlib");
        let withdrawn = r#"{"id":"DSA-0002-1","withdrawn":"2026-01-01T00:00:00Z","affected":[{"package":{"ecosystem":"Debian:12","name":"x"}}]}"#;
        e.add_json(format!("[{DEBIAN},{newer},{withdrawn}]").as_bytes(), "body").unwrap();
        let (records, removed) = e.into_parts();
        assert_eq!(records.len(), 1);
        assert!(records[0].body.contains("zlib"));
        assert_eq!(removed, ["DSA-0002-1"]);
    }

    #[test]
    fn a_directory_is_walked_without_following_links_to_directories_and_leniently_for_osv_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("debian")).unwrap();
        std::fs::write(dir.path().join("debian/a.json"), DEBIAN).unwrap();
        std::fs::write(dir.path().join("broken.json"), "{ not json").unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("debian/loop")).unwrap();
        let err = Export::default().add_path(dir.path(), 1 << 20).unwrap_err().to_string();
        assert!(err.contains("broken.json") && err.contains("not JSON"), "{err}");
        let mut lenient = Export::lenient();
        lenient.add_path(dir.path(), 1 << 20).unwrap();
        assert_eq!((lenient.unreadable, lenient.len()), (1, 1));
        assert!(lenient.unreadable_names[0].contains("broken.json"));
        // Bounds are not leniency: over the size, the import fails.
        let err = Export::lenient().add_path(dir.path(), 10).unwrap_err().to_string();
        assert!(err.contains("scan.vulndb_max_bytes"), "{err}");
        assert_eq!(ids(lenient), (vec!["DSA-0001-1".to_owned()], vec![]));
    }

    #[test]
    fn refuses_what_it_cannot_read_and_stops_at_the_bounds() {
        let mut e = Export::default();
        let err = e.add_json(br#"[{"id":"A-1"},{"nope":1}]"#, "body").unwrap_err().to_string();
        assert!(err.contains("body[1]") && err.contains("not an OSV record"), "{err}");
        let err = Export::default().add_json(b"{", "body").unwrap_err().to_string();
        assert!(err.contains("not JSON"), "{err}");
        // What the input says is quoted short.
        let long = format!(r#"{{"id": 5, "summary": "{}"}}"#, "x".repeat(10_000));
        let err = Export::default().add_json(long.as_bytes(), "body").unwrap_err().to_string();
        assert!(err.len() < 600, "{} bytes", err.len());
        // A zip bomb: one entry inflating past the per-record bound.
        let big = vec![b' '; MAX_RECORD_BYTES + 10];
        let err = Export::default().add_zip(zip_of(&[("x.json", &big)]), "bomb.zip", u64::MAX).unwrap_err().to_string();
        assert!(err.contains("more than"), "{err}");
        // The total bound.
        let err = Export::default()
            .add_zip(zip_of(&[("a.json", DEBIAN.as_bytes()), ("b.json", DEBIAN.as_bytes())]), "all.zip", 100)
            .unwrap_err()
            .to_string();
        assert!(err.contains("scan.vulndb_max_bytes"), "{err}");
        let err = Export::default()
            .add_zip(std::fs::File::open("Cargo.toml").unwrap(), "c.zip", u64::MAX)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a readable zip"), "{err}");
        // A zip64 directory declaring a million entries is refused before it is read.
        let mut fake = b"PK\x06\x06".to_vec();
        fake.extend([0u8; 28]);
        fake.extend(1_000_000u64.to_le_bytes());
        fake.extend([0u8; 16]);
        fake.extend(b"PK\x06\x07");
        fake.extend(0u32.to_le_bytes());
        fake.extend(0u64.to_le_bytes());
        fake.extend(1u32.to_le_bytes());
        fake.extend(b"PK\x05\x06");
        fake.extend([0u8; 4]);
        fake.extend([0xFF; 4]);
        fake.extend([0u8; 10]);
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&fake).unwrap();
        let err = Export::default().add_zip(file, "huge.zip", u64::MAX).unwrap_err().to_string();
        assert!(err.contains("1000000 entries"), "{err}");
    }
}
