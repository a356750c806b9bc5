//! The one function that derives the access a `/v2` request needs from its route.
//!
//! GET/HEAD → pull; POST/PATCH/PUT → push; DELETE → delete; `_catalog` → `registry:catalog:*`;
//! the base endpoint needs any valid token. A mount's pull on the source repository is checked
//! by the upload handler, which falls back to a plain upload when it is missing (as distribution).

use axum::http::Method;

use super::route::V2Route;
use crate::auth::{Action, ActionSet, Scope};

/// What a request needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Needed {
    /// Any valid token (the base endpoint).
    Token,
    Scope(Scope),
}

pub fn required(route: &V2Route, method: &Method) -> Needed {
    let action = match *method {
        Method::GET | Method::HEAD => Action::Pull,
        Method::DELETE => Action::Delete,
        _ => Action::Push,
    };
    match route {
        V2Route::Base => Needed::Token,
        V2Route::Catalog => Needed::Scope(Scope::Catalog),
        other => {
            let repo = other.repository().expect("every other route names a repository").clone();
            Needed::Scope(Scope::Repository(repo, ActionSet::of(&[action])))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_map_to_actions() {
        let route = V2Route::parse("/v2/team/app/manifests/latest").unwrap();
        let repo = || "team/app".parse().unwrap();
        assert_eq!(
            required(&route, &Method::GET),
            Needed::Scope(Scope::Repository(repo(), ActionSet::of(&[Action::Pull])))
        );
        assert_eq!(
            required(&route, &Method::HEAD),
            Needed::Scope(Scope::Repository(repo(), ActionSet::of(&[Action::Pull])))
        );
        assert_eq!(
            required(&route, &Method::PUT),
            Needed::Scope(Scope::Repository(repo(), ActionSet::of(&[Action::Push])))
        );
        assert_eq!(
            required(&route, &Method::DELETE),
            Needed::Scope(Scope::Repository(repo(), ActionSet::of(&[Action::Delete])))
        );
        let upload = V2Route::parse("/v2/team/app/blobs/uploads/").unwrap();
        assert_eq!(
            required(&upload, &Method::POST),
            Needed::Scope(Scope::Repository(repo(), ActionSet::of(&[Action::Push])))
        );
        assert_eq!(required(&V2Route::Catalog, &Method::GET), Needed::Scope(Scope::Catalog));
        assert_eq!(required(&V2Route::Base, &Method::GET), Needed::Token);
    }
}
