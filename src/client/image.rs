//! Image references as people type them: `[host[:port]/]repository[:tag|@digest]`.

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The registry host (`registry.example.com:5000`), when the reference names one.
    pub host: Option<String>,
    pub repository: String,
    /// A tag or a `sha256:` digest; `latest` when neither is given.
    pub reference: String,
}

impl ImageRef {
    pub fn is_digest(&self) -> bool {
        self.reference.contains(':')
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sep = if self.is_digest() { '@' } else { ':' };
        write!(f, "{}{sep}{}", self.repository, self.reference)
    }
}

impl std::str::FromStr for ImageRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            |why: &str| format!("{s:?} is not an image reference ({why}); write [host:port/]repository[:tag|@digest]");
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (s, None),
        };
        let (host, path) = match rest.split_once('/') {
            // docker's rule: the first component is a host when it has a dot or a port, or is localhost.
            Some((first, path)) if first.contains('.') || first.contains(':') || first == "localhost" => {
                (Some(first.to_owned()), path)
            }
            _ => (None, rest),
        };
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag)),
            _ => (path, None),
        };
        if repository.is_empty() {
            return Err(bad("no repository"));
        }
        // Names, tags and digests are checked as the registry checks them, so that nothing else
        // reaches a request path.
        repository.parse::<crate::model::RepoName>().map_err(|e| bad(&e.to_string()))?;
        let reference = match (digest, tag) {
            (Some(d), _) => {
                d.parse::<crate::model::Digest>().map_err(|e| bad(&e.to_string()))?;
                d.to_owned()
            }
            (None, Some("")) => return Err(bad("an empty tag")),
            (None, Some(t)) => {
                t.parse::<crate::model::Tag>().map_err(|e| bad(&e.to_string()))?;
                t.to_owned()
            }
            (None, None) => "latest".to_owned(),
        };
        Ok(ImageRef { host, repository: repository.to_owned(), reference })
    }
}

#[cfg(test)]
mod tests {
    use super::ImageRef;

    fn parse(s: &str) -> ImageRef {
        s.parse().unwrap()
    }

    #[test]
    fn references_as_docker_writes_them() {
        let r = parse("127.0.0.1:5000/team/app:1.2");
        assert_eq!(
            (r.host.as_deref(), r.repository.as_str(), r.reference.as_str()),
            (Some("127.0.0.1:5000"), "team/app", "1.2")
        );
        let r = parse("team/app");
        assert_eq!((r.host, r.reference.as_str()), (None, "latest"));
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = parse(&format!("registry.example.com/team/app@{digest}"));
        assert_eq!((r.repository.as_str(), r.reference.as_str()), ("team/app", digest.as_str()));
        assert!(r.is_digest());
        let r = parse("localhost/team/app:v1");
        assert_eq!(r.host.as_deref(), Some("localhost"));
        assert!("".parse::<ImageRef>().is_err());
        assert!("team/app:".parse::<ImageRef>().is_err());
        assert!("team/app@md5:x".parse::<ImageRef>().is_err());
        assert!("team/../admin:1".parse::<ImageRef>().is_err());
        assert!("team/app:a?b".parse::<ImageRef>().is_err());
    }
}
