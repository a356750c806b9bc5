//! Manifests, their references, tags and referrers.

use async_trait::async_trait;
use sqlx::Row;

use super::{
    db_err, digest, ensure_repo, lifecycle, lock_clause, mark_image_content, placeholders, signature_mode, split_page,
    verdict, RowLock, SqlMetadata, PAGE_SEPARATOR, REFERENCE_ROWS,
};
use crate::metadata::{ManifestKind, ManifestStore, NewManifest, PutManifestRefused, Referrer, StoredManifest};
use crate::model::metrics::{self as m, Timer};
use crate::model::{now, Digest, RepoName, Result, Tag};

/// A manifest with its verdict: `m` the manifest, `s` its scan record (outer-joined).
/// A stored manifest with its verdict and its namespace's signature mode (`$3`: the namespace),
/// read in the one query the gates need.
const STORED: &str = "SELECT m.digest, m.media_type, m.content, m.kind, s.state, s.summary, s.release_until,
    (SELECT p.mode FROM namespace_signature_policies p JOIN namespaces n ON n.id = p.namespace_id
     WHERE n.name = $3) AS signature_mode";

fn stored(row: sqlx::any::AnyRow) -> Result<StoredManifest> {
    let kind: Option<String> = row.get("kind");
    Ok(StoredManifest {
        digest: digest(row.get("digest"))?,
        media_type: row.get("media_type"),
        content: row.get("content"),
        kind: kind.as_deref().and_then(ManifestKind::parse),
        verdict: verdict(&row)?,
        signatures: signature_mode(&row),
    })
}

/// The first of `digests`, in order, that `table` (`repository_blobs` or `manifests`, both keyed by
/// repository and digest) does not hold for the repository.
async fn first_missing(
    tx: &mut sqlx::AnyConnection,
    table: &str,
    repo_id: i64,
    digests: &[Digest],
    lock: &str,
) -> Result<Option<Digest>> {
    // Locks are taken in digest order, the order every locker of these rows uses, so two
    // transactions never wait for each other.
    let mut sorted: Vec<&Digest> = digests.iter().collect();
    sorted.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    sorted.dedup();
    for batch in sorted.chunks(REFERENCE_ROWS) {
        let sql = format!(
            "SELECT digest FROM {table} WHERE repository_id = $1 AND digest IN ({}) ORDER BY digest{lock}",
            placeholders(2, batch.len())
        );
        let mut check = sqlx::query_scalar::<_, String>(&sql).bind(repo_id);
        for d in batch {
            check = check.bind(d.as_str());
        }
        let found: std::collections::HashSet<String> =
            check.fetch_all(&mut *tx).await.map_err(db_err)?.into_iter().collect();
        if let Some(missing) = batch.iter().find(|d| !found.contains(d.as_str())) {
            return Ok(Some((*missing).clone()));
        }
    }
    Ok(None)
}

#[async_trait]
impl ManifestStore for SqlMetadata {
    async fn put_manifest(&self, m: &NewManifest) -> Result<Result<(), PutManifestRefused>> {
        let _timer = Timer::start(m::DB_DURATION, "op", "put_manifest");
        let (m, engine) = (m.clone(), self.engine());
        self.writing(move |write| async move {
            let m = &m;
            let mut tx = write.begin().await.map_err(db_err)?;
            // The namespace's rules first (lock order: see `lifecycle`).
            let rules = lifecycle::rules_in(&mut tx, engine, m.repo.namespace(), |q| {
                q.repositories.is_some() || (m.tag.is_some() && q.tags.is_some())
            })
            .await?;
            lifecycle::check_new_repository(&mut tx, &rules, &m.repo).await?;
            let repo_id = ensure_repo(&mut tx, &m.repo).await?;
            lifecycle::check_manifest(&mut tx, &rules, &m.repo, repo_id, m.tag.as_ref()).await?;
            // The links are locked: the collector cannot remove one this manifest is about to
            // reference until it commits (and then sees the reference). For update, since
            // `mark_image_content` changes them: a share lock upgraded later would deadlock
            // against a concurrent push of the same layers.
            let update = lock_clause(engine, RowLock::Update);
            let share = lock_clause(engine, RowLock::Share);
            if let Some(blob) = first_missing(&mut tx, "repository_blobs", repo_id, &m.blobs, update).await? {
                return Ok(Err(PutManifestRefused::MissingBlob(blob)));
            }
            if let Some(child) = first_missing(&mut tx, "manifests", repo_id, &m.children, share).await? {
                return Ok(Err(PutManifestRefused::MissingManifest(child)));
            }
            let now = now();
            // Same digest means same bytes, so an existing row is already right (a row stored
            // before kinds were recorded learns its kind here); a push again counts as a new
            // creation for retention's `untagged_days`.
            sqlx::query(
                "INSERT INTO manifests (repository_id, digest, media_type, artifact_type, subject, annotations, size, content, created_at, kind)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (repository_id, digest) DO UPDATE SET kind = COALESCE(manifests.kind, excluded.kind),
                 created_at = excluded.created_at",
            )
            .bind(repo_id)
            .bind(m.digest.as_str())
            .bind(&m.media_type)
            .bind(&m.artifact_type)
            .bind(m.subject.as_ref().map(Digest::as_str))
            .bind(&m.annotations)
            .bind(m.content.len() as i64)
            .bind(&m.content)
            .bind(m.pushed_at)
            .bind(m.kind.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let references: Vec<(&Digest, &str)> =
                m.blobs.iter().map(|d| (d, "blob")).chain(m.children.iter().map(|d| (d, "manifest"))).collect();
            for batch in references.chunks(REFERENCE_ROWS) {
                let rows = (0..batch.len()).map(|i| format!("($1, $2, {})", placeholders(3 + 2 * i, 2)));
                let sql = format!(
                    "INSERT INTO manifest_references (repository_id, manifest_digest, target_digest, kind)
                     VALUES {} ON CONFLICT DO NOTHING",
                    rows.collect::<Vec<_>>().join(", ")
                );
                let mut insert = sqlx::query(&sql).bind(repo_id).bind(m.digest.as_str());
                for (target, kind) in batch {
                    insert = insert.bind(target.as_str()).bind(*kind);
                }
                insert.execute(&mut *tx).await.map_err(db_err)?;
            }
            if m.kind == ManifestKind::Image {
                mark_image_content(&mut tx, repo_id, &m.blobs).await?;
            }
            // Every manifest is scanned; a re-push keeps its verdict.
            let namespace = m.repo.namespace();
            sqlx::query(
                "INSERT INTO scans (repository_id, manifest_digest, state, created_at, updated_at, namespace)
                 VALUES ($1, $2, 'pending', $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(repo_id)
            .bind(m.digest.as_str())
            .bind(now)
            .bind(now)
            .bind(namespace)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query("INSERT INTO scan_turns (namespace, served) VALUES ($1, 0) ON CONFLICT (namespace) DO NOTHING")
                .bind(namespace)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            if let Some(tag) = &m.tag {
                // An immutable tag is only ever inserted: of two pushes creating it at once, the
                // second waits for the first and then finds the tag taken (checked again below).
                let immutable = rules.immutable.first_match(tag.as_str()).map(str::to_owned);
                let upsert = if immutable.is_some() {
                    "ON CONFLICT (repository_id, name) DO NOTHING"
                } else {
                    "ON CONFLICT (repository_id, name) DO UPDATE SET manifest_digest = excluded.manifest_digest,
                     updated_at = excluded.updated_at"
                };
                sqlx::query(&format!(
                    "INSERT INTO tags (repository_id, name, manifest_digest, updated_at) VALUES ($1, $2, $3, $4) {upsert}"
                ))
                .bind(repo_id)
                .bind(tag.as_str())
                .bind(m.digest.as_str())
                .bind(m.pushed_at)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                if let Some(pattern) = immutable {
                    lifecycle::check_immutable_holds(&mut tx, &m.repo, repo_id, tag, &m.digest, &pattern).await?;
                }
            }
            // The push's audit record commits with the push, or neither does.
            if let Some(record) = &m.audit {
                super::audit::insert(&mut tx, record).await?;
            }
            tx.commit().await.map_err(db_err)?;
            Ok(Ok(()))
        })
        .await
    }

    async fn manifest_by_tag(&self, repo: &RepoName, tag: &Tag) -> Result<Option<StoredManifest>> {
        let _timer = Timer::start(m::DB_DURATION, "op", "manifest_by_tag");
        sqlx::query(&format!(
            "{STORED} FROM tags t
             JOIN repositories r ON r.id = t.repository_id
             JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.manifest_digest
             LEFT JOIN scans s ON s.repository_id = m.repository_id AND s.manifest_digest = m.digest
             WHERE r.name = $1 AND t.name = $2"
        ))
        .bind(repo.as_str())
        .bind(tag.as_str())
        .bind(repo.namespace())
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)?
        .map(stored)
        .transpose()
    }

    async fn manifest_by_digest(&self, repo: &RepoName, d: &Digest) -> Result<Option<StoredManifest>> {
        let _timer = Timer::start(m::DB_DURATION, "op", "manifest_by_digest");
        sqlx::query(&format!(
            "{STORED} FROM manifests m
             JOIN repositories r ON r.id = m.repository_id
             LEFT JOIN scans s ON s.repository_id = m.repository_id AND s.manifest_digest = m.digest
             WHERE r.name = $1 AND m.digest = $2"
        ))
        .bind(repo.as_str())
        .bind(d.as_str())
        .bind(repo.namespace())
        .fetch_optional(&self.read)
        .await
        .map_err(db_err)?
        .map(stored)
        .transpose()
    }

    async fn delete_manifest(&self, repo: &RepoName, d: &Digest) -> Result<bool> {
        // Tags and references go with it (ON DELETE CASCADE).
        let delete =
            "DELETE FROM manifests WHERE digest = $1 AND repository_id = (SELECT id FROM repositories WHERE name = $2)";
        self.delete_guarded(repo, (Some(d.clone()), None), delete, d.to_string()).await
    }

    async fn reject_manifest(&self, repo: &RepoName, d: &Digest) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM manifests WHERE digest = $1 AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
        )
        .bind(d.as_str())
        .bind(repo.as_str())
        .execute(&self.write)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn delete_tag(&self, repo: &RepoName, tag: &Tag) -> Result<bool> {
        let delete =
            "DELETE FROM tags WHERE name = $1 AND repository_id = (SELECT id FROM repositories WHERE name = $2)";
        self.delete_guarded(repo, (None, Some(tag.clone())), delete, tag.to_string()).await
    }

    async fn list_tags(&self, repo: &RepoName, last: Option<&str>, limit: u32) -> Result<Vec<String>> {
        let joined: Option<String> = sqlx::query_scalar(
            "SELECT string_agg(name, $4 ORDER BY name) FROM (
                 SELECT t.name AS name FROM tags t JOIN repositories r ON r.id = t.repository_id
                 WHERE r.name = $1 AND t.name > $2 ORDER BY t.name LIMIT $3) page",
        )
        .bind(repo.as_str())
        .bind(last.unwrap_or(""))
        .bind(limit as i64)
        .bind(PAGE_SEPARATOR)
        .fetch_one(&self.read)
        .await
        .map_err(db_err)?;
        Ok(split_page(joined))
    }

    async fn referrers(&self, repo: &RepoName, subject: &Digest, artifact_type: Option<&str>) -> Result<Vec<Referrer>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, m.size, m.artifact_type, m.annotations, s.state, s.summary, s.release_until
             FROM manifests m
             JOIN repositories r ON r.id = m.repository_id
             LEFT JOIN scans s ON s.repository_id = m.repository_id AND s.manifest_digest = m.digest
             WHERE r.name = $1 AND m.subject = $2 AND ($3 IS NULL OR m.artifact_type = $4)
             ORDER BY m.digest",
        )
        .bind(repo.as_str())
        .bind(subject.as_str())
        .bind(artifact_type)
        .bind(artifact_type)
        .fetch_all(&self.read)
        .await
        .map_err(db_err)?;
        rows.into_iter()
            .map(|row| {
                Ok(Referrer {
                    digest: digest(row.get("digest"))?,
                    media_type: row.get("media_type"),
                    size: row.get::<i64, _>("size") as u64,
                    artifact_type: row.get("artifact_type"),
                    annotations: row.get("annotations"),
                    verdict: verdict(&row)?,
                })
            })
            .collect()
    }

    async fn manifest_children(&self, repo: &RepoName, parents: &[Digest], limit: u32) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for batch in parents.chunks(REFERENCE_ROWS) {
            let left = i64::from(limit) - out.len() as i64;
            if left <= 0 {
                break;
            }
            let sql = format!(
                "SELECT mr.target_digest FROM manifest_references mr JOIN repositories r ON r.id = mr.repository_id
                 WHERE r.name = $1 AND mr.kind = 'manifest' AND mr.manifest_digest IN ({}) LIMIT ${}",
                placeholders(2, batch.len()),
                batch.len() + 2
            );
            let mut query = sqlx::query_scalar::<_, String>(&sql).bind(repo.as_str());
            for d in batch {
                query = query.bind(d.as_str());
            }
            for d in query.bind(left).fetch_all(&self.read).await.map_err(db_err)? {
                out.push(digest(d)?);
            }
        }
        Ok(out)
    }
}
