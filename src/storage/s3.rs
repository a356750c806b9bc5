//! The S3 backend: an `object_store` client for any S3-compatible service (AWS, Garage, MinIO...).
//!
//! Rules:
//! - Requests that fail with throttling (`SlowDown`, 503), other 5xx answers or a lost connection
//!   are retried with exponential back-off by `object_store`; only when the retries run out does
//!   the registry answer `UNAVAILABLE`.
//! - Every PATCH becomes one object written as an S3 multipart upload with parts of
//!   `part_size` (at least 5 MiB, the last excepted), so memory stays bounded whatever the size.
//! - Objects under `blobs/` are only ever created from digest-verified data (see `storage`), so
//!   rewriting one writes the same bytes: blob objects are write-once in content.

use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
use secrecy::{ExposeSecret, SecretString};

/// What the S3 backend needs; the wiring (`lib.rs`) fills it in from `[storage.s3]`.
#[derive(Clone)]
pub struct S3Options {
    pub bucket: Option<String>,
    /// The service URL; AWS's own endpoint for the region when unset.
    pub endpoint: Option<String>,
    pub region: String,
    /// Path-style requests (`endpoint/bucket/key`).
    pub path_style: bool,
    pub access_key_id: Option<String>,
    /// The secret access key, already read from its file if it came from one.
    pub secret_access_key: Option<SecretString>,
    /// Allows an `http://` endpoint.
    pub allow_http: bool,
    /// Key prefix inside the bucket.
    pub prefix: Option<String>,
    /// Size of each multipart part (at least 5 MiB).
    pub part_size: usize,
    pub max_retries: usize,
    pub retry_timeout: Duration,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("secret_access_key", &self.secret_access_key)
            .finish_non_exhaustive()
    }
}

/// Builds the client for `config` (validated by `Config::load`).
pub fn store(config: &S3Options) -> anyhow::Result<Arc<dyn ObjectStore>> {
    // Start from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN...),
    // then let the configuration file win.
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name(config.bucket.clone().unwrap_or_default())
        .with_region(&config.region)
        .with_virtual_hosted_style_request(!config.path_style)
        .with_allow_http(config.allow_http)
        .with_retry(RetryConfig {
            backoff: BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(15),
                base: 2.0,
            },
            max_retries: config.max_retries,
            retry_timeout: config.retry_timeout,
        });
    if let Some(endpoint) = &config.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(id) = &config.access_key_id {
        builder = builder.with_access_key_id(id);
    }
    if let Some(secret) = &config.secret_access_key {
        builder = builder.with_secret_access_key(secret.expose_secret());
    }
    let s3 = builder.build().map_err(|e| anyhow::anyhow!("S3 configuration: {e}"))?;
    Ok(match config.prefix.as_deref().map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
        Some(prefix) => Arc::new(PrefixStore::new(s3, prefix)),
        None => Arc::new(s3),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_key_stays_out_of_debug_output() {
        let options = S3Options {
            bucket: Some("b".into()),
            endpoint: None,
            region: "r".into(),
            path_style: true,
            access_key_id: Some("id".into()),
            secret_access_key: Some(SecretString::from("s3-secret-9c2a")),
            allow_http: false,
            prefix: None,
            part_size: 5 << 20,
            max_retries: 1,
            retry_timeout: Duration::from_secs(1),
        };
        let shown = format!("{options:?}");
        assert!(!shown.contains("s3-secret-9c2a"), "{shown}");
        assert!(shown.contains("REDACTED"), "{shown}");
    }
}
