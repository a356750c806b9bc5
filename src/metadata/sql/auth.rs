//! Users, namespaces, memberships, robots and personal tokens in SQLite.

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::Row;

use super::{db_err, SqlMetadata};
use crate::metadata::auth::{
    AuthStore, ConsoleSessionRecord, NamespaceRecord, RobotRecord, TokenRecord, UserRecord, UserUpdate,
};
use crate::model::names::contains_pattern;
use crate::model::Role;
use crate::model::{Error, Result};

fn user(row: AnyRow) -> UserRecord {
    UserRecord {
        id: row.get("id"),
        valid_after_ms: row.get("valid_after_ms"),
        username: row.get("username"),
        password_hash: row.get("password_hash"),
        admin: row.get::<i64, _>("admin") != 0,
        disabled: row.get::<i64, _>("disabled") != 0,
        created_at: row.get("created_at"),
    }
}

fn namespace(row: AnyRow) -> NamespaceRecord {
    NamespaceRecord {
        name: row.get("name"),
        public: row.get::<i64, _>("public") != 0,
        created_at: row.get("created_at"),
    }
}

fn robot(row: AnyRow) -> RobotRecord {
    let actions: String = row.get("actions");
    RobotRecord {
        id: row.get("id"),
        valid_after_ms: row.get("valid_after_ms"),
        username: row.get("username"),
        namespace: row.get("namespace"),
        name: row.get("name"),
        secret_hash: row.get("secret_hash"),
        actions: actions.split(',').filter(|a| !a.is_empty()).map(str::to_owned).collect(),
        repositories: row.get("repositories"),
        expires_at: row.get("expires_at"),
        revoked: row.get::<i64, _>("revoked") != 0,
        last_used_at: row.get("last_used_at"),
        created_at: row.get("created_at"),
    }
}

fn token(row: AnyRow) -> TokenRecord {
    TokenRecord {
        id: row.get("id"),
        username: row.get("username"),
        name: row.get("name"),
        secret_hash: row.get("secret_hash"),
        expires_at: row.get("expires_at"),
        revoked: row.get::<i64, _>("revoked") != 0,
        last_used_at: row.get("last_used_at"),
        created_at: row.get("created_at"),
        parent_id: row.get("parent_id"),
    }
}

/// Whether an insert created a row: false when nothing matched or the row already exists.
fn inserted(done: std::result::Result<sqlx::any::AnyQueryResult, sqlx::Error>) -> Result<bool> {
    match done {
        Ok(d) => Ok(d.rows_affected() > 0),
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Ok(false),
        Err(e) => Err(db_err(e)),
    }
}

const ROBOT: &str = "SELECT r.*, n.name AS namespace FROM robots r JOIN namespaces n ON n.id = r.namespace_id";
const TOKEN: &str = "SELECT t.*, u.username FROM personal_tokens t JOIN users u ON u.id = t.user_id";

#[async_trait]
impl AuthStore for SqlMetadata {
    async fn create_user(&self, username: &str, password_hash: &str, admin: bool, now: i64) -> Result<bool> {
        let done =
            // Born with a stamp: tokens of an earlier account of the same name (whose id a database
            // may hand out again) are older than it.
            sqlx::query(
                "INSERT INTO users (username, password_hash, admin, created_at, valid_after_ms) VALUES ($1, $2, $3, $4, $5)",
            )
                .bind(username)
                .bind(password_hash)
                .bind(admin as i64)
                .bind(now)
                .bind(crate::model::now_ms())
                .execute(&self.write)
                .await;
        inserted(done)
    }

    async fn user(&self, username: &str) -> Result<Option<UserRecord>> {
        let row =
            sqlx::query("SELECT * FROM users WHERE username = $1").bind(username).fetch_optional(&self.read).await;
        Ok(row.map_err(db_err)?.map(user))
    }

    async fn list_users(&self, after: Option<&str>, limit: u32, search: Option<&str>) -> Result<Vec<UserRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM users WHERE username > $1 AND lower(username) LIKE $3 ESCAPE '\\' ORDER BY username LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .bind(contains_pattern(search))
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(user).collect())
    }

    async fn update_user(&self, username: &str, u: &UserUpdate) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE users SET password_hash = COALESCE($1, password_hash), admin = COALESCE($2, admin),
             disabled = COALESCE($3, disabled) WHERE username = $4",
        )
        .bind(&u.password_hash)
        .bind(u.admin.map(|b| b as i64))
        .bind(u.disabled.map(|b| b as i64))
        .bind(username)
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn bump_user(&self, username: &str, now_ms: i64) -> Result<bool> {
        let done = sqlx::query("UPDATE users SET valid_after_ms = $1 WHERE username = $2")
            .bind(now_ms)
            .bind(username)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn bump_members(&self, namespace: &str, now_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE users SET valid_after_ms = $1 WHERE id IN (
                 SELECT m.user_id FROM memberships m JOIN namespaces n ON n.id = m.namespace_id WHERE n.name = $2)",
        )
        .bind(now_ms)
        .bind(namespace)
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn stamp(&self, name: &str) -> Result<i64> {
        let value: Option<i64> = sqlx::query_scalar("SELECT value_ms FROM stamps WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.read)
            .await
            .map_err(db_err)?;
        Ok(value.unwrap_or(0))
    }

    async fn bump_stamp(&self, name: &str, now_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO stamps (name, value_ms) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value_ms = excluded.value_ms",
        )
        .bind(name)
        .bind(now_ms)
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn delete_user(&self, username: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM users WHERE username = $1")
            .bind(username)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_namespace(&self, name: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM namespaces WHERE name = $1")
            .bind(name)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn create_namespace(&self, name: &str, public: bool, now: i64) -> Result<bool> {
        let done = sqlx::query("INSERT INTO namespaces (name, public, created_at) VALUES ($1, $2, $3)")
            .bind(name)
            .bind(public as i64)
            .bind(now)
            .execute(&self.write)
            .await;
        inserted(done)
    }

    async fn namespace(&self, name: &str) -> Result<Option<NamespaceRecord>> {
        let row = sqlx::query("SELECT * FROM namespaces WHERE name = $1").bind(name).fetch_optional(&self.read).await;
        Ok(row.map_err(db_err)?.map(namespace))
    }

    async fn list_namespaces(
        &self,
        after: Option<&str>,
        limit: u32,
        search: Option<&str>,
    ) -> Result<Vec<NamespaceRecord>> {
        let rows = sqlx::query(
            "SELECT * FROM namespaces WHERE name > $1 AND lower(name) LIKE $3 ESCAPE '\\' ORDER BY name LIMIT $2",
        )
        .bind(after.unwrap_or(""))
        .bind(limit as i64)
        .bind(contains_pattern(search))
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        Ok(rows.into_iter().map(namespace).collect())
    }

    async fn set_namespace_public(&self, name: &str, public: bool) -> Result<bool> {
        let done = sqlx::query("UPDATE namespaces SET public = $1 WHERE name = $2")
            .bind(public as i64)
            .bind(name)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn role(&self, ns: &str, username: &str) -> Result<Option<Role>> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT m.role FROM memberships m JOIN namespaces n ON n.id = m.namespace_id
             JOIN users u ON u.id = m.user_id WHERE n.name = $1 AND u.username = $2",
        )
        .bind(ns)
        .bind(username)
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)?;
        Ok(role.as_deref().and_then(Role::parse))
    }

    async fn set_member(&self, ns: &str, username: &str, role: Role) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO memberships (namespace_id, user_id, role)
             SELECT n.id, u.id, $1 FROM namespaces n, users u WHERE n.name = $2 AND u.username = $3
             ON CONFLICT (namespace_id, user_id) DO UPDATE SET role = excluded.role",
        )
        .bind(role.as_str())
        .bind(ns)
        .bind(username)
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn remove_member(&self, ns: &str, username: &str) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM memberships WHERE namespace_id = (SELECT id FROM namespaces WHERE name = $1)
             AND user_id = (SELECT id FROM users WHERE username = $2)",
        )
        .bind(ns)
        .bind(username)
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn members(&self, ns: &str) -> Result<Vec<(String, Role)>> {
        let rows = sqlx::query(
            "SELECT u.username, m.role FROM memberships m JOIN namespaces n ON n.id = m.namespace_id
             JOIN users u ON u.id = m.user_id WHERE n.name = $1 ORDER BY u.username",
        )
        .bind(ns)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.into_iter()
            .map(|r| {
                let role: String = r.get("role");
                Ok((r.get("username"), Role::parse(&role).ok_or_else(|| Error::Internal(format!("bad role {role}")))?))
            })
            .collect()
    }

    async fn create_robot(&self, r: &RobotRecord) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO robots (namespace_id, name, username, secret_hash, actions, repositories, expires_at, created_at, valid_after_ms)
             SELECT id, $1, $2, $3, $4, $5, $6, $7, $8 FROM namespaces WHERE name = $9",
        )
        .bind(&r.name)
        .bind(&r.username)
        .bind(&r.secret_hash)
        .bind(r.actions.join(","))
        .bind(&r.repositories)
        .bind(r.expires_at)
        .bind(r.created_at)
        .bind(crate::model::now_ms())
        .bind(&r.namespace)
        .execute(&self.write)
        .await;
        inserted(done)
    }

    async fn robot(&self, username: &str) -> Result<Option<RobotRecord>> {
        let row =
            sqlx::query(&format!("{ROBOT} WHERE r.username = $1")).bind(username).fetch_optional(&self.read).await;
        Ok(row.map_err(db_err)?.map(robot))
    }

    async fn list_robots(&self, ns: &str) -> Result<Vec<RobotRecord>> {
        let rows = sqlx::query(&format!("{ROBOT} WHERE n.name = $1 ORDER BY r.name"))
            .bind(ns)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(robot).collect())
    }

    async fn rotate_robot(&self, username: &str, secret_hash: &str, now_ms: i64) -> Result<bool> {
        let done =
            sqlx::query("UPDATE robots SET secret_hash = $1, valid_after_ms = $2 WHERE username = $3 AND revoked = 0")
                .bind(secret_hash)
                .bind(now_ms)
                .bind(username)
                .execute(&self.write)
                .await
                .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn revoke_robot(&self, username: &str) -> Result<bool> {
        let done = sqlx::query("UPDATE robots SET revoked = 1 WHERE username = $1 AND revoked = 0")
            .bind(username)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn touch_robot(&self, username: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE robots SET last_used_at = $1 WHERE username = $2")
            .bind(now)
            .bind(username)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn create_token(&self, t: &TokenRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO personal_tokens (id, user_id, name, secret_hash, expires_at, created_at, parent_id)
             SELECT $1, id, $2, $3, $4, $5, $6 FROM users WHERE username = $7",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(&t.secret_hash)
        .bind(t.expires_at)
        .bind(t.created_at)
        .bind(&t.parent_id)
        .bind(&t.username)
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn token(&self, id: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(&format!("{TOKEN} WHERE t.id = $1")).bind(id).fetch_optional(&self.read).await;
        Ok(row.map_err(db_err)?.map(token))
    }

    async fn list_tokens(&self, username: &str) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(&format!("{TOKEN} WHERE u.username = $1 ORDER BY t.created_at, t.id"))
            .bind(username)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        Ok(rows.into_iter().map(token).collect())
    }

    async fn revoke_token(&self, username: &str, id: &str) -> Result<bool> {
        // The token, if it is the user's and not revoked yet, and every token created with it.
        let done = sqlx::query(
            "WITH RECURSIVE revoked(id) AS (
                 SELECT t.id FROM personal_tokens t JOIN users u ON u.id = t.user_id
                 WHERE t.id = $1 AND u.username = $2 AND t.revoked = 0
                 UNION
                 SELECT c.id FROM personal_tokens c JOIN revoked ON c.parent_id = revoked.id)
             UPDATE personal_tokens SET revoked = 1 WHERE id IN (SELECT id FROM revoked) AND revoked = 0",
        )
        .bind(id)
        .bind(username)
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn touch_token(&self, id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE personal_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn create_console_session(&self, id_hash: &str, user_id: i64, password_tag: &str, now_ms: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, user_id, password_tag, created_ms, last_seen_ms) VALUES ($1, $2, $3, $4, $4)",
        )
        .bind(id_hash)
        .bind(user_id)
        .bind(password_tag)
        .bind(now_ms)
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn console_session(&self, id_hash: &str) -> Result<Option<(ConsoleSessionRecord, UserRecord)>> {
        let row = sqlx::query(
            "SELECT s.password_tag AS session_password_tag, s.created_ms AS session_created_ms, \
             s.last_seen_ms AS session_last_seen_ms, u.* \
             FROM console_sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)?;
        Ok(row.map(|row| {
            let session = ConsoleSessionRecord {
                password_tag: row.get("session_password_tag"),
                created_ms: row.get("session_created_ms"),
                last_seen_ms: row.get("session_last_seen_ms"),
            };
            (session, user(row))
        }))
    }

    async fn touch_console_session(&self, id_hash: &str, now_ms: i64) -> Result<()> {
        sqlx::query("UPDATE console_sessions SET last_seen_ms = $1 WHERE id_hash = $2 AND last_seen_ms < $1")
            .bind(now_ms)
            .bind(id_hash)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn delete_console_session(&self, id_hash: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn purge_console_sessions(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE last_seen_ms < $1")
            .bind(before_ms)
            .execute(&self.write)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }
}
