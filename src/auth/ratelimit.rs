//! Login throttling: failures per account and per client address earn growing back-off.
//!
//! After `free` failures, each further failure doubles the lock-out (capped at `max`). While a key
//! is locked out, logins for it are refused without checking the secret, so guessing gets nowhere
//! and the answer does not tell whether the secret was right. The counts live in the database
//! ([`ThrottleStore`]), so the limit holds across every replica behind a load balancer.

use std::time::Duration;

use crate::domain::Result;
use crate::metadata::auth::ThrottleStore;

pub struct LoginLimiter {
    free: u32,
    base: Duration,
    max: Duration,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl LoginLimiter {
    pub fn new(free: u32, base: Duration, max: Duration) -> Self {
        LoginLimiter { free, base, max }
    }

    /// The lock-out after `failures` failures.
    fn lockout(&self, failures: u32) -> Duration {
        if failures < self.free {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free).min(20);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }

    /// How long any of `keys` is still locked out.
    pub async fn blocked_for(&self, store: &dyn ThrottleStore, keys: &[String]) -> Result<Option<Duration>> {
        let now = now_ms();
        Ok(store
            .login_failures(keys)
            .await?
            .into_iter()
            .filter_map(|(n, last)| {
                let until = last.saturating_add(self.lockout(n).as_millis() as i64);
                (until > now).then(|| Duration::from_millis((until - now) as u64))
            })
            .max())
    }

    pub async fn failure(&self, store: &dyn ThrottleStore, keys: &[String]) -> Result<()> {
        let now = now_ms();
        // Keys idle longer than the longest lock-out no longer matter.
        store.record_login_failure(keys, now, now - self.max.as_millis() as i64).await
    }

    pub async fn success(&self, store: &dyn ThrottleStore, keys: &[String]) -> Result<()> {
        store.clear_login_failures(keys).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_doubles_after_the_free_failures_up_to_the_cap() {
        let l = LoginLimiter::new(3, Duration::from_millis(50), Duration::from_millis(300));
        assert_eq!(l.lockout(2), Duration::ZERO);
        assert_eq!(l.lockout(3), Duration::from_millis(50));
        assert_eq!(l.lockout(4), Duration::from_millis(100));
        assert_eq!(l.lockout(5), Duration::from_millis(200));
        assert_eq!(l.lockout(6), Duration::from_millis(300));
        assert_eq!(l.lockout(u32::MAX), Duration::from_millis(300));
    }
}
