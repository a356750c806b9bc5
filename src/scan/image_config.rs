//! Checks on the image configuration: the user it runs as, secrets in its environment, and an
//! exposed SSH port.

use serde::Deserialize;

use super::{secrets, Finding, Rule, Severity};

#[derive(Debug, Default, Deserialize)]
struct ImageConfig {
    #[serde(default)]
    config: Option<RunConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RunConfig {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    exposed_ports: Option<serde_json::Map<String, serde_json::Value>>,
}

fn finding(rule: Rule, severity: Severity, message: String) -> Finding {
    Finding { rule, severity, message, path: None, layer: None }
}

/// Whether a `User` value means root: empty, `root`, `0`, or `root`/`0` with any group.
pub fn runs_as_root(user: &str) -> bool {
    let name = user.trim().split(':').next().unwrap_or("");
    name.is_empty() || name == "root" || name == "0"
}

/// Findings of an image config blob. A config that is not JSON is an error, not a pass.
pub fn check(config: &[u8]) -> Result<Vec<Finding>, String> {
    let parsed: ImageConfig =
        serde_json::from_slice(config).map_err(|e| format!("image config is not valid JSON: {e}"))?;
    let run = parsed.config.unwrap_or_default();
    let mut findings = Vec::new();
    let user = run.user.unwrap_or_default();
    if runs_as_root(&user) {
        let shown = if user.is_empty() { "no User (root by default)".to_owned() } else { format!("User {user:?}") };
        findings.push(finding(
            Rule::RootUser,
            Severity::High,
            format!("the image runs as root: {shown}; set a non-root USER"),
        ));
    }
    for entry in run.env.unwrap_or_default() {
        let name = entry.split('=').next().unwrap_or("");
        // The value itself is never repeated in a finding.
        for kind in secrets::find(entry.as_bytes()) {
            findings.push(finding(
                Rule::SecretInEnv,
                Severity::Critical,
                format!("environment variable {name} holds a {kind}"),
            ));
        }
    }
    if run.exposed_ports.is_some_and(|p| p.contains_key("22/tcp") || p.contains_key("22")) {
        findings.push(finding(Rule::ExposedSsh, Severity::Medium, "the image exposes port 22 (SSH)".into()));
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(config: serde_json::Value) -> Vec<Rule> {
        check(config.to_string().as_bytes()).unwrap().into_iter().map(|f| f.rule).collect()
    }

    #[test]
    fn root_users() {
        for user in ["", "root", "0", "0:0", "root:wheel", " root "] {
            assert!(runs_as_root(user), "{user:?}");
        }
        for user in ["app", "1000", "1000:1000", "nobody:nogroup", "rooter"] {
            assert!(!runs_as_root(user), "{user:?}");
        }
        assert_eq!(rules(json!({"config": {}})), [Rule::RootUser]);
        assert_eq!(rules(json!({})), [Rule::RootUser]);
        assert!(rules(json!({"config": {"User": "1000"}})).is_empty());
    }

    #[test]
    fn env_secrets_and_ssh() {
        let found = check(
            json!({"config": {"User": "app", "Env": ["PATH=/usr/bin", "DEPLOY_KEY=-----BEGIN OPENSSH PRIVATE KEY-----abc"],
                   "ExposedPorts": {"22/tcp": {}, "8080/tcp": {}}}})
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(found.iter().map(|f| f.rule).collect::<Vec<_>>(), [Rule::SecretInEnv, Rule::ExposedSsh]);
        assert!(found[0].message.contains("DEPLOY_KEY") && !found[0].message.contains("BEGIN"));
        assert!(check(b"not json").is_err());
    }
}
