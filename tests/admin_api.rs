//! The admin API: who may call what, structured errors for bad input, secrets shown once.

mod common;

use common::TestRegistry;
use serde_json::json;

#[tokio::test]
async fn users_are_managed_by_admins_only() {
    let r = TestRegistry::new().await;
    r.send_raw("GET", "/api/v1/users", &[], "").await.expect(401, None);
    let created =
        r.admin_api("POST", "/api/v1/users", json!({"username": "alice", "password": "alice-password-long"})).await;
    created.expect(201, None);
    assert_eq!(created.json()["username"], "alice");
    assert!(created.json().get("password_hash").is_none(), "hashes never leave the server");
    r.admin_api("POST", "/api/v1/users", json!({"username": "alice", "password": "alice-password-long"}))
        .await
        .expect(409, None);
    let list = r.admin_api("GET", "/api/v1/users?limit=1", json!(null)).await;
    list.expect(200, None);
    assert_eq!(list.json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(list.json()["next"], "admin");
    let rest = r.admin_api("GET", "/api/v1/users?limit=1&after=admin", json!(null)).await;
    assert_eq!(rest.json()["items"][0]["username"], "alice");
    // Alice may read herself and change her password, but nothing else.
    r.api_as("alice", "alice-password-long", "GET", "/api/v1/users", json!(null)).await.expect(403, None);
    r.api_as("alice", "alice-password-long", "GET", "/api/v1/users/alice", json!(null)).await.expect(200, None);
    r.api_as("alice", "alice-password-long", "PATCH", "/api/v1/users/alice", json!({"admin": true}))
        .await
        .expect(403, None);
    r.api_as(
        "alice",
        "alice-password-long",
        "POST",
        "/api/v1/users",
        json!({"username": "eve", "password": "eve-password-long"}),
    )
    .await
    .expect(403, None);
    // Changing one's own password needs the current one.
    let change = |current: Option<&str>| json!({"password": "alice-new-password", "current_password": current});
    r.api_as("alice", "alice-password-long", "PATCH", "/api/v1/users/alice", change(None)).await.expect(400, None);
    r.api_as("alice", "alice-password-long", "PATCH", "/api/v1/users/alice", change(Some("wrong-password-x")))
        .await
        .expect(403, None);
    r.api_as("alice", "alice-password-long", "PATCH", "/api/v1/users/alice", change(Some("alice-password-long")))
        .await
        .expect(200, None);
    r.api_as("alice", "alice-new-password", "GET", "/api/v1/users/alice", json!(null)).await.expect(200, None);
    r.admin_api("PATCH", "/api/v1/users/nobody", json!({"disabled": true})).await.expect(404, None);
    r.admin_api("PATCH", "/api/v1/users/admin", json!({"disabled": true})).await.expect(400, None);
    // Deleting a user ends its logins; the bootstrap admin stays.
    r.api_as("alice", "alice-new-password", "DELETE", "/api/v1/users/alice", json!(null)).await.expect(403, None);
    r.admin_api("DELETE", "/api/v1/users/alice", json!(null)).await.expect(204, None);
    r.token_reply("alice", "alice-new-password", &[]).await.expect(401, None);
    r.admin_api("DELETE", "/api/v1/users/alice", json!(null)).await.expect(404, None);
    r.admin_api("DELETE", "/api/v1/users/admin", json!(null)).await.expect(400, None);
}

#[tokio::test]
async fn malformed_input_gets_structured_errors() {
    let r = TestRegistry::new().await;
    for (method, uri, body) in [
        ("POST", "/api/v1/users", "{not json".to_owned()),
        ("POST", "/api/v1/users", json!({"username": "x"}).to_string()),
        (
            "POST",
            "/api/v1/users",
            json!({"username": "x", "password": "long-enough-password", "role": "god"}).to_string(),
        ),
        ("POST", "/api/v1/users", json!({"username": "Bad Name", "password": "long-enough-password"}).to_string()),
        ("POST", "/api/v1/users", json!({"username": "short", "password": "short"}).to_string()),
        ("POST", "/api/v1/namespaces", json!({"name": "a/b"}).to_string()),
        ("POST", "/api/v1/namespaces", json!({"name": "UPPER"}).to_string()),
        ("POST", "/api/v1/namespaces", json!({"name": ""}).to_string()),
    ] {
        let reply = r
            .send_raw(
                method,
                uri,
                &[
                    ("authorization", &common::auth::basic("admin", common::ADMIN_PASSWORD)),
                    ("content-type", "application/json"),
                ],
                body.clone(),
            )
            .await;
        reply.expect(400, None);
        assert_eq!(reply.json()["error"]["code"], "invalid_request", "{body}");
        assert!(reply.json()["error"]["message"].is_string());
    }
    let missing = r.admin_api("GET", "/api/v1/nothing-here", json!(null)).await;
    missing.expect(404, None);
    assert_eq!(missing.json()["error"]["code"], "not_found");
    // Extractor rejections and unsupported methods answer in the same shape, not in plain text.
    let admin = common::auth::basic("admin", common::ADMIN_PASSWORD);
    for (method, uri, status, code) in [
        ("GET", "/api/v1/users?limit=lots", 400, "invalid_request"),
        ("GET", "/api/v1/scans?limit=-1", 400, "invalid_request"),
        ("PUT", "/api/v1/scans", 405, "unsupported"),
        ("DELETE", "/api/v1/users", 405, "unsupported"),
    ] {
        let reply = r.send_raw(method, uri, &[("authorization", &admin)], String::new()).await;
        reply.expect(status, None);
        assert_eq!(reply.json()["error"]["code"], code, "{method} {uri}");
        assert!(reply.json()["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{method} {uri}");
    }
    // A domain error answers with the status of the one mapping, never a blanket 500.
    let release = json!({"repository": "team/app", "digest": format!("sha256:{}", "ab".repeat(32)), "reason": "r"});
    let reply = r.admin_api("POST", "/api/v1/scans/release", release).await;
    assert!(reply.status.as_u16() == 404, "{}: {:?}", reply.status, reply.json());
    assert_eq!(reply.json()["error"]["code"], "not_found");

    // /token: one shape, the registry envelope with OAuth2's fields.
    for (method, uri, body, status, code, oauth) in [
        ("POST", "/token", "grant_type=client_credentials", 400, "INVALID_REQUEST", "invalid_request"),
        ("POST", "/token", "grant_type=password&username=admin&password=wrong", 401, "UNAUTHORIZED", "invalid_grant"),
        ("GET", "/token?service=elsewhere", "", 400, "INVALID_REQUEST", "invalid_request"),
        ("PUT", "/token", "", 405, "UNSUPPORTED", "invalid_request"),
    ] {
        let headers = [("content-type", "application/x-www-form-urlencoded")];
        let reply = r.send_raw(method, uri, &headers, body.to_owned()).await;
        reply.expect(status, None);
        let v = reply.json();
        assert_eq!((v["errors"][0]["code"].as_str(), v["error"].as_str()), (Some(code), Some(oauth)), "{uri} {body}");
        assert_eq!(v["errors"][0]["message"], v["error_description"]);
    }
}

#[tokio::test]
async fn owners_manage_their_namespace_only() {
    let r = TestRegistry::new().await;
    let owner_pw = r.user_with_role("owner", "team-a", "owner").await;
    r.admin_api("POST", "/api/v1/namespaces", json!({"name": "team-b"})).await.expect(201, None);
    r.admin_api("POST", "/api/v1/users", json!({"username": "bob", "password": "bob-password-long"}))
        .await
        .expect(201, None);
    let as_owner = |m: &'static str, uri: String, body: serde_json::Value| {
        let pw = owner_pw.clone();
        let r = &r;
        async move { r.api_as("owner", &pw, m, &uri, body).await }
    };
    as_owner("PUT", "/api/v1/namespaces/team-a/members/bob".into(), json!({"role": "developer"}))
        .await
        .expect(200, None);
    as_owner("PUT", "/api/v1/namespaces/team-b/members/bob".into(), json!({"role": "developer"}))
        .await
        .expect(403, None);
    as_owner("PUT", "/api/v1/namespaces/team-a/members/bob".into(), json!({"role": "emperor"})).await.expect(400, None);
    as_owner("PUT", "/api/v1/namespaces/team-a/members/ghost".into(), json!({"role": "reader"}))
        .await
        .expect(404, None);
    let members = as_owner("GET", "/api/v1/namespaces/team-a/members".into(), json!(null)).await;
    assert_eq!(
        members.json()["items"],
        json!([{"username": "bob", "role": "developer"}, {"username": "owner", "role": "owner"}])
    );
    as_owner("DELETE", "/api/v1/namespaces/team-a/members/bob".into(), json!(null)).await.expect(204, None);
    as_owner("POST", "/api/v1/namespaces".into(), json!({"name": "team-c"})).await.expect(403, None);
    as_owner("PATCH", "/api/v1/namespaces/team-a".into(), json!({"public": true})).await.expect(403, None);
    // Robots: created by the owner, the secret shown once, never listed.
    let robot = as_owner(
        "POST",
        "/api/v1/namespaces/team-a/robots".into(),
        json!({"name": "ci", "actions": ["push", "pull"], "expires_at": common::in_days(30), "repositories": "apps/*"}),
    )
    .await;
    robot.expect(201, None);
    assert!(robot.json()["secret"].as_str().unwrap().starts_with("pcr_"));
    let listed = as_owner("GET", "/api/v1/namespaces/team-a/robots".into(), json!(null)).await;
    assert!(
        listed.json()["items"][0].get("secret").is_none() && listed.json()["items"][0].get("secret_hash").is_none()
    );
    let rotated = as_owner("POST", "/api/v1/namespaces/team-a/robots/ci/rotate".into(), json!(null)).await;
    rotated.expect(200, None);
    assert_ne!(rotated.json()["secret"], robot.json()["secret"]);
    r.token_reply("robot$team-a+ci", robot.json()["secret"].as_str().unwrap(), &[]).await.expect(401, None);
    r.login("robot$team-a+ci", rotated.json()["secret"].as_str().unwrap(), &[]).await;
    for bad in [
        json!({"name": "x", "actions": [], "expires_at": common::in_days(30)}),
        json!({"name": "x", "actions": ["fly"], "expires_at": common::in_days(30)}),
        json!({"name": "x", "actions": ["pull"]}),
        json!({"name": "x", "actions": ["pull"], "expires_at": "2001-01-01T00:00:00Z"}),
        json!({"name": "x", "actions": ["pull"], "expires_at": "tomorrow"}),
    ] {
        as_owner("POST", "/api/v1/namespaces/team-a/robots".into(), bad.clone()).await.expect(400, None);
    }
    as_owner(
        "POST",
        "/api/v1/namespaces/team-b/robots".into(),
        json!({"name": "x", "actions": ["pull"], "expires_at": common::in_days(30)}),
    )
    .await
    .expect(403, None);
}

#[tokio::test]
async fn robots_cannot_use_the_admin_api_and_tokens_are_personal() {
    let r = TestRegistry::new().await;
    r.admin_api("POST", "/api/v1/namespaces", json!({"name": "team-a"})).await.expect(201, None);
    let robot = r
        .admin_api(
            "POST",
            "/api/v1/namespaces/team-a/robots",
            json!({"name": "ci", "actions": ["pull"], "expires_at": common::in_days(30)}),
        )
        .await;
    let secret = robot.json()["secret"].as_str().unwrap().to_owned();
    r.api_as(
        "robot$team-a+ci",
        &secret,
        "POST",
        "/api/v1/tokens",
        json!({"name": "t", "expires_at": common::in_days(30)}),
    )
    .await
    .expect(403, None);
    r.api_as("robot$team-a+ci", &secret, "GET", "/api/v1/namespaces/team-a/robots", json!(null))
        .await
        .expect(403, None);
    let token =
        r.admin_api("POST", "/api/v1/tokens", json!({"name": "admin-laptop", "expires_at": common::in_days(30)})).await;
    token.expect(201, None);
    let listed = r.admin_api("GET", "/api/v1/tokens", json!(null)).await;
    assert_eq!(listed.json()["items"][0]["name"], "admin-laptop");
    assert!(listed.json()["items"][0].get("token").is_none());
    // The admin API accepts a personal token, but no registry token: not even an admin's.
    let pat = token.json()["token"].as_str().unwrap().to_owned();
    r.api_as("admin", &pat, "GET", "/api/v1/users", json!(null)).await.expect(200, None);
    let bearer = r.login("admin", common::ADMIN_PASSWORD, &[]).await;
    let refused = r.send_raw("GET", "/api/v1/users", &[("authorization", &format!("Bearer {bearer}"))], "").await;
    refused.expect(401, None);
    assert_eq!(refused.header("www-authenticate"), "Portcullis realm=\"admin\"", "no Basic challenge for browsers");
    r.admin_api("DELETE", "/api/v1/tokens/not-a-token", json!(null)).await.expect(404, None);
}
