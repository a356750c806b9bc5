//! The `portcullis` binary's configuration handling: file, environment, errors that name the key.

use std::process::Command;

fn portcullis(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    // Keys are matched case-insensitively: figment names environment keys in upper case.
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text.to_lowercase())
}

#[test]
fn shipped_config_file_is_valid() {
    let (ok, out) = portcullis(&["check-config", "--config", "config/portcullis.toml"], &[]);
    assert!(ok, "{out}");
    assert!(out.contains("127.0.0.1:5000"), "{out}");
}

#[test]
fn environment_overrides_file() {
    let (ok, out) = portcullis(
        &["check-config", "--config", "config/portcullis.toml"],
        &[
            ("PORTCULLIS_LISTEN", "127.0.0.1:6123"),
            ("PORTCULLIS_DATA_DIR", "/tmp/pc-env"),
            ("PORTCULLIS_PUBLIC_URL", "https://r.example"),
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("127.0.0.1:6123") && out.contains("/tmp/pc-env"), "{out}");
}

#[test]
fn bad_values_and_unknown_keys_name_the_key() {
    let (ok, out) = portcullis(&["check-config"], &[("PORTCULLIS_LISTEN", "nowhere")]);
    assert!(!ok);
    assert!(out.contains("listen"), "{out}");
    let (ok, out) = portcullis(&["check-config"], &[("PORTCULLIS_TLS_CERTIFICATE", "/x")]);
    assert!(!ok);
    assert!(out.contains("certificate"), "{out}");
    let (ok, out) = portcullis(&["check-config"], &[("PORTCULLIS_PUBLIC_URL", "http://plain.example")]);
    assert!(!ok);
    assert!(out.contains("public_url"), "{out}");
    let (ok, out) = portcullis(&["check-config"], &[("PORTCULLIS_UPLOADS_EXPIRY", "soon")]);
    assert!(!ok);
    assert!(out.contains("expiry"), "{out}");
    let (ok, out) = portcullis(&["check-config", "--config", "/nonexistent.toml"], &[]);
    assert!(!ok);
    assert!(out.contains("does not exist"), "{out}");
}

#[test]
fn offline_admin_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .env("PORTCULLIS_DATA_DIR", data)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, out) = run(&["admin", "create-user", "alice"], "alice-long-password\n");
    assert!(ok, "{out}");
    let (ok, out) = run(&["admin", "create-user", "alice"], "alice-long-password\n");
    assert!(!ok && out.contains("exists"), "{out}");
    let (ok, out) = run(&["admin", "create-user", "bob"], "short\n");
    assert!(!ok && out.contains("12 characters"), "{out}");
    let (ok, out) = run(&["admin", "create-namespace", "team-a"], "");
    assert!(ok, "{out}");
    let (ok, out) = run(&["admin", "set-member", "team-a", "alice", "owner"], "");
    assert!(ok && out.contains("alice is owner of team-a"), "{out}");
    let (ok, out) = run(&["admin", "set-member", "team-a", "alice", "king"], "");
    assert!(!ok && out.contains("role"), "{out}");
    let (ok, out) = run(&["admin", "reset-password", "alice"], "another-long-password\n");
    assert!(ok, "{out}");
    let (ok, _) = run(&["admin", "reset-password", "nobody"], "another-long-password\n");
    assert!(!ok);
}
