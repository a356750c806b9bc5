//! The `portcullis` client against a real registry and the Docker engine: what a CI job runs after
//! `docker push` (`wait-scan` and its exit codes), robots made with the CLI and used by docker, and
//! how fast and how clearly docker stops on a refused push.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::docker::{build_image, build_scratch_image, docker, docker_output, login, trusted_server};
use common::process::{require_tool, Server};

/// `portcullis` as a client of `server`, logged in as `user` through the environment.
fn cli(server: &Server, user: &str, password: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env("PORTCULLIS_URL", server.url(""))
        .env("PORTCULLIS_USERNAME", user)
        .env("PORTCULLIS_PASSWORD", password)
        .env("PORTCULLIS_CA_FILE", server.ca_path())
        .env("PORTCULLIS_CLIENT_CONFIG", server.data_dir.join("client.json"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn setup(server: &Server) {
    use reqwest::Method;
    for ns in ["team", "other"] {
        server.api(Method::POST, "/api/v1/namespaces", serde_json::json!({"name": ns})).await;
    }
    server
        .api(Method::POST, "/api/v1/users", serde_json::json!({"username": "dev", "password": "dev-password-long"}))
        .await;
    server.api(Method::PUT, "/api/v1/namespaces/team/members/dev", serde_json::json!({"role": "developer"})).await;
}

#[tokio::test]
#[ignore = "needs docker: scripts/test.sh runs it"]
async fn wait_scan_tells_ci_the_verdict_of_docker_pushed_images() {
    require_tool("docker");
    let dir = tempfile::tempdir().unwrap();
    let (server, host, certs) = trusted_server(dir.path());
    setup(&server).await;
    login(&host, "dev", "dev-password-long");
    let good = format!("{host}/team/good:1");
    build_scratch_image(&dir.path().join("good"), &good, "a non-root image");
    docker(&["push", &good]);
    let rooty = format!("{host}/team/rooty:1");
    build_image(&dir.path().join("rooty"), &rooty, "an image that runs as root", "");
    docker(&["push", &rooty]);

    // Passed: exit 0, and the verdict in the log.
    let (code, out, err) = cli(&server, "dev", "dev-password-long", &["wait-scan", &good, "--timeout", "2m"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("team/good@sha256:") && out.contains(": passed"), "{out}");
    // Quarantined: exit 1 with the findings.
    let (code, out, err) = cli(&server, "dev", "dev-password-long", &["wait-scan", &rooty, "--timeout", "2m"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("quarantined") && out.contains("root_user"), "{out}");
    // --json for scripts: the report itself.
    let (code, out, _) = cli(&server, "dev", "dev-password-long", &["wait-scan", &rooty, "--json"]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["state"], "quarantined");
    assert_eq!(report["findings"][0]["rule"], "root_user");
    // Errors: exit 2, naming what went wrong.
    let (code, _, err) = cli(&server, "dev", "dev-password-long", &["wait-scan", &format!("{host}/team/none:1")]);
    assert_eq!(code, 2);
    assert!(err.contains("manifest unknown"), "{err}");
    let (code, _, err) = cli(&server, "dev", "wrong-password-long", &["wait-scan", &good]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid username or password"), "{err}");
    let (code, _, err) = cli(&server, "dev", "dev-password-long", &["wait-scan", &format!("{host}/other/app:1")]);
    assert_eq!(code, 2, "{err}");

    // The admin releases it with the CLI; wait-scan then passes it.
    let (code, out, err) = cli(
        &server,
        "admin",
        common::ADMIN_PASSWORD,
        &["scans", "release", &rooty, "--reason", "accepted for the demo"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("released by admin: accepted for the demo"), "{out}");
    let (code, out, _) = cli(&server, "dev", "dev-password-long", &["wait-scan", &rooty]);
    assert_eq!(code, 0, "{out}");
    // A developer may not release.
    let (code, _, err) = cli(&server, "dev", "dev-password-long", &["scans", "release", &rooty, "--reason", "x"]);
    assert_eq!(code, 2);
    assert!(err.contains("denied: an administrator account is needed"), "{err}");

    // A robot made with the CLI; its secret logs docker in and pushes.
    let (code, out, err) = cli(
        &server,
        "admin",
        common::ADMIN_PASSWORD,
        &["robots", "create", "team", "ci", "--repository", "apps/*", "--repository", "good", "--json"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let robot: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(robot["repositories"], serde_json::json!(["apps/*", "good"]));
    assert!(robot["expires_at"].as_str().unwrap().ends_with('Z'), "times are RFC 3339: {robot}");
    login(&host, robot["username"].as_str().unwrap(), robot["secret"].as_str().unwrap());
    let by_robot = format!("{host}/team/apps/api:1");
    build_scratch_image(&dir.path().join("robot"), &by_robot, "pushed by the robot");
    docker(&["push", &by_robot]);
    let (code, out, err) =
        cli(&server, robot["username"].as_str().unwrap(), robot["secret"].as_str().unwrap(), &["wait-scan", &by_robot]);
    assert_eq!(code, 0, "{out}{err}");
    // Outside its patterns the robot is refused, and says which patterns it has.
    let outside = format!("{host}/team/elsewhere:1");
    docker(&["tag", &by_robot, &outside]);
    let (ok, said) = docker_output(&["push", &outside]);
    assert!(!ok);
    assert!(said.contains("push to team/elsewhere denied: robot robot$team+ci may pull,push in team (repositories matching apps/*, good)"), "{said}");

    for image in [&good, &rooty, &by_robot, &outside] {
        let _ = docker_output(&["rmi", "-f", image]);
    }
    let _ = std::fs::remove_dir_all(&certs);
}

#[tokio::test]
#[ignore = "needs docker: scripts/test.sh runs it"]
async fn docker_stops_at_once_on_a_refused_push_and_shows_why() {
    require_tool("docker");
    let dir = tempfile::tempdir().unwrap();
    let (server, host, certs) = trusted_server(dir.path());
    setup(&server).await;
    login(&host, "dev", "dev-password-long");
    let image = format!("{host}/other/ci-app:1");
    build_scratch_image(&dir.path().join("ctx"), &image, "not dev's to push");
    let started = Instant::now();
    let (ok, said) = docker_output(&["push", &image]);
    let took = started.elapsed();
    assert!(!ok, "the push succeeded: {said}");
    assert!(
        said.contains("push to other/ci-app denied: the developer role (or higher) in namespace other is needed"),
        "docker said: {said}"
    );
    assert!(took < Duration::from_secs(5), "docker took {took:?} to give up (it retries what is not final)");
    eprintln!("docker gave up after {took:?}: {}", said.trim());
    // Anonymous: told to log in.
    let _ = docker_output(&["logout", &host]);
    let (ok, said) = docker_output(&["push", &image]);
    assert!(!ok);
    assert!(said.contains("denied") || said.contains("unauthorized"), "{said}");
    let _ = docker_output(&["rmi", "-f", &image]);
    let _ = std::fs::remove_dir_all(&certs);
    let _ = Path::new("");
}

#[tokio::test]
async fn login_saves_a_token_never_the_password_and_logout_revokes_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    setup(&server).await;
    let profile = dir.path().join("profile/client.json");
    let run = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .env("PORTCULLIS_CLIENT_CONFIG", &profile)
            .env_remove("PORTCULLIS_URL")
            .env_remove("PORTCULLIS_USERNAME")
            .env_remove("PORTCULLIS_PASSWORD")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let ca = server.ca_path();
    let url = server.url("");
    let (code, said) = run(
        &["login", &url, "-u", "dev", "--password-stdin", "--ca-file", ca.to_str().unwrap()],
        "dev-password-long\n",
    );
    assert_eq!(code, 0, "{said}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&profile).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(profile.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&profile).unwrap()).unwrap();
    let token = saved["secret"].as_str().unwrap().to_owned();
    assert!(token.starts_with("pcp_"), "a personal access token is saved");
    assert!(!std::fs::read_to_string(&profile).unwrap().contains("dev-password-long"), "the password was saved");
    // The saved login works without any credential given.
    let (code, said) = run(&["namespaces", "members", "team"], "");
    assert_eq!(code, 2, "{said}");
    assert!(
        said.contains("managing namespace team (owner role needed) denied"),
        "a developer lists no members: {said}"
    );
    let (code, said) = run(&["tags", "list", "team/app"], "");
    assert_eq!(code, 2);
    assert!(said.contains("404 Not Found: repository name not known to registry"), "{said}");
    // An image naming another registry than --url is refused, before anything is sent.
    let (code, said) = run(&["wait-scan", "elsewhere.example:5000/team/app:1", "--url", &url], "");
    assert_eq!(code, 2);
    assert!(said.contains("the image names the registry elsewhere.example:5000"), "{said}");
    // A name cannot reach another endpoint.
    let (code, said) = run(&["users", "delete", "../namespaces/team"], "");
    assert_eq!(code, 2, "{said}");
    let ns =
        server.client().get(server.url("/api/v1/namespaces/team")).basic_auth("admin", Some(common::ADMIN_PASSWORD));
    assert_eq!(ns.send().await.unwrap().status(), 200, "the namespace survived");
    // Logout revokes the token.
    let check = |secret: String| {
        let client = server.client();
        let url = server.url("/api/v1/tokens");
        async move { client.get(url).basic_auth("dev", Some(secret)).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(check(token.clone()).await, 200);
    let (code, said) = run(&["logout"], "");
    assert_eq!(code, 0, "{said}");
    assert!(!profile.exists());
    assert_eq!(check(token).await, 401, "the token outlived the logout");
}
