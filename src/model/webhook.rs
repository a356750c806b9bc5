//! Webhooks: what they subscribe to, their deliveries, and which audit records become events.
//!
//! Rule: an event is an audit record seen from outside. The audit log is the outbox: a push's
//! record commits with the push, and a dispatch pass turns each new record into one delivery per
//! matching webhook, in the same transaction that moves its cursor, so an event is neither lost
//! nor fanned out twice, whatever crashes and however many replicas run.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

/// HMAC-SHA256 of `message` under `key`, in hex.
pub(crate) fn hmac_hex(key: &[u8], message: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in message {
        mac.update(part);
    }
    hex::encode(mac.finalize().into_bytes())
}

/// The secret of webhook `id`: derived from the registry's `master` key, so the database holds
/// no webhook secret (a copy of it signs nothing), and every replica with the key signs alike.
pub fn secret(master: &[u8], id: &str) -> String {
    format!("whsec_{}", hmac_hex(master, &[b"portcullis-webhook-secret\n", id.as_bytes()]))
}

/// The `Portcullis-Signature` header of `body` sent at `t` (Unix seconds) with `secret`:
/// `t=<t>,v1=<hex HMAC-SHA256 over "<t>.<body>">`.
pub fn signature_header(secret: &str, t: i64, body: &[u8]) -> String {
    format!("t={t},v1={}", hmac_hex(secret.as_bytes(), &[t.to_string().as_bytes(), b".", body]))
}

/// The events a webhook may subscribe to (`test` is sent only by the "send a test event" call).
pub const EVENTS: &[&str] = &[
    "push",
    "delete",
    "scan.passed",
    "scan.quarantined",
    "scan.error",
    "pull.blocked",
    "scan.released",
    "quota.exceeded",
];

/// The event an audit record is, if it is one.
pub fn event_of(action: &str, outcome: &str) -> Option<&'static str> {
    Some(match (action, outcome) {
        ("push", _) => "push",
        ("delete" | "retention.remove" | "repository.delete", _) => "delete",
        ("scan.verdict", "passed") => "scan.passed",
        ("scan.verdict", "quarantined") => "scan.quarantined",
        ("scan.verdict", "error") => "scan.error",
        ("pull.blocked", _) => "pull.blocked",
        ("scan.release", _) => "scan.released",
        ("quota.exceeded", _) => "quota.exceeded",
        _ => return None,
    })
}

/// A registered webhook.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    /// The namespace whose events it receives; `None`: every namespace (registered by an admin).
    pub namespace: Option<String>,
    pub created_by: String,
    pub created_ms: i64,
}

/// One event for one webhook, and how sending it went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: String,
    pub event: String,
    /// The CloudEvents JSON sent as the body.
    #[serde(skip)]
    pub payload: String,
    /// `pending`, `delivered` or `failed` (given up after `webhooks.max_age`).
    pub state: String,
    pub attempts: i64,
    pub created_ms: i64,
    pub next_attempt_ms: i64,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
}

/// How one delivery attempt went.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// `delivered`, `failed` (given up), or `pending` (retried at `next_attempt_ms`).
    pub state: &'static str,
    pub next_attempt_ms: i64,
    /// The receiver's status, if it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_signatures_are_keyed() {
        let (a, b) = (secret(b"master-1", "hook"), secret(b"master-2", "hook"));
        assert!(a.starts_with("whsec_") && a.len() == 6 + 64);
        assert_ne!(a, b);
        assert_ne!(a, secret(b"master-1", "other"));
        let sig = signature_header(&a, 1_700_000_000, b"{}");
        assert!(sig.starts_with("t=1700000000,v1="));
        assert_ne!(sig, signature_header(&a, 1_700_000_001, b"{}"));
        assert_ne!(sig, signature_header(&a, 1_700_000_000, b"{ }"));
        // The known answer (RFC 2104 HMAC-SHA256 of the classic sentence under "key").
        assert_eq!(
            hmac_hex(b"key", &[b"The quick brown fox ", b"jumps over the lazy dog"]),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }

    #[test]
    fn verdicts_and_changes_map_to_events() {
        assert_eq!(event_of("scan.verdict", "quarantined"), Some("scan.quarantined"));
        assert_eq!(event_of("scan.verdict", "passed"), Some("scan.passed"));
        assert_eq!(event_of("push", "ok"), Some("push"));
        assert_eq!(event_of("login", "failed"), None);
        for e in EVENTS {
            assert!(
                [
                    ("push", "ok"),
                    ("delete", "ok"),
                    ("scan.verdict", "passed"),
                    ("scan.verdict", "quarantined"),
                    ("scan.verdict", "error"),
                    ("pull.blocked", "denied"),
                    ("scan.release", "ok"),
                    ("quota.exceeded", "denied"),
                ]
                .iter()
                .any(|(a, o)| event_of(a, o) == Some(*e)),
                "{e} has a source"
            );
        }
    }
}
