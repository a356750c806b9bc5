//! Credentials and sessions an attacker cannot outlive or borrow: what the admin API accepts, what
//! changing a credential ends, session caps, rate limits, CSRF, and the protocol details that
//! came with them.

mod common;

use axum::body::Body;
use common::auth::basic;
use common::TestRegistry;
use serde_json::json;

/// Gets a refresh token (`docker login` keeps one) for `user`.
async fn refresh_token(r: &TestRegistry, user: &str, secret: &str) -> String {
    let form = format!(
        "grant_type=password&service=portcullis&access_type=offline&username={}&password={secret}",
        urlencode(user)
    );
    let reply = r.send_raw("POST", "/token", &[("content-type", "application/x-www-form-urlencoded")], form).await;
    reply.expect(200, None);
    reply.json()["refresh_token"].as_str().unwrap().to_owned()
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn refresh(r: &TestRegistry, token: &str, scope: &str) -> common::Reply {
    let form = format!("grant_type=refresh_token&service=portcullis&refresh_token={token}&scope={}", urlencode(scope));
    r.send_raw("POST", "/token", &[("content-type", "application/x-www-form-urlencoded")], form).await
}

async fn tags(r: &TestRegistry, token: &str, repo: &str) -> u16 {
    r.v2_as(token, "GET", &format!("/v2/{repo}/tags/list"), Body::empty()).await.status.as_u16()
}

#[tokio::test]
async fn the_admin_api_takes_only_its_own_credentials_and_lifetimes_are_bounded() {
    let r = TestRegistry::new().await;
    let pw = r.user_with_role("dev", "team", "reader").await;
    // A pull-only registry token for one repository is not a credential for the admin API.
    let pull = r.login("dev", &pw, &["repository:team/app:pull"]).await;
    let bearer = format!("Bearer {pull}");
    let headers = [("authorization", bearer.as_str()), ("content-type", "application/json")];
    let token_body = json!({"name": "t", "expires_at": common::in_days(30)}).to_string();
    r.send_raw("POST", "/api/v1/tokens", &headers, token_body.clone()).await.expect(401, None);
    let password = json!({"password": "taken-over-password"}).to_string();
    r.send_raw("PATCH", "/api/v1/users/dev", &headers, password).await.expect(401, None);
    // Personal tokens and robots have a maximum lifetime.
    let far = json!({"name": "forever", "expires_at": common::in_days(5000)});
    let reply = r.api_as("dev", &pw, "POST", "/api/v1/tokens", far).await;
    reply.expect(400, None);
    assert!(String::from_utf8_lossy(&reply.body).contains("auth.max_token_lifetime"));
    let robot = json!({"name": "ci", "actions": ["pull"], "expires_at": common::in_days(5000)});
    let reply = r.admin_api("POST", "/api/v1/namespaces/team/robots", robot).await;
    reply.expect(400, None);
    assert!(String::from_utf8_lossy(&reply.body).contains("auth.max_robot_lifetime"));
    // A personal token may change no password without the current one.
    let pat =
        r.api_as("dev", &pw, "POST", "/api/v1/tokens", json!({"name": "t", "expires_at": common::in_days(30)})).await;
    let pat = pat.json()["token"].as_str().unwrap().to_owned();
    r.api_as("dev", &pat, "PATCH", "/api/v1/users/dev", json!({"password": "taken-over-password"}))
        .await
        .expect(400, None);
    let with_pat = json!({"password": "taken-over-password", "current_password": pat});
    r.api_as("dev", &pat, "PATCH", "/api/v1/users/dev", with_pat).await.expect(400, None);
    // An admin may set another user's password without theirs.
    r.admin_api("PATCH", "/api/v1/users/dev", json!({"password": "admin-set-password"})).await.expect(200, None);
}

#[tokio::test]
async fn changing_a_credential_ends_what_was_issued_before() {
    let r = TestRegistry::new().await;
    let pw = r.user_with_role("dev", "team", "developer").await;
    r.push_image("team/app", "v1", "x").await;

    // A password change ends refresh and access tokens issued before it.
    let old_refresh = refresh_token(&r, "dev", &pw).await;
    let old_access = r.login("dev", &pw, &["repository:team/app:pull"]).await;
    assert_eq!(tags(&r, &old_access, "team/app").await, 200);
    let change = json!({"password": "a-brand-new-password", "current_password": pw});
    r.api_as("dev", &pw, "PATCH", "/api/v1/users/dev", change).await.expect(200, None);
    refresh(&r, &old_refresh, "repository:team/app:pull").await.expect(401, None);
    assert_eq!(tags(&r, &old_access, "team/app").await, 401);
    let pw = "a-brand-new-password";
    let fresh = r.login("dev", pw, &["repository:team/app:pull,push"]).await;
    assert_eq!(tags(&r, &fresh, "team/app").await, 200, "a token issued after the change works");

    // A role change and a removal end the tokens issued under the old role.
    r.admin_api("PUT", "/api/v1/namespaces/team/members/dev", json!({"role": "reader"})).await.expect(200, None);
    let push = r.v2_as(&fresh, "POST", "/v2/team/app/blobs/uploads/", Body::empty()).await;
    push.expect(401, None);
    let reader = r.login("dev", pw, &["repository:team/app:pull,push"]).await;
    assert_eq!(tags(&r, &reader, "team/app").await, 200);
    r.admin_api("DELETE", "/api/v1/namespaces/team/members/dev", json!(null)).await.expect(204, None);
    assert_eq!(tags(&r, &reader, "team/app").await, 401);

    // A robot's rotation ends its refresh tokens.
    let robot = r
        .admin_api(
            "POST",
            "/api/v1/namespaces/team/robots",
            json!({"name": "ci", "actions": ["pull"], "expires_at": common::in_days(30)}),
        )
        .await;
    let (name, secret) =
        (robot.json()["username"].as_str().unwrap().to_owned(), robot.json()["secret"].as_str().unwrap().to_owned());
    let robot_refresh = refresh_token(&r, &name, &secret).await;
    refresh(&r, &robot_refresh, "repository:team/app:pull").await.expect(200, None);
    r.admin_api("POST", "/api/v1/namespaces/team/robots/ci/rotate", json!(null)).await.expect(200, None);
    refresh(&r, &robot_refresh, "repository:team/app:pull").await.expect(401, None);

    // A deleted user's tokens do not work for a new user of the same name.
    let eve = r.user_with_role("eve", "team", "reader").await;
    let eve_refresh = refresh_token(&r, "eve", &eve).await;
    r.admin_api("DELETE", "/api/v1/users/eve", json!(null)).await.expect(204, None);
    r.admin_api("POST", "/api/v1/users", json!({"username": "eve", "password": "another-eve-password"}))
        .await
        .expect(201, None);
    refresh(&r, &eve_refresh, "repository:team/app:pull").await.expect(401, None);

    // A personal token created with another one dies with its parent, as do tokens issued with it.
    r.admin_api("PUT", "/api/v1/namespaces/team/members/dev", json!({"role": "reader"})).await.expect(200, None);
    let parent = r
        .api_as("dev", pw, "POST", "/api/v1/tokens", json!({"name": "parent", "expires_at": common::in_days(30)}))
        .await;
    let (parent_id, parent) =
        (parent.json()["id"].as_str().unwrap().to_owned(), parent.json()["token"].as_str().unwrap().to_owned());
    let child = r
        .api_as("dev", &parent, "POST", "/api/v1/tokens", json!({"name": "child", "expires_at": common::in_days(30)}))
        .await;
    child.expect(201, None);
    let child = child.json()["token"].as_str().unwrap().to_owned();
    let via_child = r.login("dev", &child, &["repository:team/app:pull"]).await;
    r.api_as("dev", pw, "DELETE", &format!("/api/v1/tokens/{parent_id}"), json!(null)).await.expect(204, None);
    r.token_reply("dev", &child, &[]).await.expect(401, None);
    assert_eq!(tags(&r, &via_child, "team/app").await, 401);

    // A namespace made private ends anonymous tokens that could pull there.
    r.admin_api("PATCH", "/api/v1/namespaces/team", json!({"public": true})).await.expect(200, None);
    let anonymous =
        r.send_raw("GET", "/token?service=portcullis&scope=repository:team/app:pull", &[], Body::empty()).await;
    let anonymous = anonymous.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(tags(&r, &anonymous, "team/app").await, 200);
    r.admin_api("PATCH", "/api/v1/namespaces/team", json!({"public": false})).await.expect(200, None);
    assert_eq!(tags(&r, &anonymous, "team/app").await, 401);

    // Deleting the namespace ends its members' tokens.
    let member = r.login("dev", pw, &["repository:team/app:pull"]).await;
    assert_eq!(tags(&r, &member, "team/app").await, 200);
    r.admin_api("DELETE", "/api/v1/namespaces/team", json!(null)).await.expect(204, None);
    assert_eq!(tags(&r, &member, "team/app").await, 401);
}

#[tokio::test]
async fn upload_sessions_and_requests_are_capped_per_principal() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestRegistry::with_config(dir, |c| {
        c.uploads.max_per_principal = 3;
        c.server.rate_limit_per_principal = 20;
    })
    .await;
    let pw = r.user_with_role("dev", "team", "developer").await;
    let other = r.user_with_role("ops", "team", "developer").await;
    let token = r.login("dev", &pw, &["repository:team/app:pull,push"]).await;
    for _ in 0..3 {
        r.v2_as(&token, "POST", "/v2/team/app/blobs/uploads/", Body::empty()).await.expect(202, None);
    }
    let refused = r.v2_as(&token, "POST", "/v2/team/app/blobs/uploads/", Body::empty()).await;
    refused.expect(429, Some("TOOMANYREQUESTS"));
    assert!(refused.json()["errors"][0]["message"].as_str().unwrap().contains("uploads.max_per_principal"));
    assert!(!refused.header("retry-after").is_empty());
    let ops = r.login("ops", &other, &["repository:team/app:pull,push"]).await;
    r.v2_as(&ops, "POST", "/v2/team/app/blobs/uploads/", Body::empty()).await.expect(202, None);

    // Requests: a burst of twice the rate, then 429 with Retry-After; others are not affected.
    // (The limit is per replica: across three, it takes three times as many requests.)
    let mut limited = None;
    for _ in 0..300 {
        let reply = r.v2_as(&token, "GET", "/v2/team/app/tags/list", Body::empty()).await;
        if reply.status == 429 {
            limited = Some(reply);
            break;
        }
    }
    let limited = limited.expect("the principal's rate limit was reached");
    assert!(limited.json()["errors"][0]["message"].as_str().unwrap().contains("server.rate_limit_per_principal"));
    assert!(limited.header("retry-after").parse::<u64>().unwrap() >= 1);
    r.v2_as(&ops, "GET", "/v2/team/app/tags/list", Body::empty()).await.expect(404, Some("NAME_UNKNOWN"));
}

#[tokio::test]
async fn the_admin_api_refuses_cross_site_requests() {
    let r = TestRegistry::new().await;
    let admin = basic("admin", common::ADMIN_PASSWORD);
    let body = json!({"username": "mallory", "password": "mallory-password-long"}).to_string();
    // A form post (text/plain) from a page elsewhere, with the admin's credentials.
    let plain = [("authorization", admin.as_str()), ("content-type", "text/plain")];
    r.send_raw("POST", "/api/v1/users", &plain, body.clone()).await.expect(415, None);
    let evil =
        [("authorization", admin.as_str()), ("content-type", "application/json"), ("origin", "https://evil.example")];
    r.send_raw("POST", "/api/v1/users", &evil, body.clone()).await.expect(403, None);
    let fetch =
        [("authorization", admin.as_str()), ("content-type", "application/json"), ("sec-fetch-site", "cross-site")];
    r.send_raw("POST", "/api/v1/users", &fetch, body.clone()).await.expect(403, None);
    r.admin_api("GET", "/api/v1/users/mallory", json!(null)).await.expect(404, None);
    // From the registry's own origin, as JSON, it works.
    let ours = r.app.config.public_url();
    let good = [("authorization", admin.as_str()), ("content-type", "application/json"), ("origin", ours.as_str())];
    r.send_raw("POST", "/api/v1/users", &good, body).await.expect(201, None);
}

#[tokio::test]
async fn bad_references_and_mount_challenges_follow_the_spec() {
    let r = TestRegistry::new().await;
    // Before authentication: a challenge, not a 400.
    r.send_raw("GET", "/v2/team/app/manifests/.INVALID_MANIFEST_NAME", &[], Body::empty()).await.expect(401, None);
    for method in ["GET", "HEAD"] {
        let reply = r.send(method, "/v2/team/app/manifests/.INVALID_MANIFEST_NAME", &[], Body::empty()).await;
        assert_eq!(reply.status.as_u16(), 404, "{method}");
    }
    let put = r.put_manifest("team/app", ".INVALID_MANIFEST_NAME", common::images::OCI_MANIFEST, b"{}").await;
    put.expect(400, Some("TAG_INVALID"));
    // A mount's challenge asks for pull on the source as well.
    let mount =
        r.send_raw("POST", "/v2/team/app/blobs/uploads/?mount=sha256:0123&from=other/src", &[], Body::empty()).await;
    mount.expect(401, None);
    assert!(
        mount.header("www-authenticate").contains(r#"scope="repository:team/app:push repository:other/src:pull""#),
        "{}",
        mount.header("www-authenticate")
    );
}
