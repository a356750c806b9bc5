//! Web console sessions: a user's password login kept in a cookie.
//!
//! Rules:
//! - Only a user's password opens a session, through [`AuthService::login`] (the same accounts,
//!   throttling and audit as `/token`). A robot secret or a personal access token does not: a
//!   read-only token must never become a session that may do everything its owner may.
//! - The cookie holds 256 bits from the OS CSPRNG. The database stores its SHA-256 only, so a copy
//!   of the database holds no usable session.
//! - Every use re-reads the session and its account in one query. It ends when it idles past
//!   `console_idle` or is older than `console_max_age`, on logout (its row is deleted), and when
//!   its account is deleted, disabled, or has its password changed (the session keeps a tag of
//!   the password hash it signed in under). Membership changes do not end it: rights are decided
//!   anew on every request, so no one can sign another out by adding or removing them.
//! - The CSRF token is derived from the session secret (`SHA-256("csrf\n" ‖ secret)`): it cannot be
//!   computed without the cookie, which scripts cannot read, and is compared in constant time.
//!
//! Invariant: a session authenticates exactly the account it was opened for, as that account is
//! now; nothing is cached between requests.

use std::net::IpAddr;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::service::{user_principal, AuthError, Authenticated};
use super::{secrets, AuthService, Principal};
use crate::model::credential::{ROBOT_PREFIX, TOKEN_PREFIX};
use crate::model::Error;

/// A session that may act: who it is, and the token its forms must carry.
#[derive(Debug, Clone)]
pub struct ConsoleSession {
    pub who: Authenticated,
    pub csrf: String,
}

/// A session just opened: the cookie value (shown to the browser once) and the session.
pub struct OpenedSession {
    pub secret: String,
    pub session: ConsoleSession,
}

/// What a session keeps of the password it signed in under: enough to notice a change, nothing to
/// guess the password with (a hash of the argon2 hash, itself salted).
fn password_tag(password_hash: &str) -> String {
    hex::encode(&Sha256::digest([b"console-password\n".as_slice(), password_hash.as_bytes()].concat())[..16])
}

fn id_hash(secret: &str) -> String {
    hex::encode(Sha256::digest([b"console-session\n".as_slice(), secret.as_bytes()].concat()))
}

/// The CSRF token of the session whose cookie holds `secret`.
pub fn csrf_token(secret: &str) -> String {
    hex::encode(Sha256::digest([b"csrf\n".as_slice(), secret.as_bytes()].concat()))
}

/// Whether `presented` is the CSRF token of the session whose cookie holds `secret` (constant time).
pub fn csrf_matches(secret: &str, presented: &str) -> bool {
    csrf_token(secret).as_bytes().ct_eq(presented.as_bytes()).into()
}

/// Whether `value` has the shape of a session secret (so that anything else costs no query).
fn well_formed(value: &str) -> bool {
    value.len() == SECRET_LEN && value.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// 43 characters of 62 letters: 256 bits.
const SECRET_LEN: usize = 43;

impl AuthService {
    /// Opens a console session with a user's password.
    pub async fn console_login(
        &self,
        username: &str,
        password: &str,
        client: IpAddr,
    ) -> Result<OpenedSession, AuthError> {
        if username.starts_with(ROBOT_PREFIX) || password.starts_with(TOKEN_PREFIX) {
            return Err(AuthError::InvalidToken(
                "the console takes a user's password; robot secrets and personal access tokens are for the API and docker"
                    .into(),
            ));
        }
        let who = self.login(username, password, client).await?;
        if !matches!(who.principal, Principal::User { .. }) || who.pat.is_some() {
            return Err(AuthError::BadCredentials);
        }
        let user = self.store().user(username).await?.ok_or(AuthError::BadCredentials)?;
        let now = self.clock().now_ms();
        // Sessions idle past any use are cleared as others log in: no sweeper is needed.
        let idle_ms = self.settings().console_idle.as_millis() as i64;
        self.store().purge_console_sessions(now - idle_ms).await?;
        let secret = secrets::random_string(SECRET_LEN);
        self.store()
            .create_console_session(&id_hash(&secret), user.id, &password_tag(&user.password_hash), now)
            .await?;
        let session = ConsoleSession { who: user_principal(&user, None), csrf: csrf_token(&secret) };
        Ok(OpenedSession { secret, session })
    }

    /// The session whose cookie holds `secret`, if it may still act. Moves its idle clock.
    pub async fn console_session(&self, secret: &str) -> Result<Option<ConsoleSession>, Error> {
        if !well_formed(secret) {
            return Ok(None);
        }
        let hash = id_hash(secret);
        let Some((session, user)) = self.store().console_session(&hash).await? else {
            return Ok(None);
        };
        let now = self.clock().now_ms();
        let settings = self.settings();
        let idle = now - session.last_seen_ms >= settings.console_idle.as_millis() as i64;
        let old = now - session.created_ms >= settings.console_max_age.as_millis() as i64;
        let same_password: bool =
            password_tag(&user.password_hash).as_bytes().ct_eq(session.password_tag.as_bytes()).into();
        if idle || old || user.disabled || !same_password {
            self.store().delete_console_session(&hash).await?;
            return Ok(None);
        }
        // One write a minute at most: enough for an idle timeout counted in minutes.
        if now - session.last_seen_ms >= 60_000 {
            self.store().touch_console_session(&hash, now).await?;
        }
        Ok(Some(ConsoleSession { who: user_principal(&user, None), csrf: csrf_token(secret) }))
    }

    /// Ends the session whose cookie holds `secret` (logout).
    pub async fn console_logout(&self, secret: &str) -> Result<(), Error> {
        if well_formed(secret) {
            self.store().delete_console_session(&id_hash(secret)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let (a, b) = (secrets::random_string(SECRET_LEN), secrets::random_string(SECRET_LEN));
        assert!(csrf_matches(&a, &csrf_token(&a)));
        assert!(!csrf_matches(&a, &csrf_token(&b)));
        assert!(!csrf_matches(&a, ""));
        assert_ne!(csrf_token(&a), id_hash(&a), "the form token is not the stored id");
        assert!(well_formed(&a) && !well_formed("short") && !well_formed(&format!("{}'", &a[1..])));
    }
}
