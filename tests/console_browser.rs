//! The web console in a real browser: Debian's chromium, driven over WebDriver (chromium-driver)
//! with fantoccini, against a registry process that the Docker engine pushes to.
//!
//! One journey, as an admin, a reader and a robot would live it: sign in; find the image docker
//! pushed in the quarantine queue with its finding; see that nothing the image carries ran in the
//! page; release it with a reason; create a robot and push with its secret; sign out and find the
//! old cookie dead; as a reader, no release button and a forged release refused. Screenshots of the
//! main pages are written to `docs/console/` (the README links them), regenerated on every run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::docker::{
    build_image, build_scratch_image, docker, docker_cmd, login, pushed_digest, trusted_server, wait_scan,
};
use common::process::{free_port, require_tool, Server};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// chromedriver on a loopback port, stopped with the test.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_driver() -> (Driver, u16) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    (Driver(child), port)
}

/// A fresh headless chromium (its own profile: no cookies shared between browsers).
async fn browser(driver_port: u16, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--hide-scrollbars", "--no-first-run",
                format!("--user-data-dir={}", profile.display()),
                // The registry's development CA is not in chromium's store; the connection is
                // still TLS, so `Secure` cookies behave as in production.
                "--ignore-certificate-errors",
            ]
        }),
    );
    caps.insert("acceptInsecureCerts".into(), json!(true));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a WebDriver session with chromium")
}

fn shots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    std::fs::write(shots().join(name), png).unwrap();
}

async fn sign_in(c: &Client, server: &Server, user: &str, password: &str) {
    c.goto(&server.url("/ui/")).await.unwrap();
    c.find(Locator::Css("input[name=username]")).await.unwrap().send_keys(user).await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(password).await.unwrap();
    c.find(Locator::Css("form.login button[type=submit]")).await.unwrap().click().await.unwrap();
    if c.wait().at_most(Duration::from_secs(15)).for_element(Locator::Css("form.signout")).await.is_err() {
        panic!("signing in as {user} failed; the page says: {}", body_text(c).await);
    }
}

/// Whether any script from the image's text ran: the payloads set `window.__xss`, and no element
/// of theirs exists.
async fn assert_inert(c: &Client) {
    let ran = c
        .execute(
            "return [typeof window.__xss, document.querySelectorAll('img').length, \
             document.querySelectorAll('script:not([src])').length];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(ran, json!(["undefined", 0, 0]), "markup from the image became live in the page");
}

async fn body_text(c: &Client) -> String {
    c.find(Locator::Css("body")).await.unwrap().text().await.unwrap()
}

/// Builds an image that runs as root (quarantined by the default policy) whose labels and a
/// file name carry markup.
fn hostile_image(dir: &Path, tag: &str) -> String {
    // The file goes in through a directory: its name never passes through the Dockerfile's parser.
    let files = dir.join("payload");
    std::fs::create_dir_all(&files).unwrap();
    let payload = files.join("\"><img src=x onerror=window.__xss=3>");
    std::fs::write(&payload, "#!/bin/sh\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&payload, std::fs::Permissions::from_mode(0o4777)).unwrap();
    let extra = "LABEL evil=\"<script>window.__xss=1</script>\" attr=\"\\\"><img src=x onerror=window.__xss=2>\"\n\
                 COPY payload/ /app/\n";
    build_image(dir, tag, "hostile", extra)
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs docker, chromium and chromium-driver: scripts/test.sh runs it"]
async fn the_console_in_a_real_browser() {
    for tool in ["docker", "chromium", "chromedriver"] {
        require_tool(tool);
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, host, _certs) = trusted_server(dir.path());
    server.api(reqwest::Method::POST, "/api/v1/namespaces", json!({"name": "team"})).await;
    server
        .api(reqwest::Method::POST, "/api/v1/users", json!({"username": "rita", "password": "reader-password-1"}))
        .await;
    server.api(reqwest::Method::PUT, "/api/v1/namespaces/team/members/rita", json!({"role": "reader"})).await;

    // docker pushes an image the scanner quarantines.
    login(&host, "admin", common::ADMIN_PASSWORD);
    let tag = format!("{host}/team/app:v1");
    hostile_image(&dir.path().join("ctx"), &tag);
    let digest = pushed_digest(&docker(&["push", &tag]));
    assert_eq!(wait_scan(&server, "team/app", &digest).await, "quarantined");

    let (_driver, driver_port) = start_driver();
    let admin = browser(driver_port, &dir.path().join("profile-admin")).await;
    admin.goto(&server.url("/ui/")).await.unwrap();
    admin.find(Locator::Css("form.login")).await.expect("the login form at /ui/");
    shot(&admin, "login.png").await;
    sign_in(&admin, &server, "admin", common::ADMIN_PASSWORD).await;
    assert!(body_text(&admin).await.contains("team/app"), "the pushed repository is listed");
    shot(&admin, "repositories.png").await;

    // The quarantine queue shows the image and why; its page shows the finding, inert.
    admin.goto(&server.url("/ui/quarantine")).await.unwrap();
    let queue = body_text(&admin).await;
    assert!(queue.contains("team/app") && queue.contains("quarantined"), "{queue}");
    assert!(queue.contains("root"), "the finding says the image runs as root: {queue}");
    assert_inert(&admin).await;
    shot(&admin, "quarantine.png").await;
    admin.find(Locator::Css("article.card h2 a")).await.unwrap().click().await.unwrap();
    admin.wait().for_element(Locator::Css("section.verdict")).await.unwrap();
    let page = body_text(&admin).await;
    assert!(page.contains("<script>window.__xss=1</script>"), "the label is shown as text");
    assert!(page.contains("\"><img src=x onerror=window.__xss=3>"), "the file path is shown as text");
    assert_inert(&admin).await;
    shot(&admin, "image-quarantined.png").await;

    // Release with a reason; the state changes on the page and in the API.
    admin
        .find(Locator::Css("form.release input[name=reason]"))
        .await
        .unwrap()
        .send_keys("reviewed: test fixture")
        .await
        .unwrap();
    admin.find(Locator::Css("form.release button[type=submit]")).await.unwrap().click().await.unwrap();
    admin.wait().for_element(Locator::Css("p.notice")).await.unwrap();
    let page = body_text(&admin).await;
    assert!(page.contains("released") && page.contains("reviewed: test fixture"), "{page}");
    shot(&admin, "image-released.png").await;
    let report = server
        .api(reqwest::Method::GET, &format!("/api/v1/scans?repository=team/app&digest={digest}"), json!(null))
        .await;
    assert_eq!((report["state"].as_str(), report["released_by"].as_str()), (Some("released"), Some("admin")));

    // The page works on a phone: nothing wider than the screen.
    admin.set_window_size(390, 844).await.unwrap();
    admin.refresh().await.unwrap();
    let fits =
        admin.execute("return document.documentElement.scrollWidth <= window.innerWidth + 1;", vec![]).await.unwrap();
    assert_eq!(fits, json!(true), "the image page is wider than a phone");
    shot(&admin, "phone-image.png").await;
    admin.set_window_size(1280, 900).await.unwrap();

    // The people pages.
    admin.goto(&server.url("/ui/namespace?name=team")).await.unwrap();
    assert!(body_text(&admin).await.contains("rita"), "the reader is listed as a member");
    shot(&admin, "namespace.png").await;
    admin.goto(&server.url("/ui/users")).await.unwrap();
    shot(&admin, "users.png").await;
    admin.goto(&server.url("/ui/audit?action=scan.release")).await.unwrap();
    assert!(body_text(&admin).await.contains("reviewed: test fixture"), "the release is in the audit log");
    shot(&admin, "audit.png").await;

    // A robot, created here, pushes with the secret shown once.
    admin.goto(&server.url("/ui/robots?namespace=team")).await.unwrap();
    admin.find(Locator::Css("form.create input[name=name]")).await.unwrap().send_keys("ci").await.unwrap();
    admin.find(Locator::Css("form.create input[name=push]")).await.unwrap().click().await.unwrap();
    admin.find(Locator::Css("form.create button[type=submit]")).await.unwrap().click().await.unwrap();
    let secret = admin.wait().for_element(Locator::Id("robot-secret")).await.unwrap().text().await.unwrap();
    let login_line = admin.find(Locator::Id("robot-login")).await.unwrap().text().await.unwrap();
    assert!(secret.starts_with("pcr_") && login_line.contains(&host) && login_line.contains("robot$team+ci"));
    // (The screenshot must not carry a secret, even a throwaway one.)
    admin
        .execute(
            "document.querySelectorAll('#robot-secret').forEach(e => \
             e.textContent = e.textContent.replace(/pcr_[A-Za-z0-9]+/, 'pcr_••••••'));",
            vec![],
        )
        .await
        .unwrap();
    shot(&admin, "robot-created.png").await;
    docker(&["logout", &host]);
    login(&host, "robot$team+ci", &secret);
    let robot_tag = format!("{host}/team/from-robot:v1");
    build_scratch_image(&dir.path().join("ctx-robot"), &robot_tag, "pushed by a robot");
    let pushed = docker(&["push", &robot_tag]);
    assert!(pushed.contains("digest: sha256:"), "{pushed}");
    let _ = docker_cmd(&["logout", &host]).output();

    // Signing out ends the session on the server: the old cookie opens nothing.
    let cookie = admin.get_named_cookie("__Host-portcullis_session").await.unwrap();
    let (name, value) = (cookie.name().to_owned(), cookie.value().to_owned());
    assert!(cookie.http_only() == Some(true) && cookie.secure() == Some(true));
    admin.goto(&server.url("/ui/push")).await.unwrap();
    shot(&admin, "how-to-push.png").await;
    admin.find(Locator::Css("form.signout button")).await.unwrap().click().await.unwrap();
    admin.wait().for_element(Locator::Css("form.login")).await.unwrap();
    let replay =
        server.client().get(server.url("/ui/")).header("cookie", format!("{name}={value}")).send().await.unwrap();
    let replayed = replay.text().await.unwrap();
    assert!(replayed.contains("action=\"/ui/login\"") && !replayed.contains("Sign out"), "the old cookie still works");
    admin.close().await.unwrap();

    // A reader sees the image but no decision, and a forged release from its session is refused.
    let reader = browser(driver_port, &dir.path().join("profile-reader")).await;
    sign_in(&reader, &server, "rita", "reader-password-1").await;
    reader.goto(&server.url(&format!("/ui/image?repository=team/app&digest={digest}"))).await.unwrap();
    reader.wait().for_element(Locator::Css("section.verdict")).await.unwrap();
    assert!(reader.find(Locator::Css("form.release")).await.is_err(), "a reader sees a release button");
    assert!(reader.find(Locator::Css("a[href='/ui/quarantine']")).await.is_err());
    let source = reader.source().await.unwrap();
    let at = source.find("name=\"csrf\" value=\"").unwrap() + "name=\"csrf\" value=\"".len();
    let csrf = &source[at..at + 64];
    let session = reader.get_named_cookie("__Host-portcullis_session").await.unwrap();
    // The forged form, posted from the reader's own page with its own session and token.
    let status = reader
        .execute_async(
            "const done = arguments[arguments.length - 1]; \
             const body = new URLSearchParams({csrf: arguments[0], repository: 'team/app', digest: arguments[1], reason: 'mine'}); \
             fetch('/ui/image/reject', {method: 'POST', body}).then(r => done(r.status), e => done(String(e)));",
            vec![json!(csrf), json!(digest)],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(403), "a reader's reject was not refused");
    let forged = server
        .client()
        .post(server.url("/ui/image/reject"))
        .header("cookie", format!("{}={}", session.name(), session.value()))
        .form(&[("csrf", csrf), ("repository", "team/app"), ("digest", digest.as_str()), ("reason", "mine")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let report = server
        .api(reqwest::Method::GET, &format!("/api/v1/scans?repository=team/app&digest={digest}"), json!(null))
        .await;
    assert_eq!(report["state"], "released", "the reader changed nothing");
    reader.close().await.unwrap();
}
