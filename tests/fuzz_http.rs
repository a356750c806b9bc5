//! Fuzzing what an anonymous client controls before anything is authorised: the `/v2` route
//! parser, `Range` and `Content-Range`, token scopes, the token request form (through the real
//! handler), JWTs (header, claims, signature) and the PROXY protocol header. Every input must end
//! in a result or a clean error, never a panic.

mod common;

use axum::http::{HeaderMap, HeaderValue};
use portcullis::auth::jwt::{Keys, TokenUse};
use portcullis::auth::Scope;
use portcullis::http::v2::headers;
use portcullis::http::v2::route::V2Route;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

/// Path-like strings built from the pieces routes are made of, and some that are not.
fn path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("v2".to_owned()),
        Just("manifests".to_owned()),
        Just("blobs".to_owned()),
        Just("uploads".to_owned()),
        Just("tags".to_owned()),
        Just("list".to_owned()),
        Just("referrers".to_owned()),
        Just("_catalog".to_owned()),
        Just("..".to_owned()),
        Just("".to_owned()),
        Just("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".to_owned()),
        "[a-z0-9._-]{0,12}",
        "\\PC{0,8}",
    ];
    proptest::collection::vec(piece, 0..10).prop_map(|p| format!("/{}", p.join("/")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_route_parser_is_total(p in path()) {
        if let Ok(route) = V2Route::parse(&p) {
            // Whatever parsed names a valid repository, or none.
            if let Some(repo) = route.repository() {
                prop_assert!(repo.as_str().parse::<portcullis::domain::RepoName>().is_ok());
            }
        }
    }

    #[test]
    fn ranges_parse_or_refuse(value in "\\PC{0,40}", size in any::<u64>()) {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert("range", v.clone());
            h.insert("content-range", v);
        }
        if let Ok(Some(range)) = headers::byte_range(&h) {
            if let Ok(r) = range.resolve(size) {
                prop_assert!(r.start < r.end && r.end <= size);
            }
        }
        if let Ok(Some((a, b))) = headers::content_range(&h) {
            prop_assert!(a <= b);
            // What callers compute from it cannot overflow.
            prop_assert!((b - a).checked_add(1).is_some());
        }
        let structured = format!("bytes={}", value);
        if let Ok(v) = HeaderValue::from_str(&structured) {
            let mut h = HeaderMap::new();
            h.insert("range", v);
            let _ = headers::byte_range(&h);
        }
    }

    #[test]
    fn scopes_parse_or_refuse(s in "(repository|registry|x)?:?\\PC{0,30}:?(pull|push|delete|\\*|,){0,5}") {
        if let Some(Scope::Repository(repo, _)) = Scope::parse(&s) {
            prop_assert!(!repo.as_str().is_empty());
        }
    }

    #[test]
    fn jwts_are_refused_unless_genuine(
        header in "\\PC{0,60}",
        claims in "\\PC{0,120}",
        signature in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let b64 = |b: &[u8]| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
        };
        let token = format!("{}.{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()), b64(&signature));
        KEYS.with(|keys| {
            prop_assert!(keys.verify(&token, "iss", "aud", TokenUse::Access).is_err());
            prop_assert!(keys.verify(&header, "iss", "aud", TokenUse::Refresh).is_err());
            Ok(())
        })?;
    }

    #[test]
    fn proxy_headers_parse_or_refuse(bytes in proptest::collection::vec(any::<u8>(), 0..64), fixed in any::<bool>()) {
        let mut input = bytes;
        if fixed {
            // Most inputs then get past the signature.
            let mut signed = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            signed.extend(input);
            input = signed;
        }
        let peer = std::net::IpAddr::from([10, 0, 0, 1]);
        if let Ok((_, used)) = portcullis::server::proxy::parse(&input, peer) {
            prop_assert!(used <= input.len());
        }
    }
}

thread_local! {
    static KEYS: Keys = {
        let dir = tempfile::tempdir().unwrap();
        Keys::load_or_create(&dir.path().join("k.pem"), &[]).unwrap()
    };
}

/// The token endpoint's form, through the real handler: random fields, never a 500.
#[tokio::test]
async fn the_token_form_never_breaks_the_handler() {
    let r = common::TestRegistry::new().await;
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig { cases: 300, ..ProptestConfig::default() });
    let strategy = proptest::collection::vec(
        (
            prop_oneof![
                Just("grant_type"),
                Just("username"),
                Just("password"),
                Just("refresh_token"),
                Just("scope"),
                Just("service"),
                Just("access_type"),
                Just("client_id"),
            ],
            prop_oneof![
                Just("password".to_owned()),
                Just("refresh_token".to_owned()),
                Just("portcullis".to_owned()),
                Just("offline".to_owned()),
                Just("repository:a/b:pull".to_owned()),
                "\\PC{0,40}",
            ],
        ),
        0..8,
    );
    let mut forms = Vec::new();
    for _ in 0..300 {
        forms.push(strategy.new_tree(&mut runner).unwrap().current());
    }
    for fields in forms {
        let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let reply =
            r.send_raw("POST", "/token", &[("content-type", "application/x-www-form-urlencoded")], body.clone()).await;
        assert!(
            [200, 400, 401, 429, 503].contains(&reply.status.as_u16()),
            "{body:?} got {}: {:?}",
            reply.status,
            reply.body
        );
    }
}
