//! The layering rule of `src/lib.rs`, checked on the source text: every `crate::<module>` path
//! (and every `super::` that climbs to the crate root) in `src/<module>/**` must name the module
//! itself or one the table allows. Comments are skipped, so doc links do not count.

use std::path::{Path, PathBuf};

/// Who may import whom. `lib.rs`, `main.rs` and `bin/` are the wiring and may use everything.
const ALLOWED: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("config", &["model"]),
    ("storage", &["model"]),
    ("metadata", &["model"]),
    ("domain", &["model", "storage", "metadata"]),
    ("auth", &["model", "metadata"]),
    ("scan", &["model", "domain", "metadata", "storage"]),
    ("notify", &["model", "domain"]),
    ("http", &["model", "domain", "auth"]),
    ("server", &["model", "http"]),
    ("tls", &["model", "config"]),
    ("client", &["model"]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules a line of code names: `crate::x`, and `super::...::x` where the supers
/// climb from a module `depth` deep to the crate root. `crate::{` is reported as "{" (write one
/// `use` per module, so the check can read it).
fn named_modules(code: &str, depth: usize) -> Vec<String> {
    let mut found = Vec::new();
    let bytes = code.as_bytes();
    for (i, _) in code.match_indices("crate::") {
        if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b'$') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        found.push(if rest.starts_with('{') { "{".to_owned() } else { ident_at(rest).to_owned() });
    }
    for (i, _) in code.match_indices("super::") {
        if i > 0 && (bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':') {
            continue; // not the first `super` of a chain
        }
        let mut rest = &code[i..];
        let mut ups = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            rest = r;
            ups += 1;
        }
        if ups >= depth {
            found.push(if rest.starts_with('{') { "{".to_owned() } else { ident_at(rest).to_owned() });
        }
    }
    found
}

#[test]
fn modules_import_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut broken = Vec::new();
    for file in &files {
        let rel = file.strip_prefix(&src).unwrap();
        let parts: Vec<&str> = rel.iter().map(|p| p.to_str().unwrap()).collect();
        let top = parts[0].trim_end_matches(".rs");
        if matches!(top, "lib" | "main" | "bin") {
            continue;
        }
        let Some((_, allowed)) = ALLOWED.iter().find(|(m, _)| *m == top) else {
            broken.push(format!("src/{}: module `{top}` has no row in the layering table", rel.display()));
            continue;
        };
        // How many `super`s reach the crate root: `a.rs` and `a/mod.rs` are one deep, `a/b.rs` two,
        // and one more inside an inline `mod tests { ... }` (its end: a `}` at the `mod`'s indent,
        // as rustfmt writes it).
        let depth = parts.len() - usize::from(parts.last() == Some(&"mod.rs"));
        let mut inline: Vec<String> = Vec::new();
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            let indent = &line[..line.len() - trimmed.len()];
            if trimmed.starts_with("//") {
                continue;
            }
            if inline.last().is_some_and(|i| i == indent) && trimmed.trim_end() == "}" {
                inline.pop();
                continue;
            }
            let code = line.split(" //").next().unwrap();
            let words: Vec<&str> = code.split_whitespace().collect();
            if let Some(at) = words.iter().position(|w| *w == "mod") {
                if words.last() == Some(&"{") && at + 3 == words.len() {
                    inline.push(indent.to_owned());
                }
            }
            for m in named_modules(code, depth + inline.len()) {
                if m != top && !allowed.contains(&m.as_str()) {
                    broken.push(format!("src/{}:{}: `{top}` uses `crate::{m}`", rel.display(), n + 1));
                }
            }
        }
    }
    assert!(broken.is_empty(), "imports against the layering rule in src/lib.rs:\n{}", broken.join("\n"));
}

#[test]
fn the_table_has_no_cycle() {
    // Every module's allowed imports come before it in the table, so the table is a layering.
    for (i, (module, allowed)) in ALLOWED.iter().enumerate() {
        for a in *allowed {
            let j = ALLOWED.iter().position(|(m, _)| m == a).unwrap_or_else(|| panic!("{module}: unknown `{a}`"));
            assert!(j < i, "`{module}` may import `{a}`, which comes after it in the table");
        }
    }
}
