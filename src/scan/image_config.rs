//! Checks on the image configuration: the user it runs as (resolved as runc resolves it, in the
//! image's final filesystem), secrets anywhere in it, and an exposed SSH port.
//!
//! Rules:
//! - The config is read as Go reads it ([`gojson`](crate::domain::gojson)): what the scanner sees as
//!   `User` is what containerd and docker see.
//! - `User` is parsed as runc parses it: the part before the first `:`; numeric if Go's `Atoi`
//!   takes it (`00`, `+0` and `-0` are uid 0), else a name looked up in `/etc/passwd` (first
//!   match, lines trimmed of Unicode white space as Go trims them, a uid that does not parse
//!   counts as 0, as runc's parser leaves it). A uid outside `1..=i32::MAX` counts as root: the
//!   kernel's `setuid` takes 32 bits, so 4294967296 wraps to 0.
//! - Whatever cannot be resolved counts as root: no `User`, a name the image's `/etc/passwd` does
//!   not hold, a `/etc/passwd` the scanner cannot read.
//! - Secrets are searched in every string of the config, decoded (a `\u002d` escape hides nothing).

use super::fs::{Captured, Lookup};
use super::{secrets, Finding, Rule, Severity};
use crate::domain::gojson::{self, GoValue};

fn finding(rule: Rule, severity: Severity, message: String) -> Finding {
    Finding { rule, severity, message, path: None, layer: None }
}

/// What the runtime reads from an image config.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RunConfig {
    pub user: Option<String>,
    pub env: Vec<String>,
    pub exposed_ports: Vec<String>,
}

/// The run configuration as Go fills `ocispec.Image`; `Err` for a config that is not one.
pub fn run_config(config: &GoValue) -> Result<RunConfig, String> {
    let GoValue::Object(top) = config else { return Err("the image config is not a JSON object".into()) };
    let Some(run) = gojson::object_field(top, "config").map_err(|e| format!("image config: {e}"))? else {
        return Ok(RunConfig::default());
    };
    let err = |e: String| format!("image config: {e}");
    Ok(RunConfig {
        user: gojson::string_field(&run, "User").map_err(err)?.map(str::to_owned),
        env: gojson::strings_field(&run, "Env").map_err(err)?.into_iter().map(str::to_owned).collect(),
        exposed_ports: gojson::map_keys(&run, "ExposedPorts").map_err(err)?.into_iter().map(str::to_owned).collect(),
    })
}

/// Whether a key holds a secret: such a key must not appear in a finding's path.
fn holds_secret(key: &str) -> bool {
    !secrets::find(key.as_bytes()).is_empty()
}

/// Go's `strconv.Atoi`: an optional sign and decimal digits. `None` when it fails.
pub fn go_atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<i64>().ok()
}

/// Go's `bytes.TrimSpace`: Unicode white space (`\v`, U+0085 and U+00A0 included) off both
/// ends, where the bytes there are valid UTF-8.
fn trim_go_space(mut b: &[u8]) -> &[u8] {
    let is_space =
        |bytes: &[u8]| std::str::from_utf8(bytes).ok().and_then(|s| s.chars().next()).map(char::is_whitespace);
    'front: while !b.is_empty() {
        for n in 1..=b.len().min(4) {
            match is_space(&b[..n]) {
                Some(true) => {
                    b = &b[n..];
                    continue 'front;
                }
                Some(false) => break 'front,
                None => {}
            }
        }
        break;
    }
    'back: while !b.is_empty() {
        for n in 1..=b.len().min(4) {
            match is_space(&b[b.len() - n..]) {
                Some(true) => {
                    b = &b[..b.len() - n];
                    continue 'back;
                }
                Some(false) => break 'back,
                None => {}
            }
        }
        break;
    }
    b
}

/// Whether the kernel would see uid 0: runc passes Go's `int` to `setuid`, which takes 32 bits,
/// so a uid from `/etc/passwd` beyond them wraps (4294967296 is root). Negative uids and those
/// above `i32::MAX` count as root too: the scanner cannot tell what they become.
pub fn is_root_uid(uid: i64) -> bool {
    uid <= 0 || uid > i64::from(i32::MAX)
}

/// runc's reading of one `/etc/passwd` line: (name, uid), where a uid that does not parse is 0.
pub fn passwd_entry(line: &[u8]) -> Option<(Vec<u8>, i64)> {
    let line = trim_go_space(line);
    if line.is_empty() {
        return None;
    }
    let mut fields = line.split(|&b| b == b':');
    let name = fields.next().unwrap_or_default().to_vec();
    let uid = fields.nth(1).and_then(|f| std::str::from_utf8(f).ok()).and_then(go_atoi).unwrap_or(0);
    Some((name, uid))
}

/// Why the image would run as root, or `None` if it runs as someone else.
pub fn root_reason(user: Option<&str>, passwd: &Lookup<'_>) -> Option<String> {
    let spec = user.unwrap_or("");
    let name = spec.split(':').next().unwrap_or("");
    if name.is_empty() {
        return Some(if spec.is_empty() {
            "no User (root by default)".to_owned()
        } else {
            format!("User {spec:?} names no user, so root")
        });
    }
    if let Some(uid) = go_atoi(name) {
        return is_root_uid(uid).then(|| format!("User {spec:?} is uid 0 or outside the uid range"));
    }
    if name == "root" {
        return Some(format!("User {spec:?}"));
    }
    match passwd {
        Lookup::File(Some(Captured::Passwd(lines))) => {
            match lines.iter().find(|(n, _)| n.as_slice() == name.as_bytes()) {
                Some((_, uid)) if is_root_uid(*uid) => {
                    Some(format!("User {name:?} is uid 0 in the image's /etc/passwd (or wraps to it)"))
                }
                Some(_) => None,
                None => Some(format!("User {name:?} is not in the image's /etc/passwd, so it cannot be resolved")),
            }
        }
        Lookup::Missing => Some(format!("User {name:?} needs an /etc/passwd, which the image does not have")),
        _ => Some(format!("User {name:?} cannot be resolved: the image's /etc/passwd is not a file the scanner reads")),
    }
}

/// The layer diff ids the config lists (`rootfs.diff_ids`, read as Go reads them): what docker,
/// containerd and podman check each unpacked layer against.
pub fn diff_ids(config: &[u8]) -> Result<Vec<String>, String> {
    let parsed = gojson::parse(config).map_err(|e| format!("image config is {e}"))?;
    let GoValue::Object(top) = &parsed else { return Err("the image config is not a JSON object".into()) };
    let err = |e: String| format!("image config: {e}");
    match gojson::object_field(top, "rootfs").map_err(err)? {
        None => Ok(Vec::new()),
        Some(rootfs) => {
            Ok(gojson::strings_field(&rootfs, "diff_ids").map_err(err)?.into_iter().map(str::to_owned).collect())
        }
    }
}

/// Findings of an image config. `passwd` is `/etc/passwd` as the filesystem a client would run
/// has it; `None` when no client can run the image, and then only secrets are looked for.
pub fn check(config: &[u8], passwd: Option<&Lookup<'_>>) -> Result<Vec<Finding>, String> {
    let parsed = gojson::parse(config).map_err(|e| format!("image config is {e}"))?;
    let run = run_config(&parsed)?;
    let mut findings = Vec::new();
    if let Some(reason) = passwd.and_then(|passwd| root_reason(run.user.as_deref(), passwd)) {
        findings.push(finding(
            Rule::RootUser,
            Severity::High,
            format!("the image runs as root: {reason}; set a non-root USER"),
        ));
    }
    for entry in &run.env {
        let name = entry.split('=').next().unwrap_or("");
        // The value itself is never repeated in a finding.
        for kind in secrets::find(entry.as_bytes()) {
            findings.push(finding(
                Rule::SecretInEnv,
                Severity::Critical,
                format!("environment variable {name:?} holds a {kind}"),
            ));
        }
    }
    let mut path = String::new();
    let mut elsewhere = Vec::new();
    gojson::strings(&parsed, &mut path, &holds_secret, &mut |at, text| {
        // The environment in effect is reported above, by variable name.
        if run.env.iter().any(|e| e == text) {
            return;
        }
        for kind in secrets::find(text.as_bytes()) {
            elsewhere.push(format!("the image config holds a {kind} at {at}"));
        }
    });
    elsewhere.dedup();
    for message in elsewhere.into_iter().take(100) {
        findings.push(finding(Rule::SecretInMetadata, Severity::Critical, message));
    }
    if passwd.is_some() && run.exposed_ports.iter().any(|p| p == "22/tcp" || p == "22") {
        findings.push(finding(Rule::ExposedSsh, Severity::Medium, "the image exposes port 22 (SSH)".into()));
    }
    Ok(findings)
}

/// Secrets in a manifest's own JSON (annotations and the like), which every reader receives.
pub fn manifest_secrets(manifest: &[u8]) -> Result<Vec<Finding>, String> {
    let parsed = gojson::parse(manifest).map_err(|e| format!("manifest is {e}"))?;
    let mut out = Vec::new();
    gojson::strings(&parsed, &mut String::new(), &holds_secret, &mut |at, text| {
        for kind in secrets::find(text.as_bytes()) {
            out.push(finding(
                Rule::SecretInMetadata,
                Severity::Critical,
                format!("the manifest holds a {kind} at {at}"),
            ));
        }
    });
    out.truncate(100);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(config: serde_json::Value) -> Vec<Rule> {
        check(config.to_string().as_bytes(), Some(&Lookup::Missing)).unwrap().into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn users_are_parsed_as_runc_does() {
        let none = Lookup::Missing;
        for user in ["", "0", "00", "0000:0", "+0", "-0", "root", "root:wheel", ":1000", "0:1000", "4294967296", "-1"] {
            assert!(root_reason(Some(user), &none).is_some(), "{user:?} is root");
        }
        assert!(root_reason(None, &none).is_some());
        for user in ["1000", "1000:1000", "+1000", "65534"] {
            assert!(root_reason(Some(user), &none).is_none(), "{user:?} is not root");
        }
        let passwd = Captured::Passwd(
            [
                &b"root:x:0:0::/root:/bin/sh"[..],
                b"app:x:1000:1000::/:/x",
                b"toor:x:00:0",
                b"odd:x:abc:1",
                b"short",
                b"app:x:0:0",
                b"wrap:x:4294967296:0",
                b"\x0bvt:x:0:0\x0b",
                "\u{a0}nbsp:x:0:0".as_bytes(),
                b"big:x:99999999999999999999:0",
            ]
            .iter()
            .filter_map(|l| passwd_entry(l))
            .collect(),
        );
        let found = Lookup::File(Some(&passwd));
        assert!(root_reason(Some("app"), &found).is_none(), "the first match wins");
        // Go trims Unicode white space (a vertical tab, a no-break space) off each line.
        for user in ["toor", "odd", "short", "nobody", "wrap", "vt", "nbsp", "big"] {
            assert!(root_reason(Some(user), &found).is_some(), "{user:?} resolves to root or not at all");
        }
        assert!(root_reason(Some("app"), &Lookup::File(None)).is_some(), "an unreadable passwd fails closed");
    }

    #[test]
    fn env_secrets_and_ssh() {
        let found = check(
            json!({"config": {"User": "app", "Env": ["PATH=/usr/bin", "DEPLOY_KEY=-----BEGIN OPENSSH PRIVATE KEY-----abc"],
                   "ExposedPorts": {"22/tcp": {}, "8080/tcp": {}}}})
            .to_string()
            .as_bytes(),
            Some(&Lookup::File(Some(&Captured::Passwd(vec![(b"app".to_vec(), 1000)])))),
        )
        .unwrap();
        assert_eq!(found.iter().map(|f| f.rule).collect::<Vec<_>>(), [Rule::SecretInEnv, Rule::ExposedSsh]);
        assert!(found[0].message.contains("DEPLOY_KEY") && !found[0].message.contains("BEGIN"));
        assert!(check(b"not json", Some(&Lookup::Missing)).is_err());
        assert_eq!(rules(json!({})), [Rule::RootUser]);
        // An escaped secret in a label is found decoded.
        let escaped = r#"{"config":{"User":"1000","Labels":{"k":"\u002d----BEGIN RSA PRIVATE KEY-----"}}}"#;
        let found = check(escaped.as_bytes(), Some(&Lookup::Missing)).unwrap();
        assert_eq!(found.iter().map(|f| f.rule).collect::<Vec<_>>(), [Rule::SecretInMetadata]);
        // A secret used as a key is found, and the finding does not repeat it.
        let keyed = r#"{"config":{"User":"1000","Labels":{"AKIAIOSFODNN7EXAMPLE":"id"}}}"#;
        let found = check(keyed.as_bytes(), Some(&Lookup::Missing)).unwrap();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(!found[0].message.contains("AKIA") && found[0].message.contains("<hidden key>"), "{found:?}");
    }
}
