//! Login throttling: failures per account and per client address earn growing back-off.
//!
//! After `free` failures, each further failure doubles the lock-out (capped at `max`). While a key
//! is locked out, logins for it are refused without checking the secret, so guessing gets nowhere
//! and the answer does not tell whether the secret was right.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct LoginLimiter {
    free: u32,
    base: Duration,
    max: Duration,
    state: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimiter {
    pub fn new(free: u32, base: Duration, max: Duration) -> Self {
        LoginLimiter { free, base, max, state: Mutex::new(HashMap::new()) }
    }

    fn lockout(&self, failures: u32) -> Duration {
        if failures < self.free {
            return Duration::ZERO;
        }
        let doublings = (failures - self.free).min(20);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }

    /// How long any of `keys` is still locked out.
    pub fn blocked_for(&self, keys: &[String]) -> Option<Duration> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        keys.iter()
            .filter_map(|k| state.get(k))
            .filter_map(|(n, last)| (*last + self.lockout(*n)).checked_duration_since(now))
            .max()
    }

    pub fn failure(&self, keys: &[String]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if state.len() > 100_000 {
            // Bound memory under a flood of distinct keys: forget entries whose lock-out is over.
            let max = self.max;
            state.retain(|_, (_, last)| now.duration_since(*last) < max);
        }
        for k in keys {
            let e = state.entry(k.clone()).or_insert((0, now));
            e.0 += 1;
            e.1 = now;
        }
    }

    pub fn success(&self, keys: &[String]) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for k in keys {
            state.remove(k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_and_recovers() {
        let l = LoginLimiter::new(3, Duration::from_millis(50), Duration::from_millis(200));
        let keys = vec!["user:a".to_owned()];
        for _ in 0..3 {
            assert!(l.blocked_for(&keys).is_none());
            l.failure(&keys);
        }
        assert!(l.blocked_for(&keys).is_some());
        for _ in 0..10 {
            l.failure(&keys);
        }
        assert!(l.blocked_for(&keys).unwrap() <= Duration::from_millis(200));
        std::thread::sleep(Duration::from_millis(250));
        assert!(l.blocked_for(&keys).is_none());
        l.success(&keys);
    }
}
