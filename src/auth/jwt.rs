//! Token signing and verification: ES256 JWTs with a `kid`, the public key published as JWKS.
//!
//! Rules: the algorithm is pinned (ES256 only; `none` and HMAC are refused before any key is
//! used), the `kid` must name one of our keys, and iss, aud, exp, nbf and iat are all required and checked.

use std::path::Path;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One `access` entry: `{"type": "repository", "name": "team/app", "actions": ["pull"]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// Whether a token is for requests or for getting new tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenUse {
    Access,
    Refresh,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    #[serde(default)]
    pub access: Vec<Access>,
    /// The personal access token this was issued for, so its revocation revokes this too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pat: Option<String>,
    #[serde(rename = "use")]
    pub token_use: TokenUse,
}

/// One ES256 key: its id, what signs with it and what verifies it.
struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: serde_json::Value,
}

impl Key {
    fn from_pem(pem: &str) -> anyhow::Result<Key> {
        let pair = rcgen::KeyPair::from_pem(pem)?;
        anyhow::ensure!(pair.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256, "token signing key must be ECDSA P-256");
        let raw = pair.public_key_raw();
        anyhow::ensure!(raw.len() == 65 && raw[0] == 4, "unexpected public key encoding");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (x, y) = (b64.encode(&raw[1..33]), b64.encode(&raw[33..65]));
        let kid = hex::encode(&Sha256::digest(pair.public_key_der())[..16]);
        Ok(Key {
            jwk: serde_json::json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid, "x": x, "y": y}),
            kid,
            encoding: EncodingKey::from_ec_pem(pem.as_bytes())?,
            decoding: DecodingKey::from_ec_components(&x, &y)?,
        })
    }
}

/// The signing key, and the earlier keys that still verify.
///
/// Replicas share the key files, so a token issued by one verifies on all. A rotation takes three
/// rolling restarts: the new key is added to `auth.verify_keys` everywhere; then it signs, with the
/// old one under `auth.verify_keys`; then, once the old key's last token has expired
/// (`auth.refresh_lifetime`), the old one is dropped. Mid-roll, tokens of both generations verify.
pub struct Keys {
    signing: Key,
    verifying: Vec<Key>,
}

impl Keys {
    /// Loads the signing key from `path`, creating it (0600) on first start, and the keys that
    /// only verify from `previous`.
    pub fn load_or_create(path: &Path, previous: &[std::path::PathBuf]) -> anyhow::Result<Keys> {
        let pem = if path.exists() {
            std::fs::read_to_string(path)?
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
            let pem = key.serialize_pem();
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            // Two replicas may start together on one shared key path: one creates, the other reads.
            match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
                Ok(mut f) => {
                    f.write_all(pem.as_bytes())?;
                    f.sync_all()?;
                    pem
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => std::fs::read_to_string(path)?,
                Err(e) => return Err(e.into()),
            }
        };
        let signing = Key::from_pem(&pem)?;
        let verifying = previous
            .iter()
            .map(|p| {
                let pem = std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?;
                Key::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Keys { signing, verifying })
    }

    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.signing.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.signing.encoding)?)
    }

    /// Verifies signature and claims; `use` must match.
    pub fn verify(&self, token: &str, issuer: &str, audience: &str, token_use: TokenUse) -> Result<Claims, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        if header.alg != Algorithm::ES256 {
            return Err("token algorithm must be ES256".into());
        }
        let key = std::iter::once(&self.signing)
            .chain(&self.verifying)
            .find(|k| header.kid.as_deref() == Some(k.kid.as_str()))
            .ok_or("token signed with an unknown key")?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|e| format!("invalid token: {e}"))?;
        if data.claims.token_use != token_use {
            return Err("token used for the wrong purpose".into());
        }
        Ok(data.claims)
    }

    /// The JWKS document with every public key that verifies.
    pub fn jwks(&self) -> serde_json::Value {
        let keys: Vec<_> = std::iter::once(&self.signing).chain(&self.verifying).map(|k| &k.jwk).collect();
        serde_json::json!({ "keys": keys })
    }

    /// The id of the key that signs.
    pub fn kid(&self) -> &str {
        &self.signing.kid
    }
}
