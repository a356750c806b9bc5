//! Actions and scopes of the Docker token protocol (`repository:<name>:pull,push`).

use crate::model::RepoName;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    fn bit(self) -> u8 {
        match self {
            Action::Pull => 1,
            Action::Push => 2,
            Action::Delete => 4,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "pull" => Action::Pull,
            "push" => Action::Push,
            "delete" => Action::Delete,
            _ => return None,
        })
    }
}

/// A set of actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ActionSet(u8);

impl ActionSet {
    pub const NONE: ActionSet = ActionSet(0);
    pub const ALL: ActionSet = ActionSet(7);

    pub fn of(actions: &[Action]) -> ActionSet {
        ActionSet(actions.iter().fold(0, |acc, a| acc | a.bit()))
    }
    pub fn contains(self, a: Action) -> bool {
        self.0 & a.bit() != 0
    }
    pub fn contains_all(self, other: ActionSet) -> bool {
        self.0 & other.0 == other.0
    }
    pub fn intersect(self, other: ActionSet) -> ActionSet {
        ActionSet(self.0 & other.0)
    }
    pub fn union(self, other: ActionSet) -> ActionSet {
        ActionSet(self.0 | other.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn names(self) -> Vec<&'static str> {
        [Action::Pull, Action::Push, Action::Delete]
            .into_iter()
            .filter(|a| self.contains(*a))
            .map(Action::as_str)
            .collect()
    }
    /// Parses `pull,push` (and `*` for everything); unknown actions are ignored, as the spec allows.
    pub fn parse_list(s: &str) -> ActionSet {
        s.split(',').fold(ActionSet::NONE, |acc, a| match a.trim() {
            "*" => ActionSet::ALL,
            other => Action::parse(other).map_or(acc, |a| acc.union(ActionSet::of(&[a]))),
        })
    }
}

/// A requested or granted scope.
#[derive(Debug, Clone, PartialEq)]
pub enum Scope {
    Repository(RepoName, ActionSet),
    Catalog,
}

impl Scope {
    /// Parses one `scope` value; `None` for shapes we do not grant.
    pub fn parse(s: &str) -> Option<Scope> {
        let (kind, rest) = s.split_once(':')?;
        // The name may not contain ':', so the actions follow the last ':'.
        let (name, actions) = rest.rsplit_once(':')?;
        match kind {
            "repository" => Some(Scope::Repository(name.parse().ok()?, ActionSet::parse_list(actions))),
            "registry" if name == "catalog" => Some(Scope::Catalog),
            _ => None,
        }
    }
    pub fn to_challenge(&self) -> String {
        match self {
            Scope::Repository(name, actions) => format!("repository:{name}:{}", actions.names().join(",")),
            Scope::Catalog => "registry:catalog:*".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse() {
        let s = Scope::parse("repository:team-a/app:pull,push").unwrap();
        assert_eq!(s, Scope::Repository("team-a/app".parse().unwrap(), ActionSet::of(&[Action::Pull, Action::Push])));
        assert_eq!(Scope::parse("registry:catalog:*"), Some(Scope::Catalog));
        assert_eq!(Scope::parse("repository:team-a/../b:pull"), None);
        assert_eq!(Scope::parse("repository:x:*").unwrap().to_challenge(), "repository:x:pull,push,delete");
        assert_eq!(ActionSet::parse_list("pull,bogus"), ActionSet::of(&[Action::Pull]));
    }
}
