//! The one place that decides what a principal may do.
//!
//! Rule: every right is decided by [`decide`] (through `AuthService::authorize`, which gathers
//! the facts it needs): each `/v2` route from the token's typed `access` claims, the catalog
//! filter and scan reports from the account's roles as they are now, the admin API (an
//! administrator, or a namespace's owner) and the quarantine gate's bypass. Tokens are issued
//! from [`allowed`], the same table. No handler compares a role, an admin flag or a claim.
//!
//! Invariant: deny by default. Only the arms of `decide` grant; a need it does not grant is
//! refused with a [`Deny`] that names what was missing.

use std::fmt;

use super::{Action, ActionSet, Principal, Role, Scope};
use crate::model::RepoName;

/// A right a request needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Need<'a> {
    /// Any valid token: the `/v2/` base endpoint.
    Token,
    /// What a `/v2` route needs, granted by the token's `access` claims.
    Scope(&'a Scope),
    /// Actions on a repository, from the account's roles now (the catalog filter, scan reports).
    Repository(&'a RepoName, ActionSet),
    /// An administrator: accounts, namespaces, scan lists, releases and rejections.
    Admin,
    /// An owner of the namespace (or an administrator): its members, robots and scan policy.
    Owner(&'a str),
    /// Any member of the namespace (or an administrator): reading the namespace.
    Member(&'a str),
    /// The caller's own user account (or an administrator): reading it, changing its password.
    Account(&'a str),
    /// A user account of one's own to hold personal tokens (robots and anonymous callers have none).
    PersonalTokens,
    /// Reading past the quarantine gate (every such read is audited).
    GateBypass,
    /// Reading `/metrics`: administrators and the scrape credential.
    Metrics,
}

/// A refusal, naming what was needed and what would grant it (never a secret, and only names
/// the caller asked for), so that a CI log shows why: `push to other/app denied: the developer
/// role (or higher) in namespace other is needed`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    pub needed: String,
    /// What would grant it, for this principal.
    pub remedy: Option<String>,
}

impl fmt::Display for Deny {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} denied", self.needed)?;
        if let Some(remedy) = &self.remedy {
            write!(f, ": {remedy}")?;
        }
        Ok(())
    }
}

/// The least role whose actions include `wanted`.
fn least_role(wanted: ActionSet) -> Role {
    [Role::Reader, Role::Developer, Role::Maintainer, Role::Owner]
        .into_iter()
        .find(|r| r.actions().contains_all(wanted))
        .unwrap_or(Role::Owner)
}

/// What would grant `wanted` on `repo` to `principal`.
fn remedy(principal: &Principal, repo: &RepoName, wanted: ActionSet) -> String {
    let ns = repo.namespace();
    let role = least_role(wanted).as_str();
    match principal {
        Principal::Anonymous => {
            format!("log in first (docker login): without an account only public namespaces can be pulled, and {ns} needs the {role} role (or higher)")
        }
        Principal::Robot(robot) if robot.namespace != ns => {
            format!("robot {} belongs to namespace {} and has no access to {ns}", robot.username, robot.namespace)
        }
        Principal::Robot(robot) => format!(
            "robot {} may {} in {ns}{}",
            robot.username,
            if robot.actions.is_empty() { "nothing".to_owned() } else { robot.actions.names().join(",") },
            robot
                .repositories
                .as_deref()
                .map(|p| format!(
                    " (repositories matching {})",
                    super::robot_patterns(p).collect::<Vec<_>>().join(", ")
                ))
                .unwrap_or_default()
        ),
        Principal::Scraper => "the scrape token reads metrics and nothing else".to_owned(),
        Principal::User { .. } => format!("the {role} role (or higher) in namespace {ns} is needed"),
    }
}

impl Need<'_> {
    fn describe(&self) -> String {
        match self {
            Need::Token => "access".to_owned(),
            Need::Scope(Scope::Repository(repo, actions)) => format!("{} to {repo}", actions.names().join(",")),
            Need::Repository(repo, actions) => format!("{} to {repo}", actions.names().join(",")),
            Need::Scope(Scope::Catalog) => "listing the catalog".to_owned(),
            Need::Admin => "this administrator action".to_owned(),
            Need::Owner(ns) => format!("managing namespace {ns} (owner role needed)"),
            Need::Member(ns) => format!("reading namespace {ns} (membership needed)"),
            Need::Account(name) => format!("the account {name}"),
            Need::PersonalTokens => "personal tokens (a user account needed)".to_owned(),
            Need::GateBypass => "reading quarantined content".to_owned(),
            Need::Metrics => "reading metrics".to_owned(),
        }
    }
}

/// Whether `principal`, holding the token claims `claims`, has `need`. `facts` are those of the
/// namespace the need names (for [`Need::Repository`] and [`Need::Owner`]; default otherwise).
pub fn decide(principal: &Principal, claims: &[Scope], need: &Need<'_>, facts: &NamespaceFacts) -> Result<(), Deny> {
    let granted = match need {
        // A need of no action is a caller's mistake, never a grant.
        Need::Scope(Scope::Repository(_, wanted)) | Need::Repository(_, wanted) if wanted.is_empty() => false,
        Need::Token => true,
        Need::Scope(Scope::Repository(repo, wanted)) => wanted.names().iter().all(|name| {
            claims.iter().any(|c| match c {
                Scope::Repository(r, held) => r == repo && Action::parse(name).is_some_and(|a| held.contains(a)),
                Scope::Catalog => false,
            })
        }),
        Need::Scope(Scope::Catalog) => claims.contains(&Scope::Catalog),
        Need::Repository(repo, wanted) => allowed(principal, repo, facts).contains_all(*wanted),
        Need::Admin | Need::GateBypass => principal.is_admin(),
        Need::Owner(_) => principal.is_admin() || facts.role == Some(Role::Owner),
        Need::Member(_) => principal.is_admin() || facts.role.is_some(),
        Need::Account(name) => {
            principal.is_admin() || matches!(principal, Principal::User { name: own, .. } if own == name)
        }
        Need::PersonalTokens => matches!(principal, Principal::User { .. }),
        Need::Metrics => principal.is_admin() || *principal == Principal::Scraper,
    };
    if granted {
        Ok(())
    } else {
        let remedy = match need {
            Need::Scope(Scope::Repository(repo, wanted)) => Some(remedy(principal, repo, *wanted)),
            Need::Repository(repo, wanted) => Some(remedy(principal, repo, *wanted)),
            Need::Admin | Need::GateBypass => Some("an administrator account is needed".to_owned()),
            Need::Account(_) => Some("only the account itself or an administrator may".to_owned()),
            Need::Metrics => Some("administrators and the scrape token may".to_owned()),
            _ => None,
        };
        Err(Deny { needed: need.describe(), remedy })
    }
}

/// What the database says about the repository's namespace, for this principal.
#[derive(Debug, Clone, Default)]
pub struct NamespaceFacts {
    pub public: bool,
    /// The principal's role there, if it is a user with a membership.
    pub role: Option<Role>,
}

/// Actions `principal` may perform on `repo`. Deny by default: nothing unless a rule grants it.
pub fn allowed(principal: &Principal, repo: &RepoName, ns: &NamespaceFacts) -> ActionSet {
    let public = if ns.public { ActionSet::of(&[Action::Pull]) } else { ActionSet::NONE };
    match principal {
        Principal::User { admin: true, .. } => ActionSet::ALL,
        Principal::User { .. } => public.union(ns.role.map_or(ActionSet::NONE, Role::actions)),
        Principal::Robot(robot) => {
            let inside = repo.namespace() == robot.namespace
                && robot.repositories.as_deref().is_none_or(|patterns| {
                    let path = repo.as_str().strip_prefix(&robot.namespace).unwrap_or("").trim_start_matches('/');
                    // One pattern per line: any of them grants.
                    super::robot_patterns(patterns).any(|pattern| glob(pattern, path))
                });
            if inside {
                public.union(robot.actions)
            } else {
                public
            }
        }
        Principal::Anonymous => public,
        // The scrape credential reads metrics and nothing else, not even public repositories.
        Principal::Scraper => ActionSet::NONE,
    }
}

/// `*` matches any run of characters (including `/`); everything else matches itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Robot;

    fn repo(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    #[test]
    fn deny_by_default_and_roles() {
        let none = NamespaceFacts::default();
        let user = Principal::User { name: "u".into(), admin: false };
        assert!(allowed(&user, &repo("team/app"), &none).is_empty());
        assert!(allowed(&Principal::Anonymous, &repo("team/app"), &none).is_empty());
        let public = NamespaceFacts { public: true, role: None };
        assert_eq!(allowed(&Principal::Anonymous, &repo("team/app"), &public), ActionSet::of(&[Action::Pull]));
        let dev = NamespaceFacts { public: false, role: Some(Role::Developer) };
        assert_eq!(allowed(&user, &repo("team/app"), &dev), ActionSet::of(&[Action::Pull, Action::Push]));
        let admin = Principal::User { name: "a".into(), admin: true };
        assert_eq!(allowed(&admin, &repo("any/thing"), &none), ActionSet::ALL);
    }

    #[test]
    fn one_decision_denies_what_it_does_not_grant() {
        let none = NamespaceFacts::default();
        let user = Principal::User { name: "u".into(), admin: false };
        let admin = Principal::User { name: "a".into(), admin: true };
        let pull = Scope::parse("repository:team/app:pull").unwrap();
        let push = Scope::parse("repository:team/app:push").unwrap();
        let pull_push = Scope::parse("repository:team/app:pull,push").unwrap();
        let other = Scope::parse("repository:team/other:pull").unwrap();
        // Claims grant exactly what they list, for the repository they name; admins get no more
        // from a token than it carries.
        assert!(decide(&user, std::slice::from_ref(&pull), &Need::Scope(&pull), &none).is_ok());
        assert!(decide(&user, std::slice::from_ref(&pull), &Need::Scope(&push), &none).is_err());
        assert!(decide(&user, std::slice::from_ref(&pull), &Need::Scope(&pull_push), &none).is_err());
        assert!(decide(&user, &[pull.clone(), push.clone()], &Need::Scope(&pull_push), &none).is_ok());
        assert!(decide(&user, std::slice::from_ref(&pull), &Need::Scope(&other), &none).is_err());
        assert!(decide(&admin, &[], &Need::Scope(&pull), &none).is_err());
        assert!(decide(&user, std::slice::from_ref(&pull), &Need::Scope(&Scope::Catalog), &none).is_err());
        assert!(decide(&user, &[Scope::Catalog], &Need::Scope(&Scope::Catalog), &none).is_ok());
        // Admin-only needs, and the gate bypass.
        for need in [Need::Admin, Need::GateBypass, Need::Owner("team")] {
            assert!(decide(&admin, &[], &need, &none).is_ok());
            let refused = decide(&user, &[pull.clone(), Scope::Catalog], &need, &none).unwrap_err();
            assert!(refused.to_string().contains(" denied"), "{refused}");
        }
        let owner = NamespaceFacts { public: false, role: Some(Role::Owner) };
        assert!(decide(&user, &[], &Need::Owner("team"), &owner).is_ok());
        let maintainer = NamespaceFacts { public: false, role: Some(Role::Maintainer) };
        assert!(decide(&user, &[], &Need::Owner("team"), &maintainer).is_err());
        // Roles now, for the catalog filter and reports.
        let repo = repo("team/app");
        let reader = NamespaceFacts { public: false, role: Some(Role::Reader) };
        assert!(decide(&user, &[], &Need::Repository(&repo, ActionSet::of(&[Action::Pull])), &reader).is_ok());
        let refused = decide(&user, &[], &Need::Repository(&repo, ActionSet::of(&[Action::Push])), &reader);
        assert_eq!(
            refused.unwrap_err().to_string(),
            "push to team/app denied: the developer role (or higher) in namespace team is needed"
        );
        let delete = decide(&user, &[], &Need::Repository(&repo, ActionSet::of(&[Action::Delete])), &reader);
        assert!(delete.unwrap_err().to_string().contains("the maintainer role"));
        let anonymous =
            decide(&Principal::Anonymous, &[], &Need::Repository(&repo, ActionSet::of(&[Action::Pull])), &none);
        assert!(anonymous.unwrap_err().to_string().contains("log in first"));
        assert!(decide(&Principal::Anonymous, &[], &Need::Token, &none).is_ok());
        // An empty need grants nothing, whatever is held.
        let empty = Scope::Repository(repo.clone(), ActionSet::NONE);
        assert!(decide(&admin, std::slice::from_ref(&empty), &Need::Scope(&empty), &none).is_err());
        assert!(decide(&admin, &[], &Need::Repository(&repo, ActionSet::NONE), &none).is_err());
        // Members, one's own account, personal tokens.
        assert!(decide(&user, &[], &Need::Member("team"), &reader).is_ok());
        assert!(decide(&user, &[], &Need::Member("team"), &none).is_err());
        assert!(decide(&user, &[], &Need::Account("u"), &none).is_ok());
        assert!(decide(&user, &[], &Need::Account("someone"), &none).is_err());
        assert!(decide(&admin, &[], &Need::Account("someone"), &none).is_ok());
        let robot = Principal::Robot(Robot {
            username: "robot$team+ci".into(),
            namespace: "team".into(),
            actions: ActionSet::ALL,
            repositories: None,
        });
        assert!(decide(&robot, &[], &Need::Account("robot$team+ci"), &none).is_err());
        assert!(decide(&robot, &[], &Need::PersonalTokens, &none).is_err());
        assert!(decide(&Principal::Anonymous, &[], &Need::PersonalTokens, &none).is_err());
        assert!(decide(&user, &[], &Need::PersonalTokens, &none).is_ok());
    }

    #[test]
    fn the_scrape_credential_reads_metrics_and_nothing_else() {
        let none = NamespaceFacts::default();
        let public = NamespaceFacts { public: true, role: None };
        let admin = Principal::User { name: "a".into(), admin: true };
        let user = Principal::User { name: "u".into(), admin: false };
        assert!(decide(&Principal::Scraper, &[], &Need::Metrics, &none).is_ok());
        assert!(decide(&admin, &[], &Need::Metrics, &none).is_ok());
        for other in [user, Principal::Anonymous] {
            assert!(decide(&other, &[], &Need::Metrics, &none).is_err());
        }
        let app = repo("team/app");
        let pull = ActionSet::of(&[Action::Pull]);
        for need in [
            Need::Admin,
            Need::GateBypass,
            Need::Owner("team"),
            Need::Member("team"),
            Need::Account("metrics-scraper"),
            Need::PersonalTokens,
            Need::Repository(&app, pull),
        ] {
            assert!(decide(&Principal::Scraper, &[], &need, &public).is_err(), "{need:?}");
        }
        assert_eq!(allowed(&Principal::Scraper, &app, &public), ActionSet::NONE);
    }

    #[test]
    fn robots_stay_in_their_namespace_and_pattern() {
        let robot = Principal::Robot(Robot {
            username: "robot$team+ci".into(),
            namespace: "team".into(),
            actions: ActionSet::of(&[Action::Pull, Action::Push]),
            repositories: Some("apps/*".into()),
        });
        let none = NamespaceFacts::default();
        assert_eq!(allowed(&robot, &repo("team/apps/api"), &none), ActionSet::of(&[Action::Pull, Action::Push]));
        assert!(allowed(&robot, &repo("team/other"), &none).is_empty());
        assert!(allowed(&robot, &repo("team-b/apps/api"), &none).is_empty());
        assert!(allowed(&robot, &repo("teamx/apps/api"), &none).is_empty());
        assert!(glob("a*b*c", "aXbYc") && !glob("a*b", "ab/c") && glob("*", "anything/at/all"));
        let two = Principal::Robot(Robot {
            username: "robot$team+ci".into(),
            namespace: "team".into(),
            actions: ActionSet::of(&[Action::Pull]),
            repositories: Some("apps/*\nbase".into()),
        });
        assert!(!allowed(&two, &repo("team/apps/api"), &none).is_empty());
        assert!(!allowed(&two, &repo("team/base"), &none).is_empty());
        assert!(allowed(&two, &repo("team/based"), &none).is_empty());
    }
}
