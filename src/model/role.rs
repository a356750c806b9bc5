//! Namespace roles.

/// A namespace role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Maintainer,
    Developer,
    Reader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Maintainer => "maintainer",
            Role::Developer => "developer",
            Role::Reader => "reader",
        }
    }
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "owner" => Role::Owner,
            "maintainer" => Role::Maintainer,
            "developer" => Role::Developer,
            "reader" => Role::Reader,
            _ => return None,
        })
    }
}
