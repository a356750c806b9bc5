//! What the signature gate reads: a namespace's signature policy, and which indexes list a
//! manifest (a signature on an index covers the images it lists).

use async_trait::async_trait;

use crate::model::{Digest, RepoName, Result};

/// A namespace's stored policy: its mode and its trusted keys as stored (a JSON list).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSignaturePolicy {
    pub mode: String,
    pub keys: String,
    pub updated_at: i64,
}

#[async_trait]
pub trait SignatureStore: Send + Sync {
    /// The namespace's policy; `None` when it has none (signatures off).
    async fn signature_policy(&self, namespace: &str) -> Result<Option<StoredSignaturePolicy>>;
    /// Sets the namespace's policy; false if the namespace does not exist.
    async fn set_signature_policy(&self, namespace: &str, mode: &str, keys: &str, now: i64) -> Result<bool>;
    /// Up to `limit` manifests of `repo` that list `digest` as a child (indexes), in digest order.
    async fn manifest_parents(&self, repo: &RepoName, digest: &Digest, limit: u32) -> Result<Vec<Digest>>;
}
