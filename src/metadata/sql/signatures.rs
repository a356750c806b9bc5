//! Signature policies and index parents (both engines).

use async_trait::async_trait;
use sqlx::Row;

use super::{db_err, digest, SqlMetadata};
use crate::metadata::signatures::{SignatureStore, StoredSignaturePolicy};
use crate::model::{Digest, RepoName, Result};

#[async_trait]
impl SignatureStore for SqlMetadata {
    async fn signature_policy(&self, namespace: &str) -> Result<Option<StoredSignaturePolicy>> {
        let row = sqlx::query(
            "SELECT p.mode, p.keys, p.updated_at FROM namespace_signature_policies p
             JOIN namespaces n ON n.id = p.namespace_id WHERE n.name = $1",
        )
        .bind(namespace)
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)?;
        Ok(row.map(|r| StoredSignaturePolicy {
            mode: r.get("mode"),
            keys: r.get("keys"),
            updated_at: r.get("updated_at"),
        }))
    }

    async fn set_signature_policy(&self, namespace: &str, mode: &str, keys: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO namespace_signature_policies (namespace_id, mode, keys, updated_at)
             SELECT id, $1, $2, $3 FROM namespaces WHERE name = $4
             ON CONFLICT (namespace_id) DO UPDATE SET mode = excluded.mode, keys = excluded.keys,
                 updated_at = excluded.updated_at",
        )
        .bind(mode)
        .bind(keys)
        .bind(now)
        .bind(namespace)
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn manifest_parents(&self, repo: &RepoName, d: &Digest, limit: u32) -> Result<Vec<Digest>> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT mr.manifest_digest FROM manifest_references mr JOIN repositories r ON r.id = mr.repository_id
             WHERE r.name = $1 AND mr.kind = 'manifest' AND mr.target_digest = $2
             ORDER BY mr.manifest_digest LIMIT $3",
        )
        .bind(repo.as_str())
        .bind(d.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.into_iter().map(digest).collect()
    }
}
