//! The admin API's OpenAPI document (`GET /api/v1/openapi.json`) against the API itself: every
//! documented operation is served and nothing undocumented is, and the API's real answers, of
//! success and error alike, validate against the document's schemas (JSON Schema 2020-12, with
//! formats checked).

mod common;

use axum::body::Body;
use common::auth::basic;
use common::{Reply, TestRegistry, ADMIN_PASSWORD};
use serde_json::{json, Value};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

async fn document(reg: &TestRegistry) -> Value {
    let r = reg.send_raw("GET", "/api/v1/openapi.json", &[], Body::empty()).await;
    assert_eq!(r.status, 200, "the document is public");
    assert_eq!(r.header("content-type"), "application/json");
    r.json()
}

/// Properties an answer may leave out (`skip_serializing_if`), by schema.
const OPTIONAL: &[(&str, &str)] = &[("Finding", "path"), ("Finding", "layer")];

/// The document as the validation reads it: every property of a named object schema is required
/// (serde writes `null` for a missing value) and no other property is allowed, so an answer that
/// drops or adds a field fails. (The schemas that another flattens stay open.)
fn strict(doc: &Value) -> Value {
    let mut doc = doc.clone();
    let schemas = doc["components"]["schemas"].as_object_mut().unwrap();
    let flattened = ["Robot", "Token", "Webhook"];
    for (name, schema) in schemas.iter_mut() {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else { continue };
        let required: Vec<Value> = props
            .keys()
            .filter(|p| !OPTIONAL.contains(&(name.as_str(), p.as_str())))
            .map(|p| Value::String(p.clone()))
            .collect();
        schema["required"] = Value::Array(required);
        if !flattened.contains(&name.as_str()) {
            schema["additionalProperties"] = json!(false);
        }
    }
    doc
}

/// A concrete path for a templated one.
fn concrete(template: &str) -> String {
    // (`/` is the API's root, `/api/v1`.)
    // (A repository's name may hold slashes; other names may not.)
    let name = if template.starts_with("/repositories/") { "team/app" } else { "x" };
    template.trim_end_matches('/').replace("{name}", name).replace(['{', '}'], "")
}

#[tokio::test]
async fn the_document_and_the_router_agree() {
    let reg = TestRegistry::new().await;
    let doc = document(&reg).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"), "{}", doc["openapi"]);
    assert_eq!(doc["servers"][0]["url"], "/api/v1");
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 30, "{} paths", paths.len());
    let mut operations = 0;
    for (template, item) in paths {
        assert!(!template.contains('*'), "{template}: OpenAPI templates name parameters plainly");
        let uri = format!("/api/v1{}", concrete(template));
        for method in METHODS {
            let r = reg.send_raw(&method.to_uppercase(), &uri, &[], Body::empty()).await;
            let body = String::from_utf8_lossy(&r.body).into_owned();
            match item.get(method) {
                Some(op) => {
                    operations += 1;
                    assert!(
                        !(r.status == 404 && body.contains("no such endpoint")) && r.status != 405,
                        "{method} {template} is documented but not served: {} {body}",
                        r.status
                    );
                    let public = op.get("security") == Some(&json!([{}]));
                    if public {
                        assert_eq!(r.status, 200, "{method} {template} is documented as public");
                    } else {
                        assert_eq!(r.status, 401, "{method} {template} without credentials: {body}");
                        validate(&doc, method, template, &r);
                    }
                    let expected: &[&str] = if public { &["200"] } else { &["200", "401", "403", "404"] };
                    for status in expected.iter().copied() {
                        let documented = op["responses"].get(status).is_some()
                            || (status == "200"
                                && op["responses"].as_object().unwrap().keys().any(|k| k.starts_with('2')));
                        assert!(documented, "{method} {template} documents no {status}");
                    }
                    assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{method} {template} has no tag");
                }
                None => {
                    assert_eq!(r.status, 405, "{method} {template} is served but not documented: {body}");
                }
            }
        }
    }
    assert!(operations >= 55, "{operations} operations");
    // Every route is registered through `routes!`, which documents it: the router has no other.
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/admin/mod.rs")).unwrap();
    let router = &source[source.find("pub fn router()").unwrap()..];
    let router = &router[..router.find("\n}\n").unwrap()];
    for other in [".route(", ".route_service(", ".nest_service(", ".merge(", ".nest("] {
        assert!(!router.contains(other), "admin routes added around their documentation ({other})");
    }
    let finish = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/http/admin/openapi.rs")).unwrap();
    let finish = &finish[finish.find("pub fn router(").unwrap()..];
    let finish = &finish[..finish.find("\n}\n").unwrap()];
    // (`whole.merge(doc)` joins two documents, not two routers.)
    let finish = finish.replace("whole.merge(doc)", "");
    for other in [".route(", ".route_service(", ".nest(", ".nest_service(", ".merge("] {
        assert!(!finish.contains(other), "admin routes added around their documentation ({other}): {finish}");
    }
}

/// Validates `reply` against the schema the document gives for `method template` and its status.
#[track_caller]
fn validate(doc: &Value, method: &str, template: &str, reply: &Reply) {
    let op = &doc["paths"][template][method];
    let status = reply.status.as_u16().to_string();
    let response = op["responses"].get(&status).unwrap_or_else(|| {
        panic!(
            "{method} {template} answered {status}, which it does not document: {}",
            String::from_utf8_lossy(&reply.body)
        )
    });
    let Some(schema) = response["content"]["application/json"].get("schema") else {
        assert!(reply.body.is_empty(), "{method} {template} {status} documents no body but sent one");
        return;
    };
    let root = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    });
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&root)
        .unwrap_or_else(|e| panic!("{method} {template}: the document's schema does not compile: {e}"));
    let body: Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|_| panic!("{method} {template} {status}: not JSON: {:?}", reply.body));
    let errors: Vec<String> = validator.iter_errors(&body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{method} {template} {status}: {errors:?}\nbody: {body:#}");
}

/// Calls the API as admin (or `auth`) and validates the answer; returns it.
async fn call(reg: &TestRegistry, doc: &Value, method: &str, template: &str, path: &str, body: Value) -> Reply {
    call_as(reg, doc, &basic("admin", ADMIN_PASSWORD), method, template, path, body).await
}

async fn call_as(
    reg: &TestRegistry,
    doc: &Value,
    auth: &str,
    method: &str,
    template: &str,
    path: &str,
    body: Value,
) -> Reply {
    let content = if body.is_null() { String::new() } else { body.to_string() };
    let mut headers = vec![("authorization", auth)];
    if !content.is_empty() {
        headers.push(("content-type", "application/json"));
    }
    let r = reg
        .send_raw(&method.to_uppercase(), &format!("/api/v1{}", path.trim_end_matches('/')), &headers, content)
        .await;
    validate(doc, method, template, &r);
    r
}

#[tokio::test]
async fn the_apis_answers_validate_against_the_document() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::with_config(dir, |c| c.webhooks.allow_private_targets = true).await;
    let doc = strict(&document(&reg).await);
    let d = &doc;
    let r = &reg;
    // Users.
    call(r, d, "post", "/users", "/users", json!({"username": "ann", "password": "ann-password-123"}))
        .await
        .expect(201, None);
    call(r, d, "get", "/users", "/users?limit=1", Value::Null).await.expect(200, None);
    let found = call(r, d, "get", "/users", "/users?q=AN", Value::Null).await;
    assert_eq!(
        found.json()["items"].as_array().unwrap().iter().map(|u| u["username"].as_str().unwrap()).collect::<Vec<_>>(),
        vec!["ann"]
    );
    call(r, d, "get", "/users", &format!("/users?q={}", "x".repeat(129)), Value::Null).await.expect(400, None);
    call(r, d, "get", "/users/{username}", "/users/ann", Value::Null).await.expect(200, None);
    call(r, d, "patch", "/users/{username}", "/users/ann", json!({"disabled": false})).await.expect(200, None);
    call(r, d, "get", "/users/{username}", "/users/nobody", Value::Null).await.expect(404, None);
    call(r, d, "post", "/users", "/users", json!({"username": "ann", "password": "another-password-1"}))
        .await
        .expect(409, None);
    call(r, d, "patch", "/users/{username}", "/users/ann", json!({})).await.expect(400, None);
    let big = json!({"username": "x".repeat(3 * 1024 * 1024), "password": "y"});
    call(r, d, "post", "/users", "/users", big).await.expect(413, None);
    call(r, d, "post", "/users", "/users", json!({"nonsense": 1})).await.expect(400, None);
    // Namespaces and members.
    call(r, d, "post", "/namespaces", "/namespaces", json!({"name": "team"})).await.expect(201, None);
    call(r, d, "get", "/namespaces", "/namespaces", Value::Null).await.expect(200, None);
    call(r, d, "get", "/namespaces/{ns}", "/namespaces/team", Value::Null).await.expect(200, None);
    call(r, d, "patch", "/namespaces/{ns}", "/namespaces/team", json!({"public": false})).await.expect(200, None);
    let member = "/namespaces/{ns}/members/{username}";
    call(r, d, "put", member, "/namespaces/team/members/ann", json!({"role": "reader"})).await.expect(200, None);
    call(r, d, "get", "/namespaces/{ns}/members", "/namespaces/team/members", Value::Null).await.expect(200, None);
    // A reader is refused in the same shape.
    let ann = basic("ann", "ann-password-123");
    call_as(r, d, &ann, "get", "/namespaces/{ns}/robots", "/namespaces/team/robots", Value::Null)
        .await
        .expect(403, None);
    call_as(r, d, "Basic bm9ib2R5Om5vcGU=", "get", "/users", "/users", Value::Null).await.expect(401, None);
    // Robots and tokens.
    let robot = json!({"name": "ci", "actions": ["pull", "push"], "expires_at": "30d", "repositories": ["app*"]});
    call(r, d, "post", "/namespaces/{ns}/robots", "/namespaces/team/robots", robot).await.expect(201, None);
    call(r, d, "get", "/namespaces/{ns}/robots", "/namespaces/team/robots", Value::Null).await.expect(200, None);
    let rotate = "/namespaces/{ns}/robots/{name}/rotate";
    call(r, d, "post", rotate, "/namespaces/team/robots/ci/rotate", Value::Null).await.expect(200, None);
    call(r, d, "post", "/tokens", "/tokens", json!({"name": "laptop", "expires_at": "7d"})).await.expect(201, None);
    call(r, d, "get", "/tokens", "/tokens", Value::Null).await.expect(200, None);
    // Images, scans and decisions.
    let (digest, _) = reg.push_image("team/app", "v1", "openapi").await;
    reg.wait_scan("team/app", &digest).await;
    let one = format!("/scans?repository=team/app&digest={digest}");
    call(r, d, "get", "/scans", &one, Value::Null).await.expect(200, None);
    call(r, d, "get", "/scans", "/scans?state=passed", Value::Null).await.expect(200, None);
    call(r, d, "get", "/tags", "/tags?repository=team/app", Value::Null).await.expect(200, None);
    let image = format!("/images?repository=team/app&digest={digest}");
    let detail = call(r, d, "get", "/images", &image, Value::Null).await;
    detail.expect(200, None);
    assert_eq!(detail.json()["layers"].as_array().map(Vec::len), Some(1), "{}", detail.json());
    let missing = format!("/images?repository=team/app&digest=sha256:{}", "0".repeat(64));
    call(r, d, "get", "/images", &missing, Value::Null).await.expect(404, None);
    call(r, d, "get", "/tags", "/tags?repository=team/nothing", Value::Null).await.expect(404, None);
    call(r, d, "get", "/tags", "/tags?repository=..", Value::Null).await.expect(400, None);
    let target = json!({"repository": "team/app", "digest": digest.to_string()});
    call(r, d, "post", "/scans/rescan", "/scans/rescan", target.clone()).await.expect(202, None);
    reg.wait_scan("team/app", &digest).await;
    let mut release = target.clone();
    release["reason"] = json!("reviewed");
    release["expires_at"] = json!("30d");
    call(r, d, "post", "/scans/release", "/scans/release", release).await.expect(200, None);
    call(r, d, "post", "/scans/release", "/scans/release", target.clone()).await.expect(400, None);
    call(r, d, "get", "/repositories", "/repositories", Value::Null).await.expect(200, None);
    call(r, d, "get", "/repositories", "/repositories?namespace=team", Value::Null).await.expect(200, None);
    let found = call(r, d, "get", "/repositories", "/repositories?q=M/AP", Value::Null).await;
    assert_eq!(found.json()["items"][0]["name"], "team/app");
    assert_eq!(found.json()["items"][0]["worst_state"], "released");
    call(r, d, "get", "/namespaces", "/namespaces?q=tea", Value::Null).await.expect(200, None);
    // Policies and lifecycle.
    let scan_policy = "/namespaces/{ns}/scan-policy";
    call(r, d, "put", scan_policy, "/namespaces/team/scan-policy", json!({"root_user": "warn"}))
        .await
        .expect(200, None);
    call(r, d, "get", scan_policy, "/namespaces/team/scan-policy", Value::Null).await.expect(200, None);
    let sig = "/namespaces/{ns}/signature-policy";
    call(r, d, "put", sig, "/namespaces/team/signature-policy", json!({"mode": "warn"})).await.expect(200, None);
    call(r, d, "get", sig, "/namespaces/team/signature-policy", Value::Null).await.expect(200, None);
    let quota = "/namespaces/{ns}/quota";
    call(r, d, "put", quota, "/namespaces/team/quota", json!({"bytes": 10_737_418_240u64, "repositories": 50}))
        .await
        .expect(200, None);
    call(r, d, "get", quota, "/namespaces/team/quota", Value::Null).await.expect(200, None);
    call(r, d, "get", "/namespaces/{ns}/usage", "/namespaces/team/usage", Value::Null).await.expect(200, None);
    let immutable = "/namespaces/{ns}/immutable-tags";
    call(r, d, "put", immutable, "/namespaces/team/immutable-tags", json!({"patterns": ["v*"]}))
        .await
        .expect(200, None);
    call(r, d, "get", immutable, "/namespaces/team/immutable-tags", Value::Null).await.expect(200, None);
    let retention = "/namespaces/{ns}/retention";
    call(r, d, "get", retention, "/namespaces/team/retention", Value::Null).await.expect(200, None);
    call(
        r,
        d,
        "put",
        retention,
        "/namespaces/team/retention",
        json!({"keep_last": [{"tags": "*", "count": 5}], "keep_days": 30}),
    )
    .await
    .expect(200, None);
    call(r, d, "get", retention, "/namespaces/team/retention", Value::Null).await.expect(200, None);
    let dry = "/namespaces/{ns}/retention/dry-run";
    call(r, d, "post", dry, "/namespaces/team/retention/dry-run", Value::Null).await.expect(200, None);
    let run = "/namespaces/{ns}/retention/run";
    call(r, d, "post", run, "/namespaces/team/retention/run", Value::Null).await.expect(200, None);
    // Webhooks.
    let hook = json!({"url": "https://127.0.0.1:9/hook", "events": ["push"]});
    let created = call(r, d, "post", "/webhooks", "/webhooks", hook).await;
    created.expect(201, None);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    call(r, d, "get", "/webhooks", "/webhooks", Value::Null).await.expect(200, None);
    call(r, d, "get", "/webhooks/{id}", &format!("/webhooks/{id}"), Value::Null).await.expect(200, None);
    call(r, d, "post", "/webhooks/{id}/test", &format!("/webhooks/{id}/test"), Value::Null).await.expect(202, None);
    call(r, d, "get", "/webhooks/{id}/deliveries", &format!("/webhooks/{id}/deliveries"), Value::Null)
        .await
        .expect(200, None);
    let ns_hooks = "/namespaces/{ns}/webhooks";
    let ns_hook = json!({"url": "https://127.0.0.1:9/team", "events": ["push"]});
    call(r, d, "post", ns_hooks, "/namespaces/team/webhooks", ns_hook).await.expect(201, None);
    call(r, d, "get", ns_hooks, "/namespaces/team/webhooks", Value::Null).await.expect(200, None);
    // Operations.
    call(r, d, "get", "/audit", "/audit?limit=5", Value::Null).await.expect(200, None);
    call(r, d, "get", "/audit/verify", "/audit/verify", Value::Null).await.expect(200, None);
    call(r, d, "post", "/gc", "/gc?dry_run=true", Value::Null).await.expect(200, None);
    call(r, d, "get", "/fsck", "/fsck", Value::Null).await.expect(200, None);
    call(r, d, "get", "/vulndb", "/vulndb", Value::Null).await.expect(200, None);
    let record = json!({"id": "DSA-0000-1", "modified": "2026-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": "Debian:12", "name": "zlib1g"}, "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1:1.2.13"}]}]}]});
    call(r, d, "post", "/vulndb", "/vulndb", record).await.expect(200, None);
    call(r, d, "get", "/", "/", Value::Null).await.expect(200, None);
    // Deletions answer 204 with no body, and then 404 in the error shape.
    call(r, d, "delete", "/webhooks/{id}", &format!("/webhooks/{id}"), Value::Null).await.expect(204, None);
    call(r, d, "delete", "/webhooks/{id}", &format!("/webhooks/{id}"), Value::Null).await.expect(404, None);
    call(r, d, "delete", retention, "/namespaces/team/retention", Value::Null).await.expect(204, None);
    call(r, d, "delete", member, "/namespaces/team/members/ann", Value::Null).await.expect(204, None);
    call(r, d, "put", immutable, "/namespaces/team/immutable-tags", json!({"patterns": []})).await.expect(200, None);
    call(r, d, "delete", "/repositories/{name}", "/repositories/team/app", Value::Null).await.expect(204, None);
    call(r, d, "delete", "/repositories/{name}", "/repositories/team/app", Value::Null).await.expect(404, None);
    call(r, d, "delete", "/users/{username}", "/users/ann", Value::Null).await.expect(204, None);
    let robot = "/namespaces/{ns}/robots/{name}";
    call(r, d, "delete", robot, "/namespaces/team/robots/ci", Value::Null).await.expect(204, None);
    let tokens = call(r, d, "get", "/tokens", "/tokens", Value::Null).await.json();
    let id = tokens["items"][0]["id"].as_str().unwrap().to_owned();
    call(r, d, "delete", "/tokens/{id}", &format!("/tokens/{id}"), Value::Null).await.expect(204, None);
    let (rejected, _) = reg.push_image("other/app", "v1", "rejected").await;
    reg.wait_scan("other/app", &rejected).await;
    let reject = json!({"repository": "other/app", "digest": rejected.to_string(), "reason": "not wanted"});
    call(r, d, "post", "/scans/reject", "/scans/reject", reject).await.expect(200, None);
    call(r, d, "delete", "/namespaces/{ns}", "/namespaces/team", Value::Null).await.expect(204, None);
    call(r, d, "delete", "/namespaces/{ns}", "/namespaces/team", Value::Null).await.expect(404, None);
}
