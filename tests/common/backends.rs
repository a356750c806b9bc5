//! The scale-out backends in tests: PostgreSQL and an S3 bucket on the real servers that
//! `scripts/test.sh` starts, named by `TESTBED_POSTGRES` (a server URL) and
//! `TESTBED_S3_{ENDPOINT,BUCKET,REGION,ACCESS_KEY_ID,SECRET_ACCESS_KEY}`.
//!
//! With `TESTBED_BACKEND=scaleout` every test registry, in-process or a real process, runs
//! on them: its own database and its own key prefix in the shared bucket, both derived from the
//! registry's data directory (so a restart on the same directory finds the same data) or from an
//! explicit cluster name (so several replicas share them).

use std::path::Path;
use std::process::Command;

use portcullis::config::{S3Config, Secret, StorageBackend};
use portcullis::Config;
use secrecy::ExposeSecret;
use sha2::Digest as _;

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests through scripts/test.sh, which starts PostgreSQL and Garage")
    })
}

/// Whether every registry of this test run uses PostgreSQL and S3.
pub fn scaleout() -> bool {
    std::env::var("TESTBED_BACKEND").is_ok_and(|v| v == "scaleout")
}

/// A short name for a directory or cluster: usable as a database name and a key prefix.
pub fn name_for(key: &str) -> String {
    format!("t{}", &hex::encode(sha2::Sha256::digest(key.as_bytes()))[..20])
}

/// The URL of database `name` on the test server, creating the database if it does not exist.
pub fn postgres_database(name: &str) -> String {
    let server = required("TESTBED_POSTGRES");
    let exists = Command::new("psql")
        .args([&server, "-tAc", &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'")])
        .output()
        .expect("psql runs");
    assert!(exists.status.success(), "psql failed: {}", String::from_utf8_lossy(&exists.stderr));
    if String::from_utf8_lossy(&exists.stdout).trim() != "1" {
        let created = Command::new("psql").args([&server, "-qc", &format!("CREATE DATABASE {name}")]).output().unwrap();
        // A concurrent creator of the same database is fine.
        let err = String::from_utf8_lossy(&created.stderr);
        assert!(created.status.success() || err.contains("already exists"), "CREATE DATABASE failed: {err}");
    }
    let mut url = url::Url::parse(&server).expect("TESTBED_POSTGRES is a URL");
    url.set_path(name);
    url.to_string()
}

/// The test bucket with its own key prefix `name`.
pub fn s3_config(name: &str) -> S3Config {
    S3Config {
        bucket: Some(required("TESTBED_S3_BUCKET")),
        endpoint: Some(required("TESTBED_S3_ENDPOINT")),
        region: std::env::var("TESTBED_S3_REGION").unwrap_or_else(|_| "garage".into()),
        path_style: true,
        access_key_id: Some(required("TESTBED_S3_ACCESS_KEY_ID")),
        secret_access_key: Some(Secret::new(required("TESTBED_S3_SECRET_ACCESS_KEY"))),
        allow_http: true,
        prefix: Some(name.to_owned()),
        ..S3Config::default()
    }
}

/// Points `config` at the scale-out backends named `name`.
pub fn apply(config: &mut Config, name: &str) {
    config.database.url = Some(Secret::new(postgres_database(name)));
    config.storage.backend = StorageBackend::S3;
    config.storage.s3 = s3_config(name);
}

/// The same as [`apply`], as environment variables for a `portcullis` process.
pub fn env(name: &str) -> Vec<(String, String)> {
    let s3 = s3_config(name);
    let vars = [
        ("PORTCULLIS_DATABASE_URL", postgres_database(name)),
        ("PORTCULLIS_STORAGE_BACKEND", "s3".to_owned()),
        ("PORTCULLIS_STORAGE_S3_BUCKET", s3.bucket.unwrap()),
        ("PORTCULLIS_STORAGE_S3_ENDPOINT", s3.endpoint.unwrap()),
        ("PORTCULLIS_STORAGE_S3_REGION", s3.region),
        ("PORTCULLIS_STORAGE_S3_PATH_STYLE", "true".to_owned()),
        ("PORTCULLIS_STORAGE_S3_ALLOW_HTTP", "true".to_owned()),
        ("PORTCULLIS_STORAGE_S3_PREFIX", name.to_owned()),
        ("PORTCULLIS_STORAGE_S3_ACCESS_KEY_ID", s3.access_key_id.unwrap()),
        ("PORTCULLIS_STORAGE_S3_SECRET_ACCESS_KEY", s3.secret_access_key.unwrap().expose_secret().to_owned()),
    ];
    vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

/// In scale-out mode, the backends for a registry whose data lives in `data_dir`.
pub fn for_data_dir(data_dir: &Path) -> Option<String> {
    scaleout().then(|| name_for(&data_dir.to_string_lossy()))
}
