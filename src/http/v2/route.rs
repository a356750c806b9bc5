//! The total parser from a `/v2` path to a typed route.
//!
//! Rule: every path under `/v2/` parses to a [`V2Route`] or to an error; names may have any number
//! of segments, so the resource is recognised from the end of the path. The raw (undecoded) path is
//! parsed: a `%` anywhere is refused, since no valid name, tag, digest or upload id contains one.

use crate::domain::{Digest, Error, Reference, RepoName};
use crate::model::UploadId;

#[derive(Debug, Clone, PartialEq)]
pub enum V2Route {
    Base,
    Catalog,
    Tags(RepoName),
    Manifest(RepoName, Reference),
    /// A manifest path whose reference is neither a tag nor a digest: after authentication, a
    /// read answers `MANIFEST_UNKNOWN` (as the conformance suite expects) and a write the reason.
    BadReference(RepoName, String),
    Blob(RepoName, Digest),
    UploadStart(RepoName),
    Upload(RepoName, UploadId),
    Referrers(RepoName, Digest),
}

/// Why a path is not a route.
#[derive(Debug)]
pub enum RouteError {
    /// The path has a route's shape but an invalid part.
    Invalid(Error),
    /// No route has this shape.
    NotFound,
}

impl From<Error> for RouteError {
    fn from(e: Error) -> Self {
        RouteError::Invalid(e)
    }
}

impl V2Route {
    /// The route class, a fixed word for metric labels and the access log.
    pub fn class(&self) -> &'static str {
        match self {
            V2Route::Base => "v2_base",
            V2Route::Catalog => "catalog",
            V2Route::Tags(_) => "tags",
            V2Route::Manifest(..) | V2Route::BadReference(..) => "manifest",
            V2Route::Blob(..) => "blob",
            V2Route::UploadStart(_) | V2Route::Upload(..) => "upload",
            V2Route::Referrers(..) => "referrers",
        }
    }

    /// Parses the raw request path (starting with `/v2`).
    pub fn parse(path: &str) -> Result<V2Route, RouteError> {
        let rest = path.strip_prefix("/v2").ok_or(RouteError::NotFound)?;
        if rest.is_empty() || rest == "/" {
            return Ok(V2Route::Base);
        }
        let rest = rest.strip_prefix('/').ok_or(RouteError::NotFound)?;
        if rest.contains('%') {
            return Err(Error::NameInvalid("percent-encoded characters are not allowed in names".into()).into());
        }
        if rest == "_catalog" {
            return Ok(V2Route::Catalog);
        }
        let name = |n: &str| n.parse::<RepoName>().map_err(RouteError::from);
        if let Some(n) = rest.strip_suffix("/tags/list") {
            return Ok(V2Route::Tags(name(n)?));
        }
        if let Some(n) = rest.strip_suffix("/blobs/uploads/").or_else(|| rest.strip_suffix("/blobs/uploads")) {
            return Ok(V2Route::UploadStart(name(n)?));
        }
        // The remaining shapes end in `/<keyword>/<last>`.
        let (head, last) = rest.rsplit_once('/').ok_or(RouteError::NotFound)?;
        let (head, keyword) = head.rsplit_once('/').ok_or(RouteError::NotFound)?;
        match keyword {
            "manifests" => {
                let repo = name(head)?;
                Ok(match last.parse() {
                    Ok(reference) => V2Route::Manifest(repo, reference),
                    Err(_) => V2Route::BadReference(repo, last.to_owned()),
                })
            }
            "referrers" => Ok(V2Route::Referrers(name(head)?, last.parse()?)),
            "blobs" => Ok(V2Route::Blob(name(head)?, last.parse()?)),
            "uploads" => {
                let n = head.strip_suffix("/blobs").ok_or(RouteError::NotFound)?;
                let id = last.parse().map_err(|_| RouteError::Invalid(Error::UploadUnknown))?;
                Ok(V2Route::Upload(name(n)?, id))
            }
            _ => Err(RouteError::NotFound),
        }
    }

    /// The repository the route acts on, if any.
    pub fn repository(&self) -> Option<&RepoName> {
        match self {
            V2Route::Base | V2Route::Catalog => None,
            V2Route::Tags(r)
            | V2Route::Manifest(r, _)
            | V2Route::BadReference(r, _)
            | V2Route::Blob(r, _)
            | V2Route::UploadStart(r)
            | V2Route::Upload(r, _)
            | V2Route::Referrers(r, _) => Some(r),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_every_shape() {
        assert_eq!(V2Route::parse("/v2/").unwrap(), V2Route::Base);
        assert_eq!(V2Route::parse("/v2").unwrap(), V2Route::Base);
        assert_eq!(V2Route::parse("/v2/_catalog").unwrap(), V2Route::Catalog);
        assert!(matches!(V2Route::parse("/v2/a/b/c/tags/list").unwrap(), V2Route::Tags(n) if n.as_str() == "a/b/c"));
        assert!(matches!(V2Route::parse("/v2/a/manifests/latest").unwrap(), V2Route::Manifest(..)));
        assert!(matches!(V2Route::parse(&format!("/v2/a/blobs/{D}")).unwrap(), V2Route::Blob(..)));
        assert!(matches!(V2Route::parse("/v2/a/blobs/uploads/").unwrap(), V2Route::UploadStart(_)));
        let id = UploadId::new();
        assert!(matches!(V2Route::parse(&format!("/v2/a/blobs/uploads/{id}")).unwrap(), V2Route::Upload(..)));
        assert!(matches!(V2Route::parse(&format!("/v2/a/referrers/{D}")).unwrap(), V2Route::Referrers(..)));
        // A name may contain the keywords as segments.
        assert!(
            matches!(V2Route::parse("/v2/blobs/manifests/manifests/x").unwrap(), V2Route::Manifest(n, _) if n.as_str() == "blobs/manifests")
        );
    }

    #[test]
    fn refuses_bad_paths() {
        let invalid = |p: &str| matches!(V2Route::parse(p), Err(RouteError::Invalid(_)));
        assert!(invalid("/v2/a%2Fb/tags/list"));
        assert!(invalid("/v2/team-a/../team-b/x/manifests/latest"));
        assert!(invalid("/v2/UPPER/tags/list"));
        assert!(matches!(V2Route::parse("/v2/a/manifests/bad:digest"), Ok(V2Route::BadReference(..))));
        assert!(matches!(V2Route::parse("/v2/a/manifests/-tag"), Ok(V2Route::BadReference(..))));
        assert!(invalid("/v2/A/manifests/-tag"), "the name is checked before the reference");
        assert!(invalid("/v2/a/blobs/notadigest"));
        assert!(invalid("/v2/a/blobs/uploads/not-a-uuid"));
        assert!(matches!(V2Route::parse("/v2/a/blobs/uploads/../../etc"), Err(RouteError::NotFound)));
        assert!(matches!(V2Route::parse("/v2/a"), Err(RouteError::NotFound)));
        assert!(matches!(V2Route::parse("/v2/a/unknown/x"), Err(RouteError::NotFound)));
        assert!(matches!(V2Route::parse("/v2x"), Err(RouteError::NotFound)));
    }
}
