//! Actions and scopes of the Docker token protocol (`repository:<name>:pull,push`).

use serde::{Deserialize, Serialize};

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

/// A requested or granted scope; also a token's `access` claim, typed when the token is read
/// (`{"type": "repository", "name": "team/app", "actions": ["pull"]}`, or `registry`/`catalog`):
/// a claim of any other shape makes the token invalid, so nothing downstream compares strings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawAccess", into = "RawAccess")]
pub enum Scope {
    Repository(RepoName, ActionSet),
    Catalog,
}

/// The wire form of one `access` entry (the Docker token specification's).
#[derive(Serialize, Deserialize)]
struct RawAccess {
    #[serde(rename = "type")]
    kind: String,
    name: String,
    actions: Vec<String>,
}

impl TryFrom<RawAccess> for Scope {
    type Error = String;
    fn try_from(raw: RawAccess) -> Result<Scope, String> {
        match (raw.kind.as_str(), raw.name.as_str()) {
            // Strict: we write only these spellings, so anything else was not written by us.
            ("repository", name) => {
                let repo = name.parse().map_err(|_| "an access claim names an invalid repository".to_owned())?;
                let mut actions = ActionSet::NONE;
                for a in &raw.actions {
                    let a = Action::parse(a).ok_or_else(|| "an access claim names an unknown action".to_owned())?;
                    actions = actions.union(ActionSet::of(&[a]));
                }
                if actions.is_empty() {
                    return Err("an access claim grants no action".to_owned());
                }
                Ok(Scope::Repository(repo, actions))
            }
            ("registry", "catalog") if raw.actions == ["*"] => Ok(Scope::Catalog),
            _ => Err("an access claim of an unknown type".to_owned()),
        }
    }
}

impl From<Scope> for RawAccess {
    fn from(scope: Scope) -> RawAccess {
        match scope {
            Scope::Repository(repo, actions) => RawAccess {
                kind: "repository".into(),
                name: repo.to_string(),
                actions: actions.names().into_iter().map(str::to_owned).collect(),
            },
            Scope::Catalog => RawAccess { kind: "registry".into(), name: "catalog".into(), actions: vec!["*".into()] },
        }
    }
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

    #[test]
    fn access_claims_are_typed_on_the_way_in() {
        let claim: Scope =
            serde_json::from_str(r#"{"type":"repository","name":"team/app","actions":["pull","push"]}"#).unwrap();
        assert_eq!(claim, Scope::parse("repository:team/app:pull,push").unwrap());
        assert_eq!(
            serde_json::to_value(&claim).unwrap(),
            serde_json::json!({"type": "repository", "name": "team/app", "actions": ["pull", "push"]})
        );
        let catalog: Scope = serde_json::from_str(r#"{"type":"registry","name":"catalog","actions":["*"]}"#).unwrap();
        assert_eq!(catalog, Scope::Catalog);
        for bad in [
            r#"{"type":"repository","name":"team/../x","actions":["pull"]}"#,
            r#"{"type":"registry","name":"everything","actions":["*"]}"#,
            r#"{"type":"admin","name":"","actions":["*"]}"#,
            r#"{"type":"repository","name":"team/app"}"#,
            r#"{"type":"repository","name":"team/app","actions":[]}"#,
            r#"{"type":"repository","name":"team/app","actions":["*"]}"#,
            r#"{"type":"repository","name":"team/app","actions":["pull","admin"]}"#,
            r#"{"type":"registry","name":"catalog","actions":["pull"]}"#,
        ] {
            assert!(serde_json::from_str::<Scope>(bad).is_err(), "{bad}");
        }
    }
}
