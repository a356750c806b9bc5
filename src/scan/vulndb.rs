//! This replica's copy of the vulnerability data: the OSV index built from the records in the
//! database, swapped whole when the data's version changes.
//!
//! Rule: a scan takes one snapshot ([`VulnDb::current`]) and records its version with the
//! verdict, so a verdict always says which data it was matched against.

use std::sync::{Arc, RwLock};

use super::osv::OsvDb;
use crate::domain::Registry;
use crate::model::osv::Record;

/// The loaded data, shared by the scan workers and the rescanner.
#[derive(Debug, Clone, Default)]
pub struct VulnDb(Arc<RwLock<Arc<OsvDb>>>);

impl VulnDb {
    /// The data as loaded now.
    pub fn current(&self) -> Arc<OsvDb> {
        Arc::clone(&self.0.read().unwrap_or_else(|p| p.into_inner()))
    }

    fn replace(&self, db: OsvDb) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(db);
    }

    /// Reloads from the database if its version differs from the loaded one; returns whether it did.
    pub async fn reload_if_changed(&self, registry: &Registry) -> crate::domain::Result<bool> {
        let state = registry.vulndb_state().await?;
        if state.version == self.current().version {
            return Ok(false);
        }
        let (state, bodies) = registry.vulnerability_records().await?;
        let started = std::time::Instant::now();
        let (db, unreadable) = tokio::task::spawn_blocking(move || {
            let mut unreadable = 0usize;
            let records = bodies
                .iter()
                .filter_map(|b| Record::parse(b.as_bytes()).map_err(|_| unreadable += 1).ok())
                .collect::<Vec<_>>();
            (OsvDb::new(records, state.version), unreadable)
        })
        .await
        .map_err(|e| crate::domain::Error::Internal(format!("loading the vulnerability data: {e}")))?;
        tracing::info!(
            version = db.version,
            records = db.records,
            unreadable,
            ms = started.elapsed().as_millis() as u64,
            "vulnerability data loaded"
        );
        self.replace(db);
        Ok(true)
    }
}
