//! What the gate decides on: a manifest's kind, its scan state and verdict.

use serde::Serialize;

/// What a manifest is to the quarantine gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ManifestKind {
    /// Something a client would run: scanned with every rule.
    Image,
    /// Anything else with blobs (signatures, SBOMs, charts): its blobs are searched for secrets.
    Artifact,
    /// A list of manifests: gated by the worst verdict of everything it reaches.
    Index,
}

impl ManifestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ManifestKind::Image => "image",
            ManifestKind::Artifact => "artifact",
            ManifestKind::Index => "index",
        }
    }
    pub fn parse(s: &str) -> Option<ManifestKind> {
        Some(match s {
            "image" => ManifestKind::Image,
            "artifact" => ManifestKind::Artifact,
            "index" => ManifestKind::Index,
            _ => return None,
        })
    }
}

/// Where a manifest's scan stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanState {
    Pending,
    Scanning,
    Passed,
    Quarantined,
    Error,
    Released,
}

impl ScanState {
    pub const ALL: &'static [ScanState] = &[
        ScanState::Pending,
        ScanState::Scanning,
        ScanState::Passed,
        ScanState::Quarantined,
        ScanState::Error,
        ScanState::Released,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ScanState::Pending => "pending",
            ScanState::Scanning => "scanning",
            ScanState::Passed => "passed",
            ScanState::Quarantined => "quarantined",
            ScanState::Error => "error",
            ScanState::Released => "released",
        }
    }
    pub fn parse(s: &str) -> Option<ScanState> {
        Some(match s {
            "pending" => ScanState::Pending,
            "scanning" => ScanState::Scanning,
            "passed" => ScanState::Passed,
            "quarantined" => ScanState::Quarantined,
            "error" => ScanState::Error,
            "released" => ScanState::Released,
            _ => return None,
        })
    }
    /// Whether the image may be pulled by ordinary principals.
    pub fn allows_pull(self) -> bool {
        matches!(self, ScanState::Passed | ScanState::Released)
    }
    /// Ordering for "the worst state of the children": higher is worse.
    pub fn badness(self) -> u8 {
        match self {
            ScanState::Passed | ScanState::Released => 0,
            ScanState::Pending => 1,
            ScanState::Scanning => 2,
            ScanState::Error => 3,
            ScanState::Quarantined => 4,
        }
    }
}

/// A scan record as stored.
#[derive(Debug, Clone, Serialize)]
pub struct ScanRecord {
    pub repository: String,
    pub digest: String,
    pub state: ScanState,
    /// Findings as a JSON array (kept as stored; the API embeds it).
    #[serde(skip)]
    pub findings: Option<String>,
    pub summary: Option<String>,
    pub attempts: u32,
    pub rescan_requested: bool,
    pub released_by: Option<String>,
    pub release_reason: Option<String>,
    /// When a release lapses and the image is blocked again (`None`: never).
    pub release_until: Option<i64>,
    pub updated_at: i64,
}

/// The state in effect at `now`: a lapsed release counts as quarantined again.
fn effective(state: ScanState, release_until: Option<i64>, now: i64) -> ScanState {
    match (state, release_until) {
        (ScanState::Released, Some(until)) if until <= now => ScanState::Quarantined,
        (state, _) => state,
    }
}

impl ScanRecord {
    /// The state in effect at `now`: a lapsed release counts as quarantined again.
    pub fn effective_state(&self, now: i64) -> ScanState {
        effective(self.state, self.release_until, now)
    }
}

/// The part of a scan record the gate decides on.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub state: ScanState,
    pub summary: Option<String>,
    pub release_until: Option<i64>,
}

impl Verdict {
    /// The state in effect at `now`: a lapsed release counts as quarantined again.
    pub fn effective_state(&self, now: i64) -> ScanState {
        effective(self.state, self.release_until, now)
    }
}
