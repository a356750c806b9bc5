//! The stored audit log against a real `portcullis serve` process (SQLite, and PostgreSQL + S3
//! under TESTBED_BACKEND=scaleout): a record for each kind of event with its actor and request
//! id, owners reading their namespace's records only, and tampering with rows directly in the
//! database (update, delete, reorder, truncate) found by `GET /api/v1/audit/verify` and by
//! `portcullis audit verify`, naming the first broken record.

mod common;

use std::path::Path;
use std::process::Command;

use common::process::{push_small_image, Server};
use common::ADMIN_PASSWORD;
use serde_json::{json, Value};

/// The database URL the server in `dir` uses.
fn database_url(dir: &Path) -> String {
    match common::backends::for_data_dir(dir) {
        Some(name) => common::backends::postgres_database(&name),
        None => format!("sqlite://{}", dir.join("portcullis.db").display()),
    }
}

async fn sql(dir: &Path, statement: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&database_url(dir)).await.unwrap();
    sqlx::query(statement).execute(&pool).await.unwrap();
    pool.close().await;
}

/// `portcullis audit verify` on the data directory: (exit success, its JSON report).
fn cli_verify(dir: &Path) -> (bool, Value) {
    let env = common::backends::for_data_dir(dir).map(|n| common::backends::env(&n)).unwrap_or_default();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["audit", "verify"])
        .env("PORTCULLIS_DATA_DIR", dir)
        .env("PORTCULLIS_LOG", "error")
        .envs(env)
        .output()
        .unwrap();
    let report = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no report: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), report)
}

async fn api_get(server: &Server, path: &str, user: &str, password: &str) -> (u16, Value) {
    let r = server.client().get(server.url(path)).basic_auth(user, Some(password)).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Every kind of event the issue names leaves a record, with who, what, outcome and request id.
async fn make_events(server: &Server) -> (String, String) {
    server.api(reqwest::Method::POST, "/api/v1/namespaces", json!({"name": "team"})).await;
    server.api(reqwest::Method::POST, "/api/v1/namespaces", json!({"name": "other"})).await;
    server
        .api(reqwest::Method::POST, "/api/v1/users", json!({"username": "owner", "password": "owner-password-long"}))
        .await;
    server
        .api(reqwest::Method::POST, "/api/v1/users", json!({"username": "dev", "password": "dev-password-long"}))
        .await;
    server.api(reqwest::Method::PUT, "/api/v1/namespaces/team/members/owner", json!({"role": "owner"})).await;
    server.api(reqwest::Method::PUT, "/api/v1/namespaces/team/members/dev", json!({"role": "reader"})).await;
    let robot = server
        .api(
            reqwest::Method::POST,
            "/api/v1/namespaces/team/robots",
            json!({"name": "ci", "actions": ["pull", "push"], "expires_at": common::in_days(30)}),
        )
        .await;
    let robot_secret = robot["secret"].as_str().unwrap().to_owned();
    let client = server.client();
    // Logins: failed, then a robot's token.
    let failed = client
        .get(server.url("/token?service=portcullis"))
        .basic_auth("dev", Some("not-the-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);
    let robot_token = server.token("robot$team+ci", &robot_secret, &["repository:team/app:pull,push"]).await;
    let base = server.url("");
    let pusher = server.client_with_token(&robot_token);
    let clean = push_small_image(&pusher, &base, "team/app", "v1", Some("10001")).await;
    let root = push_small_image(&pusher, &base, "team/app", "root", None).await;
    assert_eq!(server.scan_state("team/app", &clean, "30s").await, "passed");
    assert_eq!(server.scan_state("team/app", &root, "30s").await, "quarantined");
    // A reader's blocked pull, and a reader's push refused (its token carries no push).
    let reader =
        server.client_with_token(&server.token("dev", "dev-password-long", &["repository:team/app:pull,push"]).await);
    let blocked = reader
        .get(server.url("/v2/team/app/manifests/root"))
        .header("x-request-id", "blocked-pull-1")
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), 403);
    let denied = reader.post(server.url("/v2/team/app/blobs/uploads/")).send().await.unwrap();
    assert_eq!(denied.status(), 403, "a token without push is refused");
    // An admin reads past the gate, then releases; a tag is deleted.
    let admin_reader = server.admin_client(&["repository:team/app:pull,delete"]).await;
    assert_eq!(admin_reader.get(server.url("/v2/team/app/manifests/root")).send().await.unwrap().status(), 200);
    server.api(
        reqwest::Method::POST,
        "/api/v1/scans/release",
        json!({"repository": "team/app", "digest": root, "reason": "accepted risk", "expires_at": common::in_days(1)}),
    )
    .await;
    let deleted = admin_reader.delete(server.url("/v2/team/app/manifests/v1")).send().await.unwrap();
    assert_eq!(deleted.status(), 202);
    (clean, root)
}

fn find<'a>(items: &'a [Value], action: &str) -> Vec<&'a Value> {
    items.iter().filter(|i| i["action"] == action).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_kind_is_recorded_and_the_chain_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let (clean, root) = make_events(&server).await;
    let (status, page) = api_get(&server, "/api/v1/audit?limit=1000", "admin", ADMIN_PASSWORD).await;
    assert_eq!(status, 200);
    let items = page["items"].as_array().unwrap().clone();
    let ids: Vec<i64> = items.iter().map(|i| i["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1] + 1), "newest first, contiguous: {ids:?}");

    let push = find(&items, "push");
    let pushed_clean = push.iter().find(|p| p["object"] == format!("team/app@{clean}")).expect("the push is recorded");
    assert_eq!(pushed_clean["actor"], "robot$team+ci");
    assert_eq!(pushed_clean["request_id"], "push-v1");
    assert_eq!(pushed_clean["details"]["tag"], "v1");
    assert_eq!(pushed_clean["namespace"], "team");
    assert!(pushed_clean["client"].as_str().unwrap().starts_with("127."), "{pushed_clean}");
    assert!(find(&items, "login").iter().any(|l| l["outcome"] == "failed" && l["actor"] == "dev"), "a failed login");
    assert!(find(&items, "login").iter().any(|l| l["outcome"] == "ok" && l["actor"] == "robot$team+ci"));
    assert!(find(&items, "token.issue").iter().any(|t| t["actor"] == "robot$team+ci"));
    for action in ["namespace.create", "user.create", "member.set", "robot.create"] {
        assert!(find(&items, action).iter().any(|r| r["actor"] == "admin"), "{action} is recorded");
    }
    let verdicts = find(&items, "scan.verdict");
    assert!(verdicts.iter().any(|v| v["object"] == format!("team/app@{root}") && v["outcome"] == "quarantined"));
    assert!(verdicts.iter().any(|v| v["object"] == format!("team/app@{clean}") && v["outcome"] == "passed"));
    let blocked = find(&items, "pull.blocked");
    assert_eq!(blocked.len(), 1, "{blocked:?}");
    assert_eq!(
        (blocked[0]["actor"].as_str(), blocked[0]["request_id"].as_str()),
        (Some("dev"), Some("blocked-pull-1"))
    );
    assert_eq!(blocked[0]["outcome"], "denied");
    assert!(find(&items, "gate.bypass").iter().any(|b| b["actor"] == "admin"));
    assert!(find(&items, "scan.release").iter().any(|r| r["actor"] == "admin"));
    assert!(find(&items, "delete").iter().any(|d| d["object"] == "team/app:v1"));
    assert!(find(&items, "access.denied").iter().any(|d| d["actor"] == "dev" && d["outcome"] == "denied"));
    // No secret in any record.
    let text = page.to_string();
    assert!(!text.contains("not-the-password") && !text.contains(ADMIN_PASSWORD));

    // Filters, and paging that ends.
    let (_, mine) = api_get(&server, "/api/v1/audit?actor=dev&action=login", "admin", ADMIN_PASSWORD).await;
    assert!(mine["items"].as_array().unwrap().iter().all(|i| i["actor"] == "dev" && i["action"] == "login"));
    let (_, prefix) = api_get(&server, "/api/v1/audit?object=team/app@", "admin", ADMIN_PASSWORD).await;
    assert!(!prefix["items"].as_array().unwrap().is_empty());
    let (_, first) = api_get(&server, "/api/v1/audit?limit=5", "admin", ADMIN_PASSWORD).await;
    let next = first["next"].as_i64().unwrap();
    let (_, second) = api_get(&server, &format!("/api/v1/audit?limit=5&after={next}"), "admin", ADMIN_PASSWORD).await;
    assert_eq!(second["items"][0]["id"].as_i64(), Some(next - 1));
    let (bad, _) = api_get(&server, "/api/v1/audit?since=yesterday", "admin", ADMIN_PASSWORD).await;
    assert_eq!(bad, 400);

    // Owners read their namespace's records; nobody else reads any.
    let (status, owned) =
        api_get(&server, "/api/v1/audit?namespace=team&limit=1000", "owner", "owner-password-long").await;
    assert_eq!(status, 200);
    let owned = owned["items"].as_array().unwrap();
    assert!(!owned.is_empty() && owned.iter().all(|i| i["namespace"] == "team"));
    assert_eq!(api_get(&server, "/api/v1/audit", "owner", "owner-password-long").await.0, 403);
    assert_eq!(api_get(&server, "/api/v1/audit?namespace=other", "owner", "owner-password-long").await.0, 403);
    assert_eq!(api_get(&server, "/api/v1/audit?namespace=team", "dev", "dev-password-long").await.0, 403);
    assert_eq!(api_get(&server, "/api/v1/audit/verify", "owner", "owner-password-long").await.0, 403);
    // Those refusals are audited too, with who was refused what.
    let (_, denied) = api_get(&server, "/api/v1/audit?action=access.denied&actor=owner", "admin", ADMIN_PASSWORD).await;
    let objects: Vec<&str> =
        denied["items"].as_array().unwrap().iter().map(|i| i["object"].as_str().unwrap()).collect();
    assert!(objects.contains(&"/api/v1/audit/verify") && objects.contains(&"/api/v1/audit"), "{denied}");
    assert!(denied["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|i| i["outcome"] == "denied" && i["details"]["method"] == "GET"));

    let (status, verified) = api_get(&server, "/api/v1/audit/verify", "admin", ADMIN_PASSWORD).await;
    assert_eq!(status, 200);
    assert_eq!(verified["ok"], true, "{verified}");
    assert!(verified["records"].as_u64().unwrap() >= items.len() as u64);
}

/// A stopped registry whose chain holds some records; the place of its last one.
async fn chain_of_records() -> (tempfile::TempDir, i64) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    for i in 0..6 {
        let user = json!({"username": format!("u{i}"), "password": "a-long-password"});
        server.api(reqwest::Method::POST, "/api/v1/users", user).await;
    }
    let (_, verified) = api_get(&server, "/api/v1/audit/verify", "admin", ADMIN_PASSWORD).await;
    assert_eq!(verified["ok"], true, "{verified}");
    let head = verified["head"].as_i64().unwrap();
    assert!(head >= 12, "logins and changes: {verified}");
    server.stop();
    assert!(cli_verify(dir.path()).0);
    (dir, head)
}

/// Changing, deleting, reordering or cutting rows directly in the database is found, and the
/// first broken record is named, by the offline command and by the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampering_with_rows_is_found_and_named() {
    // What to run on the rows, and the first broken record. Once the server runs again it
    // chains its own new records after the head; for a cut-off end, the first of those is the
    // first record the API finds after the gap.
    type Case = fn(i64, i64) -> (Vec<String>, i64);
    let cases: [(&str, Case); 6] = [
        ("a field changed", |mid, _| {
            (vec![format!("UPDATE audit_log SET object = 'someone-else' WHERE seq = {mid}")], mid)
        }),
        ("two records swapped", |mid, _| {
            let swap = vec![
                format!("UPDATE audit_log SET seq = -1 WHERE seq = {mid}"),
                format!("UPDATE audit_log SET seq = {mid} WHERE seq = {}", mid + 1),
                format!("UPDATE audit_log SET seq = {} WHERE seq = -1", mid + 1),
            ];
            (swap, mid)
        }),
        ("a record deleted", |mid, _| (vec![format!("DELETE FROM audit_log WHERE seq = {}", mid + 2)], mid + 3)),
        ("the newest records cut off", |_, head| {
            (vec![format!("DELETE FROM audit_log WHERE seq >= {}", head - 1)], head - 1)
        }),
        ("the newest records cut off and the head moved back", |_, head| {
            let cut = vec![
                format!("DELETE FROM audit_log WHERE seq >= {}", head - 1),
                format!(
                    "UPDATE audit_head SET seq = {0}, hash = (SELECT hash FROM audit_log WHERE seq = {0})",
                    head - 2
                ),
            ];
            (cut, head - 2)
        }),
        ("the oldest records cut off and the start moved", |_, _| {
            let cut = vec![
                "UPDATE audit_head SET first_seq = 4, first_prev = (SELECT hash FROM audit_log WHERE seq = 3)"
                    .to_owned(),
                "DELETE FROM audit_log WHERE seq <= 3".to_owned(),
            ];
            (cut, 0)
        }),
    ];
    for (what, case) in cases {
        let (dir, head) = chain_of_records().await;
        let (statements, expected) = case(head / 2, head);
        for statement in &statements {
            sql(dir.path(), statement).await;
        }
        let (ok, report) = cli_verify(dir.path());
        assert!(!ok, "{what}: {report}");
        if what.contains("moved") {
            // A moved head or start is found by the seal, whatever place it names.
            let reason = report["reason"].as_str().unwrap_or("");
            assert!(reason.contains("without the registry's key"), "{what}: {report}");
        } else {
            assert_eq!(report["first_broken"].as_i64(), Some(expected), "{what}: {report}");
        }
        assert!(report["reason"].as_str().is_some_and(|r| !r.is_empty()), "{what}: {report}");
        let server = Server::start(dir.path());
        let (_, via_api) = api_get(&server, "/api/v1/audit/verify", "admin", ADMIN_PASSWORD).await;
        assert_eq!(via_api["ok"], false, "{what}: {via_api}");
        if !what.contains("moved") {
            let api_expected = if what.contains("cut off") { head + 1 } else { expected };
            assert_eq!(via_api["first_broken"].as_i64(), Some(api_expected), "{what}: {via_api}");
        }
    }
}
