//! The Docker engine as the tests drive it: a client configuration of the test's own, images built
//! `FROM scratch` (no network), and a registry process whose development CA the engine trusts.

use std::path::Path;
use std::process::Command;

use super::process::Server;

thread_local! {
    /// This test's own docker client configuration (credentials), so it touches no one else's.
    static DOCKER_CONFIG: tempfile::TempDir = tempfile::tempdir().unwrap();
}

pub fn docker_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    DOCKER_CONFIG.with(|d| cmd.env("DOCKER_CONFIG", d.path()));
    cmd
}

/// `docker login` with the secret on standard input.
pub fn login(host: &str, user: &str, secret: &str) {
    use std::io::Write;
    let mut child = docker_cmd(&["login", host, "-u", user, "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(secret.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "docker login as {user} failed: {}", String::from_utf8_lossy(&out.stderr));
}

pub fn docker(args: &[&str]) -> String {
    let out = docker_cmd(args).output().expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub fn build_scratch_image(dir: &Path, tag: &str, content: &str) -> String {
    build_image(dir, tag, content, "USER 10001\n")
}

/// Builds an image FROM scratch; `extra` adds Dockerfile lines (such as `USER`).
pub fn build_image(dir: &Path, tag: &str, content: &str, extra: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("hello.txt"), content).unwrap();
    std::fs::write(dir.join("more.bin"), content.repeat(5000)).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        format!("FROM scratch\nCOPY hello.txt /hello.txt\nCOPY more.bin /data/more.bin\n{extra}CMD [\"/hello.txt\"]\n"),
    )
    .unwrap();
    let out = docker_cmd(&["build", "-q", "-t", tag])
        .arg(dir)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("docker build runs");
    assert!(out.status.success(), "docker build failed: {}", String::from_utf8_lossy(&out.stderr));
    docker(&["image", "inspect", "-f", "{{.Id}}", tag])
}

/// A registry process whose development CA the Docker engine trusts (certs.d, as the README says).
pub fn trusted_server(dir: &Path) -> (Server, String, std::path::PathBuf) {
    trusted_server_with(dir, &[])
}

/// The same, with extra environment for the registry.
pub fn trusted_server_with(dir: &Path, env: &[(String, String)]) -> (Server, String, std::path::PathBuf) {
    let server = Server::start_with_extra_env(dir, super::process::free_port(), env);
    let host = server.host();
    let certs = Path::new("/etc/docker/certs.d").join(&host);
    std::fs::create_dir_all(&certs).expect("write access to /etc/docker/certs.d (run as root)");
    std::fs::copy(server.ca_path(), certs.join("ca.crt")).unwrap();
    (server, host, certs)
}

/// The manifest digest `docker push` printed.
pub fn pushed_digest(output: &str) -> String {
    let at = output.find("digest: sha256:").expect("docker push prints the digest") + "digest: ".len();
    output[at..].split_whitespace().next().unwrap().to_owned()
}

pub async fn wait_scan(server: &Server, repo: &str, digest: &str) -> String {
    let report = api(
        server,
        reqwest::Method::GET,
        &format!("/api/v1/scans?repository={repo}&digest={digest}&wait=60s"),
        serde_json::Value::Null,
    )
    .await;
    report["state"].as_str().unwrap().to_owned()
}

pub async fn api(server: &Server, method: reqwest::Method, path: &str, body: serde_json::Value) -> serde_json::Value {
    server.api(method, path, body).await
}

/// This thread's docker client configuration directory (its credentials).
pub fn docker_config() -> std::path::PathBuf {
    DOCKER_CONFIG.with(|d| d.path().to_path_buf())
}

/// A docker command's exit status and everything it printed.
pub fn docker_output(args: &[&str]) -> (bool, String) {
    let out = docker_cmd(args).output().expect("docker runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
