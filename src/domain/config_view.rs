//! An image config as the runtime will read it, for people to review (the console's image page).
//!
//! Rule: read with Go's rules (`gojson`: keys match case-insensitively, the last one wins, maps
//! merge), as docker, containerd and the scanner read it, never with serde's exact keys. A config
//! those rules read ambiguously is refused, not shown: a page must never show a reviewer a user or
//! command other than the one that will run.

use super::gojson::{self, GoValue};

/// What an admin reviewing an image needs to see of its config.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
pub struct ConfigView {
    pub os: Option<String>,
    pub architecture: Option<String>,
    pub created: Option<String>,
    pub user: Option<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
    pub env: Vec<String>,
    /// In key order of first appearance; a later value for the same key replaces the earlier.
    pub labels: Vec<(String, String)>,
}

/// Reads a config's bytes; `Err` says why it cannot be shown.
pub fn read(bytes: &[u8]) -> Result<ConfigView, String> {
    let value = gojson::parse(bytes)?;
    let GoValue::Object(top) = &value else { return Err("the image config is not a JSON object".into()) };
    let top_refs: Vec<&(String, GoValue)> = top.iter().collect();
    let text = |field: &str| gojson::string_field(&top_refs, field).map(|v| v.map(str::to_owned));
    let mut view = ConfigView {
        os: text("os")?,
        architecture: text("architecture")?,
        created: text("created")?,
        ..ConfigView::default()
    };
    let Some(run) = gojson::object_field(top, "config")? else { return Ok(view) };
    let strings = |field: &str| -> Result<Vec<String>, String> {
        Ok(gojson::strings_field(&run, field)?.into_iter().map(str::to_owned).collect())
    };
    view.user = gojson::string_field(&run, "User")?.map(str::to_owned);
    view.working_dir = gojson::string_field(&run, "WorkingDir")?.map(str::to_owned);
    view.entrypoint = strings("Entrypoint")?;
    view.cmd = strings("Cmd")?;
    view.env = strings("Env")?;
    for (key, value) in run.iter().map(|e| (&e.0, &e.1)) {
        if !gojson::field_matches(key, "Labels") {
            continue;
        }
        match value {
            GoValue::Null => view.labels.clear(),
            GoValue::Object(entries) => {
                for (k, v) in entries {
                    let GoValue::String(v) = v else { return Err("Labels holds something other than strings".into()) };
                    match view.labels.iter_mut().find(|(existing, _)| existing == k) {
                        Some(slot) => slot.1 = v.clone(),
                        None => view.labels.push((k.clone(), v.clone())),
                    }
                }
            }
            _ => return Err("Labels is not an object".into()),
        }
    }
    Ok(view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_view_is_what_the_runtime_reads() {
        let config = br#"{"os":"linux","architecture":"amd64","config":{"User":"app","Cmd":["/bin/true"],
            "user":"0","cmd":["/evil"],"Labels":{"a":"1"},"labels":{"a":"2","b":"3"},"Env":["A=1"],"ENV":["B=2"]}}"#;
        let view = read(config).unwrap();
        assert_eq!(view.user.as_deref(), Some("0"), "the last key, in any case, wins");
        assert_eq!(view.cmd, vec!["/evil"]);
        assert_eq!(view.env, vec!["B=2"]);
        assert_eq!(view.labels, vec![("a".into(), "2".into()), ("b".into(), "3".into())]);
        assert_eq!((view.os.as_deref(), view.architecture.as_deref()), (Some("linux"), Some("amd64")));
    }

    #[test]
    fn ambiguous_configs_are_refused() {
        assert!(read(br#"{"config":{"User":1}}"#).is_err());
        assert!(read(br#"{"config":{"Labels":{"a":1}}}"#).is_err());
        assert!(read(br#"[]"#).is_err());
        assert!(read(br#"{"config":{"Cmd":"sh"}}"#).is_err());
    }
}
