//! Patterns of credentials that must never ship in an image.

use std::sync::OnceLock;

use regex::bytes::RegexSet;

/// (name, pattern) of each kind of secret. Every pattern is ASCII-only (`(?-u)`): the secrets are
/// ASCII, and a Unicode `\b` would force the slow PikeVM over every non-ASCII byte of a binary.
const PATTERNS: &[(&str, &str)] = &[
    ("private key", r"(?-u)-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?-----"),
    ("AWS access key id", r"(?-u)\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("AWS secret access key", r"(?i-u)aws_?secret_?access_?key\s*[=:]\s*\S{30,}"),
    ("GitHub token", r"(?-u)\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    ("GitLab token", r"(?-u)\bglpat-[A-Za-z0-9_-]{20,}\b"),
    ("Slack token", r"(?-u)\bxox[baprs]-[A-Za-z0-9-]{10,}\b"),
    ("Google API key", r"(?-u)\bAIza[0-9A-Za-z_-]{35}\b"),
    ("Google service account key", r#"(?-u)"type"\s*:\s*"service_account""#),
    ("Stripe secret key", r"(?-u)\bsk_live_[0-9A-Za-z]{24,}\b"),
];

fn set() -> &'static RegexSet {
    static SET: OnceLock<RegexSet> = OnceLock::new();
    SET.get_or_init(|| RegexSet::new(PATTERNS.iter().map(|(_, p)| *p)).expect("secret patterns compile"))
}

/// Names of the kinds of secret found in `bytes`.
pub fn find(bytes: &[u8]) -> Vec<&'static str> {
    set().matches(bytes).into_iter().map(|i| PATTERNS[i].0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_common_secrets_and_not_noise() {
        assert_eq!(find(b"key: AKIAIOSFODNN7EXAMPLE\n"), ["AWS access key id"]);
        assert_eq!(find(b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn...\n"), ["private key"]);
        assert_eq!(find(b"-----BEGIN RSA PRIVATE KEY-----"), ["private key"]);
        assert_eq!(
            find(b"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            ["AWS secret access key"]
        );
        assert_eq!(find(b"token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"), ["GitHub token"]);
        assert!(find(b"-----BEGIN CERTIFICATE-----\nMIIB...").is_empty(), "certificates are public");
        assert!(find(b"AKIA is a prefix, not a key").is_empty());
        assert!(find(b"just some /usr/bin/env text").is_empty());
    }
}
