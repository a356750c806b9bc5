//! The authentication service: logins (password, personal token, robot secret) with throttling,
//! token issue and verification, and the per-use re-check of the principal behind a token.
//!
//! Rules:
//! - A token names its principal by name and immutable id, and carries when it was issued (ms).
//!   On every use the principal is loaded again: it must still exist with that id, be enabled (not
//!   revoked, not expired), and the token must be younger than its `valid_after` stamp, which a
//!   password change, a secret rotation, a role change or removal, and a namespace's deletion move
//!   forward. A token issued with a personal token dies with it (and its children).
//! - Passwords are throttled per (account, address) ([`super::ratelimit`]), counted before the
//!   check; personal tokens and robot secrets are hash lookups, never throttled.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::jwt::{Claims, Keys, TokenUse};
use super::policy::{self, Deny, NamespaceFacts, Need};
use super::ratelimit::LoginLimiter;
use super::{password, secrets, ActionSet, Principal, Robot, Scope};
use crate::metadata::auth::AuthStore;
use crate::model::audit::NewAudit;
use crate::model::{now, Clock, Error, RepoName};

/// Prefix of personal access tokens (`pcp_<id>_<secret>`) and robot secrets.
pub use crate::model::credential::{ROBOT_PREFIX, ROBOT_SECRET_PREFIX, TOKEN_PREFIX};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong name or secret, disabled, expired or revoked: deliberately one answer for all.
    #[error("invalid username or password")]
    BadCredentials,
    #[error("too many failed logins; retry in {0:?}")]
    Throttled(Duration),
    /// Password checks are saturated; retry shortly.
    #[error("too many logins are being checked at once; retry in a second")]
    Busy,
    #[error("{0}")]
    InvalidToken(String),
    #[error(transparent)]
    Internal(#[from] Error),
}

/// Tunables of the service.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub issuer: String,
    pub service: String,
    pub access_lifetime: Duration,
    pub refresh_lifetime: Duration,
    pub free_failures: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// How long a verified password is remembered (0: never).
    pub password_cache: Duration,
    /// Longest lifetime of a personal access token and of a robot.
    pub max_token_lifetime: Duration,
    pub max_robot_lifetime: Duration,
    /// A web console session ends after this long without a request...
    pub console_idle: Duration,
    /// ...and this long after its login, however busy.
    pub console_max_age: Duration,
}

/// A principal, its immutable id (`u:<id>`, `r:<id>`; none for anonymous), and the personal
/// token it logged in with, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Authenticated {
    pub principal: Principal,
    pub uid: Option<String>,
    pub pat: Option<String>,
}

impl Authenticated {
    pub fn anonymous() -> Self {
        Authenticated { principal: Principal::Anonymous, uid: None, pat: None }
    }
}

pub use crate::model::now_ms;

pub(super) fn user_principal(u: &crate::metadata::auth::UserRecord, pat: Option<String>) -> Authenticated {
    Authenticated {
        principal: Principal::User { name: u.username.clone(), admin: u.admin },
        uid: Some(format!("u:{}", u.id)),
        pat,
    }
}

/// A freshly signed token.
pub struct Issued {
    pub token: String,
    pub expires_in: u64,
    pub issued_at: i64,
}

pub struct AuthService {
    store: Arc<dyn AuthStore>,
    keys: Keys,
    settings: AuthSettings,
    limiter: LoginLimiter,
    verified: password::Verified,
    /// Decides robot and token expiry (issue times stay on the wall clock: see `model::clock`).
    clock: Clock,
}

impl AuthService {
    /// `key_path` signs (created if missing); `verify_keys` are earlier keys that still verify.
    pub fn new(
        store: Arc<dyn AuthStore>,
        key_path: &Path,
        verify_keys: &[std::path::PathBuf],
        settings: AuthSettings,
    ) -> anyhow::Result<Self> {
        let limiter = LoginLimiter::new(settings.free_failures, settings.backoff_base, settings.backoff_max);
        let verified = password::Verified::new(settings.password_cache);
        let keys = Keys::load_or_create(key_path, verify_keys)?;
        Ok(AuthService { store, keys, settings, limiter, verified, clock: Clock::system() })
    }

    /// The same service on `clock` (the app's one clock).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub(super) fn clock(&self) -> &Clock {
        &self.clock
    }

    pub(super) fn store(&self) -> &dyn AuthStore {
        self.store.as_ref()
    }

    pub fn settings(&self) -> &AuthSettings {
        &self.settings
    }

    pub fn jwks(&self) -> serde_json::Value {
        self.keys.jwks()
    }

    /// Creates the `admin` user on first start. Its password comes from `password`, or is random and
    /// written once to a 0600 file in `data_dir` (never to the log). Returns that file when written.
    pub async fn bootstrap_admin(
        &self,
        data_dir: &Path,
        password: Option<SecretString>,
    ) -> anyhow::Result<Option<PathBuf>> {
        if self.store.user("admin").await?.is_some() {
            return Ok(None);
        }
        let (password, file) = match password {
            Some(p) => {
                // The same rule as every other way of setting a password.
                password::check_strength(p.expose_secret()).map_err(|why| {
                    anyhow::anyhow!("the admin password (PORTCULLIS_ADMIN_PASSWORD or its _FILE) is refused: {why}")
                })?;
                (p.expose_secret().to_owned(), None)
            }
            None => {
                let p = secrets::random_string(32);
                let file = data_dir.join("admin-password");
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let written = (|| {
                    let mut f =
                        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&file)?;
                    f.write_all(p.as_bytes())?;
                    f.sync_all()
                })();
                written.map_err(|e| anyhow::anyhow!("writing the admin password to {}: {e}", file.display()))?;
                (p, Some(file))
            }
        };
        let hash = password::hash(password).await?;
        if !self.store.create_user("admin", &hash, true, self.clock.now()).await? {
            // Another replica on the same database created it first: its password stands, and
            // the one written here never worked.
            if let Some(file) = &file {
                let _ = std::fs::remove_file(file);
            }
            return Ok(None);
        }
        Ok(file)
    }

    /// Checks a username and secret (password, personal token or robot secret). Passwords are
    /// throttled per (account, address); the high-entropy secrets are not.
    pub async fn login(&self, username: &str, secret: &str, client: IpAddr) -> Result<Authenticated, AuthError> {
        let result = self.check_login(username, secret, client).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(AuthError::BadCredentials | AuthError::InvalidToken(_)) => "failed",
            Err(AuthError::Throttled(_)) => "throttled",
            Err(AuthError::Busy) => "busy",
            Err(AuthError::Internal(_)) => "error",
        };
        metrics::counter!(crate::model::metrics::LOGINS, "outcome" => outcome).increment(1);
        let actor = match &result {
            Ok(who) => who.principal.subject(),
            Err(_) => username,
        };
        if matches!(outcome, "ok" | "failed" | "throttled") {
            let record = NewAudit::new("login", actor).actor(actor).client(client).outcome(outcome);
            let record = match &result {
                Ok(who) if who.pat.is_some() => record.detail("with", "personal token"),
                Ok(Authenticated { principal: Principal::Robot(r), .. }) => {
                    record.namespace(&r.namespace).detail("with", "robot secret")
                }
                _ => record,
            };
            if let Err(e) = self.store.append_audit(&record).await {
                tracing::error!(error = %e, "could not write an audit record");
            }
        }
        result
    }

    async fn check_login(&self, username: &str, secret: &str, client: IpAddr) -> Result<Authenticated, AuthError> {
        if username.starts_with(ROBOT_PREFIX) || secret.starts_with(TOKEN_PREFIX) {
            return match self.check_high_entropy(username, secret).await? {
                Some(who) => {
                    tracing::info!(target: "audit", account = ?username, %client, personal_token = who.pat.is_some(), "login");
                    Ok(who)
                }
                None => {
                    tracing::warn!(target: "audit", account = ?username, %client, "failed login");
                    Err(AuthError::BadCredentials)
                }
            };
        }
        let user = self.store.user(username).await?;
        let key = match &user {
            Some(u) => format!("pair:{}@{client}", u.username),
            None => format!("unknown:{client}"),
        };
        // Locked out: refused unchecked (and no remembered password is consulted, which would
        // let guesses through the lock-out).
        if let Some(wait) = self.limiter.locked(self.store.as_ref(), &key).await? {
            tracing::warn!(target: "audit", account = ?username, %client, ?wait, "login refused: throttled");
            return Err(AuthError::Throttled(wait));
        }
        // A password verified a moment ago, under the same stamp: a hash, not an argon2 run.
        if let Some(u) = user.as_ref().filter(|u| !u.disabled) {
            if self.verified.holds(u.id, u.valid_after_ms, secret) {
                return Ok(user_principal(u, None));
            }
        }
        if let Some(wait) = self.limiter.attempt(self.store.as_ref(), &key).await? {
            tracing::warn!(target: "audit", account = ?username, %client, ?wait, "login refused: throttled");
            return Err(AuthError::Throttled(wait));
        }
        let stored = user.as_ref().map_or_else(|| password::dummy_hash().to_owned(), |u| u.password_hash.clone());
        let matches = password::verify(secret.to_owned(), stored).await.map_err(|_| AuthError::Busy)?;
        match user {
            Some(u) if matches && !u.disabled => {
                self.limiter.success(self.store.as_ref(), &key).await?;
                self.verified.remember(u.id, u.valid_after_ms, secret);
                tracing::info!(target: "audit", account = ?username, %client, "login");
                Ok(user_principal(&u, None))
            }
            _ => {
                tracing::warn!(target: "audit", account = ?username, %client, "failed login");
                Err(AuthError::BadCredentials)
            }
        }
    }

    /// A robot secret or a personal access token: a lookup by name or id and a constant-time
    /// comparison of SHA-256 hashes. `None` when it does not match.
    async fn check_high_entropy(&self, username: &str, secret: &str) -> Result<Option<Authenticated>, AuthError> {
        let now = self.clock.now();
        if username.starts_with(ROBOT_PREFIX) {
            let Some(r) = self.store.robot(username).await? else {
                // Same work as a real check, so timing does not tell whether the robot exists.
                secrets::token_matches(secret, &secrets::hash_token(""));
                return Ok(None);
            };
            if !secrets::token_matches(secret, &r.secret_hash) || r.revoked || r.expires_at <= now {
                return Ok(None);
            }
            self.store.touch_robot(username, now).await?;
            return Ok(Some(robot_principal(&r)));
        }
        let user = self.store.user(username).await?;
        let rest = secret.strip_prefix(TOKEN_PREFIX).unwrap_or("");
        let id = rest.split('_').next().unwrap_or("");
        let token = self.store.token(id).await?;
        let ok = match (&user, &token) {
            (Some(u), Some(t)) => {
                secrets::token_matches(secret, &t.secret_hash)
                    && t.username == u.username
                    && !t.revoked
                    && t.expires_at > now
                    && !u.disabled
            }
            _ => {
                secrets::token_matches(secret, &secrets::hash_token(""));
                false
            }
        };
        if !ok {
            return Ok(None);
        }
        self.store.touch_token(id, now).await?;
        Ok(user.map(|u| user_principal(&u, Some(id.to_owned()))))
    }

    /// The namespace facts the policy needs for `principal` on `repo`.
    async fn facts(&self, principal: &Principal, repo: &RepoName) -> Result<NamespaceFacts, Error> {
        let ns = self.store.namespace(repo.namespace()).await?;
        let role = match principal {
            Principal::User { name, admin: false } if ns.is_some() => self.store.role(repo.namespace(), name).await?,
            _ => None,
        };
        Ok(NamespaceFacts { public: ns.is_some_and(|n| n.public), role })
    }

    /// Whether `who`, holding the token claims `claims` (none for the admin API, which takes
    /// passwords), has `need`: the facts it depends on are read here, the decision is
    /// [`policy::decide`]'s. `Ok(Err(_))` is a refusal; `Err(_)` a database failure.
    pub async fn authorize(
        &self,
        who: &Authenticated,
        claims: &[Scope],
        need: Need<'_>,
    ) -> Result<Result<(), Deny>, Error> {
        let facts = match &need {
            Need::Repository(repo, _) if !who.principal.is_admin() => self.facts(&who.principal, repo).await?,
            Need::Owner(ns) | Need::Member(ns) if !who.principal.is_admin() => match &who.principal {
                Principal::User { name, .. } => {
                    NamespaceFacts { public: false, role: self.store.role(ns, name).await? }
                }
                _ => NamespaceFacts::default(),
            },
            _ => NamespaceFacts::default(),
        };
        Ok(policy::decide(&who.principal, claims, &need, &facts))
    }

    /// What `principal` may do on `repo` (the table of [`policy::allowed`]).
    pub async fn allowed(&self, principal: &Principal, repo: &RepoName) -> Result<ActionSet, Error> {
        if principal.is_admin() {
            return Ok(ActionSet::ALL);
        }
        Ok(policy::allowed(principal, repo, &self.facts(principal, repo).await?))
    }

    /// The intersection of what was asked and what is allowed; never fails for missing rights.
    pub async fn grant(&self, who: &Authenticated, scopes: &[Scope]) -> Result<Vec<Scope>, Error> {
        let mut access = Vec::new();
        for scope in scopes {
            match scope {
                Scope::Repository(repo, wanted) => {
                    let granted = wanted.intersect(self.allowed(&who.principal, repo).await?);
                    if !granted.is_empty() {
                        access.push(Scope::Repository(repo.clone(), granted));
                    }
                }
                // Any account may list; the listing shows only what it may pull.
                Scope::Catalog if who.principal != Principal::Anonymous => access.push(Scope::Catalog),
                Scope::Catalog => {}
            }
        }
        Ok(access)
    }

    pub fn issue(&self, who: &Authenticated, access: Vec<Scope>, token_use: TokenUse) -> Result<Issued, Error> {
        let lifetime = match token_use {
            TokenUse::Access => self.settings.access_lifetime,
            TokenUse::Refresh => self.settings.refresh_lifetime,
        };
        let iat = now();
        // One millisecond past any stamp set at this moment, so that a token issued right after
        // a change (a new password's first login) is younger than the change.
        let iatms = now_ms().max(iat * 1000) + 1;
        let claims = Claims {
            iss: self.settings.issuer.clone(),
            sub: who.principal.subject().to_owned(),
            aud: self.settings.service.clone(),
            exp: iat + lifetime.as_secs() as i64,
            nbf: iat,
            iat,
            jti: secrets::random_string(22),
            access,
            pat: who.pat.clone(),
            uid: who.uid.clone(),
            iatms,
            token_use,
        };
        let token = self.keys.sign(&claims).map_err(Error::internal)?;
        Ok(Issued { token, expires_in: lifetime.as_secs(), issued_at: iat })
    }

    /// Verifies a token and re-checks that its principal may still act: the same account (by id),
    /// enabled, and the token younger than the account's stamp.
    pub async fn verify(&self, token: &str, token_use: TokenUse) -> Result<(Authenticated, Vec<Scope>), AuthError> {
        let claims = self
            .keys
            .verify(token, &self.settings.issuer, &self.settings.service, token_use)
            .map_err(AuthError::InvalidToken)?;
        let who = self.principal(&claims).await?;
        Ok((who, claims.access))
    }

    /// The current principal for a token's claims, or an error if it may no longer act.
    async fn principal(&self, claims: &Claims) -> Result<Authenticated, AuthError> {
        let now = self.clock.now();
        let revoked = || {
            AuthError::InvalidToken(
                "the account behind this token is disabled, expired, revoked or changed since it was issued".into(),
            )
        };
        let (sub, uid) = (claims.sub.as_str(), claims.uid.as_deref());
        if sub.is_empty() {
            // Anonymous: a namespace made private since then ends such tokens.
            if claims.iatms <= self.store.stamp("anonymous").await? {
                return Err(revoked());
            }
            return Ok(Authenticated::anonymous());
        }
        if sub.starts_with(ROBOT_PREFIX) {
            let r = self.store.robot(sub).await?.ok_or_else(revoked)?;
            let same = uid == Some(format!("r:{}", r.id).as_str());
            if !same || r.revoked || r.expires_at <= now || claims.iatms <= r.valid_after_ms {
                return Err(revoked());
            }
            return Ok(robot_principal(&r));
        }
        let u = self.store.user(sub).await?.ok_or_else(revoked)?;
        let same = uid == Some(format!("u:{}", u.id).as_str());
        if !same || u.disabled || claims.iatms <= u.valid_after_ms {
            return Err(revoked());
        }
        if let Some(id) = claims.pat.as_deref() {
            let t = self.store.token(id).await?.ok_or_else(revoked)?;
            if t.revoked || t.expires_at <= now || t.username != u.username {
                return Err(revoked());
            }
        }
        Ok(user_principal(&u, claims.pat.clone()))
    }
}

fn robot_principal(r: &crate::metadata::auth::RobotRecord) -> Authenticated {
    Authenticated {
        principal: Principal::Robot(Robot {
            username: r.username.clone(),
            namespace: r.namespace.clone(),
            actions: ActionSet::parse_list(&r.actions.join(",")),
            repositories: r.repositories.clone(),
        }),
        uid: Some(format!("r:{}", r.id)),
        pat: None,
    }
}
