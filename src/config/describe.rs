//! Configuration errors as a person reads them: the key as the file writes it and as its
//! environment variable, what is wrong with its value, where the value came from, and for a
//! misspelt key the closest valid one. No serde or figment internals reach the message.

use figment::error::Kind;

/// One line per problem, prefixed `invalid configuration:`.
pub fn describe(e: figment::Error) -> String {
    let mut lines: Vec<String> = e.into_iter().map(|e| one(&e)).collect();
    lines.dedup();
    format!("invalid configuration: {}", lines.join("; "))
}

fn one(e: &figment::Error) -> String {
    let from = match &e.metadata {
        Some(m) => match &m.source {
            Some(source) => format!(" (in {source})"),
            None if m.name.contains("environment") => " (from the environment)".to_owned(),
            None => String::new(),
        },
        None => String::new(),
    };
    let key = names(&e.path);
    match &e.kind {
        Kind::UnknownField(found, expected) => {
            // figment's path already ends with the unknown key (but guard against one that does not).
            let mut path = e.path.clone();
            if path.last() != Some(found) {
                path.push(found.clone());
            }
            let hint = closest(found, expected)
                .map(|c| {
                    let mut p = path.clone();
                    if let Some(last) = p.last_mut() {
                        *last = c.to_owned();
                    }
                    format!("; did you mean {}?", names(&p))
                })
                .unwrap_or_default();
            format!("unknown key {}{from}{hint}", names(&path))
        }
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => {
            format!("{key}{from}: expected {expected}, found {actual}")
        }
        Kind::UnknownVariant(found, expected) => {
            format!("{key}{from}: {found:?} is not one of {}", expected.join(", "))
        }
        Kind::MissingField(field) => {
            let mut path = e.path.clone();
            path.push(field.to_string());
            format!("{} is required{from}", names(&path))
        }
        Kind::Message(m) => format!("{key}{from}: {m}"),
        other => format!("{key}{from}: {other}"),
    }
}

/// `scan.root_user (PORTCULLIS_SCAN_ROOT_USER)`.
fn names(path: &[String]) -> String {
    if path.is_empty() {
        return "the configuration".to_owned();
    }
    format!("{} (PORTCULLIS_{})", path.join("."), path.join("_").to_ascii_uppercase())
}

/// The valid key nearest to a misspelt one, if it is near enough to be what was meant.
fn closest<'a>(found: &str, expected: &[&'a str]) -> Option<&'a str> {
    expected
        .iter()
        .map(|e| (strsim::damerau_levenshtein(found, e), *e))
        .filter(|(d, e)| *d <= 2.max(e.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, e)| e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misspelt_key_gets_a_suggestion() {
        assert_eq!(closest("root_usr", &["root_user", "secret_in_env"]), Some("root_user"));
        assert_eq!(closest("zzz", &["root_user"]), None);
        assert_eq!(names(&["scan".into(), "root_user".into()]), "scan.root_user (PORTCULLIS_SCAN_ROOT_USER)");
    }
}
