//! The `portcullis` binary's configuration handling: file, environment, errors that name the key.

mod common;

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
    // check-config opens the database and writes a probe blob: into a scratch directory, not ./data.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let (ok, out) =
        portcullis(&["check-config", "--config", "config/portcullis.toml"], &[("PORTCULLIS_DATA_DIR", data)]);
    assert!(ok, "{out}");
    assert!(out.contains("127.0.0.1:5000"), "{out}");
}

#[test]
fn environment_overrides_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pc-env");
    let data = data.to_str().unwrap();
    let (ok, out) = portcullis(
        &["check-config", "--config", "config/portcullis.toml"],
        &[
            ("PORTCULLIS_LISTEN", "127.0.0.1:6123"),
            ("PORTCULLIS_DATA_DIR", data),
            ("PORTCULLIS_PUBLIC_URL", "https://r.example"),
        ],
    );
    assert!(ok, "{out}");
    assert!(out.contains("127.0.0.1:6123") && out.contains(&data.to_lowercase()), "{out}");
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

/// `check-config` proves the scale-out backends reachable and writable, and names the one that is not.
#[test]
#[ignore = "needs PostgreSQL and Garage: scripts/test.sh runs it"]
fn check_config_proves_postgres_and_s3_writable() {
    let dir = tempfile::tempdir().unwrap();
    let name = common::backends::name_for(&format!("check-config-{}", uuid::Uuid::new_v4()));
    let mut env = common::backends::env(&name);
    env.push(("PORTCULLIS_DATA_DIR".into(), dir.path().display().to_string()));
    let env_refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (ok, out) = portcullis(&["check-config"], &env_refs);
    assert!(ok, "{out}");
    assert!(
        out.contains("the database at database.url and s3 bucket") && out.contains("reachable and writable"),
        "{out}"
    );
    // The secret key never appears in what check-config prints.
    let secret = &env.iter().find(|(k, _)| k.ends_with("SECRET_ACCESS_KEY")).unwrap().1;
    assert!(!out.contains(&secret.to_lowercase()), "{out}");

    // A bucket nobody serves: refused after the (here: no) retries, naming the blob store.
    let closed = format!("http://127.0.0.1:{}", common::process::free_port());
    let mut broken = env_refs.clone();
    broken.retain(|(k, _)| *k != "PORTCULLIS_STORAGE_S3_ENDPOINT");
    broken.push(("PORTCULLIS_STORAGE_S3_ENDPOINT", &closed));
    broken.push(("PORTCULLIS_STORAGE_S3_MAX_RETRIES", "0"));
    let (ok, out) = portcullis(&["check-config"], &broken);
    assert!(!ok);
    assert!(out.contains("blob store does not accept writes"), "{out}");
    // A database nobody serves: the error names it, and carries no password.
    let db = format!("postgres://portcullis:hunter2-secret@127.0.0.1:{}/x", common::process::free_port());
    let mut broken = env_refs.clone();
    broken.retain(|(k, _)| *k != "PORTCULLIS_DATABASE_URL");
    broken.push(("PORTCULLIS_DATABASE_URL", &db));
    let (ok, out) = portcullis(&["check-config"], &broken);
    assert!(!ok);
    assert!(out.contains("opening the database at database.url"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
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

/// The secrets scripts/compose-secrets.sh makes for docker-compose.yml work with the real binary:
/// its certificate chains to its CA, its signing key signs tokens, and the admin password file
/// logs in (the same settings the compose file passes, on the embedded database).
#[tokio::test]
async fn compose_secrets_serve_a_registry() {
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    let made = std::process::Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/compose-secrets.sh"))
        .arg(&secrets)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("tls")).unwrap();
    // Where the harness looks for the CA to trust.
    std::fs::copy(secrets.join("ca.crt"), data.join("tls/ca.crt")).unwrap();
    let file = |name: &str| secrets.join(name).display().to_string();
    let env = [
        ("PORTCULLIS_TLS_CERT", file("server.crt")),
        ("PORTCULLIS_TLS_KEY", file("server.key")),
        ("PORTCULLIS_AUTH_SIGNING_KEY", file("token-signing.pem")),
        ("PORTCULLIS_ADMIN_PASSWORD_FILE", file("admin-password")),
    ]
    .map(|(k, v)| (k.to_owned(), v));
    let server = common::process::Server::start_with_env(&data, common::process::free_port(), None, &env);
    let password = std::fs::read_to_string(secrets.join("admin-password")).unwrap();
    let token = server.token("admin", &password, &["repository:compose/app:pull,push"]).await;
    assert_eq!(token.split('.').count(), 3);
    let started =
        server.client().post(server.url("/v2/compose/app/blobs/uploads/")).bearer_auth(&token).send().await.unwrap();
    assert_eq!(started.status(), 202);
}
