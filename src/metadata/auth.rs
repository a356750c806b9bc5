//! The identity part of metadata: users, namespaces, memberships, robots, personal tokens.

use async_trait::async_trait;
use serde::Serialize;

use crate::model::Result;
use crate::model::Role;

#[derive(Debug, Clone, Serialize)]
pub struct UserRecord {
    /// The account's immutable id (a new account under a deleted one's name has another).
    #[serde(skip)]
    pub id: i64,
    pub username: String,
    #[serde(skip)]
    pub password_hash: String,
    pub admin: bool,
    pub disabled: bool,
    pub created_at: i64,
    /// Tokens issued at or before this time (ms) are refused.
    #[serde(skip)]
    pub valid_after_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NamespaceRecord {
    pub name: String,
    pub public: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RobotRecord {
    #[serde(skip)]
    pub id: i64,
    pub username: String,
    pub namespace: String,
    pub name: String,
    #[serde(skip)]
    pub secret_hash: String,
    pub actions: Vec<String>,
    pub repositories: Option<String>,
    pub expires_at: i64,
    pub revoked: bool,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
    /// Tokens issued at or before this time (ms) are refused.
    #[serde(skip)]
    pub valid_after_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenRecord {
    pub id: String,
    #[serde(skip)]
    pub username: String,
    pub name: String,
    #[serde(skip)]
    pub secret_hash: String,
    pub expires_at: i64,
    pub revoked: bool,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
    /// The personal token this one was created with, if any: revoking it revokes this one.
    pub parent_id: Option<String>,
}

/// Changes to a user; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserUpdate {
    pub password_hash: Option<String>,
    pub admin: Option<bool>,
    pub disabled: Option<bool>,
}

/// Login attempts per throttling key, shared by every replica on the database.
#[async_trait]
pub trait ThrottleStore: Send + Sync {
    /// Counts an attempt on `key` at `now_ms`, atomically, before its secret is checked; returns
    /// the count with this one and the time of the attempt before it (0 if none). Keys idle since
    /// `forget_before_ms` are forgotten.
    async fn login_attempt(&self, key: &str, now_ms: i64, forget_before_ms: i64) -> Result<(u32, i64)>;
    /// `(attempts, time of the last in ms)` of `key`, without counting one.
    async fn login_failures(&self, key: &str) -> Result<Option<(u32, i64)>>;
    /// Forgets the attempts of `key` (after a successful login).
    async fn clear_login_failures(&self, key: &str) -> Result<()>;
}

#[async_trait]
pub trait AuthStore: ThrottleStore + super::audit::AuditStore + Send + Sync {
    /// Creates a user; false if the name is taken.
    async fn create_user(&self, username: &str, password_hash: &str, admin: bool, now: i64) -> Result<bool>;
    async fn user(&self, username: &str) -> Result<Option<UserRecord>>;
    /// Users in name order after `after`.
    /// Users by name after `after`, whose name contains `search` (any case) if given.
    async fn list_users(&self, after: Option<&str>, limit: u32, search: Option<&str>) -> Result<Vec<UserRecord>>;
    /// False if the user does not exist.
    async fn update_user(&self, username: &str, update: &UserUpdate) -> Result<bool>;
    /// Refuses every token issued to the user until `now_ms`. False if the user does not exist.
    async fn bump_user(&self, username: &str, now_ms: i64) -> Result<bool>;
    /// The same for every member of a namespace.
    async fn bump_members(&self, namespace: &str, now_ms: i64) -> Result<()>;
    /// A named stamp (`anonymous`: refuses anonymous tokens issued before it), 0 if never set.
    async fn stamp(&self, name: &str) -> Result<i64>;
    async fn bump_stamp(&self, name: &str, now_ms: i64) -> Result<()>;
    /// Deletes a user with its memberships and personal tokens. False if it did not exist.
    async fn delete_user(&self, username: &str) -> Result<bool>;

    /// Creates a namespace; false if it exists.
    async fn create_namespace(&self, name: &str, public: bool, now: i64) -> Result<bool>;
    async fn namespace(&self, name: &str) -> Result<Option<NamespaceRecord>>;
    /// Namespaces by name after `after`, whose name contains `search` (any case) if given.
    async fn list_namespaces(
        &self,
        after: Option<&str>,
        limit: u32,
        search: Option<&str>,
    ) -> Result<Vec<NamespaceRecord>>;
    async fn set_namespace_public(&self, name: &str, public: bool) -> Result<bool>;
    /// Deletes a namespace with its memberships and robots (its repositories stay, reachable by
    /// admins only). False if it did not exist.
    async fn delete_namespace(&self, name: &str) -> Result<bool>;
    /// The user's role in the namespace.
    async fn role(&self, namespace: &str, username: &str) -> Result<Option<Role>>;
    /// Sets a role; false if the namespace or user does not exist.
    async fn set_member(&self, namespace: &str, username: &str, role: Role) -> Result<bool>;
    async fn remove_member(&self, namespace: &str, username: &str) -> Result<bool>;
    async fn members(&self, namespace: &str) -> Result<Vec<(String, Role)>>;

    /// Creates a robot; false if the name is taken in the namespace.
    async fn create_robot(&self, robot: &RobotRecord) -> Result<bool>;
    async fn robot(&self, username: &str) -> Result<Option<RobotRecord>>;
    async fn list_robots(&self, namespace: &str) -> Result<Vec<RobotRecord>>;
    /// Replaces the secret and refuses tokens issued until `now_ms` (a revoked robot stays revoked).
    async fn rotate_robot(&self, username: &str, secret_hash: &str, now_ms: i64) -> Result<bool>;
    async fn revoke_robot(&self, username: &str) -> Result<bool>;
    async fn touch_robot(&self, username: &str, now: i64) -> Result<()>;

    async fn create_token(&self, token: &TokenRecord) -> Result<()>;
    async fn token(&self, id: &str) -> Result<Option<TokenRecord>>;
    async fn list_tokens(&self, username: &str) -> Result<Vec<TokenRecord>>;
    /// Revokes the token and every token created with it (at any depth). False if it was not the user's.
    async fn revoke_token(&self, username: &str, id: &str) -> Result<bool>;
    async fn touch_token(&self, id: &str, now: i64) -> Result<()>;

    /// Stores a web console session under the SHA-256 of its secret (the secret itself is never
    /// stored), with a tag of the account's password at sign-in, begun at `now_ms` (the app's
    /// clock, which decides idling and age).
    async fn create_console_session(&self, id_hash: &str, user_id: i64, password_tag: &str, now_ms: i64) -> Result<()>;
    /// A console session and its account, in one read.
    async fn console_session(&self, id_hash: &str) -> Result<Option<(ConsoleSessionRecord, UserRecord)>>;
    /// Moves a session's idle clock.
    async fn touch_console_session(&self, id_hash: &str, now_ms: i64) -> Result<()>;
    /// Ends one session (logout); false if there was none.
    async fn delete_console_session(&self, id_hash: &str) -> Result<bool>;
    /// Deletes the sessions last seen before `before_ms` (idle past any use); how many.
    async fn purge_console_sessions(&self, before_ms: i64) -> Result<u64>;
}

/// A web console session as stored: when it began and when it was last used (ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSessionRecord {
    /// A tag of the account's password hash at sign-in: another password ends the session.
    pub password_tag: String,
    pub created_ms: i64,
    pub last_seen_ms: i64,
}
