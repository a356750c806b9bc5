//! A newcomer's first hour: the README's quick start run as written, and what a person meets when
//! something is off (discoverable endpoints, start-up errors that name their path and key, one
//! server per data directory, the trust hint).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::process::{free_port, require_tool, Server};

/// One command of the quick start and what the README promises about it.
struct Step {
    command: String,
    /// `# says: "..."`: succeeds and prints this; `# refused: "..."`: fails and prints this.
    says: Option<String>,
    refused: Option<String>,
}

/// The shell lines between `<!-- quickstart:begin -->` and `<!-- quickstart:end -->` in README.md.
fn quick_start() -> Vec<Step> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let mut steps = Vec::new();
    let mut rest = readme.as_str();
    while let Some(begin) = rest.find("<!-- quickstart:begin -->") {
        let block = &rest[begin..];
        let end = block.find("<!-- quickstart:end -->").expect("every quickstart block ends");
        for line in block[..end].lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with("```") || line.starts_with("<!--") || line.starts_with('#') {
                continue;
            }
            let quoted = |marker: &str| {
                line.find(marker).map(|at| {
                    let text = &line[at + marker.len()..];
                    text.trim().trim_start_matches('"').split('"').next().unwrap_or("").to_owned()
                })
            };
            let (says, refused) = (quoted("# says: "), quoted("# refused: "));
            let command = match line.rfind("  #") {
                Some(at) => line[..at].trim().to_owned(),
                None => line.to_owned(),
            };
            steps.push(Step { command, says, refused });
        }
        rest = &block[end..];
    }
    steps
}

#[test]
#[ignore = "needs docker: scripts/test.sh runs it"]
fn the_readme_quick_start_runs_as_written() {
    require_tool("docker");
    require_tool("curl");
    require_tool("skopeo");
    let steps = quick_start();
    assert!(steps.len() >= 20, "the README's quick start has {} commands", steps.len());
    // The README's own port: it must be free, or the quick start would talk to someone else.
    assert!(
        std::net::TcpListener::bind("127.0.0.1:5000").is_ok(),
        "port 5000 is taken; the quick start uses it as written"
    );
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    // The one step not run: `cargo build --release` (the test binary is what it would build).
    let release = work.join("target/release");
    std::fs::create_dir_all(&release).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_portcullis"), release.join("portcullis")).unwrap();
    // A root shell without sudo (CI) runs `sudo X` as X.
    let shims = work.join("shims");
    std::fs::create_dir_all(&shims).unwrap();
    if Command::new("sh").arg("-c").arg("command -v sudo").output().map(|o| !o.status.success()).unwrap_or(true) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::write(shims.join("sudo"), "#!/bin/sh\nexec \"$@\"\n").unwrap();
        std::fs::set_permissions(shims.join("sudo"), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut script = String::from("cd \"$WORK\"\n");
    let mut run = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        if step.command.starts_with("cargo build") {
            continue;
        }
        script.push_str(&format!("{{ {}\n}} > out.{i} 2>&1 < /dev/null\necho $? > rc.{i}\n", step.command));
        run.push(i);
    }
    script.push_str("jobs -p > background.pids\n");
    // Redirections inside a command (`< data/admin-password`) win over the group's /dev/null.
    let script = script.replace("2>&1 < /dev/null", "2>&1");
    std::fs::write(work.join("quickstart.sh"), &script).unwrap();
    let status = Command::new("bash")
        .arg(work.join("quickstart.sh"))
        .env("WORK", work)
        .env("PATH", format!("{}:{}", shims.display(), std::env::var("PATH").unwrap()))
        .env("DOCKER_CONFIG", work.join("docker-config"))
        .env("PORTCULLIS_CLIENT_CONFIG", work.join("client.json"))
        .env_remove("PORTCULLIS_URL")
        .env_remove("PORTCULLIS_USERNAME")
        .env_remove("PORTCULLIS_PASSWORD")
        .env("PORTCULLIS_LOG", "info")
        .status()
        .unwrap();
    // Stop the registry the quick start left running.
    let pids = std::fs::read_to_string(work.join("background.pids")).unwrap_or_default();
    for pid in pids.split_whitespace() {
        let _ = Command::new("kill").arg(pid).status();
    }
    let mut failures = Vec::new();
    for i in run {
        let step = &steps[i];
        let out = std::fs::read_to_string(work.join(format!("out.{i}"))).unwrap_or_default();
        let rc: i32 =
            std::fs::read_to_string(work.join(format!("rc.{i}"))).unwrap_or_default().trim().parse().unwrap_or(-1);
        let ok = match (&step.says, &step.refused) {
            (_, Some(text)) => rc != 0 && out.contains(text.as_str()),
            (Some(text), None) => rc == 0 && out.contains(text.as_str()),
            (None, None) => rc == 0,
        };
        if !ok {
            failures
                .push(format!("`{}` exited {rc}, promised {:?}/{:?}:\n{out}", step.command, step.says, step.refused));
        }
    }
    for image in ["127.0.0.1:5000/team/hello:1", "127.0.0.1:5000/team/rooty:1"] {
        let _ =
            Command::new("docker").args(["rmi", "-f", image]).env("DOCKER_CONFIG", work.join("docker-config")).output();
    }
    let _ = std::fs::remove_dir_all("/etc/docker/certs.d/127.0.0.1:5000");
    assert!(status.success(), "the quick start script did not run");
    let log = std::fs::read_to_string(work.join("portcullis.log")).unwrap_or_default();
    assert!(
        failures.is_empty(),
        "the README's quick start broke its promises:\n{}\nserver log:\n{log}",
        failures.join("\n")
    );
}

#[test]
fn the_quick_start_is_marked_in_the_readme() {
    let steps = quick_start();
    // What the newcomer is promised, each checked by the test above.
    for promise in ["Login Succeeded", "passed", "quarantined", "is quarantined: the image runs as root", "released"] {
        assert!(
            steps.iter().any(|s| s.says.as_deref() == Some(promise) || s.refused.as_deref() == Some(promise)),
            "no quick start step promises {promise:?}"
        );
    }
    assert!(steps.iter().any(|s| s.command.starts_with("docker rmi")), "the demo drops the local copy before pulling");
}

#[tokio::test]
async fn a_person_finds_the_way_from_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let client = server.client();
    for path in ["/", "/docs"] {
        let reply = client.get(server.url(path)).send().await.unwrap();
        assert_eq!(reply.status(), 200, "{path}");
        let body: serde_json::Value = reply.json().await.unwrap();
        assert_eq!(body["registry_api"], server.url("/v2/"));
        assert_eq!(body["admin_api"], server.url("/api/v1"));
        assert_eq!(body["ca_certificate"], server.url("/ca.crt"));
    }
    let index: serde_json::Value = client.get(server.url("/api/v1")).send().await.unwrap().json().await.unwrap();
    assert_eq!(index["endpoints"]["scans"], server.url("/api/v1/scans"));
    assert_eq!(client.get(server.url("/health")).send().await.unwrap().status(), 200);
    // The CA certificate, exactly the file on disk, to anyone; never a key.
    let ca = client.get(server.url("/ca.crt")).send().await.unwrap();
    assert_eq!(ca.status(), 200);
    let pem = ca.bytes().await.unwrap();
    assert_eq!(pem.as_ref(), std::fs::read(server.ca_path()).unwrap().as_slice());
    assert!(!String::from_utf8_lossy(&pem).contains("PRIVATE KEY"));
    // The trust hint names the public URL's host.
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(log.contains(&format!("/etc/docker/certs.d/{}", server.host())), "{log}");
    // The log is a file: no colour codes in it.
    assert!(!log.contains('\u{1b}'), "ANSI escapes in a log file");
}

#[tokio::test]
async fn a_configured_certificate_serves_no_ca() {
    let r = common::TestRegistry::with_config(tempfile::tempdir().unwrap(), |c| {
        c.tls.cert = Some("/nonexistent/server.crt".into());
        c.tls.key = Some("/nonexistent/server.key".into());
    })
    .await;
    let reply = r.get("/ca.crt").await;
    assert_eq!(reply.status, 404);
}

/// `portcullis ARGS` with `env`; exit status and standard error.
fn portcullis(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("PORTCULLIS_ADMIN_PASSWORD")
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

#[test]
fn a_second_server_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    if common::backends::for_data_dir(dir.path()).is_some() {
        // On PostgreSQL replicas share no data directory and take no lock: the scale-out tests
        // start several on one database.
        let _ = Server::start(dir.path());
        return;
    }
    let _first = Server::start(dir.path());
    let data = dir.path().to_str().unwrap();
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let (ok, said) = portcullis(
        &["serve"],
        &[("PORTCULLIS_DATA_DIR", data), ("PORTCULLIS_LISTEN", &listen), ("PORTCULLIS_ADMIN_PASSWORD", "x")],
    );
    assert!(!ok, "a second server started: {said}");
    assert!(said.contains("another Portcullis is already serving the SQLite database"), "{said}");
    assert!(said.contains("portcullis.db.lock"), "{said}");
    // Another data directory on the same database file is the same database.
    let other = tempfile::tempdir().unwrap();
    let db = dir.path().join("portcullis.db");
    let (ok, said) = portcullis(
        &["serve"],
        &[
            ("PORTCULLIS_DATA_DIR", other.path().to_str().unwrap()),
            ("PORTCULLIS_DATABASE_PATH", db.to_str().unwrap()),
            ("PORTCULLIS_LISTEN", &listen),
        ],
    );
    assert!(!ok && said.contains("another Portcullis is already serving"), "{said}");
}

#[test]
fn start_up_refusals_name_the_key_and_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // A short admin password, as every other way of setting one refuses it.
    let (ok, said) = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("serve")
        .env("PORTCULLIS_DATA_DIR", data_s)
        .env("PORTCULLIS_LISTEN", &listen)
        .env("PORTCULLIS_ADMIN_PASSWORD", "abc")
        .output()
        .map(|o| (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned()))
        .unwrap();
    assert!(!ok && said.contains("at least 12 characters"), "{said}");
    // A misspelt key: named with its variable, and the key that was meant.
    let (ok, said) =
        portcullis(&["check-config"], &[("PORTCULLIS_DATA_DIR", data_s), ("PORTCULLIS_SCAN_ROOT_USR", "warn")]);
    assert!(!ok);
    assert!(said.contains("unknown key scan.root_usr (PORTCULLIS_SCAN_ROOT_USR)"), "{said}");
    assert!(said.contains("did you mean scan.root_user"), "{said}");
    assert!(!said.contains("expected `one of"), "serde's text leaked: {said}");
    // A bad value names the key and what it takes.
    let file = dir.path().join("c.toml");
    std::fs::write(&file, "[scan]\nroot_user = \"blok\"\n").unwrap();
    let (ok, said) =
        portcullis(&["check-config", "--config", file.to_str().unwrap()], &[("PORTCULLIS_DATA_DIR", data_s)]);
    assert!(!ok && said.contains("scan.root_user") && said.contains("block, warn, off"), "{said}");
    // A host name to listen on is resolved.
    let host = format!("localhost:{port}");
    let (ok, said) = portcullis(&["check-config"], &[("PORTCULLIS_DATA_DIR", data_s), ("PORTCULLIS_LISTEN", &host)]);
    assert!(ok, "{said}");
    assert!(said.contains("listening on 127.0.0.1:") || said.contains("listening on [::1]:"), "{said}");
    // A data directory that cannot be created: the path is named, once.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let inside = blocker.join("data");
    let (ok, said) = portcullis(&["check-config"], &[("PORTCULLIS_DATA_DIR", inside.to_str().unwrap())]);
    assert!(!ok);
    assert!(said.contains(inside.to_str().unwrap()), "{said}");
    let reason = "Not a directory";
    assert_eq!(said.matches(reason).count(), 1, "the cause is printed once: {said}");
}

#[test]
fn an_unroutable_public_url_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("serve")
        .env("PORTCULLIS_DATA_DIR", dir.path())
        .env("PORTCULLIS_LISTEN", format!("0.0.0.0:{port}"))
        .env("PORTCULLIS_ADMIN_PASSWORD", common::ADMIN_PASSWORD)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains(&format!("public_url https://0.0.0.0:{port} is not an address clients can reach")), "{log}");
}
