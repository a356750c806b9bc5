//! Token signing and verification: ES256 JWTs with a `kid`, the public key published as JWKS.
//!
//! Rules: the algorithm is pinned (ES256 only; `none` and HMAC are refused before any key is
//! used), the `kid` must name one of our keys, iss, aud, exp, nbf and iat are all required and
//! checked, and a signature must be in its canonical low-`s` form: ECDSA's malleable twin (`s`
//! replaced by `n - s`, which verifies too) is refused, so a token has exactly one valid
//! spelling. Our own signatures are normalised to low `s`.

use std::path::Path;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Scope;

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
    pub access: Vec<Scope>,
    /// The personal access token this was issued for, so its revocation revokes this too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pat: Option<String>,
    /// The principal's immutable id (`u:<id>`, `r:<id>`), so that a new account under a deleted
    /// one's name does not inherit its tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// When it was issued, in milliseconds: refused if at or before the principal's stamp.
    #[serde(default)]
    pub iatms: i64,
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
    verified: VerifiedCache,
}

/// Tokens whose signature and fixed claims (`iss`, `aud`, `kid`, `alg`) were already checked, by
/// the SHA-256 of what was checked, with their claims. An ES256 verification costs about as much
/// CPU as the rest of a manifest GET, and a client sends the same token with every request. A hit
/// still checks the time-dependent claims and the use; the account is re-checked by the caller on
/// every use either way. Bounded: when full, expired entries go, and if that is not enough, all.
#[derive(Default)]
struct VerifiedCache(std::sync::Mutex<std::collections::HashMap<[u8; 32], Claims>>);

const VERIFIED_CAPACITY: usize = 4096;
/// The clock skew allowed on `exp` and `nbf`, in seconds.
const LEEWAY: i64 = 30;

impl VerifiedCache {
    fn key(token: &str, issuer: &str, audience: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        for part in [issuer, audience, token] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        h.finalize().into()
    }

    fn get(&self, key: &[u8; 32]) -> Option<Claims> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned()
    }

    fn insert(&self, key: [u8; 32], claims: &Claims, now: i64) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= VERIFIED_CAPACITY {
            map.retain(|_, c| c.exp + LEEWAY >= now);
            if map.len() >= VERIFIED_CAPACITY {
                map.clear();
            }
        }
        map.insert(key, claims.clone());
    }
}

/// The PEM (PKCS#8) of the ECDSA P-256 key in `path`, created (0600, its directory made) on
/// first start. Replicas share such keys: of several starting together on one path, one creates
/// it and the others read it. The key is written whole to a file of its own and then linked to
/// `path`, which fails if `path` exists: `path` is never seen half-written.
pub fn p256_key_file(path: &Path) -> anyhow::Result<String> {
    if path.exists() {
        return Ok(std::fs::read_to_string(path)?);
    }
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let pem = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?.serialize_pem();
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    let staged = dir.join(format!(".{name}.{}.new", uuid::Uuid::new_v4().simple()));
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&staged)?;
    let written = f.write_all(pem.as_bytes()).and_then(|()| f.sync_all());
    let linked = written.and_then(|()| std::fs::hard_link(&staged, path));
    let _ = std::fs::remove_file(&staged);
    match linked {
        Ok(()) => Ok(pem),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(std::fs::read_to_string(path)?),
        Err(e) => Err(e.into()),
    }
}

impl Keys {
    /// Loads the signing key from `path`, creating it (0600) on first start, and the keys that
    /// only verify from `previous`.
    pub fn load_or_create(path: &Path, previous: &[std::path::PathBuf]) -> anyhow::Result<Keys> {
        let pem = p256_key_file(path)?;
        let signing = Key::from_pem(&pem)?;
        let verifying = previous
            .iter()
            .map(|p| {
                let pem = std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?;
                Key::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Keys { signing, verifying, verified: VerifiedCache::default() })
    }

    pub fn sign(&self, claims: &Claims) -> anyhow::Result<String> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.signing.kid.clone());
        let token = jsonwebtoken::encode(&header, claims, &self.signing.encoding)?;
        Ok(canonical_form(&token))
    }

    /// Verifies signature and claims; `use` must match.
    pub fn verify(&self, token: &str, issuer: &str, audience: &str, token_use: TokenUse) -> Result<Claims, String> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let cache_key = VerifiedCache::key(token, issuer, audience);
        let claims = match self.verified.get(&cache_key) {
            Some(claims) => claims,
            None => {
                let claims = self.verify_signed(token, issuer, audience)?;
                self.verified.insert(cache_key, &claims, now);
                claims
            }
        };
        // Checked on every use, cached or not (jsonwebtoken checked them too on a first sight).
        if claims.exp + LEEWAY < now {
            return Err("invalid token: ExpiredSignature".into());
        }
        if claims.nbf - LEEWAY > now {
            return Err("invalid token: ImmatureSignature".into());
        }
        if claims.token_use != token_use {
            return Err("token used for the wrong purpose".into());
        }
        Ok(claims)
    }

    /// The full check: algorithm, key, signature and every registered claim.
    fn verify_signed(&self, token: &str, issuer: &str, audience: &str) -> Result<Claims, String> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("malformed token: {e}"))?;
        if !canonical(token) {
            return Err("token signature is not in its canonical (low-s) form".into());
        }
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
        validation.leeway = LEEWAY as u64;
        let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation)
            .map_err(|e| format!("invalid token: {e}"))?;
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

/// The order of P-256, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6, 0xfa,
    0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];
/// Half of it, rounded down: the largest canonical `s`.
const P256_HALF_N: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xde, 0x73, 0x7d,
    0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// The raw `r || s` of a compact JWS, if it is 64 bytes.
fn signature(token: &str) -> Option<Vec<u8>> {
    let sig = token.rsplit('.').next()?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig).ok()?;
    (raw.len() == 64).then_some(raw)
}

/// Whether the signature's `s` is at most half the group order (big-endian comparison).
fn canonical(token: &str) -> bool {
    signature(token).is_some_and(|raw| raw[32..] <= P256_HALF_N[..])
}

/// The token with `s` replaced by `n - s` (the signature's twin, which verifies as well).
fn with_negated_s(token: &str, mut raw: Vec<u8>) -> String {
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = P256_N[i] as i16 - raw[32 + i] as i16 - borrow;
        borrow = i16::from(d < 0);
        raw[32 + i] = d.rem_euclid(256) as u8;
    }
    let head = &token[..token.rfind('.').expect("a JWS has dots")];
    format!("{head}.{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw))
}

/// The same token with a low `s` (both forms verify; only low `s` is accepted). Public for
/// tools and tests that sign tokens with the registry's key themselves.
pub fn canonical_form(token: &str) -> String {
    match signature(token) {
        Some(raw) if raw[32..] > P256_HALF_N[..] => with_negated_s(token, raw),
        _ => token.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_creating_one_key_file_at_once_all_read_the_same_whole_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/shared.pem");
        let pems: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8).map(|_| s.spawn(|| p256_key_file(&path).unwrap())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(pems.iter().all(|p| p == &pems[0] && p.contains("PRIVATE KEY")), "{pems:?}");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "no staged file is left behind");
    }

    fn claims(exp: i64, nbf: i64, token_use: TokenUse) -> Claims {
        Claims {
            iss: "https://r.example".into(),
            sub: "alice".into(),
            aud: "portcullis".into(),
            exp,
            nbf,
            iat: nbf,
            jti: "j".into(),
            access: Vec::new(),
            pat: None,
            uid: None,
            iatms: 0,
            token_use,
        }
    }

    /// Every signature we make is low-s, and its high-s twin (which ECDSA would also accept) is refused.
    #[test]
    fn only_the_canonical_signature_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(&dir.path().join("k.pem"), &[]).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let (iss, aud) = ("https://r.example", "portcullis");
        for i in 0..20 {
            let mut c = claims(now + 600, now, TokenUse::Access);
            c.jti = format!("j{i}");
            let token = keys.sign(&c).unwrap();
            assert!(canonical(&token));
            assert!(keys.verify(&token, iss, aud, TokenUse::Access).is_ok());
            let twin = with_negated_s(&token, signature(&token).unwrap());
            assert!(!canonical(&twin));
            let refused = keys.verify(&twin, iss, aud, TokenUse::Access).unwrap_err();
            assert!(refused.contains("canonical"), "{refused}");
        }
    }

    #[test]
    fn a_cached_token_is_still_checked_for_time_and_use() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(&dir.path().join("k.pem"), &[]).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let token = keys.sign(&claims(now + 600, now, TokenUse::Access)).unwrap();
        let (iss, aud) = ("https://r.example", "portcullis");
        assert!(keys.verify(&token, iss, aud, TokenUse::Access).is_ok());
        assert_eq!(keys.verified.0.lock().unwrap().len(), 1, "verified once, then cached");
        assert!(keys.verify(&token, iss, aud, TokenUse::Refresh).is_err(), "the use is checked on a hit");
        assert!(
            keys.verify(&token, iss, "another-service", TokenUse::Access).is_err(),
            "the audience is part of the key"
        );
        // The cached claims of a token that has since expired, or is not valid yet: refused.
        let key = VerifiedCache::key(&token, iss, aud);
        keys.verified.insert(key, &claims(now - LEEWAY - 1, now - 700, TokenUse::Access), now);
        assert!(keys.verify(&token, iss, aud, TokenUse::Access).unwrap_err().contains("Expired"));
        keys.verified.insert(key, &claims(now + 600, now + LEEWAY + 60, TokenUse::Access), now);
        assert!(keys.verify(&token, iss, aud, TokenUse::Access).unwrap_err().contains("Immature"));
        // A tampered token is a different key: verified from scratch, and refused.
        let tampered = format!("{}x", &token[..token.len() - 1]);
        assert!(keys.verify(&tampered, iss, aud, TokenUse::Access).is_err());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = VerifiedCache::default();
        let now = 1_000_000;
        for i in 0..(VERIFIED_CAPACITY + 10) {
            let exp = if i % 2 == 0 { now - 100 } else { now + 100 };
            cache.insert(VerifiedCache::key(&i.to_string(), "i", "a"), &claims(exp, 0, TokenUse::Access), now);
        }
        assert!(cache.0.lock().unwrap().len() <= VERIFIED_CAPACITY);
    }
}
