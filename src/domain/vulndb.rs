//! Importing vulnerability data: OSV exports (a zip such as OSV's per-ecosystem `all.zip`, a
//! directory of records, one record or a JSON array of them) into the database, whose version
//! every replica's scanner reloads from.
//!
//! Rules:
//! - An import is all or nothing: a file that is not JSON or not an OSV record fails the whole
//!   import with its name, before anything is written.
//! - Only records the scanner can match are kept (ecosystems Debian, Alpine and PyPI, not
//!   withdrawn); the rest are counted as skipped.
//! - Reading is bounded: at most `max_bytes` of data in all (zip entries as they inflate, so a
//!   zip bomb stops at the bound), at most [`MAX_RECORD_BYTES`] per record, at most
//!   [`MAX_RECORDS`] records.

use std::io::Read;
use std::path::Path;

use super::{Error, Registry, Result};
use crate::metadata::vulndb::{ImportCount, ImportedRecord, Rematch, RematchCursor, VulnDbState};
use crate::model::audit::NewAudit;
use crate::model::osv::{Record, MAX_RECORD_BYTES};
use crate::model::ScanState;

/// The most records one import may hold (OSV's largest ecosystem export has a few hundred thousand).
pub const MAX_RECORDS: usize = 2_000_000;

/// What an export held, ready to import.
#[derive(Debug, Default)]
pub struct Export {
    pub records: Vec<ImportedRecord>,
    /// Records for ecosystems the scanner does not read, or withdrawn.
    pub skipped: u64,
    /// Bytes read (decompressed).
    bytes: u64,
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportReport {
    pub count: ImportCount,
    pub skipped: u64,
}

/// A name from an archive, as an error may quote it: at most 200 characters, no control characters.
fn printable(name: &str) -> String {
    name.chars().take(200).map(|c| if c.is_control() { '?' } else { c }).collect()
}

impl Export {
    fn budget(&mut self, n: u64, max_bytes: u64) -> Result<()> {
        self.bytes += n;
        if self.bytes > max_bytes {
            return Err(Error::Invalid(format!(
                "the vulnerability data is larger than scan.vulndb_max_bytes ({max_bytes} bytes)"
            )));
        }
        Ok(())
    }

    fn push(&mut self, value: serde_json::Value, from: &str) -> Result<()> {
        let record = Record::from_value(value.clone()).map_err(|e| Error::Invalid(format!("{from}: {e}")))?;
        if !record.is_relevant() {
            self.skipped += 1;
            return Ok(());
        }
        if self.records.len() >= MAX_RECORDS {
            return Err(Error::Invalid(format!("more than {MAX_RECORDS} records in one import")));
        }
        let body = value.to_string();
        let fingerprint = crate::model::Digest::of(crate::model::Algorithm::Sha256, body.as_bytes()).to_string();
        self.records.push(ImportedRecord { id: record.id, body, fingerprint });
        Ok(())
    }

    /// Adds the JSON document `bytes`: one record, or an array of them.
    pub fn add_json(&mut self, bytes: &[u8], from: &str) -> Result<()> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| Error::Invalid(format!("{from}: not JSON: {e}")))?;
        match value {
            serde_json::Value::Array(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    self.push(item, &format!("{from}[{i}]"))?;
                }
                Ok(())
            }
            record => self.push(record, from),
        }
    }

    /// Adds every `*.json` entry of a zip archive.
    pub fn add_zip(&mut self, file: std::fs::File, from: &str, max_bytes: u64) -> Result<()> {
        let invalid = |e: zip::result::ZipError| Error::Invalid(format!("{from}: not a readable zip archive: {e}"));
        let mut archive = zip::ZipArchive::new(file).map_err(invalid)?;
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(invalid)?;
            if !entry.is_file() || !entry.name().ends_with(".json") {
                continue;
            }
            let name = format!("{from}:{}", printable(entry.name()));
            let mut bytes = Vec::new();
            // Read one byte past the limit, to tell a record at the limit from one over it.
            (&mut entry)
                .take(MAX_RECORD_BYTES as u64 + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| Error::Invalid(format!("{name}: cannot be inflated: {e}")))?;
            if bytes.len() > MAX_RECORD_BYTES {
                return Err(Error::Invalid(format!("{name}: a record of more than {MAX_RECORD_BYTES} bytes")));
            }
            self.budget(bytes.len() as u64, max_bytes)?;
            self.add_json(&bytes, &name)?;
        }
        Ok(())
    }

    /// Adds a file (a zip, or JSON) or a directory of them (recursively; `*.json` and `*.zip`).
    pub fn add_path(&mut self, path: &Path, max_bytes: u64) -> Result<()> {
        let shown = path.display().to_string();
        let io = |e: std::io::Error| Error::Invalid(format!("{shown}: {e}"));
        if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .map_err(io)?
                .map(|e| e.map(|e| e.path()))
                .collect::<Result<_, _>>()
                .map_err(io)?;
            entries.sort();
            for entry in entries {
                let wanted = entry.is_dir() || entry.extension().is_some_and(|e| e == "json" || e == "zip");
                if wanted {
                    self.add_path(&entry, max_bytes)?;
                }
            }
            return Ok(());
        }
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut magic = [0u8; 4];
        let n = file.read(&mut magic).map_err(io)?;
        if n == 4 && magic == *b"PK\x03\x04" {
            return self.add_zip(std::fs::File::open(path).map_err(io)?, &shown, max_bytes);
        }
        let size = std::fs::metadata(path).map_err(io)?.len();
        self.budget(size, max_bytes)?;
        let bytes = std::fs::read(path).map_err(io)?;
        self.add_json(&bytes, &shown)
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
        let count = self.meta.import_vulnerabilities(export.records, self.clock.now()).await?;
        let record = NewAudit::new("vulndb.import", "vulnerability-data")
            .actor(actor)
            .outcome(crate::model::audit::OK)
            .detail("version", count.state.version.to_string())
            .detail("added", count.added.to_string())
            .detail("changed", count.changed.to_string())
            .detail("records", count.state.records.to_string());
        self.audit(record).await;
        if count.added + count.changed > 0 {
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

    /// Whether any passed image was matched against data older than `version`.
    pub async fn rematch_behind(&self, version: i64) -> Result<bool> {
        self.meta.rematch_behind(version).await
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

    #[test]
    fn reads_json_and_zip_exports() {
        let mut e = Export::default();
        e.add_json(format!("[{DEBIAN},{NPM}]").as_bytes(), "body").unwrap();
        assert_eq!((e.records.len(), e.skipped), (1, 1));
        assert_eq!(e.records[0].id, "DSA-0001-1");
        let mut z = Export::default();
        z.add_zip(
            zip_of(&[("DSA-0001-1.json", DEBIAN.as_bytes()), ("GHSA-0001.json", NPM.as_bytes())]),
            "all.zip",
            1 << 20,
        )
        .unwrap();
        assert_eq!((z.records.len(), z.skipped), (1, 1));
        assert_eq!(z.records[0].fingerprint, e.records[0].fingerprint);
    }

    #[test]
    fn refuses_what_it_cannot_read_and_stops_at_the_bounds() {
        let mut e = Export::default();
        let err = e.add_json(br#"[{"id":"A-1"},{"nope":1}]"#, "body").unwrap_err().to_string();
        assert!(err.contains("body[1]") && err.contains("not an OSV record"), "{err}");
        let err = Export::default().add_json(b"{", "body").unwrap_err().to_string();
        assert!(err.contains("not JSON"), "{err}");
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
    }
}
