//! Identity and access: who is asking, and what may they do.
//!
//! Rules:
//! - Deny by default. A request has a [`Principal`]; what it may do on a repository is decided in
//!   one place, [`policy::allowed`], from roles, robot grants and public namespaces.
//! - Secrets are compared in constant time and stored only hashed (argon2id for passwords, SHA-256
//!   for random tokens, which have full entropy). No secret is ever logged.
//! - Tokens are short-lived ES256 JWTs with pinned algorithm and every claim checked; the principal
//!   behind a token is re-checked on each use, so disabling or revoking takes effect at once.

pub mod accounts;
pub mod actions;
pub mod jwt;
pub mod password;
pub mod policy;
pub mod ratelimit;
pub mod secrets;
pub mod service;
pub mod sessions;

pub use actions::{Action, ActionSet, Scope};
pub use service::{AuthError, AuthService};

pub use crate::model::Role;

/// What each role may do is decided here, in `auth`.
impl Role {
    /// What the role may do on the namespace's repositories.
    pub fn actions(self) -> ActionSet {
        match self {
            Role::Owner | Role::Maintainer => ActionSet::ALL,
            Role::Developer => ActionSet::of(&[Action::Pull, Action::Push]),
            Role::Reader => ActionSet::of(&[Action::Pull]),
        }
    }
}

/// Who is making a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    Anonymous,
    User {
        name: String,
        admin: bool,
    },
    Robot(Robot),
    /// The metrics scrape credential (`metrics.scrape_token_sha256`): it may read `/metrics` and
    /// nothing else, and never receives a registry token.
    Scraper,
}

/// The most repository patterns one robot may hold.
pub const MAX_ROBOT_PATTERNS: usize = 32;

/// A robot's repository patterns are stored as one text, one pattern per line (a pattern never
/// holds a line break); these two are the only places that know it.
pub fn join_patterns(patterns: &[String]) -> String {
    patterns.join("\n")
}

/// The patterns of a stored `repositories` text.
pub fn robot_patterns(stored: &str) -> impl Iterator<Item = &str> {
    stored.split('\n')
}

/// A robot account's grant: actions on one namespace, optionally only on matching repositories.
#[derive(Debug, Clone, PartialEq)]
pub struct Robot {
    pub username: String,
    pub namespace: String,
    pub actions: ActionSet,
    /// A glob (`*` matches any characters) on the repository path inside the namespace.
    pub repositories: Option<String>,
}

impl Principal {
    /// The JWT subject: the account name, empty for anonymous.
    pub fn subject(&self) -> &str {
        match self {
            Principal::Anonymous => "",
            Principal::User { name, .. } => name,
            Principal::Robot(r) => &r.username,
            Principal::Scraper => "metrics-scraper",
        }
    }
    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::User { admin: true, .. })
    }
}
