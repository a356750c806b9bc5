//! Parsing of the request headers the API depends on (`Range`, `Content-Range`, `Content-Length`).

use axum::http::{header, HeaderMap};

use crate::domain::{ByteRange, Error};

/// `Content-Range` of a chunk: `<start>-<end>`, also accepting `bytes <start>-<end>/<total>`.
pub fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, Error> {
    let Some(value) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let invalid = || Error::RangeInvalid("malformed Content-Range".into());
    let s = value.to_str().map_err(|_| invalid())?.trim();
    let s = s.strip_prefix("bytes").map(str::trim_start).unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(invalid)?;
    let start: u64 = a.trim().parse().map_err(|_| invalid())?;
    let end: u64 = b.trim().parse().map_err(|_| invalid())?;
    // An inclusive range whose length does not fit in 64 bits (0-18446744073709551615) is refused
    // here, so that no caller's `end - start + 1` can overflow.
    if end < start || end - start == u64::MAX {
        return Err(invalid());
    }
    Ok(Some((start, end)))
}

/// `Range: bytes=...` of a blob GET. A header that is not a valid single range (several ranges, other
/// units, bad syntax) is ignored and the whole blob served, as RFC 9110 asks; a valid range the
/// blob cannot satisfy is refused later, with the blob's real size.
pub fn byte_range(headers: &HeaderMap) -> Result<Option<ByteRange>, Error> {
    let Some(value) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else { return Ok(None) };
    let num = |s: &str| s.trim().parse::<u64>().ok();
    Ok(match (a.trim().is_empty(), b.trim().is_empty()) {
        (false, false) => num(a).zip(num(b)).and_then(|(a, b)| (a <= b).then_some(ByteRange::FromTo(a, b))),
        (false, true) => num(a).map(ByteRange::From),
        (true, false) => num(b).map(ByteRange::Suffix),
        (true, true) => None,
    })
}

/// The declared body length, if any.
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// Whether the request has no body (`Content-Length: 0`, or neither length nor chunked encoding).
pub fn has_no_body(headers: &HeaderMap) -> bool {
    match content_length(headers) {
        Some(n) => n == 0,
        None => !headers.contains_key(header::TRANSFER_ENCODING),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn h(name: header::HeaderName, v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(name, HeaderValue::from_str(v).unwrap());
        m
    }

    #[test]
    fn parses_ranges() {
        assert_eq!(content_range(&h(header::CONTENT_RANGE, "0-99")).unwrap(), Some((0, 99)));
        assert_eq!(content_range(&h(header::CONTENT_RANGE, "bytes 5-9/10")).unwrap(), Some((5, 9)));
        assert!(content_range(&h(header::CONTENT_RANGE, "9-5")).is_err());
        assert!(content_range(&h(header::CONTENT_RANGE, "x")).is_err());
        assert!(content_range(&h(header::CONTENT_RANGE, "0-18446744073709551615")).is_err());
        assert!(content_range(&h(header::CONTENT_RANGE, "1-18446744073709551615")).is_ok());
        assert_eq!(byte_range(&h(header::RANGE, "bytes=-5")).unwrap(), Some(ByteRange::Suffix(5)));
        assert_eq!(byte_range(&h(header::RANGE, "bytes=0-1,4-5")).unwrap(), None);
        for ignored in ["bytes=a-b", "bytes=5-2", "bytes=-", "bytes=7", "items=0-1"] {
            assert_eq!(byte_range(&h(header::RANGE, ignored)).unwrap(), None, "{ignored}");
        }
    }
}
