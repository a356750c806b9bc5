//! The `portcullis` client commands: a person's or a CI job's way to a running registry, over the
//! same HTTP APIs as every other client (the admin API with HTTP Basic, `/v2` with a token from
//! `/token`). Nothing here reads the database or the blob store.
//!
//! Rule: this module talks HTTP only and depends on no other layer but `model`; what a command may
//! do is decided by the server, exactly as for curl. Invariant: secrets are sent, stored in the
//! profile file (0600 in a 0700 directory) and never printed.

pub mod commands;
pub mod image;
pub mod profile;

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

pub use image::ImageRef;

/// Every manifest type a registry may answer, for resolving a tag to its digest.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// A refusal or failure the server answered, with its message.
#[derive(Debug, thiserror::Error)]
#[error("{status}: {message}")]
pub struct Refused {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

/// A connection to one registry as one account.
pub struct Client {
    http: reqwest::Client,
    base: String,
    username: String,
    secret: SecretString,
}

impl Client {
    /// `url` is the registry's `https://` URL; `ca_file` a PEM of CAs to trust besides the
    /// system's (the development CA's `ca.crt`).
    pub fn new(url: &str, username: &str, secret: SecretString, ca_file: Option<&Path>) -> anyhow::Result<Client> {
        let parsed = url::Url::parse(url).with_context(|| format!("{url:?} is not a URL"))?;
        anyhow::ensure!(
            parsed.scheme() == "https",
            "the registry URL must start with https:// (Portcullis speaks TLS only), not {url}"
        );
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("portcullis-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(file) = ca_file {
            let pem = std::fs::read(file).with_context(|| format!("reading the CA file {}", file.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("{} holds no PEM certificate", file.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Client {
            http: builder.build().context("building the HTTP client")?,
            base: url.trim_end_matches('/').to_owned(),
            username: username.to_owned(),
            secret,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// An admin API call (`path` under `/api/v1`), its JSON answer or the server's refusal.
    pub async fn api(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        self.api_with_timeout(method, path, body, Duration::from_secs(60)).await
    }

    async fn api_with_timeout(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1{path}", self.base);
        let mut request = self
            .http
            .request(method, &url)
            .basic_auth(&self.username, Some(self.secret.expose_secret()))
            .timeout(timeout);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| connection_error(&self.base, e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| connection_error(&self.base, e))?;
        if status.is_success() {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            return serde_json::from_str(&text).with_context(|| format!("{url} answered {status} with no JSON"));
        }
        Err(refused(status, &text).into())
    }

    /// A `/v2` token for `scope` (`repository:team/app:pull`).
    async fn token(&self, scope: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .get(format!("{}/token", self.base))
            .query(&[("scope", scope)])
            .basic_auth(&self.username, Some(self.secret.expose_secret()))
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| connection_error(&self.base, e))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| connection_error(&self.base, e))?;
        if !status.is_success() {
            return Err(refused(status, &text).into());
        }
        let body: Value = serde_json::from_str(&text).context("the token endpoint answered no JSON")?;
        body["token"].as_str().map(str::to_owned).context("the token endpoint answered no token")
    }

    /// A `/v2` request with a token for `scope`.
    async fn v2(
        &self,
        method: Method,
        path: &str,
        scope: &str,
        accept: Option<&str>,
    ) -> anyhow::Result<reqwest::Response> {
        let token = self.token(scope).await?;
        let mut request = self
            .http
            .request(method, format!("{}/v2/{path}", self.base))
            .bearer_auth(token)
            .timeout(Duration::from_secs(60));
        if let Some(accept) = accept {
            request = request.header(reqwest::header::ACCEPT, accept);
        }
        let response = request.send().await.map_err(|e| connection_error(&self.base, e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        // A HEAD answer has no body: its reason is in the challenge's error_description.
        let described = response
            .headers()
            .get(reqwest::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split("error_description=\"").nth(1))
            .and_then(|v| v.split('"').next())
            .map(str::to_owned);
        let text = response.text().await.unwrap_or_default();
        let mut refusal = refused(status, &text);
        if text.is_empty() {
            match (described, status) {
                (Some(d), _) => refusal.message = d,
                (None, StatusCode::NOT_FOUND) => {
                    refusal.message = format!("manifest unknown: the registry has no {path}");
                    refusal.code = "MANIFEST_UNKNOWN".into();
                }
                _ => {}
            }
        }
        Err(refusal.into())
    }

    /// The digest an image reference names now (a HEAD, which the quarantine gate leaves open).
    pub async fn resolve(&self, image: &ImageRef) -> anyhow::Result<String> {
        if image.is_digest() {
            return Ok(image.reference.clone());
        }
        let path = format!("{}/manifests/{}", image.repository, image.reference);
        let scope = format!("repository:{}:pull", image.repository);
        let response = self
            .v2(Method::HEAD, &path, &scope, Some(MANIFEST_TYPES))
            .await
            .with_context(|| format!("resolving {image}"))?;
        response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .with_context(|| format!("the registry named no digest for {image}"))
    }

    /// Every tag of a repository, in the registry's order.
    pub async fn tags(&self, repository: &str) -> anyhow::Result<Vec<String>> {
        repository.parse::<crate::model::RepoName>().map_err(|e| anyhow::anyhow!("{repository:?}: {e}"))?;
        let scope = format!("repository:{repository}:pull");
        let mut tags = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let path = match &last {
                Some(l) => format!(
                    "{repository}/tags/list?n=1000&last={}",
                    url::form_urlencoded::byte_serialize(l.as_bytes()).collect::<String>()
                ),
                None => format!("{repository}/tags/list?n=1000"),
            };
            let body: Value = self.v2(Method::GET, &path, &scope, None).await?.json().await?;
            let page: Vec<String> =
                body["tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(str::to_owned)).collect();
            let done = page.len() < 1000;
            last = page.last().cloned();
            tags.extend(page);
            if done || last.is_none() {
                return Ok(tags);
            }
        }
    }

    /// Deletes a tag (the image stays while other tags or digests reach it).
    pub async fn delete_tag(&self, image: &ImageRef) -> anyhow::Result<()> {
        let path = format!("{}/manifests/{}", image.repository, image.reference);
        self.v2(Method::DELETE, &path, &format!("repository:{}:delete", image.repository), None).await?;
        Ok(())
    }

    /// The scan report of an image, waiting up to `wait` for a settled verdict (long-poll).
    pub async fn scan(&self, repository: &str, digest: &str, wait: Duration) -> anyhow::Result<Value> {
        let path = format!(
            "/scans?repository={}&digest={}&wait={}s",
            url::form_urlencoded::byte_serialize(repository.as_bytes()).collect::<String>(),
            url::form_urlencoded::byte_serialize(digest.as_bytes()).collect::<String>(),
            wait.as_secs()
        );
        self.api_with_timeout(Method::GET, &path, None, wait + Duration::from_secs(30)).await
    }
}

fn refused(status: StatusCode, text: &str) -> Refused {
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    // The admin API's `{"error": {...}}` or the registry's `{"errors": [{...}]}`.
    let error = if body["error"].is_object() { &body["error"] } else { &body["errors"][0] };
    let message = error["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("the request was refused").to_owned());
    Refused { status, code: error["code"].as_str().unwrap_or("").to_owned(), message }
}

/// A connection failure, with the cause a person can act on (certificate, refused, timeout).
fn connection_error(base: &str, e: reqwest::Error) -> anyhow::Error {
    let all = crate::model::error_chain(&e);
    let hint = if all.contains("certificate") || all.contains("UnknownIssuer") {
        "; the registry's certificate is not trusted: pass --ca-file (its development CA is served at /ca.crt)"
    } else {
        ""
    };
    anyhow::anyhow!("cannot reach {base}: {all}{hint}")
}
