//! Helpers for authentication tests: Basic headers, tokens from the real endpoint, forged tokens.

use base64::Engine as _;

use super::{TestRegistry, ADMIN_PASSWORD};

pub fn basic(user: &str, secret: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")))
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

impl TestRegistry {
    /// `GET /token` with Basic credentials; returns the whole reply.
    pub async fn token_reply(&self, user: &str, secret: &str, scopes: &[&str]) -> super::Reply {
        let mut uri = "/token?service=portcullis".to_owned();
        for s in scopes {
            uri.push_str(&format!("&scope={}", url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>()));
        }
        self.send_raw("GET", &uri, &[("authorization", &basic(user, secret))], axum::body::Body::empty()).await
    }

    /// A token for `user` from the real endpoint (panics if refused).
    pub async fn login(&self, user: &str, secret: &str, scopes: &[&str]) -> String {
        let reply = self.token_reply(user, secret, scopes).await;
        reply.expect(200, None);
        reply.json()["token"].as_str().unwrap().to_owned()
    }

    /// Admin API call as the admin user.
    pub async fn admin_api(&self, method: &str, uri: &str, body: serde_json::Value) -> super::Reply {
        self.send_raw(
            method,
            uri,
            &[("authorization", &basic("admin", ADMIN_PASSWORD)), ("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }

    /// Admin API call with explicit credentials.
    pub async fn api_as(
        &self,
        user: &str,
        secret: &str,
        method: &str,
        uri: &str,
        body: serde_json::Value,
    ) -> super::Reply {
        self.send_raw(
            method,
            uri,
            &[("authorization", &basic(user, secret)), ("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }

    /// Creates a user, a namespace (if new) and a membership.
    pub async fn user_with_role(&self, user: &str, ns: &str, role: &str) -> String {
        let password = format!("{user}-password-long");
        self.admin_api("POST", "/api/v1/users", serde_json::json!({"username": user, "password": password}))
            .await
            .expect(201, None);
        let _ = self.admin_api("POST", "/api/v1/namespaces", serde_json::json!({"name": ns})).await;
        self.admin_api("PUT", &format!("/api/v1/namespaces/{ns}/members/{user}"), serde_json::json!({"role": role}))
            .await
            .expect(200, None);
        password
    }

    /// Sends a /v2 request with a given bearer token.
    pub async fn v2_as(&self, token: &str, method: &str, uri: &str, body: impl Into<axum::body::Body>) -> super::Reply {
        self.send_raw(method, uri, &[("authorization", &bearer(token))], body).await
    }
}
