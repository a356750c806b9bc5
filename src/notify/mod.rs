//! Webhook deliveries over the network: signed, retried, and never to where they may not go.
//!
//! Rules and invariants:
//! - At least once: a delivery is claimed with a lease, sent, and only then marked delivered; a
//!   process that dies mid-send leaves it to be claimed again when the lease lapses. Replicas
//!   share the queue without sending one delivery twice while they live (the claim is one
//!   statement that re-checks the lease on the row it takes).
//! - Every request carries `Portcullis-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 over
//!   "<t>.<body>">` with the webhook's secret; receivers check it and reject an old `t`.
//! - Only `https://`, through the system's roots plus `webhooks.ca_file`, never following a
//!   redirect. The host is resolved at each attempt and every address it resolves to is checked;
//!   the connection goes to those checked addresses only (no second lookup that DNS rebinding
//!   could answer differently), and never through a proxy. Private, loopback and link-local targets need
//!   `webhooks.allow_private_targets`.
//! - A failure (an error status, a timeout, a refused target) is retried with exponential
//!   back-off from `webhooks.backoff`, capped at an hour, until the delivery is older than
//!   `webhooks.max_age`; then it is `failed`. Bodies of answers are never read or logged.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::webhooks::{check_target, is_private};
use crate::domain::Registry;
use crate::model::metrics as m;
use crate::model::webhook::{signature_header, Attempt, Delivery};

/// How a replica sends webhooks.
#[derive(Clone)]
pub struct Settings {
    /// The registry's public URL: the events' `source`.
    pub source: String,
    pub allow_private: bool,
    /// Extra CAs to trust for targets (`webhooks.ca_file`).
    pub roots: Vec<reqwest::Certificate>,
    pub timeout: Duration,
    pub backoff: Duration,
    pub max_age: Duration,
}

/// Deliveries sent at once by one replica.
const PARALLEL: usize = 4;

/// Dispatches new events and sends due deliveries, about every `poll`, until dropped.
pub fn spawn(registry: Registry, settings: Settings, poll: Duration) -> tokio::task::JoinHandle<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = registry.dispatch_webhooks(&settings.source).await {
                tracing::warn!(error = %e, "webhook dispatch failed");
                continue;
            }
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                let lease = settings.timeout * 2 + Duration::from_secs(5);
                match registry.claim_delivery(lease).await {
                    Ok(Some(delivery)) => {
                        let (registry, settings) = (registry.clone(), settings.clone());
                        tokio::spawn(async move {
                            send(&registry, &settings, delivery).await;
                            drop(permit);
                        });
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "claiming a webhook delivery failed");
                        break;
                    }
                }
            }
        }
    })
}

/// One attempt at `delivery`, and its outcome recorded.
pub async fn send(registry: &Registry, settings: &Settings, delivery: Delivery) {
    let outcome = match registry.webhook(&delivery.webhook_id).await {
        Ok(Some(hook)) => {
            let secret = registry.webhook_secret(&hook.id);
            post(settings, &hook.url, &secret, &delivery).await
        }
        Ok(None) => Err("the webhook was deleted".to_owned()),
        Err(e) => Err(format!("database: {e}")),
    };
    let now = crate::model::now_ms();
    let attempt = match outcome {
        Ok(status) if (200..300).contains(&status) => {
            Attempt { state: "delivered", next_attempt_ms: now, status: Some(status), error: None }
        }
        failed => {
            let (status, error) = match failed {
                Ok(status) => (Some(status), format!("the receiver answered {status}")),
                Err(e) => (None, e),
            };
            let shift = (delivery.attempts.max(1) - 1).min(20) as u32;
            let wait = settings.backoff.saturating_mul(1u32 << shift).min(Duration::from_secs(3600));
            let too_old = now - delivery.created_ms > settings.max_age.as_millis() as i64;
            let state = if too_old { "failed" } else { "pending" };
            Attempt { state, next_attempt_ms: now + wait.as_millis() as i64, status, error: Some(error) }
        }
    };
    let label = if attempt.state == "pending" { "retry" } else { attempt.state };
    metrics::counter!(m::WEBHOOK_DELIVERIES, "outcome" => label).increment(1);
    if attempt.state != "delivered" {
        tracing::info!(delivery = delivery.id, webhook = %delivery.webhook_id, attempt = delivery.attempts,
            error = ?attempt.error, state = attempt.state, "webhook delivery did not succeed");
    }
    if let Err(e) = registry.finish_delivery(delivery.id, &attempt).await {
        tracing::warn!(error = %e, "recording a webhook delivery failed; it will be sent again");
    }
}

/// Posts the delivery to `url`; the status the receiver answered, or why there was none.
async fn post(settings: &Settings, url: &str, secret: &str, d: &Delivery) -> Result<u16, String> {
    let url = check_target(url, settings.allow_private).map_err(|e| e.to_string())?;
    let host = url.host_str().ok_or("no host")?.trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<std::net::SocketAddr> =
        tokio::time::timeout(settings.timeout, tokio::net::lookup_host((host.as_str(), port)))
            .await
            .map_err(|_| "resolving the host timed out".to_owned())?
            .map_err(|e| format!("resolving the host failed: {e}"))?
            .collect();
    if addrs.is_empty() {
        return Err("the host resolves to no address".into());
    }
    if !settings.allow_private {
        if let Some(a) = addrs.iter().find(|a| is_private(a.ip())) {
            tracing::info!(webhook_target = %url.host_str().unwrap_or(""), address = %a.ip(), "webhook target refused: private address");
            return Err("the host resolves to a private address; webhooks.allow_private_targets allows it".into());
        }
    }
    let mut client = reqwest::Client::builder()
        .use_rustls_tls()
        .https_only(true)
        // Straight to the checked addresses: an HTTPS_PROXY in the environment would connect
        // elsewhere, by its own resolution.
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
        .resolve_to_addrs(&host, &addrs);
    for root in &settings.roots {
        client = client.add_root_certificate(root.clone());
    }
    let client = client.build().map_err(|e| format!("building the client: {e}"))?;
    let t = crate::model::now_ms() / 1000;
    let reply = client
        .post(url)
        .header("content-type", "application/cloudevents+json")
        .header("portcullis-signature", signature_header(secret, t, d.payload.as_bytes()))
        .header("portcullis-event", &d.event)
        .header("portcullis-delivery", d.id.to_string())
        .body(d.payload.clone())
        .send()
        .await
        .map_err(|e| {
            // The history (which namespace owners read) gets the class of failure; the detail,
            // which could map an internal network, goes to the log only.
            let e = e.without_url();
            tracing::info!(delivery = d.id, error = %crate::model::error_chain(&e), "webhook delivery failed");
            if e.is_timeout() {
                "the receiver did not answer in time (webhooks.timeout)".to_owned()
            } else if e.is_connect() {
                "could not connect to the receiver (refused, unreachable, or its TLS certificate is not trusted)"
                    .to_owned()
            } else {
                "sending failed".to_owned()
            }
        })?;
    Ok(reply.status().as_u16())
}
