//! The PROXY protocol, version 2 (`server.proxy_protocol`): a TCP load balancer (HAProxy
//! `send-proxy-v2`, AWS NLB, ...) sends the client's address in a binary header before anything
//! else on the connection. With it, throttling, rate limits and connection caps see clients,
//! not the balancer.
//!
//! Rules: when enabled, every connection must start with a valid header, read within the
//! connection's first deadline; anything else closes the connection before TLS. A `LOCAL` header
//! (the balancer's own health check) keeps the peer's address. Exactly the header is read, so the
//! TLS handshake that follows is untouched.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tokio::io::{AsyncRead, AsyncReadExt};

pub use crate::model::Cidr;

const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProxyError {
    #[error("the connection did not start with a PROXY protocol v2 header")]
    NotProxy,
    #[error("unsupported PROXY header: {0}")]
    Unsupported(&'static str),
    #[error("the PROXY header is cut short")]
    Short,
}

/// Parses the fixed 16 bytes; returns the command's client address kind and the length to read.
fn parse_fixed(head: &[u8; 16]) -> Result<(bool, u8, usize), ProxyError> {
    if head[..12] != SIGNATURE {
        return Err(ProxyError::NotProxy);
    }
    let (version, command) = (head[12] >> 4, head[12] & 0x0f);
    if version != 2 {
        return Err(ProxyError::Unsupported("version"));
    }
    let local = match command {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::Unsupported("command")),
    };
    Ok((local, head[13] >> 4, u16::from_be_bytes([head[14], head[15]]) as usize))
}

/// The client address the address block names, for families INET and INET6.
fn parse_address(family: u8, block: &[u8]) -> Result<Option<IpAddr>, ProxyError> {
    match family {
        0 => Ok(None),
        1 if block.len() >= 12 => Ok(Some(IpAddr::V4(Ipv4Addr::new(block[0], block[1], block[2], block[3])))),
        2 if block.len() >= 36 => {
            let octets: [u8; 16] = block[..16].try_into().expect("16 bytes");
            Ok(Some(IpAddr::V6(Ipv6Addr::from(octets))))
        }
        1 | 2 => Err(ProxyError::Short),
        _ => Err(ProxyError::Unsupported("address family")),
    }
}

/// Reads a PROXY v2 header from the start of `stream`; the client's address (`peer` for `LOCAL`).
pub async fn read_header(stream: &mut (impl AsyncRead + Unpin), peer: IpAddr) -> Result<IpAddr, ProxyError> {
    let mut head = [0u8; 16];
    stream.read_exact(&mut head).await.map_err(|_| ProxyError::Short)?;
    let (local, family, len) = parse_fixed(&head)?;
    let mut block = vec![0u8; len];
    stream.read_exact(&mut block).await.map_err(|_| ProxyError::Short)?;
    if local {
        return Ok(peer);
    }
    Ok(parse_address(family, &block)?.unwrap_or(peer))
}

/// Parses a whole header from bytes (for tests and fuzzing): the address and the header's length.
pub fn parse(bytes: &[u8], peer: IpAddr) -> Result<(IpAddr, usize), ProxyError> {
    let head: &[u8; 16] = bytes.get(..16).and_then(|h| h.try_into().ok()).ok_or(ProxyError::Short)?;
    let (local, family, len) = parse_fixed(head)?;
    let block = bytes.get(16..16 + len).ok_or(ProxyError::Short)?;
    let addr = if local { peer } else { parse_address(family, block)?.unwrap_or(peer) };
    Ok((addr, 16 + len))
}

/// A PROXY v2 header for `client` (what a balancer sends; for tests).
pub fn header_for(client: IpAddr, server: IpAddr) -> Vec<u8> {
    let mut h = SIGNATURE.to_vec();
    h.push(0x21);
    match (client, server) {
        (IpAddr::V4(c), IpAddr::V4(s)) => {
            h.extend_from_slice(&[0x11, 0, 12]);
            h.extend_from_slice(&c.octets());
            h.extend_from_slice(&s.octets());
        }
        (c, s) => {
            let v6 = |a: IpAddr| match a {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            h.extend_from_slice(&[0x21, 0, 36]);
            h.extend_from_slice(&v6(c).octets());
            h.extend_from_slice(&v6(s).octets());
        }
    }
    h.extend_from_slice(&[0x30, 0x39, 0x01, 0xbb]);
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_garbage_is_refused() {
        let peer = IpAddr::from([10, 0, 0, 1]);
        let client = IpAddr::from([203, 0, 113, 9]);
        let h = header_for(client, IpAddr::from([10, 0, 0, 2]));
        assert_eq!(parse(&h, peer).unwrap(), (client, 28));
        let v6 = IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 7]);
        assert_eq!(parse(&header_for(v6, IpAddr::from([0u16; 8])), peer).unwrap().0, v6);
        let mut local = h.clone();
        local[12] = 0x20;
        assert_eq!(parse(&local, peer).unwrap().0, peer, "LOCAL keeps the peer");
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", peer), Err(ProxyError::NotProxy));
        assert_eq!(parse(&h[..20], peer), Err(ProxyError::Short));
        let mut v1 = h.clone();
        v1[12] = 0x11;
        assert!(parse(&v1, peer).is_err());
    }
}

/// The client behind a request: the address the connection came from (after any PROXY header),
/// unless that is a trusted proxy that names another in `X-Forwarded-For`; then the right-most
/// address there that is not a trusted proxy (what an untrusted client wrote further left is not
/// believed).
pub fn forwarded_client(connection: IpAddr, forwarded_for: Option<&str>, trusted: &[Cidr]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    if trusted.is_empty() || !is_trusted(connection) {
        return connection;
    }
    let Some(list) = forwarded_for else { return connection };
    let mut client = connection;
    for hop in list.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod trust_tests {
    use super::*;

    #[test]
    fn ranges_and_forwarded_hops() {
        let lb: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(lb.contains(IpAddr::from([10, 1, 2, 3])) && !lb.contains(IpAddr::from([11, 0, 0, 1])));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(IpAddr::from([8, 8, 8, 8])));
        assert!("2001:db8::/32".parse::<Cidr>().unwrap().contains("2001:db8::7".parse().unwrap()));
        assert!("10.0.0.1/33".parse::<Cidr>().is_err() && "nonsense".parse::<Cidr>().is_err());
        let trusted = [lb];
        let peer = IpAddr::from([10, 0, 0, 5]);
        let client = IpAddr::from([203, 0, 113, 7]);
        // A trusted proxy names the client; what the client wrote before it is not believed.
        assert_eq!(forwarded_client(peer, Some("1.2.3.4, 203.0.113.7"), &trusted), client);
        assert_eq!(forwarded_client(peer, Some("203.0.113.7, 10.0.0.9"), &trusted), client);
        // An untrusted peer's header is ignored; no list means no header is believed.
        assert_eq!(forwarded_client(client, Some("10.0.0.1"), &trusted), client);
        assert_eq!(forwarded_client(peer, Some("203.0.113.7"), &[]), peer);
        assert_eq!(forwarded_client(peer, Some("garbage"), &trusted), peer);
    }
}
