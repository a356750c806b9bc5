//! Request rate limits per client address and per principal (`server.rate_limit_per_address`,
//! `server.rate_limit_per_principal`), as token buckets (GCRA, from `governor`): a sustained rate,
//! and bursts of twice that. Over the limit, the answer is `429` with `Retry-After` at once.
//!
//! Rule: the limits are per replica (in memory); what must hold across replicas (login attempts)
//! is counted in the database instead. The address is the one the listener determined (PROXY
//! protocol when configured), so clients behind one balancer are told apart only with it.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// The limiters of one replica.
pub struct RateLimits {
    per_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_principal: Option<DefaultKeyedRateLimiter<String>>,
    checks: AtomicU64,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(per_second: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(per_second.saturating_mul(2)).unwrap_or(rate);
    Some(RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)))
}

/// Over a limit: when to come back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limited {
    pub retry_after: Duration,
    pub what: &'static str,
}

impl RateLimits {
    /// Limits of `per_address` and `per_principal` requests per second (0: no limit).
    pub fn new(per_address: u32, per_principal: u32) -> Self {
        RateLimits {
            per_address: limiter(per_address),
            per_principal: limiter(per_principal),
            checks: AtomicU64::new(0),
        }
    }

    /// Forgets idle keys now and then, so the maps do not grow with every address ever seen.
    fn tidy(&self) {
        if self.checks.fetch_add(1, Ordering::Relaxed) % 10_000 == 9_999 {
            if let Some(l) = &self.per_address {
                l.retain_recent();
            }
            if let Some(l) = &self.per_principal {
                l.retain_recent();
            }
        }
    }

    pub fn check_address(&self, ip: IpAddr) -> Result<(), Limited> {
        self.tidy();
        let Some(l) = &self.per_address else { return Ok(()) };
        l.check_key(&ip).map_err(|not_until| {
            metrics::counter!(crate::model::metrics::THROTTLED, "limit" => "per_address").increment(1);
            Limited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
                what: "requests from this address (server.rate_limit_per_address)",
            }
        })
    }

    /// `subject` is the account or robot name; anonymous requests are limited by address only.
    pub fn check_principal(&self, subject: &str) -> Result<(), Limited> {
        let Some(l) = &self.per_principal else { return Ok(()) };
        if subject.is_empty() {
            return Ok(());
        }
        l.check_key(&subject.to_owned()).map_err(|not_until| {
            metrics::counter!(crate::model::metrics::THROTTLED, "limit" => "per_principal").increment(1);
            Limited {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
                what: "requests of this account (server.rate_limit_per_principal)",
            }
        })
    }
}

impl Limited {
    /// Whole seconds for `Retry-After`, at least one.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_the_sustained_rate_per_key() {
        let limits = RateLimits::new(10, 5);
        let a = IpAddr::from([192, 0, 2, 1]);
        let allowed = (0..100).filter(|_| limits.check_address(a).is_ok()).count();
        assert_eq!(allowed, 20, "a burst of twice the rate");
        let over = limits.check_address(a).unwrap_err();
        assert!(over.retry_after <= Duration::from_millis(100) && over.retry_after_secs() == 1);
        assert!(limits.check_address(IpAddr::from([192, 0, 2, 2])).is_ok(), "another address has its own");
        assert_eq!((0..100).filter(|_| limits.check_principal("ci").is_ok()).count(), 10);
        assert!(limits.check_principal("").is_ok(), "anonymous is limited by address");
        let off = RateLimits::new(0, 0);
        assert!((0..10_000).all(|_| off.check_address(a).is_ok() && off.check_principal("x").is_ok()));
    }
}
