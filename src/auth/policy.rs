//! The one place that decides what a principal may do on a repository.

use super::{Action, ActionSet, Principal, Role};
use crate::model::RepoName;

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
                && robot.repositories.as_deref().is_none_or(|pattern| {
                    let path = repo.as_str().strip_prefix(&robot.namespace).unwrap_or("").trim_start_matches('/');
                    glob(pattern, path)
                });
            if inside {
                public.union(robot.actions)
            } else {
                public
            }
        }
        Principal::Anonymous => public,
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
    }
}
