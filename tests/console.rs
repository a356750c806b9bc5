//! The web console over HTTP (the browser tests are in `console_browser.rs`): sessions, their
//! cookie and their revocation, CSRF and origin checks on every change, the security headers on
//! every answer, what a reader may and may not do, and escaping of what images carry.

mod common;

use axum::body::Body;
use common::auth::basic;
use common::{images, Reply, TestRegistry, ADMIN_PASSWORD};
use serde_json::json;

const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn text(r: &Reply) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Every console answer carries the security headers.
#[track_caller]
fn assert_hardened(r: &Reply) {
    let csp = r.header("content-security-policy");
    for part in ["default-src 'none'", "script-src 'self'", "frame-ancestors 'none'", "form-action 'self'"] {
        assert!(csp.contains(part), "CSP {csp:?} lacks {part}");
    }
    assert!(!csp.contains("unsafe-inline") && !csp.contains("http"), "{csp}");
    assert_eq!(r.header("x-frame-options"), "DENY");
    assert_eq!(r.header("referrer-policy"), "same-origin");
    assert_eq!(r.header("x-content-type-options"), "nosniff");
}

/// Signs in through the form; the session cookie (`name=value`).
async fn sign_in(reg: &TestRegistry, user: &str, password: &str) -> String {
    let body = format!("username={}&password={}", enc(user), enc(password));
    let r = reg.send_raw("POST", "/ui/login", &[FORM], body).await;
    assert_eq!(r.status, 303, "{}", text(&r));
    assert_hardened(&r);
    let cookie = r.header("set-cookie").to_owned();
    for flag in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.split("; ").any(|f| f == flag), "cookie {cookie:?} lacks {flag}");
    }
    assert!(cookie.starts_with("__Host-portcullis_session="), "{cookie}");
    assert!(!cookie.contains("Domain"), "{cookie}");
    cookie.split(';').next().unwrap().to_owned()
}

async fn page(reg: &TestRegistry, uri: &str, cookie: &str) -> Reply {
    let r = reg.send_raw("GET", uri, &[("cookie", cookie)], Body::empty()).await;
    assert_hardened(&r);
    r
}

/// The CSRF token in a page's forms.
fn csrf_of(page: &Reply) -> String {
    let s = text(page);
    let at = s.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + "name=\"csrf\" value=\"".len();
    s[at..at + 64].to_owned()
}

async fn post(reg: &TestRegistry, uri: &str, cookie: &str, extra: &[(&str, &str)], body: String) -> Reply {
    let mut headers = vec![FORM, ("cookie", cookie)];
    headers.extend_from_slice(extra);
    let r = reg.send_raw("POST", uri, &headers, body).await;
    assert_hardened(&r);
    r
}

async fn api(reg: &TestRegistry, method: &str, uri: &str, body: serde_json::Value) -> Reply {
    let auth = basic("admin", ADMIN_PASSWORD);
    reg.send_raw(method, uri, &[("authorization", &auth), ("content-type", "application/json")], body.to_string()).await
}

/// An image that runs as root (quarantined by default) whose label, environment and a file path
/// carry markup.
async fn hostile_image(reg: &TestRegistry, repo: &str) -> portcullis::domain::Digest {
    let config = json!({"architecture": "amd64", "os": "linux", "config": {
        "User": "",
        "Env": ["PATH=/usr/bin", "DB_PASSWORD=hunter2-very-secret"],
        "Labels": {"evil": "<script>window.__xss=1</script>", "attr": "\"><img src=x onerror=window.__xss=2>"}
    }, "rootfs": {"type": "layers", "diff_ids": []}});
    let layer = images::layer_tar_gz("app/\"><img src=x onerror=window.__xss=3>.sh", b"#!/bin/sh\n", 0o4755);
    let (digest, ..) = reg.push_layers(repo, "v1", config.to_string().as_bytes(), &[&layer]).await;
    assert_eq!(reg.wait_scan(repo, &digest).await, "quarantined");
    digest
}

#[tokio::test]
async fn anonymous_visitors_get_the_login_form_and_nothing_else() {
    let reg = TestRegistry::new().await;
    let r = reg.send_raw("GET", "/ui/", &[], Body::empty()).await;
    assert_eq!(r.status, 200);
    assert_hardened(&r);
    let s = text(&r);
    assert!(s.contains("action=\"/ui/login\"") && s.contains("name=\"username\"") && s.contains("name=\"password\""));
    for path in ["/ui/quarantine", "/ui/robots", "/ui/repository?name=a/b", "/ui/push"] {
        let r = reg.send_raw("GET", path, &[], Body::empty()).await;
        assert_eq!((path, r.status.as_u16(), r.header("location")), (path, 303, "/ui/login"));
        assert_hardened(&r);
    }
    // A forged cookie is no session.
    let fake = format!("__Host-portcullis_session={}", "a".repeat(43));
    let r = page(&reg, "/ui/quarantine", &fake).await;
    assert_eq!(r.status, 303);
    // Headers on errors and assets too.
    for path in ["/ui/nope", "/ui/assets/app.css", "/ui/assets/app.js", "/ui/assets/x.js", "/ui"] {
        assert_hardened(&reg.send_raw("GET", path, &[], Body::empty()).await);
    }
    let css = reg.send_raw("GET", "/ui/assets/app.css", &[], Body::empty()).await;
    assert_eq!((css.status.as_u16(), css.header("content-type")), (200, "text/css; charset=utf-8"));
    let r = reg.send_raw("PUT", "/ui/login", &[], Body::empty()).await;
    assert_eq!(r.status, 405);
    assert_hardened(&r);
}

#[tokio::test]
async fn only_a_users_password_opens_a_session() {
    let reg = TestRegistry::new().await;
    let bad = reg.send_raw("POST", "/ui/login", &[FORM], "username=admin&password=wrong").await;
    assert_eq!(bad.status, 401);
    assert!(bad.header("set-cookie").is_empty());
    assert!(text(&bad).contains("Invalid username or password"));
    // A personal access token and a robot secret are refused, though the API takes them.
    api(&reg, "POST", "/api/v1/namespaces", json!({"name": "team"})).await;
    let token = api(&reg, "POST", "/api/v1/tokens", json!({"name": "ci", "expires_at": common::in_days(3)})).await;
    let secret = token.json()["token"].as_str().unwrap().to_owned();
    let r = reg.send_raw("POST", "/ui/login", &[FORM], format!("username=admin&password={}", enc(&secret))).await;
    assert_eq!(r.status, 401, "{}", text(&r));
    assert!(r.header("set-cookie").is_empty() && text(&r).contains("personal access tokens"));
    let robot = api(
        &reg,
        "POST",
        "/api/v1/namespaces/team/robots",
        json!({"name": "ci", "actions": ["pull"], "expires_at": common::in_days(3)}),
    )
    .await;
    let (user, secret) =
        (robot.json()["username"].as_str().unwrap().to_owned(), robot.json()["secret"].as_str().unwrap().to_owned());
    let r =
        reg.send_raw("POST", "/ui/login", &[FORM], format!("username={}&password={}", enc(&user), enc(&secret))).await;
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_empty());
    // Failed sign-ins are throttled as at /token.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(reg.send_raw("POST", "/ui/login", &[FORM], "username=admin&password=nope").await.status.as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    // A form from another site, or not a form, is refused before the password is checked.
    let r = reg
        .send_raw("POST", "/ui/login", &[FORM, ("origin", "https://evil.example")], "username=admin&password=x")
        .await;
    assert_eq!(r.status, 403);
    let r =
        reg.send_raw("POST", "/ui/login", &[("content-type", "application/json")], "{\"username\":\"admin\"}").await;
    assert_eq!(r.status, 415);
}

#[tokio::test]
async fn changes_need_this_sessions_csrf_token_and_this_origin() {
    let reg = TestRegistry::new().await;
    let digest = hostile_image(&reg, "team/app").await;
    let cookie = sign_in(&reg, "admin", ADMIN_PASSWORD).await;
    let image = format!("/ui/image?repository=team/app&digest={digest}");
    let csrf = csrf_of(&page(&reg, &image, &cookie).await);
    let release = |csrf: &str| format!("csrf={csrf}&repository=team/app&digest={digest}&reason=reviewed");
    // No token, an empty one, another session's token, another origin, another site: refused.
    let other = sign_in(&reg, "admin", ADMIN_PASSWORD).await;
    let other_csrf = csrf_of(&page(&reg, &image, &other).await);
    assert_ne!(csrf, other_csrf);
    for (body, extra) in [
        (format!("repository=team/app&digest={digest}&reason=x"), vec![]),
        (release(""), vec![]),
        (release(&other_csrf), vec![]),
        (release(&csrf), vec![("origin", "https://evil.example")]),
        (release(&csrf), vec![("sec-fetch-site", "cross-site")]),
        (release(&csrf), vec![("sec-fetch-site", "same-site")]),
    ] {
        let r = post(&reg, "/ui/image/release", &cookie, &extra, body.clone()).await;
        assert_eq!(r.status, 403, "{body} {extra:?}: {}", text(&r));
    }
    let r = reg
        .send_raw("POST", "/ui/image/release", &[("cookie", &cookie), ("content-type", "text/plain")], release(&csrf))
        .await;
    assert_eq!(r.status, 415);
    assert_eq!(reg.verdict("team/app", &digest).await["state"], "quarantined", "nothing was released");
    // The real form: released with the reason, recorded.
    let r = post(&reg, "/ui/image/release", &cookie, &[("sec-fetch-site", "same-origin")], release(&csrf)).await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let v = reg.verdict("team/app", &digest).await;
    assert_eq!((v["state"].as_str(), v["release_reason"].as_str()), (Some("released"), Some("reviewed")));
    let after = page(&reg, r.header("location"), &cookie).await;
    assert!(text(&after).contains("Released by"), "{}", text(&after));
    // A reason is required, as in the API.
    let r =
        post(&reg, "/ui/image/release", &cookie, &[], format!("csrf={csrf}&repository=team/app&digest={digest}")).await;
    assert_eq!(r.status, 400);
    assert!(text(&r).contains("a reason is required"));
}

#[tokio::test]
async fn a_reader_sees_what_it_may_read_and_cannot_decide() {
    let reg = TestRegistry::new().await;
    let digest = hostile_image(&reg, "team/app").await;
    reg.push_image("other/secret", "v1", "s").await;
    api(&reg, "POST", "/api/v1/namespaces", json!({"name": "team"})).await.expect(201, None);
    api(&reg, "POST", "/api/v1/users", json!({"username": "rita", "password": "reader-password-1"})).await;
    api(&reg, "PUT", "/api/v1/namespaces/team/members/rita", json!({"role": "reader"})).await;
    let cookie = sign_in(&reg, "rita", "reader-password-1").await;
    let home = text(&page(&reg, "/ui/", &cookie).await);
    assert!(home.contains("team/app") && !home.contains("other/secret"), "{home}");
    assert!(!home.contains("/ui/quarantine"), "no quarantine link for a reader");
    let hidden = page(&reg, "/ui/repository?name=other/secret", &cookie).await;
    assert_eq!(hidden.status, 404);
    let image = page(&reg, &format!("/ui/image?repository=team/app&digest={digest}"), &cookie).await;
    let s = text(&image);
    assert_eq!(image.status, 200);
    assert!(s.contains("quarantined") && s.contains("Pulls are refused"), "{s}");
    assert!(!s.contains("/ui/image/release") && !s.contains("/ui/image/reject"), "no decision forms for a reader");
    assert!(!s.contains("Layers"), "the gate withholds the content from a reader");
    // A forged POST with the reader's own valid token: refused by the policy, nothing changes.
    let csrf = csrf_of(&image);
    for (path, extra) in
        [("/ui/image/release", "&reason=mine"), ("/ui/image/reject", "&reason=mine"), ("/ui/image/rescan", "")]
    {
        let body = format!("csrf={csrf}&repository=team/app&digest={digest}{extra}");
        let r = post(&reg, path, &cookie, &[], body).await;
        assert_eq!(r.status, 403, "{path}: {}", text(&r));
        assert!(text(&r).contains("admin"), "the refusal names what was needed: {}", text(&r));
    }
    assert_eq!(reg.verdict("team/app", &digest).await["state"], "quarantined");
    // The API's reading of the image, which the page renders, withholds the content alike.
    let rita = basic("rita", "reader-password-1");
    let uri = format!("/api/v1/images?repository=team/app&digest={digest}");
    let detail = reg.send_raw("GET", &uri, &[("authorization", &rita)], Body::empty()).await.json();
    assert_eq!((detail["content_shown"].as_bool(), detail["config"].is_null()), (Some(false), true), "{detail}");
    assert!(detail["layers"].as_array().unwrap().is_empty() && detail["pulls_refused"].is_string());
    assert_eq!(detail["scan"]["state"], "quarantined");
    let uri = "/api/v1/images?repository=other/secret&digest=sha256:".to_owned() + &"0".repeat(64);
    assert_eq!(reg.send_raw("GET", &uri, &[("authorization", &rita)], Body::empty()).await.status, 404);
    let q = page(&reg, "/ui/quarantine", &cookie).await;
    assert_eq!(q.status, 403);
    // Robots of a namespace it does not own: refused.
    let r = page(&reg, "/ui/robots?namespace=team", &cookie).await;
    assert_eq!(r.status, 403);
    let body = format!("csrf={csrf}&namespace=team&name=x&pull=1&expires_at=30d");
    assert_eq!(post(&reg, "/ui/robots", &cookie, &[], body).await.status, 403);
}

#[tokio::test]
async fn sessions_end_on_logout_password_change_disable_and_idling() {
    let reg = TestRegistry::new().await;
    api(&reg, "POST", "/api/v1/users", json!({"username": "ann", "password": "ann-password-123"}))
        .await
        .expect(201, None);
    let alive = |r: &Reply| r.status == 200 && text(r).contains("Sign out");
    // Logout: the old cookie (kept by an attacker) no longer works, for pages or changes.
    let cookie = sign_in(&reg, "ann", "ann-password-123").await;
    let home = page(&reg, "/ui/", &cookie).await;
    assert!(alive(&home));
    let csrf = csrf_of(&home);
    let r = post(&reg, "/ui/logout", &cookie, &[], format!("csrf={csrf}")).await;
    assert_eq!(r.status, 303);
    assert!(r.header("set-cookie").contains("Max-Age=0"));
    let after = page(&reg, "/ui/", &cookie).await;
    assert!(!alive(&after) && text(&after).contains("action=\"/ui/login\""));
    let r = post(&reg, "/ui/robots", &cookie, &[], format!("csrf={csrf}&namespace=x&name=y&expires_at=1d")).await;
    assert_eq!(r.status, 401);
    // A password change ends every session of the account.
    let cookie = sign_in(&reg, "ann", "ann-password-123").await;
    assert!(alive(&page(&reg, "/ui/", &cookie).await));
    api(&reg, "PATCH", "/api/v1/users/ann", json!({"password": "ann-password-456"})).await.expect(200, None);
    assert!(!alive(&page(&reg, "/ui/", &cookie).await));
    // Disabling the account ends them too.
    let cookie = sign_in(&reg, "ann", "ann-password-456").await;
    api(&reg, "PATCH", "/api/v1/users/ann", json!({"disabled": true})).await.expect(200, None);
    assert!(!alive(&page(&reg, "/ui/", &cookie).await));
    api(&reg, "PATCH", "/api/v1/users/ann", json!({"disabled": false})).await.expect(200, None);
    // Idling past the timeout (30 min by default) ends a session; use keeps it alive.
    let cookie = sign_in(&reg, "ann", "ann-password-456").await;
    reg.advance_clocks(std::time::Duration::from_secs(20 * 60));
    assert!(alive(&page(&reg, "/ui/", &cookie).await));
    reg.advance_clocks(std::time::Duration::from_secs(20 * 60));
    assert!(alive(&page(&reg, "/ui/", &cookie).await), "used 20 minutes ago");
    reg.advance_clocks(std::time::Duration::from_secs(31 * 60));
    assert!(!alive(&page(&reg, "/ui/", &cookie).await), "idle for 31 minutes");
    // However busy, a session ends 12 h after its login.
    let cookie = sign_in(&reg, "ann", "ann-password-456").await;
    for _ in 0..25 {
        reg.advance_clocks(std::time::Duration::from_secs(29 * 60));
        let _ = page(&reg, "/ui/", &cookie).await;
    }
    assert!(!alive(&page(&reg, "/ui/", &cookie).await), "older than 12 h");
    // Deleting the account ends them as well.
    let cookie = sign_in(&reg, "ann", "ann-password-456").await;
    api(&reg, "DELETE", "/api/v1/users/ann", json!(null)).await;
    assert!(!alive(&page(&reg, "/ui/", &cookie).await));
}

#[tokio::test]
async fn what_images_carry_is_escaped_and_secrets_are_masked() {
    let reg = TestRegistry::new().await;
    let digest = hostile_image(&reg, "team/app").await;
    let cookie = sign_in(&reg, "admin", ADMIN_PASSWORD).await;
    for uri in [format!("/ui/image?repository=team/app&digest={digest}"), "/ui/quarantine".to_owned()] {
        let r = page(&reg, &uri, &cookie).await;
        let s = text(&r);
        assert_eq!(r.status, 200, "{s}");
        assert!(!s.contains("<script>window"), "{uri}: raw script");
        assert!(!s.contains("<img src=x"), "{uri}: raw img");
        assert!(s.contains("&lt;img src=x onerror=window.__xss=3&gt;"), "{uri}: the path is shown, escaped");
    }
    let s = text(&page(&reg, &format!("/ui/image?repository=team/app&digest={digest}"), &cookie).await);
    assert!(s.contains("&lt;script&gt;window.__xss=1&lt;/script&gt;"), "the label is shown, escaped");
    assert!(s.contains("DB_PASSWORD=") && !s.contains("hunter2"), "the secret is masked");
    assert!(s.contains("PATH=/usr/bin"));
    // The admin's look past the gate is audited, as on /v2.
    let audit = api(&reg, "GET", "/api/v1/audit?action=gate.bypass", json!(null)).await.json();
    assert!(audit["items"].as_array().unwrap().iter().any(|r| r["details"]["via"] == "console"), "{audit}");
}

#[tokio::test]
async fn a_robot_created_in_the_console_shows_its_secret_once_and_works() {
    let reg = TestRegistry::new().await;
    api(&reg, "POST", "/api/v1/namespaces", json!({"name": "team"})).await.expect(201, None);
    let cookie = sign_in(&reg, "admin", ADMIN_PASSWORD).await;
    let robots = page(&reg, "/ui/robots?namespace=team", &cookie).await;
    let csrf = csrf_of(&robots);
    let r = post(
        &reg,
        "/ui/robots",
        &cookie,
        &[],
        format!("csrf={csrf}&namespace=team&name=ci&pull=1&push=1&expires_at=30d"),
    )
    .await;
    let s = text(&r);
    assert_eq!(r.status, 200, "{s}");
    assert_eq!(r.header("cache-control"), "no-store", "the secret is not cached");
    let at = s.find("pcr_").expect("the secret is shown");
    let secret: String = s[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    assert!(s.contains("docker login") && s.contains("robot$team+ci"));
    // Shown once: the list does not show it again.
    assert!(!text(&page(&reg, "/ui/robots?namespace=team", &cookie).await).contains(&secret));
    let token = reg.token_reply("robot$team+ci", &secret, &["repository:team/app:push"]).await;
    assert_eq!(token.status, 200);
    // Rotating shows a new one; the old one stops.
    let r = post(&reg, "/ui/robots/rotate", &cookie, &[], format!("csrf={csrf}&namespace=team&name=ci")).await;
    assert_eq!(r.status, 200);
    assert!(!text(&r).contains(&secret));
    assert_eq!(reg.token_reply("robot$team+ci", &secret, &["repository:team/app:pull"]).await.status, 401);
    // Bad input is named.
    let r = post(&reg, "/ui/robots", &cookie, &[], format!("csrf={csrf}&namespace=team&name=x&pull=1&expires_at=soon"))
        .await;
    assert_eq!(r.status, 400);
    assert!(text(&r).contains("expires_at"), "{}", text(&r));
}

#[tokio::test]
async fn the_image_page_shows_the_config_the_runtime_will_read() {
    let reg = TestRegistry::new().await;
    // Go (docker, containerd) matches keys in any case and the last one wins: the decoys first.
    let config = r#"{"architecture":"amd64","os":"linux","config":{"User":"app","Cmd":["/bin/decoy"],
        "Labels":{"team":"decoy"},"user":"0","cmd":["/bin/real"],"labels":{"team":"real"}},
        "rootfs":{"type":"layers","diff_ids":[]}}"#;
    let layer = images::layer_tar_gz("app/x.txt", b"x", 0o644);
    let (digest, ..) = reg.push_layers("team/app", "v1", config.as_bytes(), &[&layer]).await;
    assert_eq!(reg.wait_scan("team/app", &digest).await, "quarantined", "user 0 runs as root");
    let cookie = sign_in(&reg, "admin", ADMIN_PASSWORD).await;
    let s = text(&page(&reg, &format!("/ui/image?repository=team/app&digest={digest}"), &cookie).await);
    assert!(s.contains("/bin/real") && !s.contains("/bin/decoy"), "{s}");
    assert!(s.contains(">real<") && !s.contains(">decoy<"), "{s}");
    // A config the runtime would read ambiguously is not shown at all.
    let config = r#"{"architecture":"amd64","os":"linux","config":{"User":"app","user":7},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let (digest, ..) = reg.push_layers("team/app", "v2", config.as_bytes(), &[&layer]).await;
    reg.wait_scan("team/app", &digest).await;
    let s = text(&page(&reg, &format!("/ui/image?repository=team/app&digest={digest}"), &cookie).await);
    assert!(s.contains("The config cannot be shown") && !s.contains(">app<"), "{s}");
}

#[tokio::test]
async fn signing_in_again_ends_the_session_the_browser_held() {
    let reg = TestRegistry::new().await;
    let first = sign_in(&reg, "admin", ADMIN_PASSWORD).await;
    let body = format!("username=admin&password={}", enc(ADMIN_PASSWORD));
    let r = reg.send_raw("POST", "/ui/login", &[FORM, ("cookie", &first)], body).await;
    assert_eq!(r.status, 303);
    let second = r.header("set-cookie").split(';').next().unwrap().to_owned();
    assert_ne!(first, second);
    assert!(text(&page(&reg, "/ui/", &second).await).contains("Sign out"));
    assert!(!text(&page(&reg, "/ui/", &first).await).contains("Sign out"), "the replaced session still works");
}

#[tokio::test]
async fn readers_of_a_public_namespace_see_names_not_figures() {
    let reg = TestRegistry::new().await;
    reg.push_image("pub/app", "v1", "p").await;
    api(&reg, "POST", "/api/v1/namespaces", json!({"name": "pub", "public": true})).await.expect(201, None);
    api(&reg, "POST", "/api/v1/users", json!({"username": "outsider", "password": "outsider-password-1"})).await;
    let cookie = sign_in(&reg, "outsider", "outsider-password-1").await;
    let s = text(&page(&reg, "/ui/", &cookie).await);
    assert!(s.contains("pub/app") && s.contains("public"), "{s}");
    assert!(!s.contains(" KiB") && !s.contains(" B<"), "sizes are members' business: {s}");
}

#[tokio::test]
async fn people_are_managed_by_those_the_api_lets_manage_them() {
    let reg = TestRegistry::new().await;
    let admin = sign_in(&reg, "admin", ADMIN_PASSWORD).await;
    let csrf = csrf_of(&page(&reg, "/ui/users", &admin).await);
    // Admins: users and namespaces through the console's forms.
    let r = post(&reg, "/ui/users", &admin, &[], format!("csrf={csrf}&username=olga&password=olga-password-123")).await;
    assert_eq!((r.status.as_u16(), r.header("location")), (303, "/ui/users?done=created"), "{}", text(&r));
    let r = post(&reg, "/ui/users", &admin, &[], format!("csrf={csrf}&username=olga&password=olga-password-123")).await;
    assert_eq!(r.status, 409, "a second olga is refused with the API's answer");
    let r = post(&reg, "/ui/users", &admin, &[], format!("csrf={csrf}&username=weak&password=x")).await;
    assert_eq!(r.status, 400);
    let r = post(&reg, "/ui/namespaces", &admin, &[], format!("csrf={csrf}&name=team")).await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let r =
        post(&reg, "/ui/namespace/member", &admin, &[], format!("csrf={csrf}&namespace=team&username=olga&role=owner"))
            .await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let r =
        post(&reg, "/ui/namespace/member", &admin, &[], format!("csrf={csrf}&namespace=team&username=olga&role=king"))
            .await;
    assert_eq!(r.status, 400);
    assert!(text(&r).contains("role must be"));
    assert!(text(&page(&reg, "/ui/users", &admin).await).contains("olga"));
    // An owner manages the namespace's members, and nothing of the registry's.
    let olga = sign_in(&reg, "olga", "olga-password-123").await;
    let ns = page(&reg, "/ui/namespace?name=team", &olga).await;
    assert_eq!(ns.status, 200);
    assert!(text(&ns).contains("olga") && text(&ns).contains("owner"));
    let olga_csrf = csrf_of(&ns);
    api(&reg, "POST", "/api/v1/users", json!({"username": "pete", "password": "pete-password-123"})).await;
    let r = post(
        &reg,
        "/ui/namespace/member",
        &olga,
        &[],
        format!("csrf={olga_csrf}&namespace=team&username=pete&role=reader"),
    )
    .await;
    assert_eq!(r.status, 303);
    // Adding someone and removing them again signs no one out (rights are read on every request).
    for (path, body) in [
        ("/ui/namespace/member", "namespace=team&username=admin&role=reader"),
        ("/ui/namespace/member/remove", "namespace=team&username=admin"),
    ] {
        assert_eq!(post(&reg, path, &olga, &[], format!("csrf={olga_csrf}&{body}")).await.status, 303);
    }
    assert!(text(&page(&reg, "/ui/", &admin).await).contains("Sign out"), "an owner signed the admin out");
    for path in ["/ui/users", "/ui/namespaces", "/ui/quarantine"] {
        assert_eq!(page(&reg, path, &olga).await.status, 403, "{path}");
    }
    api(&reg, "POST", "/api/v1/namespaces", json!({"name": "other"})).await;
    assert_eq!(page(&reg, "/ui/namespace?name=other", &olga).await.status, 403);
    for (path, body) in [
        ("/ui/users", "username=x&password=xxxxxxxxxxxx12".to_owned()),
        ("/ui/users/update", "username=pete&disabled=true".to_owned()),
        ("/ui/namespaces", "name=mine".to_owned()),
        ("/ui/namespace/member", "namespace=other&username=olga&role=owner".to_owned()),
    ] {
        let r = post(&reg, path, &olga, &[], format!("csrf={olga_csrf}&{body}")).await;
        assert_eq!(r.status, 403, "{path}: {}", text(&r));
    }
    // The namespace's rules, as the lifecycle API reads them.
    api(&reg, "PUT", "/api/v1/namespaces/team/quota", json!({"repositories": 7})).await.expect(200, None);
    api(&reg, "PUT", "/api/v1/namespaces/team/immutable-tags", json!({"patterns": ["release-*"]}))
        .await
        .expect(200, None);
    let rules = text(&page(&reg, "/ui/namespace?name=team", &olga).await);
    assert!(rules.contains("Quota and usage") && rules.contains(">7<") && rules.contains("release-*"), "{rules}");
    // Admins set the scan policy in the console, through the API's operation and its checks.
    let ns_page = page(&reg, "/ui/namespace?name=team", &admin).await;
    assert!(text(&ns_page).contains("Save scan policy"));
    assert!(!rules.contains("Save scan policy"), "an owner gets no policy form");
    let body = format!("csrf={csrf}&namespace=team&rule.root_user=warn&rule.secret_in_env=&sync_timeout=30s");
    let r = post(&reg, "/ui/namespace/scan-policy", &admin, &[], body).await;
    assert_eq!(r.status, 303, "{}", text(&r));
    let policy = api(&reg, "GET", "/api/v1/namespaces/team/scan-policy", json!(null)).await.json();
    assert_eq!(
        (&policy["overrides"], &policy["sync_timeout"]),
        (&json!({"root_user": "warn"}), &json!("30s")),
        "{policy}"
    );
    let r = post(
        &reg,
        "/ui/namespace/scan-policy",
        &admin,
        &[],
        format!("csrf={csrf}&namespace=team&rule.root_user=maybe"),
    )
    .await;
    assert_eq!(r.status, 400, "{}", text(&r));
    let r = post(
        &reg,
        "/ui/namespace/scan-policy",
        &olga,
        &[],
        format!("csrf={olga_csrf}&namespace=team&rule.root_user=off"),
    )
    .await;
    assert_eq!(r.status, 403, "an owner cannot loosen its own policy");
    // A reader sees no member list.
    let pete = sign_in(&reg, "pete", "pete-password-123").await;
    assert_eq!(page(&reg, "/ui/namespace?name=team", &pete).await.status, 403);
    // Disabling an account (admins) ends its session and its sign-in.
    let r = post(&reg, "/ui/users/update", &admin, &[], format!("csrf={csrf}&username=pete&disabled=true")).await;
    assert_eq!(r.status, 303);
    assert!(!text(&page(&reg, "/ui/", &pete).await).contains("Sign out"));
    let r = reg.send_raw("POST", "/ui/login", &[FORM], "username=pete&password=pete-password-123").await;
    assert_eq!(r.status, 401);
    let r = post(&reg, "/ui/users/update", &admin, &[], format!("csrf={csrf}&username=admin&disabled=true")).await;
    assert_eq!(r.status, 400, "an admin cannot disable itself");
    // Removing a member.
    let r =
        post(&reg, "/ui/namespace/member/remove", &olga, &[], format!("csrf={olga_csrf}&namespace=team&username=pete"))
            .await;
    assert_eq!(r.status, 303);
    assert!(!text(&page(&reg, "/ui/namespace?name=team", &olga).await).contains("pete"));
}

#[tokio::test]
async fn ones_own_tokens_and_password() {
    let reg = TestRegistry::new().await;
    api(&reg, "POST", "/api/v1/users", json!({"username": "ann", "password": "ann-password-123"})).await;
    let ann = sign_in(&reg, "ann", "ann-password-123").await;
    let other = sign_in(&reg, "ann", "ann-password-123").await;
    let account = page(&reg, "/ui/account", &ann).await;
    let csrf = csrf_of(&account);
    let r = post(&reg, "/ui/account/tokens", &ann, &[], format!("csrf={csrf}&name=laptop&expires_at=30d")).await;
    let s = text(&r);
    assert_eq!(r.status, 200, "{s}");
    let at = s.find("pcp_").expect("the token is shown");
    let token: String = s[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
    assert_eq!(reg.token_reply("ann", &token, &[]).await.status, 200, "the token signs ann in");
    assert!(!text(&page(&reg, "/ui/account", &ann).await).contains(&token), "shown once");
    let id = token.split('_').nth(1).unwrap().to_owned();
    let r = post(&reg, "/ui/account/tokens/revoke", &ann, &[], format!("csrf={csrf}&id={id}")).await;
    assert_eq!(r.status, 303);
    assert_eq!(reg.token_reply("ann", &token, &[]).await.status, 401, "revoked");
    // The password: the current one is needed, and the change ends every session.
    let r = post(
        &reg,
        "/ui/account/password",
        &ann,
        &[],
        format!("csrf={csrf}&current_password=wrong&password=ann-password-456"),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(text(&page(&reg, "/ui/", &other).await).contains("Sign out"), "nothing changed");
    let body = format!("csrf={csrf}&current_password=ann-password-123&password=ann-password-456");
    let r = post(&reg, "/ui/account/password", &ann, &[], body).await;
    assert_eq!(r.status, 303, "{}", text(&r));
    assert!(!text(&page(&reg, "/ui/", &ann).await).contains("Sign out"));
    assert!(!text(&page(&reg, "/ui/", &other).await).contains("Sign out"));
    sign_in(&reg, "ann", "ann-password-456").await;
}

#[tokio::test]
async fn the_audit_log_is_read_by_those_the_api_lets_read_it() {
    let reg = TestRegistry::new().await;
    let digest = hostile_image(&reg, "team/app").await;
    api(&reg, "POST", "/api/v1/namespaces", json!({"name": "team"})).await;
    api(&reg, "POST", "/api/v1/namespaces", json!({"name": "other"})).await;
    api(&reg, "POST", "/api/v1/users", json!({"username": "olga", "password": "olga-password-123"})).await;
    api(&reg, "PUT", "/api/v1/namespaces/team/members/olga", json!({"role": "owner"})).await;
    let release = json!({"repository": "team/app", "digest": digest.to_string(), "reason": "<b>reviewed</b>"});
    api(&reg, "POST", "/api/v1/scans/release", release).await.expect(200, None);
    let admin = sign_in(&reg, "admin", ADMIN_PASSWORD).await;
    let r = page(&reg, "/ui/audit?action=scan.release", &admin).await;
    let s = text(&r);
    assert_eq!(r.status, 200, "{s}");
    assert!(s.contains("scan.release") && s.contains("team/app@"), "{s}");
    assert!(s.contains("&lt;b&gt;reviewed&lt;/b&gt;") && !s.contains("<b>reviewed"), "details escaped: {s}");
    assert!(!s.contains(">user.create<"), "the filter applies");
    // An owner reads its namespace's records only.
    let olga = sign_in(&reg, "olga", "olga-password-123").await;
    assert_eq!(page(&reg, "/ui/audit", &olga).await.status, 403);
    assert_eq!(page(&reg, "/ui/audit?namespace=other", &olga).await.status, 403);
    let own = page(&reg, "/ui/audit?namespace=team", &olga).await;
    assert_eq!(own.status, 200);
    assert!(text(&own).contains("scan.release"));
}
