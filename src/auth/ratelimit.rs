//! Login throttling: failed password logins earn growing back-off, per key.
//!
//! Keys: `pair:<account>@<address>` for an account that exists, `unknown:<address>` for names
//! that do not. An attacker therefore locks out only their own (account, address) pair, never the
//! owner logging in from elsewhere; and a client spraying unknown names does not lock out the
//! accounts of others behind the same address (a NAT, a CI runner).
//!
//! Each attempt is counted, atomically, before its secret is checked: of many concurrent guesses
//! only the first `free` are checked at all. After `free` failures each further attempt doubles
//! the lock-out (capped at `max`); while a key is locked out, logins for it are refused without
//! checking the secret, so guessing gets nowhere and the answer does not tell whether the secret
//! was right. The counts live in the database ([`ThrottleStore`]), so the limit holds across every
//! replica behind a load balancer. High-entropy secrets (personal tokens, robot secrets) are not
//! throttled: they cannot be guessed, and others' failures must not lock them out.
//!
//! Invariant: below `free` counted attempts nothing is refused, however the attempts of other
//! replicas and requests interleave with this one's reading of the clock.

use std::time::Duration;

use crate::metadata::auth::ThrottleStore;
use crate::model::Result;

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

    /// How long `key` is still locked out, without counting an attempt.
    pub async fn locked(&self, store: &dyn ThrottleStore, key: &str) -> Result<Option<Duration>> {
        let now = now_ms();
        let Some((failures, last)) = store.login_failures(key).await? else { return Ok(None) };
        Ok(self.remaining(failures, last, now))
    }

    /// The lock-out left at `now` after `failures` failures, the last at `last`. None below the
    /// free failures, whatever the times: an attempt elsewhere stamped after this request read
    /// the clock (another replica, a concurrent request) must not lock out a right password.
    fn remaining(&self, failures: u32, last: i64, now: i64) -> Option<Duration> {
        let lockout = self.lockout(failures);
        let until = last.saturating_add(lockout.as_millis() as i64);
        (!lockout.is_zero() && until > now).then(|| Duration::from_millis((until - now) as u64))
    }

    /// Counts an attempt on `key` before its check; `Some(wait)` when the key is locked out and
    /// the secret must not be checked.
    pub async fn attempt(&self, store: &dyn ThrottleStore, key: &str) -> Result<Option<Duration>> {
        let now = now_ms();
        // Keys idle longer than the longest lock-out no longer matter.
        let (count, previous_at) = store.login_attempt(key, now, now - self.max.as_millis() as i64).await?;
        Ok(self.remaining(count.saturating_sub(1), previous_at, now))
    }

    pub async fn success(&self, store: &dyn ThrottleStore, key: &str) -> Result<()> {
        store.clear_login_failures(key).await
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

    #[test]
    fn attempts_below_the_free_ones_never_lock_out_even_when_stamped_later() {
        let l = LoginLimiter::new(3, Duration::from_millis(50), Duration::from_millis(300));
        // Another replica counted its attempt 5 ms after this request read the clock.
        for failures in 0..3 {
            assert_eq!(l.remaining(failures, 1_005, 1_000), None, "{failures} failures");
        }
        assert_eq!(l.remaining(3, 1_005, 1_000), Some(Duration::from_millis(55)));
        assert_eq!(l.remaining(3, 1_000, 1_050), None, "the lock-out is over");
        assert_eq!(l.remaining(4, 1_000, 1_050), Some(Duration::from_millis(50)));
    }
}
