//! Webhooks: registration, the events' payloads, and the queue of deliveries.
//!
//! Rules (delivery itself, over the network, is `notify`'s):
//! - Events come from the audit log (`model::webhook`): a webhook receives the events it names,
//!   of its namespace (or of every namespace, for one an administrator registered), recorded
//!   after it was registered.
//! - Payloads are CloudEvents 1.0 in structured mode, one shape for every event.
//! - A webhook's secret is derived from the registry's key and never stored; it is shown once.
//! - Targets are `https://` URLs only. A host that is an IP address in a private, loopback or
//!   link-local range is refused here unless `allow_private`; names are checked again, after
//!   resolution, at every delivery (DNS can change).

use serde_json::json;

use super::{Error, Registry, Result};
use crate::metadata::webhooks::Plan;
use crate::model::audit::AuditRecord;
use crate::model::webhook::{self, event_of, Attempt, Delivery, Webhook, EVENTS};

/// Audit records dispatched per transaction.
const DISPATCH_BATCH: u32 = 500;
/// Most webhooks one namespace (or the registry) may have.
const MAX_WEBHOOKS: usize = 50;

/// Whether `ip` is an address a webhook may not reach unless private targets are allowed:
/// loopback, private, link-local, unique-local, shared (CGNAT), unspecified, broadcast, multicast
/// and documentation ranges, IPv4 inside IPv6 too.
pub fn is_private(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                || o[0] >= 240
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 198 && (18..20).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
        }
        IpAddr::V6(v6) => {
            // IPv4 inside IPv6: mapped and compatible (`::ffff:a.b.c.d`, `::a.b.c.d`), NAT64
            // (`64:ff9b::a.b.c.d`) and 6to4 (`2002:aabb:ccdd::`) reach the IPv4 address.
            if let Some(v4) = v6.to_ipv4() {
                return is_private(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded =
                |hi: u16, lo: u16| std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_private(IpAddr::V4(embedded(s[6], s[7])));
            }
            if s[0] == 0x2002 {
                return is_private(IpAddr::V4(embedded(s[1], s[2])));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x2001 && s[1] == 0x0db8)
        }
    }
}

/// Checks a target URL: `https://`, a host, no credentials in it, at most 2048 bytes; an IP
/// literal host must be public unless `allow_private`.
pub fn check_target(raw: &str, allow_private: bool) -> Result<url::Url> {
    let invalid = |m: &str| Error::Invalid(format!("webhook url {m}"));
    if raw.len() > 2048 {
        return Err(invalid("is longer than 2048 bytes"));
    }
    let url = url::Url::parse(raw).map_err(|e| invalid(&format!("is not a URL: {e}")))?;
    if url.scheme() != "https" {
        return Err(invalid("must be https:// (deliveries are signed, and never sent in the clear)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not hold credentials"));
    }
    let ip = match url.host() {
        None => return Err(invalid("has no host")),
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
    };
    if let Some(ip) = ip.filter(|ip| !allow_private && is_private(*ip)) {
        return Err(Error::Invalid(format!(
            "webhook url points at a private address ({ip}); webhooks.allow_private_targets allows it"
        )));
    }
    Ok(url)
}

/// The CloudEvents body of an event.
pub fn payload(source: &str, event: &str, r: &AuditRecord) -> String {
    let c = &r.content;
    // Objects are `repository@digest`, `repository:tag` or a whole `repository`.
    let (repository, digest) = match c.object.split_once('@') {
        Some((repo, d)) => (Some(repo), Some(d)),
        None => (Some(c.object.split_once(':').map_or(c.object.as_str(), |(repo, _)| repo)), None),
    };
    let details: serde_json::Value = serde_json::from_str(&c.details).unwrap_or(json!({}));
    let tag = details
        .get("tag")
        .cloned()
        .or_else(|| (digest.is_none()).then(|| c.object.split_once(':').map(|(_, t)| json!(t))).flatten());
    let report = match (repository, digest) {
        (Some(repo), Some(d)) if event.starts_with("scan.") || event == "pull.blocked" => {
            Some(format!("{source}/api/v1/scans?repository={repo}&digest={d}"))
        }
        _ => None,
    };
    let time = crate::model::rfc3339_ms(c.time_ms);
    json!({
        "specversion": "1.0",
        "id": r.id.to_string(),
        "source": source,
        "type": format!("io.portcullis.{event}"),
        "time": time,
        "subject": c.object,
        "datacontenttype": "application/json",
        "data": {
            "event": event,
            "repository": repository,
            "digest": digest,
            "tag": tag,
            "namespace": c.namespace,
            "actor": c.actor,
            "outcome": c.outcome,
            "request_id": c.request_id,
            "summary": details.get("summary"),
            "message": details.get("message"),
            "report_url": report,
        },
    })
    .to_string()
}

impl Registry {
    /// Registers a webhook; answers it with its secret (shown this once).
    pub async fn create_webhook(
        &self,
        url: &str,
        events: &[String],
        namespace: Option<&str>,
        created_by: &str,
        allow_private: bool,
    ) -> Result<(Webhook, String)> {
        let url = check_target(url, allow_private)?;
        if events.is_empty() {
            return Err(Error::Invalid(format!("events must name at least one of {}", EVENTS.join(", "))));
        }
        let mut wanted: Vec<String> = Vec::new();
        for e in events {
            if !EVENTS.contains(&e.as_str()) {
                return Err(Error::Invalid(format!("unknown event {e:?}; events are {}", EVENTS.join(", "))));
            }
            if !wanted.contains(e) {
                wanted.push(e.clone());
            }
        }
        let existing = self.meta.list_webhooks(namespace).await?;
        if existing.iter().filter(|h| h.namespace.as_deref() == namespace).count() >= MAX_WEBHOOKS {
            return Err(Error::Invalid(format!("at most {MAX_WEBHOOKS} webhooks per namespace")));
        }
        let hook = Webhook {
            id: uuid::Uuid::new_v4().simple().to_string(),
            url: url.to_string(),
            events: wanted,
            namespace: namespace.map(str::to_owned),
            created_by: created_by.to_owned(),
            created_ms: crate::model::now_ms(),
        };
        self.meta.create_webhook(&hook).await?;
        let secret = webhook::secret(&self.registry_key, &hook.id);
        Ok((hook, secret))
    }

    /// The secret a webhook's deliveries are signed with.
    pub fn webhook_secret(&self, id: &str) -> String {
        webhook::secret(&self.registry_key, id)
    }

    pub async fn list_webhooks(&self, namespace: Option<&str>) -> Result<Vec<Webhook>> {
        self.meta.list_webhooks(namespace).await
    }

    pub async fn webhook(&self, id: &str) -> Result<Option<Webhook>> {
        self.meta.webhook(id).await
    }

    pub async fn delete_webhook(&self, id: &str) -> Result<bool> {
        self.meta.delete_webhook(id).await
    }

    pub async fn webhook_deliveries(&self, id: &str, limit: u32) -> Result<Vec<Delivery>> {
        self.meta.deliveries(id, limit).await
    }

    /// Queues a `test` event for the webhook; the delivery's id.
    pub async fn send_test_event(&self, hook: &Webhook, source: &str, actor: &str) -> Result<i64> {
        let body = json!({
            "specversion": "1.0",
            "id": format!("test-{}", uuid::Uuid::new_v4().simple()),
            "source": source,
            "type": "io.portcullis.test",
            "time": time::OffsetDateTime::now_utc().format(&time::format_description::well_known::Rfc3339).ok(),
            "datacontenttype": "application/json",
            "data": {"event": "test", "webhook": hook.id, "actor": actor},
        });
        self.meta.enqueue_delivery(&hook.id, "test", &body.to_string(), crate::model::now_ms()).await
    }

    /// Turns new audit records into deliveries for the webhooks that want them; how many
    /// records it read. `source` is the registry's public URL.
    pub async fn dispatch_webhooks(&self, source: &str) -> Result<u64> {
        let source = source.to_owned();
        let plan: Plan = std::sync::Arc::new(move |record: &AuditRecord, hooks: &[Webhook]| {
            let Some(event) = event_of(&record.content.action, &record.content.outcome) else { return Vec::new() };
            let mut body = None;
            hooks
                .iter()
                .filter(|h| h.events.iter().any(|e| e == event))
                .filter(|h| h.namespace.is_none() || h.namespace == record.content.namespace)
                .filter(|h| h.created_ms <= record.content.time_ms)
                .map(|h| {
                    let body = body.get_or_insert_with(|| payload(&source, event, record)).clone();
                    (h.id.clone(), event.to_owned(), body)
                })
                .collect()
        });
        let mut total = 0;
        loop {
            let n = self.meta.dispatch_audit(DISPATCH_BATCH, crate::model::now_ms(), plan.clone()).await?;
            total += n;
            if n < DISPATCH_BATCH as u64 {
                return Ok(total);
            }
        }
    }

    /// The next delivery that is due, leased to the caller for `lease`.
    pub async fn claim_delivery(&self, lease: std::time::Duration) -> Result<Option<Delivery>> {
        let now = crate::model::now_ms();
        self.meta.claim_delivery(now, now + lease.as_millis() as i64).await
    }

    pub async fn finish_delivery(&self, id: i64, attempt: &Attempt) -> Result<()> {
        self.meta.finish_delivery(id, attempt).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::"] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn targets_must_be_https_public_and_plain() {
        assert!(check_target("https://hooks.example.com/x", false).is_ok());
        for bad in [
            "http://hooks.example.com/x",
            "ftp://hooks.example.com",
            "https://user:pw@hooks.example.com/",
            "https://127.0.0.1:8443/",
            "https://[::1]/",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.5/",
            "not a url",
        ] {
            assert!(check_target(bad, false).is_err(), "{bad}");
        }
        assert!(check_target("https://127.0.0.1:8443/", true).is_ok());
        assert!(check_target(&format!("https://e.com/{}", "a".repeat(2100)), true).is_err());
    }
}
