//! A namespace's lifecycle settings and usage, as the admin API reads and changes them.
//!
//! The settings are enforced where the changes happen, inside the metadata's transactions
//! (`metadata::lifecycle` states how); retention is planned and applied in `retention`.

use super::{Registry, Result};
use crate::metadata::lifecycle::{NamespaceRules, UsageDrift};
use crate::model::{Quota, Retention, TagPatterns, Usage};

impl Registry {
    pub async fn namespace_rules(&self, namespace: &str) -> Result<NamespaceRules> {
        self.meta.namespace_rules(namespace).await
    }

    /// False when there is no such namespace.
    pub async fn set_quota(&self, namespace: &str, quota: Quota) -> Result<bool> {
        self.meta.set_quota(namespace, quota, self.clock.now()).await
    }

    pub async fn set_immutable_tags(&self, namespace: &str, patterns: &TagPatterns) -> Result<bool> {
        self.meta.set_immutable_tags(namespace, patterns, self.clock.now()).await
    }

    pub async fn set_retention(&self, namespace: &str, retention: Option<&Retention>) -> Result<bool> {
        self.meta.set_retention(namespace, retention, self.clock.now()).await
    }

    pub async fn usage(&self, namespace: &str) -> Result<Usage> {
        self.meta.usage(namespace).await
    }

    /// Recomputes every namespace's usage from its links (fsck), answering what had drifted.
    pub async fn recount_usage(&self) -> Result<Vec<UsageDrift>> {
        self.meta.recount_usage().await
    }
}
