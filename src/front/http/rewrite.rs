//! What a forwarding proxy changes in a head it passes on: hop-by-hop fields out (RFC 9110
//! section 7.6.1), ward appended to `Via`. Pure, over `http::HeaderMap`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop fields (RFC 9110 section 7.6.1) plus the proxy-only ones: never forwarded.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A client may not make ward drop these by naming them in `Connection`: they route and frame
/// the forwarded request.
const NOT_REMOVABLE_BY_CONNECTION: [&str; 2] = ["host", "content-length"];

/// Removes the fields that belong to one hop: `Connection` and every field it names, and the
/// fixed list in RFC 9110 section 7.6.1 plus the proxy credentials. The fields that stay keep
/// their order (`HeaderMap::remove` would move the last field into the gap): an origin or a
/// bot filter may read the order as a fingerprint of the client.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
        .filter(|n| !NOT_REMOVABLE_BY_CONNECTION.contains(&n.as_str()))
        .collect();
    let dropped = |n: &HeaderName| HOP_BY_HOP.contains(&n.as_str()) || named.contains(n);
    if !headers.keys().any(dropped) {
        return;
    }
    let old = std::mem::take(headers);
    headers.reserve(old.len());
    // `into_iter` names a field once, before its first value; the rest follow unnamed.
    let mut current: Option<HeaderName> = None;
    for (name, value) in old {
        if let Some(name) = name {
            current = Some(name);
        }
        if let Some(name) = current.as_ref().filter(|n| !dropped(n)) {
            headers.append(name.clone(), value);
        }
    }
}

/// Adds ward to `Via` after any proxies before it, as one comma-joined value.
pub fn append_via(headers: &mut HeaderMap, version: http::Version) {
    let ours = via_entry(version);
    let mut joined = Vec::new();
    for value in headers.get_all(header::VIA) {
        joined.extend_from_slice(value.as_bytes());
        joined.extend_from_slice(b", ");
    }
    joined.extend_from_slice(ours.as_bytes());
    match HeaderValue::from_bytes(&joined) {
        Ok(value) => {
            headers.insert(header::VIA, value);
        }
        Err(_) => {
            headers.append(header::VIA, HeaderValue::from_static(ours));
        }
    }
}

/// RFC 9110 section 7.6.3: the protocol version the request arrived with, then our name.
fn via_entry(version: http::Version) -> &'static str {
    match version {
        http::Version::HTTP_09 => "0.9 ward",
        http::Version::HTTP_10 => "1.0 ward",
        http::Version::HTTP_2 => "2 ward",
        http::Version::HTTP_3 => "3 ward",
        _ => "1.1 ward",
    }
}
