//! Repository names, tags and manifest references.
//!
//! Rule: these newtypes can only be built through their parsers, which implement the grammar of the
//! OCI distribution spec exactly; anything else (`..`, empty segments, upper case, over-long names)
//! is refused, so a name can never escape into a storage path or a SQL pattern.

use std::fmt;
use std::str::FromStr;

use super::digest::{truncate, Digest};
use super::Error;

/// Longest repository name accepted (distribution's limit, which leaves room for a host name).
pub const MAX_NAME_LEN: usize = 255;

/// A repository name such as `team-a/app/api`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The first path segment: the namespace the repository belongs to.
    pub fn namespace(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-", followed by an alphanumeric.
        let start = i;
        match b[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < b.len() && b[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < b.len() && b[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        if i == start || i >= b.len() || !alnum(b[i]) {
            return false;
        }
    }
    true
}

impl FromStr for RepoName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.is_empty() || s.len() > MAX_NAME_LEN {
            return Err(Error::NameInvalid(format!("repository name must be 1 to {MAX_NAME_LEN} characters")));
        }
        if !s.split('/').all(is_path_component) {
            return Err(Error::NameInvalid(format!("invalid repository name {:?}", truncate(s))));
        }
        Ok(RepoName(s.to_owned()))
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Tag {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let b = s.as_bytes();
        let ok = !b.is_empty()
            && b.len() <= 128
            && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
            && b[1..].iter().all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        if ok {
            Ok(Tag(s.to_owned()))
        } else {
            Err(Error::TagInvalid(format!("invalid tag {:?}", truncate(s))))
        }
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest URL points at: a tag or a digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    Tag(Tag),
    Digest(Digest),
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.contains(':') {
            Ok(Reference::Digest(s.parse()?))
        } else {
            Ok(Reference::Tag(s.parse()?))
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_grammar() {
        for ok in ["a", "library/alpine", "a/b/c/d/e/f/g/h/i/j", "my.app", "a__b", "a---b", "x_y/z-1.2"] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok} refused");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        for bad in [
            "",
            "A",
            "a/",
            "/a",
            "a//b",
            "..",
            "a/../b",
            "a/./b",
            "-a",
            "a-",
            "a___b",
            "a._b",
            "a%2Fb",
            "a b",
            "ä",
            long.as_str(),
        ] {
            assert!(bad.parse::<RepoName>().is_err(), "{bad} accepted");
        }
        assert_eq!("team-a/app/api".parse::<RepoName>().unwrap().namespace(), "team-a");
    }

    #[test]
    fn tag_and_reference_grammar() {
        assert!("v1.0_rc-1".parse::<Tag>().is_ok());
        assert!("_x".parse::<Tag>().is_ok());
        for bad in ["", ".x", "-x", "a/b", "a:b", &"t".repeat(129)] {
            assert!(bad.parse::<Tag>().is_err(), "{bad} accepted");
        }
        assert!(matches!("latest".parse::<Reference>(), Ok(Reference::Tag(_))));
        assert!(matches!("sha256:zz".parse::<Reference>(), Err(Error::DigestInvalid(_))));
    }
}

/// The SQL `LIKE` pattern (with `ESCAPE '\'`) that finds `search` anywhere in a lower-cased
/// name: the wildcards `%` and `_` in it match themselves. No search: every name.
pub fn contains_pattern(search: Option<&str>) -> String {
    let mut pattern = String::from("%");
    for c in search.unwrap_or("").to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    if pattern.len() > 1 {
        pattern.push('%');
    }
    pattern
}

#[cfg(test)]
mod search_tests {
    #[test]
    fn searches_match_literally() {
        assert_eq!(super::contains_pattern(None), "%");
        assert_eq!(super::contains_pattern(Some("")), "%");
        assert_eq!(super::contains_pattern(Some("App")), "%app%");
        assert_eq!(super::contains_pattern(Some("a_b%c\\")), "%a\\_b\\%c\\\\%");
    }
}
