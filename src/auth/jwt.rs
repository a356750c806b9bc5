//! Token signing and verification: ES256 JWTs with a `kid`, the public key published as JWKS.
//!
//! Rules: the algorithm is pinned (ES256 only; `none` and HMAC are refused before any key is
//! used), the `kid` must name our key, and iss, aud, exp, nbf and iat are all required and checked.

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

/// The signing key and what verification needs.
pub struct Keys {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: serde_json::Value,
}

impl Keys {
    /// Loads the signing key from `path`, creating it (0600) on first start.
    pub fn load_or_create(path: &Path) -> anyhow::Result<Keys> {
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
            let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
            f.write_all(pem.as_bytes())?;
            f.sync_all()?;
            pem
        };
        let pair = rcgen::KeyPair::from_pem(&pem)?;
        anyhow::ensure!(pair.algorithm() == &rcgen::PKCS_ECDSA_P256_SHA256, "token signing key must be ECDSA P-256");
        let raw = pair.public_key_raw();
        anyhow::ensure!(raw.len() == 65 && raw[0] == 4, "unexpected public key encoding");
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (x, y) = (b64.encode(&raw[1..33]), b64.encode(&raw[33..65]));
        let kid = hex::encode(&Sha256::digest(pair.public_key_der())[..16]);
        Ok(Keys {
            jwk: serde_json::json!({"kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid, "x": x, "y": y}),
            kid,
            encoding: EncodingKey::from_ec_pem(pem.as_bytes())?,
            decoding: DecodingKey::from_ec_components(&x, &y)?,
        })
    }

    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &self.encoding)?)
    }

    /// Verifies signature and claims; `use` must match.
    pub fn verify(&self, token: &str, issuer: &str, audience: &str, token_use: TokenUse) -> Result<Claims, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        if header.alg != Algorithm::ES256 {
            return Err("token algorithm must be ES256".into());
        }
        if header.kid.as_deref() != Some(self.kid.as_str()) {
            return Err("token signed with an unknown key".into());
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| format!("invalid token: {e}"))?;
        if data.claims.token_use != token_use {
            return Err("token used for the wrong purpose".into());
        }
        Ok(data.claims)
    }

    /// The JWKS document with the public key.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.jwk] })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }
}
