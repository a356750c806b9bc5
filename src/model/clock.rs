//! The clock for expiry decisions (and the wall clock the database's own stamps use).
//!
//! Rule: whatever decides that something has expired or is due (upload sessions, releases, robot
//! and token expiry, scan retries) reads the [`Clock`] the app was built with, so a test moves
//! time instead of sleeping through it. Token issue times and revocation stamps stay on the wall
//! clock ([`now`], [`now_ms`]): JWT validation (`jsonwebtoken`) reads the wall clock, and a stamp
//! ahead of it would revoke every token issued after it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Seconds since the Unix epoch on the wall clock.
pub fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

/// `unix_ms` (milliseconds since the epoch) as an RFC 3339 time, UTC; `None` out of range.
pub fn rfc3339_ms(unix_ms: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
}

/// `unix` (seconds since the epoch) as an RFC 3339 time, UTC; empty out of range.
pub fn rfc3339(unix: i64) -> String {
    rfc3339_ms(unix.saturating_mul(1000)).unwrap_or_default()
}

/// Milliseconds since the Unix epoch: the resolution of `valid_after` stamps.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The wall clock, plus an offset that only tests set. Clones share the offset, so one
/// [`Clock::advance`] moves every part of the app that was handed a clone.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_s: Arc<AtomicI64>,
}

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Clock::default()
    }

    /// Seconds since the Unix epoch.
    pub fn now(&self) -> i64 {
        now() + self.offset_s.load(Ordering::Relaxed)
    }

    /// Milliseconds since the Unix epoch, on the same offset.
    pub fn now_ms(&self) -> i64 {
        now_ms() + self.offset_s.load(Ordering::Relaxed) * 1000
    }

    /// Moves this clock and its clones forward.
    #[cfg(any(test, feature = "test-util"))]
    pub fn advance(&self, by: std::time::Duration) {
        self.offset_s.fetch_add(by.as_secs() as i64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_move_together_and_the_wall_clock_does_not() {
        let clock = Clock::system();
        let clone = clock.clone();
        let before = clone.now();
        clock.advance(std::time::Duration::from_secs(3600));
        assert!(clone.now() >= before + 3600);
        assert!(now() < clone.now() - 3000);
        assert!(Clock::system().now() <= now() + 1);
    }
}
