//! Namespace settings, usage, and retention's reads and removals; and the quota and immutability
//! checks that run inside the transactions of `blobs`, `uploads` and `manifests`.
//!
//! Lock order: a transaction that checks a namespace's rules reads its settings row first, before
//! any other row, and locks it (`FOR UPDATE`, PostgreSQL) only when a quota it checks is set. The
//! collector never takes that row, so the order cannot cycle.

use std::collections::BTreeMap;

use async_trait::async_trait;
use sqlx::Row;

use super::{db_err, digest, lock_clause, repo_id, repo_name, RowLock, SqlMetadata};
use crate::metadata::lifecycle::{LifecycleStore, ManifestRow, NamespaceRules, RepositoryContents, TagRow, UsageDrift};
use crate::model::{
    Digest, Engine, Error, ImmutableTag, OverQuota, Quota, RepoName, Result, Retention, Tag, TagPatterns, Usage,
};

const SETTINGS: &str = "SELECT quota_bytes, max_repositories, max_tags, immutable_tags, retention
     FROM namespace_settings WHERE namespace = $1";

fn count(n: Option<i64>) -> Option<u64> {
    n.map(|n| n.max(0) as u64)
}

fn rules(row: Option<sqlx::any::AnyRow>) -> Result<NamespaceRules> {
    let Some(row) = row else { return Ok(NamespaceRules::default()) };
    let quota = Quota {
        bytes: count(row.get("quota_bytes")),
        repositories: count(row.get("max_repositories")),
        tags: count(row.get("max_tags")),
    };
    let corrupt = |what: &str, e: serde_json::Error| Error::Internal(format!("stored {what} do not parse: {e}"));
    let immutable: Option<String> = row.get("immutable_tags");
    let immutable = match immutable {
        Some(text) => serde_json::from_str(&text).map_err(|e| corrupt("immutable tags", e))?,
        None => TagPatterns::default(),
    };
    let retention: Option<String> = row.get("retention");
    let retention =
        retention.map(|t| serde_json::from_str(&t)).transpose().map_err(|e| corrupt("retention rules", e))?;
    Ok(NamespaceRules { quota, immutable, retention })
}

/// The rules of `namespace` inside the caller's transaction. When `exclusive` says a quota it
/// will check is set, the settings row is locked for update (PostgreSQL) and read again, so
/// transactions checking that quota run one at a time.
pub(crate) async fn rules_in(
    tx: &mut sqlx::AnyConnection,
    engine: Engine,
    namespace: &str,
    exclusive: impl Fn(&Quota) -> bool,
) -> Result<NamespaceRules> {
    let row = sqlx::query(SETTINGS).bind(namespace).fetch_optional(&mut *tx).await.map_err(db_err)?;
    let found = rules(row)?;
    if engine == Engine::Postgres && exclusive(&found.quota) {
        let lock = lock_clause(engine, RowLock::Update);
        let row =
            sqlx::query(&format!("{SETTINGS}{lock}")).bind(namespace).fetch_optional(&mut *tx).await.map_err(db_err)?;
        return rules(row);
    }
    Ok(found)
}

fn denied(over: OverQuota, namespace: &str) -> Error {
    Error::OverQuota { namespace: namespace.to_owned(), message: over.message(namespace) }
}

/// Refuses a repository the namespace's `repositories` quota has no room for (before it is made).
pub(crate) async fn check_new_repository(
    tx: &mut sqlx::AnyConnection,
    rules: &NamespaceRules,
    repo: &RepoName,
) -> Result<()> {
    let Some(quota) = rules.quota.repositories else { return Ok(()) };
    if repo_id(&mut *tx, repo).await?.is_some() {
        return Ok(());
    }
    let used: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM repositories WHERE namespace = $1")
        .bind(repo.namespace())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    if used as u64 >= quota {
        return Err(denied(OverQuota::Repositories { used: used as u64, quota }, repo.namespace()));
    }
    Ok(())
}

/// Refuses a link that would take the namespace past its byte quota. A blob the namespace already
/// links elsewhere adds nothing.
pub(crate) async fn check_link_bytes(
    tx: &mut sqlx::AnyConnection,
    rules: &NamespaceRules,
    namespace: &str,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let Some(quota) = rules.quota.bytes else { return Ok(()) };
    let counted: Option<i64> = sqlx::query_scalar("SELECT 1 FROM namespace_blobs WHERE namespace = $1 AND digest = $2")
        .bind(namespace)
        .bind(digest.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
    if counted.is_some() {
        return Ok(());
    }
    let used = used_bytes(tx, namespace).await?;
    if used.saturating_add(size) > quota {
        return Err(denied(OverQuota::Bytes { used, adding: size, quota }, namespace));
    }
    Ok(())
}

async fn used_bytes(tx: &mut sqlx::AnyConnection, namespace: &str) -> Result<u64> {
    let used: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM namespace_usage_deltas WHERE namespace = $1",
    )
    .bind(namespace)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(used.max(0) as u64)
}

/// The quota checks of a manifest push: a namespace already past its byte quota takes no new
/// manifest; a new tag needs room in the `tags` quota.
pub(crate) async fn check_manifest(
    tx: &mut sqlx::AnyConnection,
    rules: &NamespaceRules,
    repo: &RepoName,
    repo_id: i64,
    tag: Option<&Tag>,
) -> Result<()> {
    let namespace = repo.namespace();
    if let Some(quota) = rules.quota.bytes {
        let used = used_bytes(tx, namespace).await?;
        if used > quota {
            return Err(denied(OverQuota::Bytes { used, adding: 0, quota }, namespace));
        }
    }
    // Whether an immutable tag may move is decided once, after its insert-only write
    // (`check_immutable_holds`); here only a new tag's room in the `tags` quota.
    let (Some(tag), Some(quota)) = (tag, rules.quota.tags) else { return Ok(()) };
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM tags WHERE repository_id = $1 AND name = $2")
        .bind(repo_id)
        .bind(tag.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
    if exists.is_some() {
        return Ok(());
    }
    let used: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM tags t JOIN repositories r ON r.id = t.repository_id WHERE r.namespace = $1",
    )
    .bind(namespace)
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    if used as u64 >= quota {
        return Err(denied(OverQuota::Tags { used: used as u64, quota }, namespace));
    }
    Ok(())
}

/// After an immutable tag was inserted if absent: refuses unless it holds `digest` (another push
/// created it first with other content).
pub(crate) async fn check_immutable_holds(
    tx: &mut sqlx::AnyConnection,
    repo: &RepoName,
    repo_id: i64,
    tag: &Tag,
    digest: &Digest,
    pattern: &str,
) -> Result<()> {
    let holds: Option<String> =
        sqlx::query_scalar("SELECT manifest_digest FROM tags WHERE repository_id = $1 AND name = $2")
            .bind(repo_id)
            .bind(tag.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
    if holds.as_deref() == Some(digest.as_str()) {
        return Ok(());
    }
    let rule = ImmutableTag { tag: tag.to_string(), pattern: pattern.to_string() };
    Err(Error::Denied(rule.message(repo.as_str(), &format!("moving it to {digest}"))))
}

/// Refuses to delete what an immutable tag holds: `tag` itself, or (without one) any tag of the
/// manifest `digest` (or, without either, of the whole repository).
pub(crate) async fn check_removal(
    tx: &mut sqlx::AnyConnection,
    engine: Engine,
    repo: &RepoName,
    digest: Option<&Digest>,
    tag: Option<&Tag>,
) -> Result<()> {
    let rules = rules_in(tx, engine, repo.namespace(), |_| false).await?;
    if rules.immutable.is_empty() {
        return Ok(());
    }
    let what = match (tag, digest) {
        (Some(t), _) => format!("deleting the tag {t}"),
        (None, Some(d)) => format!("deleting the manifest {d}"),
        (None, None) => "deleting the repository".to_string(),
    };
    let tags: Vec<String> = sqlx::query_scalar(
        "SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repository_id
         WHERE r.name = $1 AND (CAST($2 AS TEXT) = '' OR t.manifest_digest = $2)
         AND (CAST($3 AS TEXT) = '' OR t.name = $3) ORDER BY t.name",
    )
    .bind(repo.as_str())
    .bind(digest.map(Digest::as_str).unwrap_or(""))
    .bind(tag.map(Tag::as_str).unwrap_or(""))
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    for t in tags {
        if let Some(pattern) = rules.immutable.first_match(&t) {
            let rule = ImmutableTag { tag: t.clone(), pattern: pattern.to_string() };
            return Err(Error::Denied(rule.message(repo.as_str(), &what)));
        }
    }
    Ok(())
}

/// Folds a namespace's usage deltas into one row: exactly the rows this statement deletes are
/// summed, so a delta committed meanwhile stays for the next fold.
async fn fold_usage(tx: &mut sqlx::AnyConnection, namespace: &str) -> Result<()> {
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("DELETE FROM namespace_usage_deltas WHERE namespace = $1 RETURNING bytes, blobs")
            .bind(namespace)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
    let (bytes, blobs) = rows.iter().fold((0i64, 0i64), |(b, n), (db, dn)| (b + db, n + dn));
    if bytes != 0 || blobs != 0 {
        sqlx::query("INSERT INTO namespace_usage_deltas (namespace, bytes, blobs) VALUES ($1, $2, $3)")
            .bind(namespace)
            .bind(bytes)
            .bind(blobs)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

/// A value of a settings column.
enum Setting {
    Text(Option<String>),
    Number(Option<i64>),
}

impl SqlMetadata {
    /// Runs `delete` (`$1` bound to `first`, `$2` to the repository's name) in a transaction that
    /// first refuses, by [`check_removal`], to remove what an immutable tag holds. True if it
    /// removed a row.
    pub(crate) async fn delete_guarded(
        &self,
        repo: &RepoName,
        target: (Option<Digest>, Option<Tag>),
        delete: &'static str,
        first: String,
    ) -> Result<bool> {
        let (repo, engine) = (repo.clone(), self.engine());
        self.writing(move |write| async move {
            let mut tx = write.begin().await.map_err(db_err)?;
            // The manifests in scope are locked first, so a push that tags one either committed
            // before the check (which sees its tag) or waits until this transaction is done.
            if target.1.is_none() {
                let lock = lock_clause(engine, RowLock::Update);
                sqlx::query(&format!(
                    "SELECT m.digest FROM manifests m JOIN repositories r ON r.id = m.repository_id
                     WHERE r.name = $1 AND (CAST($2 AS TEXT) = '' OR m.digest = $2) ORDER BY m.digest{lock}"
                ))
                .bind(repo.as_str())
                .bind(target.0.as_ref().map(Digest::as_str).unwrap_or(""))
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            check_removal(&mut tx, engine, &repo, target.0.as_ref(), target.1.as_ref()).await?;
            let done = sqlx::query(delete).bind(first).bind(repo.as_str()).execute(&mut *tx).await.map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            Ok(done.rows_affected() > 0)
        })
        .await
    }

    /// Sets columns of a namespace's settings row (made if needed); false if there is no such
    /// namespace.
    async fn set_setting(&self, namespace: &str, values: Vec<(&'static str, Setting)>, now: i64) -> Result<bool> {
        let namespace = namespace.to_string();
        self.writing(move |write| async move {
            let mut tx = write.begin().await.map_err(db_err)?;
            let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM namespaces WHERE name = $1")
                .bind(&namespace)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            if exists.is_none() {
                return Ok(false);
            }
            sqlx::query("INSERT INTO namespace_settings (namespace, updated_at) VALUES ($1, $2) ON CONFLICT (namespace) DO NOTHING")
                .bind(&namespace)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            let sets: Vec<String> = values.iter().enumerate().map(|(i, (c, _))| format!("{c} = ${}", i + 3)).collect();
            let sql = format!("UPDATE namespace_settings SET updated_at = $2, {} WHERE namespace = $1", sets.join(", "));
            let mut update = sqlx::query(&sql).bind(&namespace).bind(now);
            for (_, v) in values {
                update = match v {
                    Setting::Text(t) => update.bind(t),
                    Setting::Number(n) => update.bind(n),
                };
            }
            update.execute(&mut *tx).await.map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            Ok(true)
        })
        .await
    }
}

fn limit(n: Option<u64>) -> Option<i64> {
    n.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

#[async_trait]
impl LifecycleStore for SqlMetadata {
    async fn namespace_rules(&self, namespace: &str) -> Result<NamespaceRules> {
        rules(sqlx::query(SETTINGS).bind(namespace).fetch_optional(&self.read).await.map_err(db_err)?)
    }

    async fn set_quota(&self, namespace: &str, quota: Quota, now: i64) -> Result<bool> {
        let values = vec![
            ("quota_bytes", Setting::Number(limit(quota.bytes))),
            ("max_repositories", Setting::Number(limit(quota.repositories))),
            ("max_tags", Setting::Number(limit(quota.tags))),
        ];
        self.set_setting(namespace, values, now).await
    }

    async fn set_immutable_tags(&self, namespace: &str, patterns: &TagPatterns, now: i64) -> Result<bool> {
        let text = (!patterns.is_empty()).then(|| serde_json::to_string(patterns).expect("strings serialize"));
        self.set_setting(namespace, vec![("immutable_tags", Setting::Text(text))], now).await
    }

    async fn set_retention(&self, namespace: &str, retention: Option<&Retention>, now: i64) -> Result<bool> {
        let text = retention.map(|r| serde_json::to_string(r).expect("rules serialize"));
        self.set_setting(namespace, vec![("retention", Setting::Text(text))], now).await
    }

    async fn retention_policies(&self) -> Result<Vec<(String, Retention)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT namespace, retention FROM namespace_settings WHERE retention IS NOT NULL ORDER BY namespace",
        )
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.into_iter()
            .map(|(ns, text)| {
                let r = serde_json::from_str(&text)
                    .map_err(|e| Error::Internal(format!("stored retention rules do not parse: {e}")))?;
                Ok((ns, r))
            })
            .collect()
    }

    async fn usage(&self, namespace: &str) -> Result<Usage> {
        let (bytes, blobs, repositories, tags, manifests, quarantined): (i64, i64, i64, i64, i64, i64) = sqlx::query_as(
            "SELECT
                 (SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) FROM namespace_usage_deltas WHERE namespace = $1),
                 (SELECT CAST(COALESCE(SUM(blobs), 0) AS BIGINT) FROM namespace_usage_deltas WHERE namespace = $1),
                 (SELECT COUNT(*) FROM repositories WHERE namespace = $1),
                 (SELECT COUNT(*) FROM tags t JOIN repositories r ON r.id = t.repository_id WHERE r.namespace = $1),
                 (SELECT COUNT(*) FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.namespace = $1),
                 (SELECT COUNT(*) FROM scans s JOIN repositories r ON r.id = s.repository_id
                  WHERE r.namespace = $1 AND s.state = 'quarantined')",
        )
        .bind(namespace)
        .fetch_one(&self.read)
        .await
        .map_err(db_err)?;
        let n = |v: i64| v.max(0) as u64;
        Ok(Usage {
            bytes: n(bytes),
            blobs: n(blobs),
            repositories: n(repositories),
            tags: n(tags),
            manifests: n(manifests),
            quarantined: n(quarantined),
        })
    }

    async fn recount_usage(&self) -> Result<Vec<UsageDrift>> {
        let engine = self.engine();
        self.writing(move |write| async move {
            let mut tx = write.begin().await.map_err(db_err)?;
            if engine == Engine::Postgres {
                // No link comes or goes while the counters are rebuilt from the links.
                sqlx::query("LOCK TABLE repository_blobs IN SHARE MODE").execute(&mut *tx).await.map_err(db_err)?;
            }
            let sums = "SELECT namespace, CAST(SUM(bytes) AS BIGINT) FROM namespace_usage_deltas GROUP BY namespace";
            let recorded: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(sums)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?
                .into_iter()
                .collect();
            // The triggers fire on the rebuild too: the deltas are emptied after the blobs, and the
            // rebuilt blobs add theirs, folded below into one row per namespace.
            for sql in [
                "DELETE FROM namespace_blobs",
                "DELETE FROM namespace_usage_deltas",
                "INSERT INTO namespace_blobs (namespace, digest, size, links)
                 SELECT rb.namespace, rb.digest, b.size, COUNT(*) FROM repository_blobs rb
                 JOIN blobs b ON b.digest = rb.digest GROUP BY rb.namespace, rb.digest, b.size",
            ] {
                sqlx::query(sql).execute(&mut *tx).await.map_err(db_err)?;
            }
            let actual: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(sums)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?
                .into_iter()
                .collect();
            for namespace in actual.keys() {
                fold_usage(&mut tx, namespace).await?;
            }
            tx.commit().await.map_err(db_err)?;
            let namespaces: std::collections::BTreeSet<&String> = recorded.keys().chain(actual.keys()).collect();
            let drift = namespaces.into_iter().map(|ns| UsageDrift {
                namespace: ns.clone(),
                recorded_bytes: recorded.get(ns).copied().unwrap_or(0),
                actual_bytes: actual.get(ns).copied().unwrap_or(0),
            });
            Ok(drift.filter(|d| d.recorded_bytes != d.actual_bytes).collect())
        })
        .await
    }

    async fn fold_usage(&self) -> Result<u64> {
        let namespaces: Vec<String> = sqlx::query_scalar(
            "SELECT namespace FROM namespace_usage_deltas GROUP BY namespace HAVING COUNT(*) > 1 ORDER BY namespace",
        )
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        for namespace in &namespaces {
            let namespace = namespace.clone();
            self.writing(move |write| async move {
                let mut tx = write.begin().await.map_err(db_err)?;
                fold_usage(&mut tx, &namespace).await?;
                tx.commit().await.map_err(db_err)
            })
            .await?;
        }
        Ok(namespaces.len() as u64)
    }

    async fn namespace_repositories(&self, namespace: &str) -> Result<Vec<RepoName>> {
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM repositories WHERE namespace = $1 ORDER BY name")
            .bind(namespace)
            .fetch_all(&self.read)
            .await
            .map_err(db_err)?;
        names.into_iter().map(repo_name).collect()
    }

    async fn repository_contents(&self, repo: &RepoName) -> Result<RepositoryContents> {
        let Some(id) = repo_id(&self.read, repo).await? else { return Ok(RepositoryContents::default()) };
        let tags: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT name, manifest_digest, updated_at FROM tags WHERE repository_id = $1 ORDER BY name")
                .bind(id)
                .fetch_all(&self.read)
                .await
                .map_err(db_err)?;
        let manifests: Vec<(String, i64, Option<String>)> = sqlx::query_as(
            "SELECT digest, created_at, subject FROM manifests WHERE repository_id = $1 ORDER BY digest",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        let edges: Vec<(String, String)> = sqlx::query_as(
            "SELECT manifest_digest, target_digest FROM manifest_references
             WHERE repository_id = $1 AND kind = 'manifest' ORDER BY manifest_digest, target_digest",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        let mut children: BTreeMap<String, Vec<Digest>> = BTreeMap::new();
        for (parent, child) in edges {
            children.entry(parent).or_default().push(digest(child)?);
        }
        let tags = tags
            .into_iter()
            .map(|(name, d, pushed_at)| {
                let name = name.parse().map_err(|_| Error::Internal(format!("corrupt tag in database: {name:?}")))?;
                Ok(TagRow { name, digest: digest(d)?, pushed_at })
            })
            .collect::<Result<_>>()?;
        let manifests = manifests
            .into_iter()
            .map(|(d, created_at, subject)| {
                Ok(ManifestRow {
                    children: children.remove(&d).unwrap_or_default(),
                    digest: digest(d)?,
                    created_at,
                    subject: subject.map(digest).transpose()?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(RepositoryContents { tags, manifests })
    }

    async fn remove_retained(
        &self,
        repo: &RepoName,
        tags: &[(TagRow, Option<Digest>)],
        manifests: &[Digest],
    ) -> Result<(u64, u64)> {
        let (repo, tags, manifests) = (repo.clone(), tags.to_vec(), manifests.to_vec());
        let engine = self.engine();
        self.writing(move |write| async move {
            let mut tx = write.begin().await.map_err(db_err)?;
            let Some(id) = repo_id(&mut *tx, &repo).await? else { return Ok((0, 0)) };
            let rules = rules_in(&mut tx, engine, repo.namespace(), |_| false).await?;
            let lock = lock_clause(engine, RowLock::Update);
            let (mut removed_tags, mut removed_manifests) = (0, 0);
            let mut tags_left: Vec<&(TagRow, Option<Digest>)> =
                tags.iter().filter(|(t, _)| rules.immutable.first_match(t.name.as_str()).is_none()).collect();
            let mut left: Vec<Digest> = manifests;
            // Passes until nothing more goes: parents before children, subjects before their
            // followers.
            loop {
                let mut progress = 0;
                let mut next_tags = Vec::new();
                for entry in tags_left {
                    let (t, subject) = entry;
                    let done = sqlx::query(
                        "DELETE FROM tags WHERE repository_id = $1 AND name = $2 AND manifest_digest = $3
                         AND updated_at = $4 AND NOT EXISTS (SELECT 1 FROM manifests s
                             WHERE s.repository_id = $1 AND s.digest = CAST($5 AS TEXT))",
                    )
                    .bind(id)
                    .bind(t.name.as_str())
                    .bind(t.digest.as_str())
                    .bind(t.pushed_at)
                    .bind(subject.as_ref().map(Digest::as_str).unwrap_or(""))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    if done.rows_affected() > 0 {
                        removed_tags += 1;
                        progress += 1;
                    } else {
                        next_tags.push(entry);
                    }
                }
                tags_left = next_tags;
                let mut next = Vec::new();
                for d in left {
                    // The row is locked first, so a push that tags it or lists it either committed
                    // before (and the checks below, a new statement, see it) or waits for this
                    // transaction (and then records the manifest again).
                    let found: Option<i64> = sqlx::query_scalar(&format!(
                        "SELECT 1 FROM manifests WHERE repository_id = $1 AND digest = $2{lock}"
                    ))
                    .bind(id)
                    .bind(d.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    if found.is_none() {
                        continue;
                    }
                    let done = sqlx::query(
                        "DELETE FROM manifests WHERE repository_id = $1 AND digest = $2
                         AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = $1 AND t.manifest_digest = $2)
                         AND NOT EXISTS (SELECT 1 FROM manifest_references mr WHERE mr.repository_id = $1
                                         AND mr.target_digest = $2 AND mr.kind = 'manifest')
                         AND NOT EXISTS (SELECT 1 FROM manifests s WHERE s.repository_id = $1
                                         AND s.digest = manifests.subject)",
                    )
                    .bind(id)
                    .bind(d.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    if done.rows_affected() > 0 {
                        removed_manifests += 1;
                        progress += 1;
                    } else {
                        next.push(d);
                    }
                }
                left = next;
                if progress == 0 || (left.is_empty() && tags_left.is_empty()) {
                    break;
                }
            }
            tx.commit().await.map_err(db_err)?;
            Ok((removed_tags, removed_manifests))
        })
        .await
    }
}
