//! The token endpoint: GET and POST forms, the answer's fields, refresh tokens, JWKS, claims.

mod common;

use axum::body::Body;
use base64::Engine as _;
use common::auth::basic;
use common::{TestRegistry, ADMIN_PASSWORD};
use serde_json::json;

fn claims(token: &str) -> serde_json::Value {
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').nth(1).unwrap()).unwrap();
    serde_json::from_slice(&payload).unwrap()
}

#[tokio::test]
async fn get_token_answers_docker_fields_and_grants_the_intersection() {
    let r = TestRegistry::new().await;
    let pw = r.user_with_role("dev", "team-a", "developer").await;
    let reply = r
        .send_raw(
            "GET",
            "/token?service=portcullis&scope=repository:team-a/app:pull,push,delete&scope=repository:team-b/x:pull&offline_token=true&client_id=docker",
            &[("authorization", &basic("dev", &pw))],
            Body::empty(),
        )
        .await;
    reply.expect(200, None);
    let body = reply.json();
    assert_eq!(body["token"], body["access_token"]);
    assert_eq!(body["expires_in"], 3600, "the default lifetime covers a long upload");
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
    assert!(body["refresh_token"].is_string());
    assert_eq!(reply.header("cache-control"), "no-store");
    let c = claims(body["token"].as_str().unwrap());
    assert_eq!(c["sub"], "dev");
    assert_eq!(c["aud"], "portcullis");
    assert_eq!(c["iss"], r.app.config.public_url());
    for k in ["exp", "nbf", "iat", "jti"] {
        assert!(!c[k].is_null(), "{k} missing");
    }
    assert_eq!(c["access"], json!([{"type": "repository", "name": "team-a/app", "actions": ["pull", "push"]}]));
    // Without offline_token, no refresh token.
    let plain = r.token_reply("dev", &pw, &["repository:team-a/app:pull"]).await;
    assert!(plain.json().get("refresh_token").is_none());
    // A wrong service is refused.
    r.send_raw("GET", "/token?service=other", &[("authorization", &basic("dev", &pw))], Body::empty())
        .await
        .expect(400, None);
    // Malformed Basic credentials are the same as none: an anonymous token with nothing in it.
    let anon = r
        .send_raw("GET", "/token?scope=repository:team-a/app:pull", &[("authorization", "Basic !!!")], Body::empty())
        .await;
    anon.expect(200, None);
    assert_eq!(claims(anon.json()["token"].as_str().unwrap())["access"], json!([]));
}

#[tokio::test]
async fn post_token_password_and_refresh_grants() {
    let r = TestRegistry::new().await;
    r.push_image("team-a/app", "v1", "x").await;
    let form = |f: &str| f.to_owned();
    let reply = r
        .send_raw(
            "POST",
            "/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            form(&format!(
                "grant_type=password&username=admin&password={ADMIN_PASSWORD}&service=portcullis&client_id=test&access_type=offline&scope=repository%3Ateam-a%2Fapp%3Apull"
            )),
        )
        .await;
    reply.expect(200, None);
    let refresh = reply.json()["refresh_token"].as_str().unwrap().to_owned();
    let again = r
        .send_raw(
            "POST",
            "/token",
            &[("content-type", "application/x-www-form-urlencoded")],
            form(&format!("grant_type=refresh_token&refresh_token={refresh}&service=portcullis&client_id=test&scope=repository%3Ateam-a%2Fapp%3Apull")),
        )
        .await;
    again.expect(200, None);
    let token = again.json()["access_token"].as_str().unwrap().to_owned();
    r.v2_as(&token, "GET", "/v2/team-a/app/manifests/v1", Body::empty()).await.expect(200, None);
    // A refresh token is not an access token, nor the other way round.
    r.v2_as(&refresh, "GET", "/v2/team-a/app/manifests/v1", Body::empty()).await.expect(401, Some("UNAUTHORIZED"));
    r.send_raw("POST", "/token", &[], form(&format!("grant_type=refresh_token&refresh_token={token}")))
        .await
        .expect(401, None);
    // Malformed forms get a clear 400.
    r.send_raw("POST", "/token", &[], form("grant_type=password&username=admin")).await.expect(400, None);
    r.send_raw("POST", "/token", &[], form("grant_type=client_credentials")).await.expect(400, None);
    r.send_raw("POST", "/token", &[], form("grant_type=password&username=admin&password=wrong-password"))
        .await
        .expect(401, None);
}

#[tokio::test]
async fn jwks_publishes_the_signing_key() {
    let r = TestRegistry::new().await;
    let reply = r.send_raw("GET", "/.well-known/jwks.json", &[], Body::empty()).await;
    reply.expect(200, None);
    let key = &reply.json()["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["crv"], "P-256");
    assert_eq!(key["alg"], "ES256");
    let token = r.login("admin", ADMIN_PASSWORD, &[]).await;
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["kid"], key["kid"]);
    // The private key file is for the owner only.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(r.dir.path().join("keys/token-signing.pem")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn admin_bootstrap_writes_a_private_password_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::test_config(dir.path());
    let app = portcullis::App::build(config).await.unwrap();
    let file = app.auth.bootstrap_admin(dir.path(), None).await.unwrap().expect("a password file");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let password = std::fs::read_to_string(&file).unwrap();
    assert!(password.len() >= 32);
    // Only once: a second start keeps the admin as it is.
    assert!(app.auth.bootstrap_admin(dir.path(), None).await.unwrap().is_none());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), password);
}

/// Key rotation across replicas, in three rolls: (1) every replica learns the new key as a
/// verifying key, (2) the new key signs and the old one verifies, (3) the old key is dropped. During
/// each roll, tokens from replicas of either generation verify on all of them; after the third, the
/// old key's tokens are refused.
#[tokio::test]
async fn signing_key_rotation_keeps_tokens_valid_across_a_rolling_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (old_key, new_key) = (dir.path().join("old.pem"), dir.path().join("new.pem"));
    let r = {
        let old_key = old_key.clone();
        TestRegistry::with_config(dir, move |c| c.auth.signing_key = Some(old_key)).await
    };
    let scopes = ["repository:rot/app:pull,push"];
    let old = r.login("admin", ADMIN_PASSWORD, &scopes).await;
    // Roll 2's key file is made by its first start; roll 1 only reads it.
    let roll2 = r
        .beside(|c| {
            c.auth.signing_key = Some(new_key.clone());
            c.auth.verify_keys = vec![old_key.clone()];
        })
        .await;
    let roll1 = r.beside(|c| c.auth.verify_keys = vec![new_key.clone()]).await;
    let roll3 = r.beside(|c| c.auth.signing_key = Some(new_key.clone())).await;
    let new = roll2.login("admin", ADMIN_PASSWORD, &scopes).await;
    let kid = |token: &str| {
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.split('.').next().unwrap()).unwrap();
        serde_json::from_slice::<serde_json::Value>(&header).unwrap()["kid"].as_str().unwrap().to_owned()
    };
    assert_ne!(kid(&old), kid(&new), "the new key signs after the second roll");
    let post = "/v2/rot/app/blobs/uploads/";
    for (replica, name) in [(&roll1, "roll 1"), (&roll2, "roll 2")] {
        replica.v2_as(&old, "POST", post, Body::empty()).await.expect(202, None);
        replica.v2_as(&new, "POST", post, Body::empty()).await.expect(202, None);
        let jwks = replica.send_raw("GET", "/.well-known/jwks.json", &[], Body::empty()).await.json();
        assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "{name} publishes both keys");
    }
    roll3.v2_as(&new, "POST", post, Body::empty()).await.expect(202, None);
    roll3.v2_as(&old, "POST", post, Body::empty()).await.expect(401, Some("UNAUTHORIZED"));
    // A replica that never learnt the new key refuses its tokens: hence the first roll.
    r.v2_as(&new, "POST", post, Body::empty()).await.expect(401, Some("UNAUTHORIZED"));
}
