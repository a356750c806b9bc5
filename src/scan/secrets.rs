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

/// How far back each chunk's search reaches into the one before, so that a secret cut in two by a
/// chunk boundary is still found (every pattern above matches within this many bytes, except the
/// AWS secret key with more than 4 KiB of blanks around its `=`).
const OVERLAP: usize = 4096;

/// A search over a stream of any length, chunk by chunk, with bounded memory.
#[derive(Default)]
pub struct Stream {
    tail: Vec<u8>,
    found: std::collections::BTreeSet<&'static str>,
}

impl Stream {
    /// Searches the next chunk. Callers hand over large chunks (each seam costs a search of up
    /// to twice [`OVERLAP`] bytes).
    pub fn update(&mut self, chunk: &[u8]) {
        if chunk.is_empty() {
            return;
        }
        // The seam: the end of what came before with the start of this chunk.
        if !self.tail.is_empty() {
            self.tail.extend_from_slice(&chunk[..chunk.len().min(OVERLAP)]);
            self.found.extend(find(&self.tail));
        }
        self.found.extend(find(chunk));
        if chunk.len() >= OVERLAP {
            self.tail.clear();
            self.tail.extend_from_slice(&chunk[chunk.len() - OVERLAP..]);
        } else {
            // The tail already ends with this whole chunk, unless it was empty.
            if self.tail.is_empty() {
                self.tail.extend_from_slice(chunk);
            }
            let excess = self.tail.len().saturating_sub(OVERLAP);
            self.tail.drain(..excess);
        }
    }

    /// The kinds found, each once.
    pub fn finish(self) -> Vec<&'static str> {
        self.found.into_iter().collect()
    }
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

    #[test]
    fn a_stream_finds_a_secret_across_chunks() {
        let mut text = vec![b'x'; 10_000];
        text.extend_from_slice(b"-----BEGIN RSA PRIVATE KEY-----");
        text.extend(vec![b'y'; 10_000]);
        for size in [1, 7, 16, 4096, 5000, 1 << 20] {
            let mut s = Stream::default();
            for chunk in text.chunks(size) {
                s.update(chunk);
            }
            assert_eq!(s.finish(), ["private key"], "chunks of {size}");
        }
        let mut clean = Stream::default();
        clean.update(&[b'z'; 100_000]);
        assert!(clean.finish().is_empty());
    }
}
