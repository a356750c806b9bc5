//! Readiness: whether the database and the blob store answer, each within a bound.
//!
//! Rule: a probe reads, never writes, and costs one trivial query and one existence check, so a
//! load balancer may poll it every second. What failed is named; why goes to the log only (an
//! error text may name hosts).

use std::time::{Duration, Instant};

use serde::Serialize;

use super::Registry;

/// How long each probe may take before it counts as failed.
pub const READY_BOUND: Duration = Duration::from_secs(2);

/// One dependency's answer.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Probe {
    pub ok: bool,
    /// How long it took, in milliseconds (the bound when it timed out).
    pub ms: u64,
    /// `"timed out"` or `"failed"` when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Readiness {
    pub database: Probe,
    pub storage: Probe,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.database.ok && self.storage.ok
    }
}

async fn probe<E: std::fmt::Display>(what: &str, check: impl std::future::Future<Output = Result<(), E>>) -> Probe {
    let started = Instant::now();
    match tokio::time::timeout(READY_BOUND, check).await {
        Ok(Ok(())) => Probe { ok: true, ms: started.elapsed().as_millis() as u64, error: None },
        Ok(Err(e)) => {
            tracing::warn!(dependency = what, error = %e, "readiness probe failed");
            Probe { ok: false, ms: started.elapsed().as_millis() as u64, error: Some("failed") }
        }
        Err(_) => {
            tracing::warn!(dependency = what, bound_ms = READY_BOUND.as_millis() as u64, "readiness probe timed out");
            Probe { ok: false, ms: READY_BOUND.as_millis() as u64, error: Some("timed out") }
        }
    }
}

impl Registry {
    /// Probes the database and the blob store at once.
    pub async fn readiness(&self) -> Readiness {
        // The digest of nothing: an existence check of a key that may or may not be there.
        let empty = super::Digest::of(super::digest::Algorithm::Sha256, b"");
        let (database, storage) = tokio::join!(
            probe("database", self.meta.ping()),
            probe("storage", async { self.blobs.exists(&empty).await.map(|_| ()) }),
        );
        Readiness { database, storage }
    }
}
