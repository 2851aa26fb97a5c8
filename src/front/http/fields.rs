//! The checks RFC 9112 asks of a request's fields before it may be forwarded (one Host; one
//! unambiguous framing), over either form a head takes in ward: the fields the front-end
//! parsed itself, or an `http::HeaderMap` hyper parsed for a later request on the connection.
//! Pure; the same code judges both, so the first request and the rest cannot be held to
//! different rules.

use http::{HeaderMap, Method, Request, Version};

use super::error::{HttpError, malformed};

/// Header fields as the checks read them: every value of a field, in arrival order.
pub trait Fields {
    /// The values of every line of field `name` (lower case; compared without case).
    fn values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]>;
}

/// The fields the front-end's own parser keeps: names as the client spelled them.
impl Fields for [(String, Vec<u8>)] {
    fn values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
}

impl Fields for HeaderMap {
    fn values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a [u8]> {
        self.get_all(name).into_iter().map(|v| v.as_bytes())
    }
}

/// RFC 9112's Host and framing checks on one request hyper parsed: call it on every request
/// of a plain-HTTP forwarding connection, not only the first (which the front-end checked).
pub fn check_request<B>(req: &Request<B>) -> Result<(), HttpError> {
    check_head(req.method(), req.version(), req.headers())
}

/// [`check_request`] on the parts of a request head: its method, version and fields.
pub fn check_head(method: &Method, version: Version, headers: &HeaderMap) -> Result<(), HttpError> {
    let minor = minor_version(version);
    check_host(headers, minor, method == Method::CONNECT)?;
    check_framing(headers, minor)
}

/// The HTTP/1 minor version the front-end's parser reports: 0 for HTTP/1.0 (and 0.9), else 1.
fn minor_version(version: Version) -> u8 {
    match version {
        Version::HTTP_09 | Version::HTTP_10 => 0,
        _ => 1,
    }
}

/// The comma-separated elements of every line of a list-valued field, trimmed.
fn list_elements<'a, F: Fields + ?Sized>(
    fields: &'a F,
    name: &'static str,
) -> impl Iterator<Item = &'a [u8]> {
    fields
        .values(name)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
}

/// RFC 9112 section 3.2: one Host at most; HTTP/1.1 must send one, except that CONNECT clients
/// commonly omit it and lose nothing by it.
pub fn check_host<F: Fields + ?Sized>(
    fields: &F,
    version: u8,
    is_connect: bool,
) -> Result<(), HttpError> {
    match fields.values("host").count() {
        0 if version >= 1 && !is_connect => Err(malformed("HTTP/1.1 request without Host")),
        0 | 1 => Ok(()),
        _ => Err(malformed("more than one Host header")),
    }
}

/// RFC 9112 section 6: refuse every framing two parsers could read differently, so that no
/// request can be smuggled past ward to an origin. `version` is the HTTP/1 minor version.
pub fn check_framing<F: Fields + ?Sized>(fields: &F, version: u8) -> Result<(), HttpError> {
    let mut length: Option<u64> = None;
    for element in list_elements(fields, "content-length") {
        // Digits only: `+1` or ` 1` would parse in Rust but not in every origin server.
        let value = std::str::from_utf8(element)
            .ok()
            .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| malformed("Content-Length is not a number"))?;
        if length.is_some_and(|seen| seen != value) {
            return Err(malformed("conflicting Content-Length values"));
        }
        length = Some(value);
    }
    let Some(last_coding) = list_elements(fields, "transfer-encoding").last() else {
        return Ok(());
    };
    if version == 0 {
        return Err(malformed("Transfer-Encoding in an HTTP/1.0 request"));
    }
    if length.is_some() {
        return Err(malformed("both Transfer-Encoding and Content-Length"));
    }
    if !last_coding.eq_ignore_ascii_case(b"chunked") {
        return Err(malformed("Transfer-Encoding does not end in chunked"));
    }
    Ok(())
}
