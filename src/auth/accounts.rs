//! Account administration: users, namespaces, members, robots and personal tokens.
//!
//! Rules: names are validated here; secrets are generated here from the OS-seeded CSPRNG, returned
//! once, and stored only hashed; robots and tokens must expire, within `auth.max_robot_lifetime`
//! and `auth.max_token_lifetime`. Every change that alters what an account may do (password,
//! enabled, admin, a role, its namespace, a robot's secret) moves the account's `valid_after`
//! stamp, so tokens issued before it stop working at once.

use super::service::{now_ms, AuthService, ROBOT_PREFIX, ROBOT_SECRET_PREFIX, TOKEN_PREFIX};
use super::{password, secrets, ActionSet, Role};
use crate::metadata::auth::UserUpdate;
/// The accounts' records, as this service hands them out.
pub use crate::metadata::auth::{NamespaceRecord, RobotRecord, TokenRecord, UserRecord};
use crate::model::Error;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Internal(#[from] Error),
}

impl From<anyhow::Error> for AccountError {
    fn from(e: anyhow::Error) -> Self {
        AccountError::Internal(Error::internal(e))
    }
}

type Result<T> = std::result::Result<T, AccountError>;

/// `[a-z0-9][a-z0-9._-]{0,63}`: safe in URLs, logs and token subjects.
fn check_name(kind: &str, name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(AccountError::Invalid(format!("{kind} must match [a-z0-9][a-z0-9._-]{{0,63}}")))
    }
}

/// Refuses an expiry further away than `max` (named by its configuration key).
fn within(expires_at: i64, now: i64, max: std::time::Duration, key: &str) -> Result<()> {
    if expires_at - now > max.as_secs() as i64 {
        return Err(AccountError::Invalid(format!(
            "expires_at is more than {} days away; the limit is {key}",
            max.as_secs() / 86_400
        )));
    }
    Ok(())
}

/// A secret shown once.
pub struct NewSecret<T> {
    pub record: T,
    pub secret: String,
}

impl AuthService {
    pub async fn create_user(&self, username: &str, pw: &str, admin: bool) -> Result<UserRecord> {
        check_name("username", username)?;
        password::check_strength(pw).map_err(AccountError::Invalid)?;
        let hash = password::hash(pw.to_owned()).await?;
        if !self.store().create_user(username, &hash, admin, self.clock().now()).await? {
            return Err(AccountError::Conflict(format!("user {username} exists")));
        }
        self.store().user(username).await?.ok_or(AccountError::NotFound("user"))
    }

    pub async fn user(&self, username: &str) -> Result<UserRecord> {
        self.store().user(username).await?.ok_or(AccountError::NotFound("user"))
    }

    pub async fn list_users(&self, after: Option<&str>, limit: u32, search: Option<&str>) -> Result<Vec<UserRecord>> {
        Ok(self.store().list_users(after, limit, search).await?)
    }

    pub async fn update_user(
        &self,
        username: &str,
        pw: Option<&str>,
        admin: Option<bool>,
        disabled: Option<bool>,
    ) -> Result<UserRecord> {
        let password_hash = match pw {
            Some(p) => {
                password::check_strength(p).map_err(AccountError::Invalid)?;
                Some(password::hash(p.to_owned()).await?)
            }
            None => None,
        };
        if !self.store().update_user(username, &UserUpdate { password_hash, admin, disabled }).await? {
            return Err(AccountError::NotFound("user"));
        }
        self.store().bump_user(username, now_ms()).await?;
        self.user(username).await
    }

    pub async fn delete_user(&self, username: &str) -> Result<()> {
        if username == "admin" {
            return Err(AccountError::Invalid("the bootstrap admin cannot be deleted; disable it instead".into()));
        }
        if self.store().delete_user(username).await? {
            Ok(())
        } else {
            Err(AccountError::NotFound("user"))
        }
    }

    pub async fn delete_namespace(&self, name: &str) -> Result<()> {
        // The members lose what the namespace gave them: before the memberships go with it.
        self.store().bump_members(name, now_ms()).await?;
        if self.store().delete_namespace(name).await? {
            Ok(())
        } else {
            Err(AccountError::NotFound("namespace"))
        }
    }

    pub async fn create_namespace(&self, name: &str, public: bool) -> Result<NamespaceRecord> {
        // A namespace is the first segment of repository names, so it must be one.
        if name.contains(['.', '_', '/']) || format!("{name}/x").parse::<crate::model::RepoName>().is_err() {
            return Err(AccountError::Invalid("namespace must match [a-z0-9]+(-+[a-z0-9]+)*".into()));
        }
        if !self.store().create_namespace(name, public, self.clock().now()).await? {
            return Err(AccountError::Conflict(format!("namespace {name} exists")));
        }
        self.namespace(name).await
    }

    pub async fn namespace(&self, name: &str) -> Result<NamespaceRecord> {
        self.store().namespace(name).await?.ok_or(AccountError::NotFound("namespace"))
    }

    pub async fn list_namespaces(
        &self,
        after: Option<&str>,
        limit: u32,
        search: Option<&str>,
    ) -> Result<Vec<NamespaceRecord>> {
        Ok(self.store().list_namespaces(after, limit, search).await?)
    }

    pub async fn set_public(&self, name: &str, public: bool) -> Result<NamespaceRecord> {
        if !self.store().set_namespace_public(name, public).await? {
            return Err(AccountError::NotFound("namespace"));
        }
        if !public {
            // Anonymous tokens that could pull here stop working.
            self.store().bump_stamp("anonymous", now_ms()).await?;
        }
        self.namespace(name).await
    }

    pub async fn role_of(&self, ns: &str, username: &str) -> Result<Option<Role>> {
        Ok(self.store().role(ns, username).await?)
    }

    pub async fn members(&self, ns: &str) -> Result<Vec<(String, Role)>> {
        self.namespace(ns).await?;
        Ok(self.store().members(ns).await?)
    }

    /// Gives `username` `role` in `ns`. Tokens issued before are ended only when the role takes
    /// away repository actions (their claims were granted under the old one): adding a member or
    /// raising a role ends nobody's sessions, so an owner cannot sign anyone out by it.
    pub async fn set_member(&self, ns: &str, username: &str, role: Role) -> Result<()> {
        self.namespace(ns).await?;
        self.user(username).await?;
        let before = self.store().role(ns, username).await?;
        self.store().set_member(ns, username, role).await?;
        if before.is_some_and(|old| !role.actions().contains_all(old.actions())) {
            self.store().bump_user(username, now_ms()).await?;
        }
        Ok(())
    }

    pub async fn remove_member(&self, ns: &str, username: &str) -> Result<()> {
        if self.store().remove_member(ns, username).await? {
            self.store().bump_user(username, now_ms()).await?;
            Ok(())
        } else {
            Err(AccountError::NotFound("member"))
        }
    }

    pub async fn create_robot(
        &self,
        ns: &str,
        name: &str,
        actions: &[String],
        repositories: Option<Vec<String>>,
        expires_at: i64,
    ) -> Result<NewSecret<RobotRecord>> {
        check_name("robot name", name)?;
        within(expires_at, self.clock().now(), self.settings().max_robot_lifetime, "auth.max_robot_lifetime")?;
        self.namespace(ns).await?;
        let set = ActionSet::parse_list(&actions.join(","));
        if set.is_empty() || actions.iter().any(|a| super::Action::parse(a).is_none()) {
            return Err(AccountError::Invalid("actions must be a non-empty list of pull, push, delete".into()));
        }
        // Stored as one text, one pattern per line (a pattern never holds a line break).
        let repositories = match repositories {
            None => None,
            Some(patterns) => {
                if patterns.is_empty()
                    || patterns.len() > super::MAX_ROBOT_PATTERNS
                    || patterns.iter().any(|p| p.is_empty() || p.len() > 255 || p.chars().any(char::is_control))
                {
                    return Err(AccountError::Invalid(format!(
                        "repositories must be 1 to {} patterns of 1 to 255 characters (such as \"apps/*\")",
                        super::MAX_ROBOT_PATTERNS
                    )));
                }
                Some(super::join_patterns(&patterns))
            }
        };
        let secret = format!("{ROBOT_SECRET_PREFIX}{}", secrets::random_string(40));
        let record = RobotRecord {
            id: 0,
            valid_after_ms: 0,
            username: format!("{ROBOT_PREFIX}{ns}+{name}"),
            namespace: ns.to_owned(),
            name: name.to_owned(),
            secret_hash: secrets::hash_token(&secret),
            actions: set.names().into_iter().map(str::to_owned).collect(),
            repositories,
            expires_at,
            revoked: false,
            last_used_at: None,
            created_at: self.clock().now(),
        };
        if !self.store().create_robot(&record).await? {
            return Err(AccountError::Conflict(format!("robot {name} exists in {ns}")));
        }
        Ok(NewSecret { record, secret })
    }

    pub async fn list_robots(&self, ns: &str) -> Result<Vec<RobotRecord>> {
        self.namespace(ns).await?;
        Ok(self.store().list_robots(ns).await?)
    }

    pub async fn rotate_robot(&self, ns: &str, name: &str) -> Result<NewSecret<RobotRecord>> {
        let username = format!("{ROBOT_PREFIX}{ns}+{name}");
        let secret = format!("{ROBOT_SECRET_PREFIX}{}", secrets::random_string(40));
        if !self.store().rotate_robot(&username, &secrets::hash_token(&secret), now_ms()).await? {
            return Err(AccountError::NotFound("robot"));
        }
        let record = self.store().robot(&username).await?.ok_or(AccountError::NotFound("robot"))?;
        Ok(NewSecret { record, secret })
    }

    pub async fn revoke_robot(&self, ns: &str, name: &str) -> Result<()> {
        if self.store().revoke_robot(&format!("{ROBOT_PREFIX}{ns}+{name}")).await? {
            Ok(())
        } else {
            Err(AccountError::NotFound("robot"))
        }
    }

    /// A personal token for `username`; `parent` is the personal token the request came with, if
    /// any (revoking it revokes this one).
    pub async fn create_token(
        &self,
        username: &str,
        name: &str,
        expires_at: i64,
        parent: Option<String>,
    ) -> Result<NewSecret<TokenRecord>> {
        if name.is_empty() || name.len() > 100 {
            return Err(AccountError::Invalid("name must have 1 to 100 characters".into()));
        }
        within(expires_at, self.clock().now(), self.settings().max_token_lifetime, "auth.max_token_lifetime")?;
        let id = secrets::random_string(12);
        let secret = format!("{TOKEN_PREFIX}{id}_{}", secrets::random_string(40));
        let record = TokenRecord {
            id,
            username: username.to_owned(),
            name: name.to_owned(),
            secret_hash: secrets::hash_token(&secret),
            expires_at,
            revoked: false,
            last_used_at: None,
            created_at: self.clock().now(),
            parent_id: parent,
        };
        self.store().create_token(&record).await?;
        Ok(NewSecret { record, secret })
    }

    pub async fn list_tokens(&self, username: &str) -> Result<Vec<TokenRecord>> {
        Ok(self.store().list_tokens(username).await?)
    }

    pub async fn revoke_token(&self, username: &str, id: &str) -> Result<()> {
        if self.store().revoke_token(username, id).await? {
            Ok(())
        } else {
            Err(AccountError::NotFound("token"))
        }
    }
}
