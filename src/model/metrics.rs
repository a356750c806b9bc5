//! The names of the Prometheus metrics every layer records, with their help text and units.
//!
//! Rule: a metric is recorded only under a name from this file, and every label takes values from
//! a small fixed set (a route class, a status code, an outcome, a scan state), never a repository,
//! a user or any other client-chosen text, so the number of series stays bounded. The layers call
//! the `metrics` facade; the wiring installs the Prometheus recorder once per process
//! ([`describe`] registers the help text), and without it every call is a no-op.

/// Requests answered, by `class` (see `http::observe`), `method` and `status`.
pub const HTTP_REQUESTS: &str = "portcullis_http_requests_total";
/// Seconds from the request head to the last byte of the response, by `class`.
pub const HTTP_DURATION: &str = "portcullis_http_request_duration_seconds";
/// Request body bytes read, by `class`.
pub const HTTP_RECEIVED: &str = "portcullis_http_received_bytes_total";
/// Response body bytes sent, by `class`.
pub const HTTP_SENT: &str = "portcullis_http_sent_bytes_total";
/// Requests refused by a rate limit or a connection cap, by `limit`.
pub const THROTTLED: &str = "portcullis_throttled_requests_total";

/// Blob uploads completed (the digest verified and the blob linked).
pub const UPLOADS: &str = "portcullis_uploads_completed_total";
/// Blob bytes stored by completed uploads.
pub const UPLOAD_BYTES: &str = "portcullis_upload_bytes_total";
/// Blob GETs allowed through the gate (the scanner's own reads are not counted).
pub const BLOB_PULLS: &str = "portcullis_blob_pulls_total";
/// Manifest GETs allowed through the gate (HEAD tells no content and is not counted).
pub const MANIFEST_PULLS: &str = "portcullis_manifest_pulls_total";
/// Manifests accepted by a PUT.
pub const MANIFEST_PUSHES: &str = "portcullis_manifest_pushes_total";
/// Manifest and blob GETs (and mounts) refused by the quarantine gate, by the image's `state`.
pub const PULLS_BLOCKED: &str = "portcullis_pulls_blocked_total";
pub const UNSIGNED_PULLS: &str = "portcullis_unsigned_pulls_total";
/// Manifest GETs of blocked images by those the policy lets pass the gate (administrators).
pub const GATE_BYPASSES: &str = "portcullis_gate_bypasses_total";

/// Images waiting for a scan (pending or scanning), read from the database at each scrape.
pub const SCAN_QUEUE: &str = "portcullis_scan_queue_depth";
/// Images by scan `state`, read from the database at each scrape.
pub const IMAGES: &str = "portcullis_images";
/// Seconds a scan took, from its start to its verdict.
pub const SCAN_DURATION: &str = "portcullis_scan_duration_seconds";
/// Scans finished, by the `verdict` state they reached.
pub const SCAN_VERDICTS: &str = "portcullis_scan_verdicts_total";
/// Passed images matched again against the vulnerability data, by `outcome`: `passed`,
/// `quarantined`, or `superseded` (another verdict landed first).
pub const RESCANS: &str = "portcullis_rescans_total";
/// The version of the vulnerability data this replica has loaded.
pub const VULNDB_VERSION: &str = "portcullis_vulndb_version";

/// Logins checked (Basic credentials at `/token` and the admin API), by `outcome`: `ok`,
/// `failed`, `throttled`, `busy`.
pub const LOGINS: &str = "portcullis_logins_total";
/// Registry tokens issued by `/token`, by the `kind` of account (`user`, `robot`, `anonymous`).
pub const TOKENS_ISSUED: &str = "portcullis_tokens_issued_total";

/// Database errors, by `kind`: `unavailable` (unreachable, timed out, a retryable conflict) or
/// `internal`.
pub const DB_ERRORS: &str = "portcullis_database_errors_total";
/// Seconds a metadata operation took, by `op`.
pub const DB_DURATION: &str = "portcullis_database_operation_seconds";
/// Blob store errors, by `op`.
pub const STORAGE_ERRORS: &str = "portcullis_storage_errors_total";
/// Seconds a blob store operation took (for a read: until the first byte can flow), by `op`.
pub const STORAGE_DURATION: &str = "portcullis_storage_operation_seconds";

/// Collections finished, by `outcome` (`ok`, `error`, `dry_run`).
pub const GC_RUNS: &str = "portcullis_gc_runs_total";
/// Seconds a collection took (mark and sweep).
pub const GC_DURATION: &str = "portcullis_gc_duration_seconds";
/// Blob bytes freed by collections.
pub const GC_FREED_BYTES: &str = "portcullis_gc_freed_bytes_total";
/// Blobs deleted by collections.
pub const GC_BLOBS: &str = "portcullis_gc_blobs_deleted_total";
/// Manifests removed by collections (retention and unreachable manifests).
pub const GC_MANIFESTS: &str = "portcullis_gc_manifests_deleted_total";

/// Webhook delivery attempts, by `outcome` (`delivered`, `retry`, `failed`).
pub const WEBHOOK_DELIVERIES: &str = "portcullis_webhook_deliveries_total";

/// Always 1; the labels carry the `version` of this build.
pub const BUILD_INFO: &str = "portcullis_build_info";

/// Histogram buckets for request, database and storage seconds: 1 ms to 2 minutes.
pub const SECONDS_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
/// Histogram buckets for scans and collections: 100 ms to an hour.
pub const LONG_SECONDS_BUCKETS: &[f64] = &[0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0];

/// Every metric with its help text, for [`describe`] and the README's table.
pub const ALL: &[(&str, &str)] = &[
    (HTTP_REQUESTS, "Requests answered, by route class, method and status."),
    (HTTP_DURATION, "Seconds from the request head to the last response byte, by route class."),
    (HTTP_RECEIVED, "Request body bytes read, by route class."),
    (HTTP_SENT, "Response body bytes sent, by route class."),
    (THROTTLED, "Requests refused by a rate limit, by limit."),
    (UPLOADS, "Blob uploads completed."),
    (UPLOAD_BYTES, "Blob bytes stored by completed uploads."),
    (BLOB_PULLS, "Blob reads allowed through the quarantine gate."),
    (MANIFEST_PULLS, "Manifest reads allowed through the quarantine gate."),
    (MANIFEST_PUSHES, "Manifests accepted."),
    (PULLS_BLOCKED, "Reads refused by the quarantine gate, by scan state."),
    (UNSIGNED_PULLS, "Manifest reads of unsigned images in namespaces with a signature policy, by mode (warn: served; require: refused)."),
    (GATE_BYPASSES, "Reads past the quarantine gate by administrators."),
    (SCAN_QUEUE, "Images waiting for a scan (pending or scanning)."),
    (IMAGES, "Images by scan state."),
    (SCAN_DURATION, "Seconds a scan took."),
    (SCAN_VERDICTS, "Scans finished, by verdict."),
    (RESCANS, "Passed images matched again against the vulnerability data, by outcome."),
    (VULNDB_VERSION, "The version of the vulnerability data this replica has loaded."),
    (LOGINS, "Logins checked, by outcome."),
    (TOKENS_ISSUED, "Registry tokens issued, by account kind."),
    (DB_ERRORS, "Database errors, by kind."),
    (DB_DURATION, "Seconds a metadata operation took, by operation."),
    (STORAGE_ERRORS, "Blob store errors, by operation."),
    (STORAGE_DURATION, "Seconds a blob store operation took, by operation."),
    (GC_RUNS, "Collections finished, by outcome."),
    (GC_DURATION, "Seconds a collection took."),
    (GC_FREED_BYTES, "Blob bytes freed by collections."),
    (GC_BLOBS, "Blobs deleted by collections."),
    (GC_MANIFESTS, "Manifests removed by collections."),
    (WEBHOOK_DELIVERIES, "Webhook delivery attempts, by outcome."),
    (BUILD_INFO, "Always 1; the version label names this build."),
];

/// Registers the help text of every metric with the installed recorder.
pub fn describe() {
    for (name, help) in ALL {
        if name.ends_with("_total") {
            metrics::describe_counter!(*name, *help);
        } else if name.ends_with("_seconds") {
            metrics::describe_histogram!(*name, metrics::Unit::Seconds, *help);
        } else {
            metrics::describe_gauge!(*name, *help);
        }
    }
}

/// Records the seconds since it was made into a histogram when dropped: a timer that also
/// measures operations that return early or fail.
pub struct Timer {
    name: &'static str,
    label: (&'static str, &'static str),
    start: std::time::Instant,
}

impl Timer {
    pub fn start(name: &'static str, label: &'static str, value: &'static str) -> Self {
        Timer { name, label: (label, value), start: std::time::Instant::now() }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        metrics::histogram!(self.name, self.label.0 => self.label.1).record(self.start.elapsed().as_secs_f64());
    }
}
