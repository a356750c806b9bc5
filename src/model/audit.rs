//! The audit log's records, their chain, and the request they came from.
//!
//! Rules and invariants:
//! - A record is written once (insert-only) and later given its place in the chain: `seq`, the
//!   next number after the chain's head, and `hash`, the SHA-256 of the record's canonical
//!   encoding ([`canonical`]) followed by the hash of the record before it. The first record of
//!   the chain follows [`GENESIS`]. Chaining happens in one transaction that holds the head's row,
//!   so with any number of replicas there is one order: the order records were chained in.
//! - So: changing any field of a chained record, deleting one, or moving one to another place
//!   changes a hash that a later record (or the head) holds, and verification names the first
//!   record where the stored and the recomputed chains part.
//! - The canonical encoding is a JSON array of fixed fields in a fixed order, with a version tag
//!   first: JSON strings escape every byte that could be ambiguous, so two different records
//!   never encode alike.
//! - The head (last place and hash, and where the chain starts) is sealed with an HMAC under the
//!   registry's key, which lives outside the database: moving the head back to hide the newest
//!   records, or its start forward to hide the oldest, breaks the seal. A chaining pass extends a
//!   seal only if the seal it found was good, so a forged head stays visible.
//! - Request ids, client addresses and the actor come from the [`RequestContext`] of the request
//!   being handled, set once by the HTTP layer; work outside a request (the scanner, the
//!   collector) names its actor itself.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};

/// The hash the first record of a chain follows.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Outcomes of audited events.
pub const OK: &str = "ok";
pub const FAILED: &str = "failed";
pub const DENIED: &str = "denied";
pub const THROTTLED: &str = "throttled";

/// A record's content: what is written first, and what the chain's hash covers with its place.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NewAudit {
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// The account (user or robot name) that acted; `-` for anonymous callers, `system:<part>`
    /// for the registry's own work.
    pub actor: String,
    pub client: String,
    pub action: String,
    /// What was acted on: an account, `namespace`, `repository@digest`, `repository:tag`...
    pub object: String,
    /// The namespace the record concerns, when it concerns one (owners read their namespace's).
    pub namespace: Option<String>,
    pub outcome: String,
    pub request_id: String,
    /// A JSON object with whatever else the event tells (never a secret).
    pub details: String,
}

impl NewAudit {
    /// A record of `action` on `object`, at the current time, by the current request's actor.
    pub fn new(action: &str, object: impl Into<String>) -> Self {
        let context = RequestContext::current();
        let (actor, client, request_id) = match &context {
            Some(c) => (c.actor().unwrap_or_else(|| "-".into()), c.client.to_string(), c.id.to_string()),
            None => ("-".into(), "-".into(), "-".into()),
        };
        NewAudit {
            time_ms: super::now_ms(),
            actor,
            client,
            action: action.to_owned(),
            object: object.into(),
            namespace: None,
            outcome: OK.to_owned(),
            request_id,
            details: "{}".into(),
        }
    }
    /// The actor, cut to 128 characters (a failed login records the name the client typed).
    pub fn actor(mut self, actor: &str) -> Self {
        self.actor = if actor.is_empty() { "-".into() } else { actor.chars().take(128).collect() };
        self
    }
    pub fn client(mut self, client: IpAddr) -> Self {
        self.client = client.to_string();
        self
    }
    pub fn outcome(mut self, outcome: &str) -> Self {
        self.outcome = outcome.to_owned();
        self
    }
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }
    /// Adds `key: value` to the details object.
    pub fn detail(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        let mut details: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&self.details).unwrap_or_default();
        details.insert(key.to_owned(), value.into());
        self.details = serde_json::Value::Object(details).to_string();
        self
    }
}

/// A chained record.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditRecord {
    /// The record's place in the chain (1, 2, ...): its id in the API.
    pub id: i64,
    #[serde(flatten)]
    pub content: NewAudit,
    pub hash: String,
}

/// The canonical encoding of a record at place `seq`, hashed into the chain.
pub fn canonical(seq: i64, r: &NewAudit) -> Vec<u8> {
    let fields = serde_json::json!([
        "portcullis-audit-v1",
        seq,
        r.time_ms,
        r.actor,
        r.client,
        r.action,
        r.object,
        r.namespace,
        r.outcome,
        r.request_id,
        r.details,
    ]);
    serde_json::to_vec(&fields).expect("a JSON value encodes")
}

/// The hash of the record at `seq` that follows `prev` (hex SHA-256).
pub fn chain_hash(prev: &str, seq: i64, r: &NewAudit) -> String {
    let mut h = Sha256::new();
    h.update(canonical(seq, r));
    h.update(b"\n");
    h.update(prev.as_bytes());
    hex::encode(h.finalize())
}

/// The chain's state: its last record, and where it starts (records before were dropped by
/// retention; the first kept record follows `first_prev`).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
    pub first_seq: i64,
    pub first_prev: String,
    /// The seal: [`head_mac`] under the registry's key, which the database never holds. Empty
    /// only before the first chaining pass of a new log, or after the head was found forged.
    pub mac: String,
}

/// The seal of a head: HMAC-SHA256 under `key` over its place, hash and start. Moving the head
/// back (cutting records off the end) or its start forward (cutting them off the front) without
/// the key breaks it.
pub fn head_mac(key: &[u8], h: &AuditHead) -> String {
    let text = format!("portcullis-audit-head-v1\n{}\n{}\n{}\n{}", h.seq, h.hash, h.first_seq, h.first_prev);
    super::webhook::hmac_hex(key, &[text.as_bytes()])
}

impl AuditHead {
    /// Whether the head carries its seal (or is a new log's, not sealed yet).
    pub fn sealed_by(&self, key: &[u8]) -> bool {
        self.mac == head_mac(key, self) || (self.seq == 0 && self.mac.is_empty())
    }
}

/// Which records a listing wants.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub object: Option<String>,
    pub namespace: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Only records before this place (paging, newest first).
    pub before: Option<i64>,
}

/// The request being handled: its id, its client, and (once authenticated) its actor.
#[derive(Debug)]
pub struct RequestContext {
    pub id: Arc<str>,
    pub client: IpAddr,
    actor: Mutex<Option<String>>,
}

tokio::task_local! {
    static REQUEST: Arc<RequestContext>;
}

impl RequestContext {
    pub fn new(id: Arc<str>, client: IpAddr) -> Arc<Self> {
        Arc::new(RequestContext { id, client, actor: Mutex::new(None) })
    }
    /// The context of the request this task is handling, if any.
    pub fn current() -> Option<Arc<RequestContext>> {
        REQUEST.try_with(|c| c.clone()).ok()
    }
    /// Runs `f` as the handling of the request `context`.
    pub async fn scope<F: std::future::Future>(context: Arc<RequestContext>, f: F) -> F::Output {
        REQUEST.scope(context, f).await
    }
    pub fn set_actor(&self, actor: &str) {
        if let Ok(mut a) = self.actor.lock() {
            *a = Some(if actor.is_empty() { "-".into() } else { actor.to_owned() });
        }
    }
    pub fn actor(&self) -> Option<String> {
        self.actor.lock().ok().and_then(|a| a.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(object: &str) -> NewAudit {
        NewAudit::new("push", object).actor("alice").namespace("team")
    }

    #[test]
    fn every_field_and_the_place_change_the_hash() {
        let r = record("team/app@sha256:aa");
        let base = chain_hash(GENESIS, 1, &r);
        assert_eq!(base, chain_hash(GENESIS, 1, &r.clone()), "deterministic");
        assert_ne!(base, chain_hash(GENESIS, 2, &r), "the place");
        assert_ne!(base, chain_hash(&"1".repeat(64), 1, &r), "the record before");
        let variants = [
            r.clone().actor("bob"),
            r.clone().outcome(DENIED),
            r.clone().namespace("other"),
            r.clone().detail("tag", "v1"),
            NewAudit { time_ms: r.time_ms + 1, ..r.clone() },
            NewAudit { object: "team/app@sha256:ab".into(), ..r.clone() },
            NewAudit { namespace: None, ..r.clone() },
            NewAudit { client: "10.0.0.1".into(), ..r.clone() },
            NewAudit { request_id: "x".into(), ..r.clone() },
            NewAudit { action: "delete".into(), ..r.clone() },
        ];
        for v in &variants {
            assert_ne!(base, chain_hash(GENESIS, 1, v), "{v:?}");
        }
    }

    #[test]
    fn field_boundaries_cannot_be_shifted() {
        // "a","bc" and "ab","c" must not encode alike.
        let one = NewAudit { actor: "a".into(), client: "bc".into(), ..record("o") };
        let two = NewAudit { actor: "ab".into(), client: "c".into(), ..one.clone() };
        assert_ne!(canonical(1, &one), canonical(1, &two));
    }

    #[tokio::test]
    async fn the_request_context_reaches_records_made_inside_it() {
        assert_eq!(NewAudit::new("x", "o").request_id, "-");
        let ctx = RequestContext::new("req-1".into(), "192.0.2.7".parse().unwrap());
        let made = RequestContext::scope(ctx.clone(), async {
            RequestContext::current().unwrap().set_actor("robot$team+ci");
            NewAudit::new("push", "team/app")
        })
        .await;
        assert_eq!((made.request_id.as_str(), made.client.as_str()), ("req-1", "192.0.2.7"));
        assert_eq!(made.actor, "robot$team+ci");
    }
}
