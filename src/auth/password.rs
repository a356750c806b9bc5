//! Password hashing with argon2id, on the blocking pool: it is deliberately slow, so its use is
//! bounded.
//!
//! Rules:
//! - At most one argon2 run per core at once (each takes 19 MiB and most of a core), and at most
//!   [`MAX_WAITING`] logins waiting for one: beyond that a login is answered at once with
//!   [`Busy`] (503, `Retry-After`) instead of queueing behind a flood.
//! - A password verified recently is remembered ([`Verified`]), by a keyed hash of the account's
//!   id and the password, with the account's `valid_after` stamp: a client that logs in again and
//!   again with the right password (docker asks for a token per repository) costs a hash, not an
//!   argon2 run, and a password change forgets it at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use sha2::{Digest, Sha256};

/// Logins that may wait for an argon2 run, besides those running.
pub const MAX_WAITING: usize = 16;

fn permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())))
}

static WAITING: AtomicUsize = AtomicUsize::new(0);

/// Every argon2 run is taken and more than [`MAX_WAITING`] logins wait for one.
#[derive(Debug, thiserror::Error)]
#[error("too many logins are being checked at once")]
pub struct Busy;

/// Waits for an argon2 slot unless too many already wait.
async fn slot() -> Result<tokio::sync::SemaphorePermit<'static>, Busy> {
    if let Ok(p) = permits().try_acquire() {
        return Ok(p);
    }
    if WAITING.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
        WAITING.fetch_sub(1, Ordering::SeqCst);
        return Err(Busy);
    }
    let permit = permits().acquire().await;
    WAITING.fetch_sub(1, Ordering::SeqCst);
    permit.map_err(|_| Busy)
}

/// A PHC string (`$argon2id$v=19$...`). Account administration waits for a slot however long.
pub async fn hash(password: String) -> anyhow::Result<String> {
    let _permit = permits().acquire().await?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| anyhow::anyhow!("{e}"))
    })
    .await?
}

/// Verifies a password against a stored PHC string (argon2's comparison is constant-time).
pub async fn verify(password: String, stored: String) -> Result<bool, Busy> {
    let _permit = slot().await?;
    Ok(tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored).is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false))
}

/// A valid hash of a random password, verified against when a user does not exist, so that the
/// answer takes as long as for a real user.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(super::secrets::random_string(32).as_bytes(), &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

/// Password rules: long enough to resist guessing, short enough to bound hashing cost.
pub fn check_strength(password: &str) -> Result<(), String> {
    match password.chars().count() {
        n if n < 12 => Err("password must have at least 12 characters".into()),
        n if n > 256 => Err("password must have at most 256 characters".into()),
        _ => Ok(()),
    }
}

/// Passwords verified recently, each for `ttl`, keyed by SHA-256 of a random per-process key,
/// the account's id and the password (never the password itself), with the account's stamp.
pub struct Verified {
    key: [u8; 32],
    ttl: Duration,
    entries: Mutex<HashMap<[u8; 32], (i64, Instant)>>,
}

const VERIFIED_CAPACITY: usize = 10_000;

impl Verified {
    pub fn new(ttl: Duration) -> Self {
        let mut key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut OsRng, &mut key);
        Verified { key, ttl, entries: Mutex::default() }
    }

    fn key_of(&self, user_id: i64, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(user_id.to_le_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    /// Whether `password` was verified for the account within `ttl`, under the same stamp.
    pub fn holds(&self, user_id: i64, valid_after_ms: i64, password: &str) -> bool {
        if self.ttl.is_zero() {
            return false;
        }
        let key = self.key_of(user_id, password);
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(&key).is_some_and(|(stamp, at)| *stamp == valid_after_ms && at.elapsed() < self.ttl)
    }

    pub fn remember(&self, user_id: i64, valid_after_ms: i64, password: &str) {
        if self.ttl.is_zero() {
            return;
        }
        let key = self.key_of(user_id, password);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= VERIFIED_CAPACITY {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= VERIFIED_CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, (valid_after_ms, Instant::now()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test, not two: the slots are the process's, and a flood in a parallel test would make
    /// the round trip's checks busy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn argon2id_round_trip_and_a_flood_answered_busy_at_once() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery".into(), h.clone()).await.unwrap());
        assert!(!verify("wrong".into(), h.clone()).await.unwrap());
        assert!(!verify("x".into(), "not a hash".into()).await.unwrap());
        let many = 4 * MAX_WAITING + 8;
        let results = futures::future::join_all((0..many).map(|_| verify("wrong password".into(), h.clone()))).await;
        let busy = results.iter().filter(|r| r.is_err()).count();
        assert!(busy > 0 && busy < many, "{busy} of {many} were busy");
    }

    #[test]
    fn a_verified_password_is_forgotten_when_the_stamp_moves() {
        let v = Verified::new(Duration::from_secs(60));
        v.remember(7, 100, "secret password");
        assert!(v.holds(7, 100, "secret password"));
        assert!(!v.holds(7, 101, "secret password"), "a password change forgets it");
        assert!(!v.holds(8, 100, "secret password"), "another account");
        assert!(!v.holds(7, 100, "other password"));
        let off = Verified::new(Duration::ZERO);
        off.remember(7, 100, "secret password");
        assert!(!off.holds(7, 100, "secret password"));
    }
}
