//! JSON read the way Go's `encoding/json` fills a struct, which is how containerd, docker and
//! podman read manifests and image configs.
//!
//! Go differs from a plain JSON reading in ways a pusher can use to show the scanner one value
//! and the runtime another; each is reproduced here:
//! - keys match field names case-insensitively, with Unicode simple folding (`"user"`, `"USER"`
//!   and `"uſer"` all fill `User`; `"conf\u0131g"` fills nothing);
//! - a key repeated in one object fills the field again: the last one wins;
//! - an object decoded into a field that already holds one is merged into it (Go reuses the
//!   struct), and `null` resets a pointer or slice but leaves a string as it was.
//!
//! Values of the wrong type are errors (Go reports them and containerd refuses the image).

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};

/// A JSON value that keeps every key of an object, in order, duplicates included.
#[derive(Debug, Clone, PartialEq)]
pub enum GoValue {
    Null,
    Bool,
    Number,
    String(String),
    Array(Vec<GoValue>),
    Object(Vec<(String, GoValue)>),
}

impl<'de> serde::Deserialize<'de> for GoValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GoValue;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_unit<E>(self) -> Result<GoValue, E> {
                Ok(GoValue::Null)
            }
            fn visit_none<E>(self) -> Result<GoValue, E> {
                Ok(GoValue::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<GoValue, E> {
                Ok(GoValue::Bool)
            }
            fn visit_i64<E>(self, _: i64) -> Result<GoValue, E> {
                Ok(GoValue::Number)
            }
            fn visit_u64<E>(self, _: u64) -> Result<GoValue, E> {
                Ok(GoValue::Number)
            }
            fn visit_f64<E>(self, _: f64) -> Result<GoValue, E> {
                Ok(GoValue::Number)
            }
            fn visit_str<E>(self, s: &str) -> Result<GoValue, E> {
                Ok(GoValue::String(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<GoValue, E> {
                Ok(GoValue::String(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<GoValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(GoValue::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<GoValue, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, GoValue>()? {
                    entries.push((k, v));
                }
                Ok(GoValue::Object(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses JSON text (serde_json's recursion limit bounds the nesting).
pub fn parse(bytes: &[u8]) -> Result<GoValue, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON: {e}"))
}

/// Go's key folding for matching struct fields (`foldName`: each rune becomes the smallest rune of
/// its `unicode.SimpleFold` orbit, so that two names fold alike exactly when `bytes.EqualFold`
/// says they are equal), enough for ASCII field names: ASCII letters fold to upper case, and so
/// do the only two non-ASCII runes whose orbit holds an ASCII letter, `ſ` U+017F (`S`) and the
/// Kelvin sign U+212A (`K`). The Turkish `İ` and `ı` are alone in their orbits and fold to
/// themselves. Any other non-ASCII character cannot match an ASCII field name, so it is kept.
fn fold(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '\u{017F}' => 'S',
            '\u{212A}' => 'K',
            c => c.to_ascii_uppercase(),
        })
        .collect()
}

/// Whether Go fills the struct field `field` (an ASCII name) from the JSON key `key`.
pub fn field_matches(key: &str, field: &str) -> bool {
    key == field || fold(key) == fold(field)
}

/// Go's `strings.ToLower`, as far as it can reach ASCII text: ASCII letters, and the two
/// non-ASCII letters whose simple lower case is ASCII (`İ` U+0130 to `i`, the Kelvin sign to `k`).
/// Other characters are kept: their lower case is never ASCII.
pub fn lower(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{0130}' => 'i',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The entries an object-valued field ends up with: every matching object merged in order. A
/// `null` after an object is refused: docker decodes these fields into pointers (`null` drops
/// what came before), containerd and podman into structs (`null` keeps it), so they would
/// disagree. A `null` alone is no object for both.
pub fn object_field<'a>(
    object: &'a [(String, GoValue)],
    field: &str,
) -> Result<Option<Vec<&'a (String, GoValue)>>, String> {
    let mut merged: Option<Vec<&'a (String, GoValue)>> = None;
    for (key, value) in object {
        if !field_matches(key, field) {
            continue;
        }
        match value {
            GoValue::Null if merged.is_some() => {
                return Err(format!("{field} is null after an object, which clients read in different ways"))
            }
            GoValue::Null => {}
            GoValue::Object(entries) => merged.get_or_insert_with(Vec::new).extend(entries.iter()),
            _ => return Err(format!("{field} is not an object")),
        }
    }
    Ok(merged)
}

/// A string field: the last matching non-null value.
pub fn string_field<'a>(object: &[&'a (String, GoValue)], field: &str) -> Result<Option<&'a str>, String> {
    let mut found = None;
    for (key, value) in object.iter().map(|e| (&e.0, &e.1)) {
        if !field_matches(key, field) {
            continue;
        }
        match value {
            GoValue::Null => {}
            GoValue::String(s) => found = Some(s.as_str()),
            _ => return Err(format!("{field} is not a string")),
        }
    }
    Ok(found)
}

/// A `[]string` field: the last matching array (`null` empties it).
pub fn strings_field<'a>(object: &[&'a (String, GoValue)], field: &str) -> Result<Vec<&'a str>, String> {
    let mut found = Vec::new();
    for (key, value) in object.iter().map(|e| (&e.0, &e.1)) {
        if !field_matches(key, field) {
            continue;
        }
        found = match value {
            GoValue::Null => Vec::new(),
            GoValue::Array(items) => items
                .iter()
                .map(|i| match i {
                    GoValue::String(s) => Ok(s.as_str()),
                    _ => Err(format!("{field} holds something other than strings")),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(format!("{field} is not an array")),
        };
    }
    Ok(found)
}

/// The keys of a `map[string]...` field: Go merges every matching object into one map.
pub fn map_keys<'a>(object: &[&'a (String, GoValue)], field: &str) -> Result<Vec<&'a str>, String> {
    let mut keys = Vec::new();
    for (key, value) in object.iter().map(|e| (&e.0, &e.1)) {
        if !field_matches(key, field) {
            continue;
        }
        match value {
            GoValue::Null => keys.clear(),
            GoValue::Object(entries) => keys.extend(entries.iter().map(|(k, _)| k.as_str())),
            _ => return Err(format!("{field} is not an object")),
        }
    }
    Ok(keys)
}

/// Every string in a value, keys included, with a short path to where it is. A key `hide_key`
/// picks (one holding a secret, say) is shown in paths as `<hidden key>`.
pub fn strings(
    value: &GoValue,
    path: &mut String,
    hide_key: &impl Fn(&str) -> bool,
    visit: &mut impl FnMut(&str, &str),
) {
    match value {
        GoValue::String(s) => visit(path, s),
        GoValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                strings(item, path, hide_key, visit);
                path.truncate(len);
            }
        }
        GoValue::Object(entries) => {
            for (k, v) in entries {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                // Keys are the pusher's text: shown escaped, and cut short, or not at all.
                if hide_key(k) {
                    path.push_str("<hidden key>");
                } else {
                    path.push_str(&format!("{:?}", k.chars().take(64).collect::<String>()));
                }
                visit(path, k);
                strings(v, path, hide_key, visit);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_config(json: &str) -> Option<Vec<(String, GoValue)>> {
        let GoValue::Object(top) = parse(json.as_bytes()).unwrap() else { panic!() };
        object_field(&top, "config").unwrap().map(|v| v.into_iter().cloned().collect())
    }

    fn user(json: &str) -> Option<String> {
        let cfg = run_config(json)?;
        let refs: Vec<_> = cfg.iter().collect();
        string_field(&refs, "User").unwrap().map(str::to_owned)
    }

    #[test]
    fn fields_match_as_in_go() {
        assert_eq!(user(r#"{"config":{"User":"1000"}}"#).as_deref(), Some("1000"));
        assert_eq!(user(r#"{"config":{"User":"1000","user":"0"}}"#).as_deref(), Some("0"), "last key wins, folded");
        assert_eq!(user(r#"{"config":{"User":"1000","U\u017fer":"0"}}"#).as_deref(), Some("0"), "long s folds to s");
        assert_eq!(user(r#"{"CONFIG":{"User":"7"}}"#).as_deref(), Some("7"));
        // The Turkish dotless i and dotted capital I are alone in their fold orbits: Go ignores these.
        assert_eq!(user(r#"{"conf\u0131g":{"User":"8"}}"#), None);
        assert_eq!(user(r#"{"CONF\u0130G":{"User":"9"}}"#), None);
        assert_eq!(user(r#"{"config":{"User":"0"},"conf\u0131g":{"User":"1000"}}"#).as_deref(), Some("0"));
        assert_eq!(user(r#"{"conf\u00efg":{"User":"9"}}"#), None, "i with diaeresis is another letter");
        assert_eq!(lower("Application/VND.Doc\u{212A}er.x"), "application/vnd.docker.x");
        assert_eq!(user(r#"{"config":{"User":"1000"},"config":{"Env":[]}}"#).as_deref(), Some("1000"), "merged");
        // docker reads a pointer (null drops the object), containerd and podman a struct (kept).
        let GoValue::Object(top) = parse(br#"{"config":{"User":"1000"},"config":null}"#).unwrap() else { panic!() };
        assert!(object_field(&top, "config").unwrap_err().contains("null after an object"));
        assert_eq!(
            user(r#"{"config":null,"config":{"User":"1000"}}"#).as_deref(),
            Some("1000"),
            "null first is nothing"
        );
        assert_eq!(user(r#"{"config":null}"#), None);
        assert_eq!(user(r#"{"config":{"User":"1000","User":null}}"#).as_deref(), Some("1000"), "null keeps a string");
        let GoValue::Object(top) = parse(br#"{"config":{"User":5}}"#).unwrap() else { panic!() };
        let cfg = object_field(&top, "config").unwrap().unwrap();
        assert!(string_field(&cfg, "User").is_err(), "a wrong type is an error");
        assert!(parse(b"{\"a\":\"\\ud800\"}").is_err(), "lone surrogates are refused");
    }
}
