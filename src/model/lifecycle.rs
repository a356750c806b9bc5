//! A namespace's lifecycle settings: its quota, its immutable tags and its retention rules, and
//! what it uses. Shared by the metadata (which enforces quotas and immutable tags inside the very
//! transactions that add links and move tags, so no check can be raced) and the domain (which
//! plans retention).
//!
//! Rule: a pattern is a glob over the whole tag (`*` any run of characters, `?` one, `[a-z]` a
//! class); patterns are validated when they are set, so a stored pattern always compiles.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

/// At most this many patterns in one list; each at most [`MAX_PATTERN_LEN`] characters.
pub const MAX_PATTERNS: usize = 100;
pub const MAX_PATTERN_LEN: usize = 256;

/// A list of tag patterns, compiled.
#[derive(Debug, Clone, Default)]
pub struct TagPatterns {
    patterns: Vec<String>,
    set: GlobSet,
}

impl TagPatterns {
    /// Compiles `patterns`; the error names the pattern that is not valid and why.
    pub fn new(patterns: Vec<String>) -> Result<Self, String> {
        if patterns.len() > MAX_PATTERNS {
            return Err(format!("at most {MAX_PATTERNS} patterns are allowed, {} given", patterns.len()));
        }
        let mut set = GlobSetBuilder::new();
        for p in &patterns {
            if p.is_empty() || p.len() > MAX_PATTERN_LEN {
                return Err(format!("a pattern must have 1 to {MAX_PATTERN_LEN} characters"));
            }
            if p.chars().any(|c| c.is_control() || c == '/' || c == '\\' || c == '{' || c == '}') {
                return Err(format!("pattern {p:?} may hold tag characters, *, ? and [...] only"));
            }
            let glob = GlobBuilder::new(p)
                .literal_separator(false)
                .backslash_escape(false)
                .build()
                .map_err(|e| format!("pattern {p:?} is not valid: {}", e.kind()))?;
            set.add(glob);
        }
        let set = set.build().map_err(|e| format!("patterns are not valid: {e}"))?;
        Ok(TagPatterns { patterns, set })
    }

    /// The first pattern (in the order given) that matches `tag`.
    pub fn first_match(&self, tag: &str) -> Option<&str> {
        self.set.matches(tag).into_iter().min().map(|i| self.patterns[i].as_str())
    }

    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }
}

impl Serialize for TagPatterns {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.patterns.serialize(s)
    }
}

impl<'de> Deserialize<'de> for TagPatterns {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        TagPatterns::new(Vec::<String>::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A namespace's limits; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Bytes of distinct blobs linked in the namespace's repositories.
    #[serde(default)]
    pub bytes: Option<u64>,
    #[serde(default)]
    pub repositories: Option<u64>,
    #[serde(default)]
    pub tags: Option<u64>,
}

/// What a namespace uses. `bytes` and `blobs` count each blob once however many of its
/// repositories link it (a blob shared with another namespace counts in each).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub bytes: u64,
    pub blobs: u64,
    pub repositories: u64,
    pub tags: u64,
    pub manifests: u64,
    pub quarantined: u64,
}

/// Why a link, a repository or a tag was refused by the namespace's quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OverQuota {
    Bytes { used: u64, adding: u64, quota: u64 },
    Repositories { used: u64, quota: u64 },
    Tags { used: u64, quota: u64 },
}

impl OverQuota {
    /// The message a client shows: what the namespace uses and what it may.
    pub fn message(&self, namespace: &str) -> String {
        match self {
            OverQuota::Bytes { used, adding: 0, quota } => format!(
                "quota exceeded: namespace {namespace} uses {} of {}; no new manifest is accepted until it is under",
                human_bytes(*used),
                human_bytes(*quota)
            ),
            OverQuota::Bytes { used, adding, quota } => format!(
                "quota exceeded: namespace {namespace} uses {} of {} and this blob needs {} more",
                human_bytes(*used),
                human_bytes(*quota),
                human_bytes(*adding)
            ),
            OverQuota::Repositories { used, quota } => format!(
                "quota exceeded: namespace {namespace} has {used} of {quota} repositories; a new one is refused"
            ),
            OverQuota::Tags { used, quota } => {
                format!("quota exceeded: namespace {namespace} has {used} of {quota} tags; a new tag is refused")
            }
        }
    }
}

/// A tag that an immutability rule protects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImmutableTag {
    pub tag: String,
    pub pattern: String,
}

impl ImmutableTag {
    pub fn message(&self, repo: &str, what: &str) -> String {
        format!(
            "tag {repo}:{} is immutable (namespace rule {:?}); {what} is refused. Push a new tag instead",
            self.tag, self.pattern
        )
    }
}

/// `1536` → `1.5 KiB`: binary units with one decimal, bytes below 1 KiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// "Keep the `count` most recently pushed tags matching `tags`" (per repository).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeepLast {
    pub tags: String,
    pub count: u32,
}

/// A namespace's retention rules, applied to each of its repositories. A tag is kept when any
/// tag rule keeps it (or it is immutable); when the policy has no tag rule, no tag is removed.
/// A manifest is kept while a kept tag reaches it (directly or through an index), while its
/// subject is kept (referrers: signatures, SBOMs, attestations), or while it is untagged but
/// younger than `untagged_days` (or that rule is absent).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Keep the N most recently pushed tags matching a pattern.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_last: Vec<KeepLast>,
    /// Keep tags pushed within this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_days: Option<u32>,
    /// Keep tags matching these patterns, always.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub always_keep: Option<TagPatterns>,
    /// Remove manifests no tag reaches once they are older than this many days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untagged_days: Option<u32>,
}

/// At most this many days in a rule (100 years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

impl Retention {
    /// Checks the rules' values; the error names the rule.
    pub fn validate(&self) -> Result<(), String> {
        if self.keep_last.len() > MAX_PATTERNS {
            return Err(format!("at most {MAX_PATTERNS} keep_last rules are allowed"));
        }
        for (i, rule) in self.keep_last.iter().enumerate() {
            TagPatterns::new(vec![rule.tags.clone()]).map_err(|e| format!("keep_last[{i}].tags: {e}"))?;
            if rule.count == 0 {
                return Err(format!("keep_last[{i}].count must be at least 1 (a rule keeping nothing keeps nothing)"));
            }
        }
        if self.always_keep.as_ref().is_some_and(TagPatterns::is_empty) {
            return Err("always_keep must hold at least one pattern (an empty list keeps nothing, and every other tag would go)".into());
        }
        for (name, days) in [("keep_days", self.keep_days), ("untagged_days", self.untagged_days)] {
            if days.is_some_and(|d| d == 0 || d > MAX_RETENTION_DAYS) {
                return Err(format!("{name} must be between 1 and {MAX_RETENTION_DAYS}"));
            }
        }
        Ok(())
    }

    /// Whether any rule decides about tags (without one, retention never removes a tag).
    pub fn has_tag_rules(&self) -> bool {
        !self.keep_last.is_empty() || self.keep_days.is_some() || self.always_keep.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_tags() {
        let p = TagPatterns::new(vec!["v*".into(), "release-?".into(), "[0-9]*".into()]).unwrap();
        assert_eq!(p.first_match("v1.2.3"), Some("v*"));
        assert_eq!(p.first_match("release-1"), Some("release-?"));
        assert_eq!(p.first_match("release-10"), None);
        assert_eq!(p.first_match("2024.1"), Some("[0-9]*"));
        assert_eq!(p.first_match("latest"), None);
        assert_eq!(p.first_match("av1"), None, "a pattern matches the whole tag");
        assert_eq!(TagPatterns::new(vec!["*".into()]).unwrap().first_match("anything.at_all-1"), Some("*"));
    }

    #[test]
    fn bad_patterns_are_refused_by_name() {
        for bad in ["", "a/b", "v[", "{a,b}", "a\\b"] {
            let e = TagPatterns::new(vec![bad.into()]).unwrap_err();
            assert!(e.contains("pattern"), "{bad:?}: {e}");
        }
        assert!(TagPatterns::new(vec!["x".into(); MAX_PATTERNS + 1]).is_err());
        assert!(serde_json::from_str::<TagPatterns>(r#"["v["]"#).is_err());
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 * 1024 * 1024 * 1024), "10.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn retention_rules_are_checked() {
        let ok: Retention =
            serde_json::from_str(r#"{"keep_last":[{"tags":"v*","count":3}],"untagged_days":7}"#).unwrap();
        assert!(ok.validate().is_ok() && ok.has_tag_rules());
        let zero: Retention = serde_json::from_str(r#"{"keep_last":[{"tags":"v*","count":0}]}"#).unwrap();
        assert!(zero.validate().unwrap_err().contains("keep_last[0].count"));
        let days: Retention = serde_json::from_str(r#"{"keep_days":0}"#).unwrap();
        assert!(days.validate().unwrap_err().contains("keep_days"));
        assert!(serde_json::from_str::<Retention>(r#"{"keep":1}"#).is_err(), "unknown fields are refused");
        let empty: Retention = serde_json::from_str(r#"{"always_keep":[]}"#).unwrap();
        assert!(empty.validate().unwrap_err().contains("always_keep"));
        assert!(!Retention { untagged_days: Some(1), ..Default::default() }.has_tag_rules());
    }
}
