//! The admin API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]`
//! annotations as the router is built (`utoipa_axum::OpenApiRouter`): a route is registered and
//! documented by the same `routes!` call, so the two cannot drift. `tests/openapi.rs` checks it
//! from outside: every documented operation is served, and the API's answers validate against
//! the document's schemas.
//!
//! Served, public, at `GET /api/v1/openapi.json`: it describes the API, never its data.

use std::sync::OnceLock;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder, ServerBuilder};
use utoipa::{Modify, OpenApi as _};

/// The errors every operation may answer, all in the one error shape.
const ERRORS: &[(&str, &str)] = &[
    ("400", "invalid_request: the request is malformed; the message names what"),
    ("401", "unauthorized: no or wrong credentials (HTTP Basic: password, personal token or robot secret)"),
    (
        "403",
        "forbidden: the policy refuses it, or the request came from another origin; the message names what is needed",
    ),
    ("404", "not_found: no such object, or not one the caller may see"),
    ("409", "conflict: it exists already, or another operation holds it"),
    ("413", "too_large: over a configured limit"),
    ("415", "unsupported_media_type: bodies are application/json"),
    ("405", "unsupported: the method is not one this path takes"),
    ("429", "too_many_requests: a rate limit or the login throttle; see Retry-After"),
    ("500", "internal: a fault of the registry's, logged with the request id; the answer says no more"),
    ("503", "unavailable: the database or storage did not answer, or another replica holds the work; see Retry-After"),
];

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Portcullis admin API",
        description = "Users, namespaces, robots, tokens, repositories, scans and policies of a Portcullis registry. JSON in and out; every error is `{\"error\": {\"code\", \"message\"}}`; lists are `{\"items\", \"next\"}` paged with `limit` and `after`; times are RFC 3339 UTC strings.",
        license(name = "Apache-2.0")
    ),
    modifiers(&Finish),
    components(schemas(super::schema::ErrorBody))
)]
pub struct ApiDoc;

/// Server, security, and the error answers of every operation.
struct Finish;

impl Modify for Finish {
    fn modify(&self, doc: &mut OpenApi) {
        doc.servers = Some(vec![ServerBuilder::new().url("/api/v1").build()]);
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some("a user's password or personal access token, or a robot's secret"))
                    .build(),
            ),
        );
        doc.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new("basic", Vec::<String>::new())]);
    }
}

/// Adds the error answers to every operation, and names the wildcard path parameter as OpenAPI
/// writes it (`{*name}` → `{name}`).
fn finish(doc: &mut OpenApi) {
    let error = || ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
    let paths = std::mem::take(&mut doc.paths.paths);
    for (path, mut item) in paths {
        let ops: [&mut Option<Operation>; 5] =
            [&mut item.get, &mut item.post, &mut item.put, &mut item.patch, &mut item.delete];
        for op in ops.into_iter().flatten() {
            let public = op.security.as_ref().is_some_and(|s| s.iter().all(|r| *r == Default::default()));
            for (status, description) in ERRORS {
                if public && matches!(*status, "401" | "403") {
                    continue;
                }
                op.responses.responses.entry(status.to_string()).or_insert_with(|| {
                    ResponseBuilder::new().description(*description).content("application/json", error()).build().into()
                });
            }
        }
        doc.paths.paths.insert(path.replace("{*", "{"), item);
    }
}

static DOCUMENT: OnceLock<String> = OnceLock::new();

/// The admin router with its document, which [`document`] then serves.
pub fn router(
    routes: utoipa_axum::router::OpenApiRouter<crate::http::AppState>,
) -> axum::Router<crate::http::AppState> {
    let (router, mut doc) = routes.split_for_parts();
    finish(&mut doc);
    let mut whole = ApiDoc::openapi();
    whole.merge(doc);
    DOCUMENT.get_or_init(|| whole.to_pretty_json().unwrap_or_else(|_| "{}".into()));
    router
}

/// `GET /api/v1/openapi.json`: this API's OpenAPI 3.1 document (public).
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "the OpenAPI 3.1 document", body = Object))
)]
pub async fn document() -> Response {
    let body = DOCUMENT.get().cloned().unwrap_or_default();
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
