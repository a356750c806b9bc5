//! Reading credentials from requests: `Authorization: Basic` and `Bearer`, and the client address.

use std::net::{IpAddr, Ipv4Addr};

use axum::http::{header, HeaderMap};
use base64::Engine as _;

/// The peer address of the connection, set by the listener.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    pub fn of(extensions: &axum::http::Extensions) -> IpAddr {
        extensions.get::<ClientAddr>().map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0)
    }
}

/// The client address as a handler argument.
pub struct Client(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client(ClientAddr::of(&parts.extensions)))
    }
}

fn authorization<'a>(headers: &'a HeaderMap, scheme: &str) -> Option<&'a str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (s, rest) = value.split_once(' ')?;
    s.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

/// `Authorization: Basic` as (username, secret).
pub fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let decoded = base64::engine::general_purpose::STANDARD.decode(authorization(headers, "Basic")?).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, secret) = text.split_once(':')?;
    Some((user.to_owned(), secret.to_owned()))
}

/// `Authorization: Bearer` token.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    authorization(headers, "Bearer").filter(|t| !t.is_empty())
}
