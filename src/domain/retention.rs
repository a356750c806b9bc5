//! Retention: which tags and manifests a namespace's rules remove, and removing them.
//!
//! **The rules** ([`Retention`], per namespace, applied to each repository):
//! - With any tag rule set, a tag stays when a rule keeps it: it is among the `count` most recently
//!   pushed tags matching a `keep_last` pattern, or was pushed within `keep_days`, or matches
//!   `always_keep`. Without a tag rule no tag is removed.
//! - An immutable tag always stays.
//! - A cosign-style tag (`sha256-<hex>.sig`, `.att`, `.sbom`) whose image is in the repository
//!   follows that image: it stays while the image stays.
//! - A manifest stays while a kept tag reaches it (directly or through an index that lists it),
//!   while its `subject` stays (signatures, SBOMs and attestations go with their image, never
//!   before), or while it is untagged and younger than `untagged_days` (or that rule is absent).
//!   A manifest that only removed tags reached goes with them.
//!
//! **The invariant.** Retention removes only what the plan names, and a removal re-checks its
//! reason on the locked rows: a tag goes only if it still points where it did and was not pushed
//! since; a manifest only if no tag and no manifest reaches it any more. So a push racing a
//! retention run is never undone. A dry run computes the same plan and removes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;

use super::{Digest, Registry, Result};
use crate::metadata::lifecycle::{RepositoryContents, TagRow};
use crate::model::audit::NewAudit;
use crate::model::{Retention, TagPatterns};

const DAY: i64 = 86_400;

/// A tag the rules remove, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RemovedTag {
    pub repository: String,
    pub tag: String,
    pub digest: String,
    pub reason: String,
}

/// A manifest the rules remove, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RemovedManifest {
    pub repository: String,
    pub digest: String,
    pub reason: String,
}

/// What retention removed in a namespace (or, in a dry run, would remove).
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct RetentionReport {
    pub namespace: String,
    pub dry_run: bool,
    pub tags: Vec<RemovedTag>,
    pub manifests: Vec<RemovedManifest>,
    /// How many of `tags` and `manifests` were removed (a push racing the run keeps its own).
    pub tags_removed: u64,
    pub manifests_removed: u64,
}

/// The plan for one repository: tags and manifests to remove, each with its reason, manifests
/// ordered parents first.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub tags: Vec<(TagRow, String)>,
    pub manifests: Vec<(Digest, String)>,
}

/// The image a cosign-style tag (`sha256-<hex>.<suffix>`) belongs to.
fn cosign_subject(tag: &str) -> Option<Digest> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, suffix) = rest.split_once('.')?;
    if suffix.is_empty() || hex.len() != 64 {
        return None;
    }
    format!("sha256:{hex}").parse().ok()
}

/// Why no rule keeps `tag` (`keep` holds each `keep_last` rule's compiled pattern).
fn unkept_reason(rules: &Retention, keep: &[Option<TagPatterns>], tag: &TagRow, now: i64) -> String {
    let mut why = Vec::new();
    for (i, (rule, pattern)) in rules.keep_last.iter().zip(keep).enumerate() {
        if pattern.as_ref().is_some_and(|p| p.first_match(tag.name.as_str()).is_some()) {
            why.push(format!(
                "beyond the {} most recently pushed tags matching {:?} (keep_last[{i}])",
                rule.count, rule.tags
            ));
        }
    }
    if let Some(days) = rules.keep_days {
        why.push(format!("pushed {} days ago, keep_days is {days}", (now - tag.pushed_at).max(0) / DAY));
    }
    if why.is_empty() {
        why.push("no keep rule matches it".to_string());
    }
    why.join("; ")
}

/// What `rules` remove from a repository holding `contents` at `now`. Pure: the dry run and
/// the run share it.
pub fn plan(contents: &RepositoryContents, rules: &Retention, immutable: &TagPatterns, now: i64) -> Plan {
    let manifests: HashMap<&Digest, &crate::metadata::lifecycle::ManifestRow> =
        contents.manifests.iter().map(|m| (&m.digest, m)).collect();
    // Tags that follow an image in this repository, and ordinary tags.
    let (follower_tags, ordinary): (Vec<&TagRow>, Vec<&TagRow>) =
        contents.tags.iter().partition(|t| cosign_subject(t.name.as_str()).is_some_and(|s| manifests.contains_key(&s)));

    // 1. Ordinary tags: kept when immutable or a rule keeps them.
    let mut kept_tags: BTreeSet<&str> = BTreeSet::new();
    let keep_patterns: Vec<Option<TagPatterns>> =
        rules.keep_last.iter().map(|r| TagPatterns::new(vec![r.tags.clone()]).ok()).collect();
    for t in &ordinary {
        let name = t.name.as_str();
        let keep = !rules.has_tag_rules()
            || immutable.first_match(name).is_some()
            || rules.always_keep.as_ref().is_some_and(|p| p.first_match(name).is_some())
            || rules.keep_days.is_some_and(|d| t.pushed_at >= now - i64::from(d) * DAY);
        if keep {
            kept_tags.insert(name);
        }
    }
    for (rule, pattern) in rules.keep_last.iter().zip(&keep_patterns) {
        let Some(pattern) = pattern else { continue };
        let mut matching: Vec<&&TagRow> =
            ordinary.iter().filter(|t| pattern.first_match(t.name.as_str()).is_some()).collect();
        // Most recently pushed first; the name breaks ties so the plan is the same every time.
        matching.sort_by(|a, b| b.pushed_at.cmp(&a.pushed_at).then_with(|| a.name.as_str().cmp(b.name.as_str())));
        kept_tags.extend(matching.iter().take(rule.count as usize).map(|t| t.name.as_str()));
    }

    // 2. What every tag reached before, and what stays now.
    let reach = |roots: Vec<Digest>| -> BTreeSet<Digest> {
        let mut seen = BTreeSet::new();
        let mut stack = roots;
        while let Some(d) = stack.pop() {
            if let Some(m) = manifests.get(&d) {
                if seen.insert(d.clone()) {
                    stack.extend(m.children.iter().cloned());
                }
            }
        }
        seen
    };
    let reached_before = reach(contents.tags.iter().map(|t| t.digest.clone()).collect());
    let untagged_cutoff = rules.untagged_days.map(|d| now - i64::from(d) * DAY);
    let has_subject =
        |m: &crate::metadata::lifecycle::ManifestRow| m.subject.as_ref().is_some_and(|s| manifests.contains_key(s));
    let mut roots: Vec<Digest> =
        ordinary.iter().filter(|t| kept_tags.contains(t.name.as_str())).map(|t| t.digest.clone()).collect();
    roots.extend(
        contents
            .manifests
            .iter()
            .filter(|m| !reached_before.contains(&m.digest) && !has_subject(m))
            .filter(|m| untagged_cutoff.is_none_or(|cutoff| m.created_at >= cutoff))
            .map(|m| m.digest.clone()),
    );
    // Followers (referrers by `subject`, cosign tags by name) join while what they follow stays;
    // each pass adds only manifests of this repository not kept yet, so it ends.
    let mut kept = reach(roots);
    let followers: Vec<(&Digest, Digest)> = contents
        .manifests
        .iter()
        .filter_map(|m| m.subject.clone().map(|s| (&m.digest, s)))
        .chain(follower_tags.iter().filter_map(|t| cosign_subject(t.name.as_str()).map(|s| (&t.digest, s))))
        .filter(|(d, _)| manifests.contains_key(d))
        .collect();
    loop {
        let more: Vec<Digest> = followers
            .iter()
            .filter(|(d, subject)| !kept.contains(*d) && kept.contains(subject))
            .map(|(d, _)| (*d).clone())
            .collect();
        let before = kept.len();
        kept.extend(reach(more));
        if kept.len() == before {
            break;
        }
    }

    let mut plan = Plan::default();
    for t in &ordinary {
        if !kept_tags.contains(t.name.as_str()) {
            plan.tags.push(((*t).clone(), unkept_reason(rules, &keep_patterns, t, now)));
        }
    }
    for t in &follower_tags {
        let subject = cosign_subject(t.name.as_str()).expect("partitioned on it");
        if !kept.contains(&subject) && immutable.first_match(t.name.as_str()).is_none() {
            plan.tags.push(((*t).clone(), format!("follows {subject}, which is removed")));
        }
    }
    // A manifest that keeps a tag (an immutable one) stays whatever the rules say.
    let tagged_kept: BTreeSet<&Digest> =
        contents.tags.iter().filter(|t| !plan.tags.iter().any(|(r, _)| r.name == t.name)).map(|t| &t.digest).collect();
    let mut removed: BTreeMap<&Digest, String> = BTreeMap::new();
    for m in &contents.manifests {
        if kept.contains(&m.digest) || tagged_kept.contains(&m.digest) {
            continue;
        }
        let reason = match &m.subject {
            Some(s) if manifests.contains_key(s) => format!("its subject {s} is removed"),
            _ if reached_before.contains(&m.digest) => "only removed tags reached it".to_string(),
            _ => format!("untagged and older than {} days (untagged_days)", rules.untagged_days.unwrap_or_default()),
        };
        removed.insert(&m.digest, reason);
    }
    // Parents first: an index before the manifests it lists (a depth-first post-order, reversed;
    // iterative, as index chains may be deep).
    let mut order: Vec<&Digest> = Vec::new();
    let mut placed: BTreeSet<&Digest> = BTreeSet::new();
    for root in removed.keys() {
        let mut stack: Vec<(&Digest, bool)> = vec![(root, false)];
        while let Some((d, expanded)) = stack.pop() {
            if expanded {
                order.push(d);
                continue;
            }
            if !placed.insert(d) {
                continue;
            }
            stack.push((d, true));
            if let Some(m) = manifests.get(d) {
                for c in &m.children {
                    if let Some((key, _)) = removed.get_key_value(c) {
                        if !placed.contains(key) {
                            stack.push((key, false));
                        }
                    }
                }
            }
        }
    }
    order.reverse();
    plan.manifests = order.into_iter().map(|d| (d.clone(), removed[d].clone())).collect();
    plan
}

impl Registry {
    /// Applies (or, with `dry_run`, plans) `rules` — the namespace's stored rules when `None` —
    /// to every repository of `namespace`. Each removal is logged with its reason.
    pub async fn apply_retention(
        &self,
        namespace: &str,
        rules: Option<&Retention>,
        dry_run: bool,
    ) -> Result<RetentionReport> {
        let stored = self.meta.namespace_rules(namespace).await?;
        let mut report = RetentionReport { namespace: namespace.to_string(), dry_run, ..Default::default() };
        let Some(rules) = rules.or(stored.retention.as_ref()) else { return Ok(report) };
        let now = self.clock.now();
        for repo in self.meta.namespace_repositories(namespace).await? {
            let contents = self.meta.repository_contents(&repo).await?;
            // CPU work proportional to the repository's size: off the async workers.
            let (r, immutable) = (rules.clone(), stored.immutable.clone());
            let plan = tokio::task::spawn_blocking(move || plan(&contents, &r, &immutable, now))
                .await
                .map_err(|e| crate::model::Error::Internal(format!("retention plan: {e}")))?;
            if plan.tags.is_empty() && plan.manifests.is_empty() {
                continue;
            }
            if !dry_run {
                let tags: Vec<(TagRow, Option<Digest>)> =
                    plan.tags.iter().map(|(t, _)| (t.clone(), cosign_subject(t.name.as_str()))).collect();
                let manifests: Vec<Digest> = plan.manifests.iter().map(|(d, _)| d.clone()).collect();
                let (t, m) = self.meta.remove_retained(&repo, &tags, &manifests).await?;
                report.tags_removed += t;
                report.manifests_removed += m;
            }
            for (t, reason) in plan.tags {
                if !dry_run {
                    tracing::info!(target: "audit", repository = ?repo.as_str(), tag = ?t.name.as_str(),
                        digest = %t.digest, reason = ?reason, "retention removed a tag");
                    let record = NewAudit::new("retention.remove", format!("{repo}:{}", t.name))
                        .actor("system:retention")
                        .namespace(repo.namespace())
                        .detail("digest", t.digest.as_str())
                        .detail("rule", reason.clone());
                    self.audit(record).await;
                }
                report.tags.push(RemovedTag {
                    repository: repo.to_string(),
                    tag: t.name.to_string(),
                    digest: t.digest.to_string(),
                    reason,
                });
            }
            for (d, reason) in plan.manifests {
                if !dry_run {
                    tracing::info!(target: "audit", repository = ?repo.as_str(), digest = %d, reason = ?reason,
                        "retention removed a manifest");
                    let record = NewAudit::new("retention.remove", format!("{repo}@{d}"))
                        .actor("system:retention")
                        .namespace(repo.namespace())
                        .detail("rule", reason.clone());
                    self.audit(record).await;
                }
                report.manifests.push(RemovedManifest { repository: repo.to_string(), digest: d.to_string(), reason });
            }
        }
        if dry_run {
            report.tags_removed = report.tags.len() as u64;
            report.manifests_removed = report.manifests.len() as u64;
        }
        Ok(report)
    }

    /// Every namespace's stored rules, applied by the collector holding the `gc` lease as `holder`
    /// (renewed between namespaces), or planned (`None`: a dry run). A namespace whose rules fail
    /// is logged and skipped, so one cannot stop every collection. Answers the manifests removed.
    pub(super) async fn apply_all_retention(&self, holder: Option<&str>) -> Result<u64> {
        let mut removed = 0;
        for (namespace, rules) in self.meta.retention_policies().await? {
            match self.apply_retention(&namespace, Some(&rules), holder.is_none()).await {
                Ok(report) => removed += report.manifests_removed,
                Err(e) => {
                    tracing::error!(namespace = ?namespace, error = %e, "retention failed; the collection goes on")
                }
            }
            if let Some(holder) = holder {
                self.renew(holder).await?;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::lifecycle::ManifestRow;

    fn d(n: usize) -> Digest {
        Digest::of(crate::model::Algorithm::Sha256, n.to_string().as_bytes())
    }

    fn tag(name: &str, digest: &Digest, pushed_at: i64) -> TagRow {
        TagRow { name: name.parse().unwrap(), digest: digest.clone(), pushed_at }
    }

    fn manifest(digest: Digest, subject: Option<Digest>, children: Vec<Digest>) -> ManifestRow {
        ManifestRow { digest, created_at: 0, subject, children }
    }

    #[test]
    fn a_follower_whose_manifest_vanished_between_reads_ends_the_plan() {
        // A cosign-style tag read before its manifest was deleted: the tag names a digest the
        // manifest read no longer has. The plan must end (it once looped forever here).
        let image = d(1);
        let sig_tag = format!("sha256-{}.sig", image.hex());
        let contents = RepositoryContents {
            tags: vec![tag("v1", &image, 10), tag(&sig_tag, &d(2), 10)],
            manifests: vec![manifest(image.clone(), None, vec![])],
        };
        let rules = Retention { keep_days: Some(1), ..Default::default() };
        let plan = plan(&contents, &rules, &TagPatterns::default(), 10);
        assert!(plan.manifests.is_empty(), "{plan:?}");
    }

    #[test]
    fn a_deep_chain_of_indexes_is_ordered_parents_first_without_recursion() {
        // 20,000 indexes, each listing the next: removed top to bottom.
        let n = 20_000;
        let manifests: Vec<ManifestRow> =
            (0..n).map(|i| manifest(d(i), None, if i + 1 < n { vec![d(i + 1)] } else { vec![] })).collect();
        let contents = RepositoryContents { tags: vec![tag("old", &d(0), 0)], manifests };
        let rules = Retention { keep_days: Some(1), ..Default::default() };
        let plan = plan(&contents, &rules, &TagPatterns::default(), 10 * DAY);
        assert_eq!(plan.tags.len(), 1);
        let order: Vec<Digest> = plan.manifests.iter().map(|(m, _)| m.clone()).collect();
        assert_eq!(order, (0..n).map(d).collect::<Vec<_>>());
    }

    #[test]
    fn immutable_and_always_kept_tags_stay_and_keep_their_images() {
        let (a, b, c) = (d(1), d(2), d(3));
        let contents = RepositoryContents {
            tags: vec![tag("release-1", &a, 0), tag("latest", &b, 0), tag("old", &c, 0)],
            manifests: vec![
                manifest(a.clone(), None, vec![]),
                manifest(b.clone(), None, vec![]),
                manifest(c.clone(), None, vec![]),
            ],
        };
        let rules =
            Retention { always_keep: Some(TagPatterns::new(vec!["latest".into()]).unwrap()), ..Default::default() };
        let immutable = TagPatterns::new(vec!["release-*".into()]).unwrap();
        let plan = plan(&contents, &rules, &immutable, 100 * DAY);
        assert_eq!(plan.tags.iter().map(|(t, _)| t.name.as_str()).collect::<Vec<_>>(), ["old"]);
        assert_eq!(plan.manifests.iter().map(|(m, _)| m.clone()).collect::<Vec<_>>(), [c]);
    }
}
