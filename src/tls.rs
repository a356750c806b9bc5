//! TLS: the rustls server configuration and the development CA.
//!
//! Rules: TLS 1.2 and 1.3 only, ALPN `h2` and `http/1.1`. Configured PEM files win; without them a
//! development CA and server certificate are generated once and reused, the server certificate
//! being re-issued when the names it must cover change.
//!
//! Invariant: `<data_dir>/tls` holds only `ca.crt`, the file clients are told to copy or point
//! `--cert-dir` at (skopeo and docker read every `*.key` in such a directory as a client key).
//! Every private key, and the server certificate, lives in `<data_dir>/tls/private` (0700, keys
//! 0600); files of the earlier layout are moved there.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

use crate::config::Config;

/// What TLS setup produced.
pub struct Tls {
    pub server_config: Arc<ServerConfig>,
    /// The development CA certificate clients must trust, when one is in use.
    pub dev_ca: Option<PathBuf>,
}

pub fn setup(config: &Config) -> anyhow::Result<Tls> {
    let (chain_path, key_path, dev_ca) = match (&config.tls.cert, &config.tls.key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone(), None),
        _ => {
            // The same path the HTTP layer serves at /ca.crt (Config::dev_ca_certificate).
            let ca = config.dev_ca_certificate().context("no development CA without a configured certificate")?;
            let dir = ca.parent().context("the development CA certificate has no directory")?.to_owned();
            let ca = ensure_dev_certificates(&dir, &names(config))?;
            let private = dir.join(PRIVATE);
            (private.join("server.crt"), private.join("server.key"), Some(ca))
        }
    };
    let chain = load_chain(&chain_path)?;
    let key = load_key(&key_path)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server_config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| format!("certificate {} does not match key {}", chain_path.display(), key_path.display()))?;
    server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Tls { server_config: Arc::new(server_config), dev_ca })
}

fn load_chain(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading certificate {}", path.display()))?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificate {}", path.display()))?;
    anyhow::ensure!(!chain.is_empty(), "no certificate found in {}", path.display());
    Ok(chain)
}

fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("reading private key {}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => anyhow::anyhow!("no private key found in {}", path.display()),
        e => anyhow::anyhow!("parsing private key {}: {e:?}", path.display()),
    })
}

/// Names the development server certificate must cover.
fn names(config: &Config) -> Vec<String> {
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    let ip = config.listen.ip();
    if !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    if let Some(host) = url::Url::parse(&config.public_url()).ok().and_then(|u| u.host_str().map(str::to_owned)) {
        names.push(host.trim_start_matches('[').trim_end_matches(']').to_owned());
    }
    names.sort();
    names.dedup();
    names
}

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, "Portcullis development CA");
    params.distinguished_name.push(DnType::OrganizationName, "Portcullis");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    Ok(params)
}

/// The subdirectory of `<data_dir>/tls` that holds the keys and the server certificate.
pub const PRIVATE: &str = "private";

fn write_file(path: &Path, contents: &str, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::fs::PermissionsExt;
    let written = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path)?;
        // The process umask must not make a public certificate private, nor the reverse.
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(contents.as_bytes())?;
        f.sync_all()
    })();
    written.with_context(|| format!("writing {}", path.display()))
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Creates (or reuses) the CA and a server certificate for `names`; returns the CA certificate path.
fn ensure_dev_certificates(dir: &Path, names: &[String]) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let private = dir.join(PRIVATE);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("creating {}", private.display()))?;
    // The earlier layout kept the keys next to ca.crt.
    for name in ["ca.key", "server.key", "server.crt", "server.names"] {
        let (old, new) = (dir.join(name), private.join(name));
        if old.exists() && !new.exists() {
            std::fs::rename(&old, &new).with_context(|| format!("moving {} to {}", old.display(), new.display()))?;
        }
    }
    let (ca_crt, ca_key_path) = (dir.join("ca.crt"), private.join("ca.key"));
    let ca_key = if ca_key_path.exists() && ca_crt.exists() {
        KeyPair::from_pem(&read_text(&ca_key_path)?)
            .with_context(|| format!("reading the development CA key {}", ca_key_path.display()))?
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params()?.self_signed(&key)?;
        write_file(&ca_key_path, &key.serialize_pem(), 0o600)?;
        write_file(&ca_crt, &cert.pem(), 0o644)?;
        let _ = std::fs::remove_file(private.join("server.names"));
        tracing::info!(path = %ca_crt.display(), "generated a development CA");
        key
    };
    let names_file = private.join("server.names");
    let wanted = names.join("\n");
    if std::fs::read_to_string(&names_file).ok().as_deref() == Some(wanted.as_str())
        && private.join("server.key").exists()
    {
        return Ok(ca_crt);
    }
    // Re-creating the CA certificate from its key and fixed parameters yields the same issuer name
    // and key identifier, so a server certificate signed with it chains to the ca.crt on disk.
    let ca = ca_params()?.self_signed(&ca_key)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, "Portcullis registry");
    params.subject_alt_names = names
        .iter()
        .map(|n| match n.parse::<IpAddr>() {
            Ok(ip) => Ok(rcgen::SanType::IpAddress(ip)),
            Err(_) => Ok(rcgen::SanType::DnsName(n.clone().try_into()?)),
        })
        .collect::<Result<_, rcgen::Error>>()?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca, &ca_key)?;
    write_file(&private.join("server.key"), &key.serialize_pem(), 0o600)?;
    write_file(&private.join("server.crt"), &cert.pem(), 0o600)?;
    write_file(&names_file, &wanted, 0o600)?;
    tracing::info!(names = ?names, "issued a development server certificate");
    Ok(ca_crt)
}
