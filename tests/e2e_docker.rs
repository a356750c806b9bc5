//! End to end with the Docker engine: build images FROM scratch, push, remove, pull, compare IDs.
//!
//! Needs `docker` talking to a daemon (scripts/test.sh starts one with the vfs driver on its own
//! socket and exports DOCKER_HOST) and write access to /etc/docker/certs.d to trust the dev CA.

mod common;

use std::path::Path;
use std::process::Command;

use common::process::{require_tool, Server};

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("docker runs");
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn build_scratch_image(dir: &Path, tag: &str, content: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("hello.txt"), content).unwrap();
    std::fs::write(dir.join("more.bin"), content.repeat(5000)).unwrap();
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\nCOPY more.bin /data/more.bin\nCMD [\"/hello.txt\"]\n",
    )
    .unwrap();
    let out = Command::new("docker")
        .args(["build", "-q", "-t", tag])
        .arg(dir)
        .env("DOCKER_BUILDKIT", "0")
        .output()
        .expect("docker build runs");
    assert!(out.status.success(), "docker build failed: {}", String::from_utf8_lossy(&out.stderr));
    docker(&["image", "inspect", "-f", "{{.Id}}", tag])
}

#[test]
fn docker_push_remove_pull_same_image() {
    if !require_tool("docker") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let host = server.host();
    let certs = Path::new("/etc/docker/certs.d").join(&host);
    std::fs::create_dir_all(&certs).expect("write access to /etc/docker/certs.d (run as root)");
    std::fs::copy(server.ca_path(), certs.join("ca.crt")).unwrap();

    let images = [
        (format!("{host}/e2e/app:v1"), "first image"),
        (format!("{host}/e2e/deep/nested/path/name:v2"), "second image, many segments"),
    ];
    let mut ids = Vec::new();
    for (i, (tag, content)) in images.iter().enumerate() {
        let id =
            build_scratch_image(&dir.path().join(format!("ctx{i}")), tag, &format!("{content} {}", std::process::id()));
        let pushed = docker(&["push", tag]);
        assert!(pushed.contains("digest: sha256:"), "{pushed}");
        ids.push(id);
    }
    for (tag, _) in &images {
        docker(&["rmi", "-f", tag]);
    }
    for ((tag, _), id) in images.iter().zip(&ids) {
        docker(&["pull", tag]);
        assert_eq!(&docker(&["image", "inspect", "-f", "{{.Id}}", tag]), id, "{tag} came back different");
    }
    // Pull by digest too.
    let digest = docker(&["image", "inspect", "-f", "{{index .RepoDigests 0}}", &images[0].0]);
    docker(&["rmi", "-f", &images[0].0]);
    docker(&["pull", &digest]);
    assert_eq!(docker(&["image", "inspect", "-f", "{{.Id}}", &digest]), ids[0]);
    // A tag that does not exist fails cleanly.
    let missing = Command::new("docker").args(["pull", &format!("{host}/e2e/app:missing")]).output().unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("manifest unknown"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    for (tag, _) in &images {
        let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
    }
    let _ = Command::new("docker").args(["rmi", "-f", &digest]).output();
    let _ = std::fs::remove_dir_all(&certs);
}
