//! Every deny path of token authentication and authorization.

mod common;

use axum::body::Body;
use base64::Engine as _;
use common::auth::bearer;
use common::{TestRegistry, ADMIN_PASSWORD};
use serde_json::json;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn signing_key(r: &TestRegistry) -> jsonwebtoken::EncodingKey {
    let pem = std::fs::read(r.dir.path().join("keys/token-signing.pem")).unwrap();
    jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap()
}

fn kid(r: &TestRegistry) -> String {
    r.app.auth.jwks()["keys"][0]["kid"].as_str().unwrap().to_owned()
}

/// Claims as the registry issues them, for `repo` with all actions, valid now.
async fn claims(r: &TestRegistry, repo: &str) -> serde_json::Value {
    let now = portcullis::domain::now();
    let uid = r.admin().await.uid;
    json!({"iss": r.app.config.public_url(), "sub": "admin", "aud": "portcullis", "exp": now + 300, "nbf": now - 1, "iat": now,
           "jti": "test", "use": "access", "uid": uid, "iatms": portcullis::auth::service::now_ms(),
           "access": [{"type": "repository", "name": repo, "actions": ["pull", "push", "delete"]}]})
}

/// Signs as the registry does (its key, its `kid`, a canonical low-s signature).
fn sign(r: &TestRegistry, claims: &serde_json::Value) -> String {
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid(r));
    portcullis::auth::jwt::canonical_form(&jsonwebtoken::encode(&header, claims, &signing_key(r)).unwrap())
}

async fn pull(r: &TestRegistry, token: &str) -> common::Reply {
    r.v2_as(token, "GET", "/v2/team-a/app/tags/list", Body::empty()).await
}

#[tokio::test]
async fn no_token_gets_a_challenge_from_the_configured_url() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestRegistry::with_config(dir, |c| c.public_url = Some("https://registry.example:5443".into())).await;
    // Forwarded headers must not steer the realm.
    let reply = r
        .send_raw(
            "GET",
            "/v2/team-a/app/tags/list",
            &[("x-forwarded-host", "evil.example"), ("host", "evil.example")],
            Body::empty(),
        )
        .await;
    reply.expect(401, Some("UNAUTHORIZED"));
    assert_eq!(
        reply.header("www-authenticate"),
        r#"Bearer realm="https://registry.example:5443/token",service="portcullis",scope="repository:team-a/app:pull""#
    );
    let base = r.send_raw("GET", "/v2/", &[], Body::empty()).await;
    base.expect(401, Some("UNAUTHORIZED"));
    assert_eq!(
        base.header("www-authenticate"),
        r#"Bearer realm="https://registry.example:5443/token",service="portcullis""#
    );
}

#[tokio::test]
async fn forged_and_invalid_tokens_are_refused() {
    let r = TestRegistry::new().await;
    r.push_image("team-a/app", "v1", "x").await;
    // The genuine article works.
    pull(&r, &sign(&r, &claims(&r, "team-a/app").await)).await.expect(200, None);

    let mut expired = claims(&r, "team-a/app").await;
    expired["exp"] = json!(portcullis::domain::now() - 120);
    expired["nbf"] = json!(portcullis::domain::now() - 600);
    let mut not_yet = claims(&r, "team-a/app").await;
    not_yet["nbf"] = json!(portcullis::domain::now() + 600);
    let mut wrong_aud = claims(&r, "team-a/app").await;
    wrong_aud["aud"] = json!("other-service");
    let mut wrong_iss = claims(&r, "team-a/app").await;
    wrong_iss["iss"] = json!("https://evil.example");
    let mut refresh = claims(&r, "team-a/app").await;
    refresh["use"] = json!("refresh");
    for (what, c) in [
        ("expired", expired),
        ("not yet valid", not_yet),
        ("wrong aud", wrong_aud),
        ("wrong iss", wrong_iss),
        ("refresh used as access", refresh),
    ] {
        let reply = pull(&r, &sign(&r, &c)).await;
        assert_eq!(reply.status, 401, "{what} accepted");
        assert!(reply.header("www-authenticate").contains("error=\"invalid_token\""), "{what}");
    }

    let payload = B64.encode(claims(&r, "team-a/app").await.to_string());
    // alg: none.
    let none = format!("{}.{payload}.", B64.encode(r#"{"alg":"none","typ":"JWT"}"#));
    pull(&r, &none).await.expect(401, Some("UNAUTHORIZED"));
    // HS256 "signed" with the public key (algorithm confusion).
    let jwk = r.app.auth.jwks()["keys"][0].clone();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid(&r));
    let hs = jsonwebtoken::encode(
        &header,
        &claims(&r, "team-a/app").await,
        &jsonwebtoken::EncodingKey::from_secret(jwk.to_string().as_bytes()),
    )
    .unwrap();
    pull(&r, &hs).await.expect(401, Some("UNAUTHORIZED"));
    // A key we do not know, with our kid and with its own.
    let other = rcgen::KeyPair::generate().unwrap();
    let other_key = jsonwebtoken::EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap();
    for k in [Some(kid(&r)), Some("unknown-kid".to_owned()), None] {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = k;
        pull(&r, &jsonwebtoken::encode(&header, &claims(&r, "team-a/app").await, &other_key).unwrap())
            .await
            .expect(401, Some("UNAUTHORIZED"));
    }
    // A genuine token whose access claim was edited.
    let genuine = sign(&r, &claims(&r, "team-b/app").await);
    let parts: Vec<&str> = genuine.split('.').collect();
    let tampered = format!("{}.{}.{}", parts[0], B64.encode(claims(&r, "team-a/app").await.to_string()), parts[2]);
    pull(&r, &tampered).await.expect(401, Some("UNAUTHORIZED"));
    pull(&r, "garbage").await.expect(401, Some("UNAUTHORIZED"));
    // A token for another repository lacks the scope: 403 with insufficient_scope.
    let reply = pull(&r, &sign(&r, &claims(&r, "team-b/app").await)).await;
    reply.expect(403, Some("DENIED"));
    assert!(reply.header("www-authenticate").contains("error=\"insufficient_scope\""));
}

#[tokio::test]
async fn roles_limit_actions_and_scopes_never_escalate() {
    let r = TestRegistry::new().await;
    let (digest, _) = r.push_image("team-a/app", "v1", "a").await;
    r.push_image("team-b/app", "v1", "b").await;
    let reader_pw = r.user_with_role("reader", "team-a", "reader").await;
    let dev_pw = r.user_with_role("dev", "team-a", "developer").await;
    assert_eq!(r.wait_scan("team-a/app", &digest).await, "passed");

    // A reader asking for push gets pull only; pushing is denied.
    let token = r.login("reader", &reader_pw, &["repository:team-a/app:pull,push,delete"]).await;
    r.v2_as(&token, "GET", "/v2/team-a/app/manifests/v1", Body::empty()).await.expect(200, None);
    let denied = r.v2_as(&token, "POST", "/v2/team-a/app/blobs/uploads/", Body::empty()).await;
    denied.expect(403, Some("DENIED"));
    // The refusal names the action and the repository, so a CI log says what was missing.
    let message = denied.json()["errors"][0]["message"].as_str().unwrap().to_owned();
    assert!(message.starts_with("push to team-a/app denied"), "{message}");
    // A developer pushes but may not delete.
    let token = r.login("dev", &dev_pw, &["repository:team-a/app:pull,push,delete"]).await;
    r.v2_as(&token, "POST", "/v2/team-a/app/blobs/uploads/", Body::empty()).await.expect(202, None);
    r.v2_as(&token, "DELETE", &format!("/v2/team-a/app/manifests/{digest}"), Body::empty())
        .await
        .expect(403, Some("DENIED"));
    // Asking for another namespace grants nothing there.
    let reply = r.token_reply("dev", &dev_pw, &["repository:team-b/app:pull,push"]).await;
    reply.expect(200, None);
    let token = reply.json()["token"].as_str().unwrap().to_owned();
    r.v2_as(&token, "GET", "/v2/team-b/app/manifests/v1", Body::empty()).await.expect(403, Some("DENIED"));
    r.v2_as(&token, "POST", "/v2/team-b/app/blobs/uploads/", Body::empty()).await.expect(403, Some("DENIED"));
    // Path tricks never reach another namespace.
    r.v2_as(&token, "GET", "/v2/team-a/../team-b/app/manifests/v1", Body::empty())
        .await
        .expect(400, Some("NAME_INVALID"));
    r.v2_as(&token, "GET", "/v2/team-a%2F..%2Fteam-b/app/manifests/v1", Body::empty())
        .await
        .expect(400, Some("NAME_INVALID"));
    // The granted access is visible in the token itself.
    let payload: serde_json::Value =
        serde_json::from_slice(&B64.decode(token.split('.').nth(1).unwrap()).unwrap()).unwrap();
    assert_eq!(payload["access"], json!([]));
}

#[tokio::test]
async fn mount_needs_pull_on_the_source() {
    let r = TestRegistry::new().await;
    let blob = r.push_blob("team-b/secret", b"secret layer").await;
    let pw = r.user_with_role("dev", "team-a", "developer").await;
    let token = r.login("dev", &pw, &["repository:team-a/app:pull,push", "repository:team-b/secret:pull"]).await;
    let reply = r
        .v2_as(&token, "POST", &format!("/v2/team-a/app/blobs/uploads/?mount={blob}&from=team-b/secret"), Body::empty())
        .await;
    reply.expect(202, None);
    r.v2_as(&token, "GET", &format!("/v2/team-a/app/blobs/{blob}"), Body::empty())
        .await
        .expect(404, Some("BLOB_UNKNOWN"));
}

#[tokio::test]
async fn catalog_shows_only_pullable_repositories() {
    let r = TestRegistry::new().await;
    for repo in ["team-a/one", "team-a/two", "team-b/three", "public/four"] {
        r.push_image(repo, "v1", repo).await;
    }
    r.admin_api("POST", "/api/v1/namespaces", json!({"name": "public", "public": true})).await.expect(201, None);
    let pw = r.user_with_role("reader", "team-a", "reader").await;
    let token = r.login("reader", &pw, &["registry:catalog:*"]).await;
    let reply = r.v2_as(&token, "GET", "/v2/_catalog", Body::empty()).await;
    reply.expect(200, None);
    assert_eq!(reply.json()["repositories"], json!(["public/four", "team-a/one", "team-a/two"]));
    let page = r.v2_as(&token, "GET", "/v2/_catalog?n=2", Body::empty()).await;
    assert_eq!(page.json()["repositories"], json!(["public/four", "team-a/one"]));
    assert_eq!(page.header("link"), "</v2/_catalog?n=2&last=team-a%2Fone>; rel=\"next\"");
    // Anonymous gets no catalog scope at all.
    let anon = r.send_raw("GET", "/token?service=portcullis&scope=registry:catalog:*", &[], Body::empty()).await;
    let anon_token = anon.json()["token"].as_str().unwrap().to_owned();
    r.v2_as(&anon_token, "GET", "/v2/_catalog", Body::empty()).await.expect(403, Some("DENIED"));
}

async fn anonymous_token(r: &TestRegistry, scope: &str) -> String {
    let reply = r.send_raw("GET", &format!("/token?service=portcullis&scope={scope}"), &[], Body::empty()).await;
    reply.expect(200, None);
    reply.json()["token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn anonymous_only_where_an_admin_made_it_public() {
    let r = TestRegistry::new().await;
    let (open, _) = r.push_image("open/app", "v1", "o").await;
    let (closed, _) = r.push_image("closed/app", "v1", "c").await;
    assert_eq!(r.wait_scan("open/app", &open).await, "passed");
    assert_eq!(r.wait_scan("closed/app", &closed).await, "passed");
    let t = anonymous_token(&r, "repository:open/app:pull").await;
    r.v2_as(&t, "GET", "/v2/open/app/manifests/v1", Body::empty()).await.expect(403, Some("DENIED"));
    r.admin_api("POST", "/api/v1/namespaces", json!({"name": "open", "public": true})).await.expect(201, None);
    let t = anonymous_token(&r, "repository:open/app:pull,push").await;
    r.v2_as(&t, "GET", "/v2/open/app/manifests/v1", Body::empty()).await.expect(200, None);
    r.v2_as(&t, "POST", "/v2/open/app/blobs/uploads/", Body::empty()).await.expect(403, Some("DENIED"));
    let t = anonymous_token(&r, "repository:closed/app:pull").await;
    r.v2_as(&t, "GET", "/v2/closed/app/manifests/v1", Body::empty()).await.expect(403, Some("DENIED"));
}

#[tokio::test]
async fn disabling_and_revoking_take_effect_at_once() {
    let r = TestRegistry::new().await;
    r.push_image("team-a/app", "v1", "x").await;
    let pw = r.user_with_role("dev", "team-a", "developer").await;
    let token = r.login("dev", &pw, &["repository:team-a/app:pull"]).await;
    pull(&r, &token).await.expect(200, None);
    r.admin_api("PATCH", "/api/v1/users/dev", json!({"disabled": true})).await.expect(200, None);
    pull(&r, &token).await.expect(401, Some("UNAUTHORIZED"));
    r.token_reply("dev", &pw, &[]).await.expect(401, Some("UNAUTHORIZED"));
    r.admin_api("PATCH", "/api/v1/users/dev", json!({"disabled": false})).await.expect(200, None);

    // Robots: a revoked robot can neither log in nor use a token it already has.
    let robot = r
        .admin_api(
            "POST",
            "/api/v1/namespaces/team-a/robots",
            json!({"name": "ci", "actions": ["pull", "push"], "expires_at": common::in_days(30)}),
        )
        .await;
    robot.expect(201, None);
    let (user, secret) =
        (robot.json()["username"].as_str().unwrap().to_owned(), robot.json()["secret"].as_str().unwrap().to_owned());
    assert_eq!(user, "robot$team-a+ci");
    let token = r.login(&user, &secret, &["repository:team-a/app:pull"]).await;
    pull(&r, &token).await.expect(200, None);
    r.admin_api("DELETE", "/api/v1/namespaces/team-a/robots/ci", json!(null)).await.expect(204, None);
    pull(&r, &token).await.expect(401, Some("UNAUTHORIZED"));
    r.token_reply(&user, &secret, &[]).await.expect(401, Some("UNAUTHORIZED"));

    // Personal tokens: log in with one; revoke it and its tokens die with it.
    let created = r
        .api_as("dev", &pw, "POST", "/api/v1/tokens", json!({"name": "laptop", "expires_at": common::in_days(30)}))
        .await;
    created.expect(201, None);
    let (pat, id) =
        (created.json()["token"].as_str().unwrap().to_owned(), created.json()["id"].as_str().unwrap().to_owned());
    let token = r.login("dev", &pat, &["repository:team-a/app:pull"]).await;
    pull(&r, &token).await.expect(200, None);
    r.api_as("dev", &pw, "DELETE", &format!("/api/v1/tokens/{id}"), json!(null)).await.expect(204, None);
    pull(&r, &token).await.expect(401, Some("UNAUTHORIZED"));
    r.token_reply("dev", &pat, &[]).await.expect(401, Some("UNAUTHORIZED"));
    // Someone else's name with a valid token does not work either.
    let created =
        r.api_as("dev", &pw, "POST", "/api/v1/tokens", json!({"name": "two", "expires_at": common::in_days(30)})).await;
    r.token_reply("admin", created.json()["token"].as_str().unwrap(), &[]).await.expect(401, Some("UNAUTHORIZED"));
}

#[tokio::test]
async fn expired_robots_cannot_log_in() {
    let r = TestRegistry::new().await;
    r.admin_api("POST", "/api/v1/namespaces", json!({"name": "team-a"})).await.expect(201, None);
    let clock = r.app.registry.clock().clone();
    let soon = clock.now() + 60;
    let robot = r
        .admin_api(
            "POST",
            "/api/v1/namespaces/team-a/robots",
            json!({"name": "ci", "actions": ["pull"], "expires_at": soon}),
        )
        .await;
    robot.expect(201, None);
    let secret = robot.json()["secret"].as_str().unwrap().to_owned();
    let token = r.login("robot$team-a+ci", &secret, &[]).await;
    r.v2_as(&token, "GET", "/v2/", Body::empty()).await.expect(200, None);
    r.advance_clocks(std::time::Duration::from_secs(60));
    r.token_reply("robot$team-a+ci", &secret, &[]).await.expect(401, Some("UNAUTHORIZED"));
    r.v2_as(&token, "GET", "/v2/", Body::empty()).await.expect(401, Some("UNAUTHORIZED"));
}

#[tokio::test]
async fn brute_force_is_slowed_and_never_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let r = TestRegistry::with_config(dir, |c| {
        c.auth.login_backoff = std::time::Duration::from_millis(100);
        c.auth.login_backoff_max = std::time::Duration::from_millis(1500);
    })
    .await;
    // Unknown users get exactly the answer of a wrong password.
    let unknown = r.token_reply("nobody-here", "whatever-password", &[]).await;
    let wrong = r.token_reply("admin", "whatever-password", &[]).await;
    unknown.expect(401, Some("UNAUTHORIZED"));
    assert_eq!((unknown.status, unknown.body.clone()), (wrong.status, wrong.body.clone()));
    let started = std::time::Instant::now();
    let mut throttled = 0;
    for i in 0..50 {
        let reply = r.token_reply("admin", &format!("wrong-{i}"), &[]).await;
        assert!(reply.status == 401 || reply.status == 429, "attempt {i}: {}", reply.status);
        if reply.status == 429 {
            throttled += 1;
            assert!(!reply.header("retry-after").is_empty());
        }
    }
    // The right password during the lock-out is refused too: nothing can be learned by guessing.
    r.token_reply("admin", ADMIN_PASSWORD, &[]).await.expect(429, Some("TOOMANYREQUESTS"));
    assert!(throttled >= 40, "only {throttled} of 50 attempts were throttled");
    assert!(started.elapsed() >= std::time::Duration::from_millis(5 * 200), "failures were not slowed");
    // Another address (a pair of its own) is not locked out by this one's failures: in-process
    // requests all come from one address, so the owner's other address is simulated by a fresh
    // registry process below (tests/auth_sessions.rs covers it over real sockets).
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    r.token_reply("admin", ADMIN_PASSWORD, &[]).await.expect(200, None);
    let _ = bearer("");
}
