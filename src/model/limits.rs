//! Defaults of limits that the configuration and the layers below it share.

use std::time::Duration;

/// The default of `limits.max_references`.
pub const DEFAULT_MAX_REFERENCES: usize = 1000;
/// The default of `limits.max_index_reach` (the gate refuses to decide beyond it, too).
pub const DEFAULT_MAX_INDEX_REACH: usize = 10_000;

/// The default of `scan.poll`.
pub const DEFAULT_SCAN_POLL: Duration = Duration::from_secs(1);

/// The default of `gc.grace`: what nobody has touched for this long, and nothing references, the
/// collector may remove. A client that learned a blob exists has this long to reference it.
pub const DEFAULT_GC_GRACE: Duration = Duration::from_secs(3600);
/// The default of `gc.lease`: a collection whose process died blocks the next one this long.
pub const DEFAULT_GC_LEASE: Duration = Duration::from_secs(300);
/// The default of `gc.interval`.
pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(3600);
