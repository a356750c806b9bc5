//! A real server at debug log level: logins, tokens, robots and personal tokens are audited, and no
//! password, secret or token ever reaches the log.

mod common;

use common::process::Server;
use common::ADMIN_PASSWORD;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_log() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("PORTCULLIS_LOG", "debug");
    let mut server = Server::start(dir.path());
    let client = server.client();
    let api = |path: &str| server.url(path);
    let json = |r: reqwest::Response| async move { r.json::<serde_json::Value>().await.unwrap() };
    let mut secrets = vec![ADMIN_PASSWORD.to_owned(), "alice-password-long".to_owned()];
    for (path, body) in [
        ("/api/v1/namespaces", serde_json::json!({"name": "team"})),
        ("/api/v1/users", serde_json::json!({"username": "alice", "password": "alice-password-long"})),
    ] {
        let r = client.post(api(path)).basic_auth("admin", Some(ADMIN_PASSWORD)).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 201);
    }
    let robot = json(
        client
            .post(api("/api/v1/namespaces/team/robots"))
            .basic_auth("admin", Some(ADMIN_PASSWORD))
            .json(&serde_json::json!({"name": "ci", "actions": ["pull"], "expires_at": common::in_days(30)}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    secrets.push(robot["secret"].as_str().unwrap().to_owned());
    let pat = json(
        client
            .post(api("/api/v1/tokens"))
            .basic_auth("alice", Some("alice-password-long"))
            .json(&serde_json::json!({"name": "t", "expires_at": common::in_days(30)}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    secrets.push(pat["token"].as_str().unwrap().to_owned());
    for (user, secret) in [
        ("admin", ADMIN_PASSWORD),
        ("alice", pat["token"].as_str().unwrap()),
        ("robot$team+ci", robot["secret"].as_str().unwrap()),
    ] {
        let token = server.token(user, secret, &["repository:team/app:pull"]).await;
        let r = client.get(api("/v2/team/app/tags/list")).bearer_auth(&token).send().await.unwrap();
        assert!(r.status() == 404 || r.status() == 403, "{}", r.status());
        secrets.push(token);
    }
    // A failed login with a password-like guess.
    let wrong = client
        .get(api("/token?service=portcullis"))
        .basic_auth("alice", Some("guessed-password-123"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    secrets.push("guessed-password-123".to_owned());
    server.stop();
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    for s in &secrets {
        assert!(!log.contains(s.as_str()), "a secret reached the log");
    }
    assert!(log.contains("admin change") && log.contains("robot.create"), "admin changes are audited");
    assert!(log.contains("failed login") && log.contains("login"), "logins are audited");
}
