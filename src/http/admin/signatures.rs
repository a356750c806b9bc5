//! `/api/v1/namespaces/{ns}/signature-policy`: the namespace's signature mode and trusted keys.
//! Owners of the namespace and admins read and set it; the gate that applies it is
//! `domain::signatures`.

use super::Body;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json as j;

use super::{audit_with, json, parse, require_owner, ApiError, ApiResult, Caller, Path};
use crate::domain::signatures::{PublicKey, SignaturePolicy};
use crate::http::AppState;
use crate::model::{SignatureMode, TrustedKey};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    mode: SignatureMode,
    #[serde(default)]
    keys: Vec<TrustedKey>,
}

fn describe(ns: &str, policy: &SignaturePolicy) -> serde_json::Value {
    let keys: Vec<serde_json::Value> = policy
        .keys
        .iter()
        .map(|k| match PublicKey::parse(k) {
            Ok(p) => j!({"name": k.name, "pem": k.pem, "algorithm": p.algorithm(), "fingerprint": p.fingerprint()}),
            Err(why) => j!({"name": k.name, "pem": k.pem, "error": why}),
        })
        .collect();
    let updated = (policy.updated_at > 0).then_some(policy.updated_at);
    j!({"namespace": ns, "mode": policy.mode, "keys": keys, "updated_at": updated})
}

/// `GET /api/v1/namespaces/{ns}/signature-policy`: `{"mode", "keys": [{"name", "pem",
/// "algorithm", "fingerprint"}], "updated_at"}`; `off` with no keys when none was set.
#[utoipa::path(
    get,
    path = "/namespaces/{ns}/signature-policy",
    tag = "policies",
    params(("ns" = String, Path, description = "the namespace")),
    responses((status = 200, description = "ok", body = super::schema::SignaturePolicy))
)]
pub async fn get_policy(State(state): State<AppState>, Caller(who): Caller, Path(ns): Path<String>) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    state.auth.namespace(&ns).await?;
    let policy = state.registry.signature_policy(&ns).await?;
    json(StatusCode::OK, describe(&ns, &policy))
}

/// `PUT /api/v1/namespaces/{ns}/signature-policy` with `{"mode": "off"|"warn"|"require", "keys":
/// [{"name", "pem"}]}`: replaces the policy; pulls follow it at once, on every replica.
#[utoipa::path(
    put,
    path = "/namespaces/{ns}/signature-policy",
    tag = "policies",
    params(("ns" = String, Path, description = "the namespace")),
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, description = "ok", body = super::schema::SignaturePolicy))
)]
pub async fn set_policy(
    State(state): State<AppState>,
    Caller(who): Caller,
    Path(ns): Path<String>,
    Body(body): Body,
) -> ApiResult {
    require_owner(&state, &who, &ns).await?;
    let body: PolicyBody = parse(&body)?;
    if !state.registry.set_signature_policy(&ns, body.mode, &body.keys).await? {
        return Err(ApiError::not_found("namespace"));
    }
    let names: Vec<&str> = body.keys.iter().map(|k| k.name.as_str()).collect();
    let names = names.join(",");
    audit_with(&state, &who, "signature.policy", &ns, Some(&ns), &[("mode", body.mode.as_str()), ("keys", &names)])
        .await;
    let policy = state.registry.signature_policy(&ns).await?;
    json(StatusCode::OK, describe(&ns, &policy))
}
