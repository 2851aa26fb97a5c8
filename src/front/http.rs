//! HTTP/1.x proxy codec: parses the request head a client sends to ward (CONNECT, absolute-form)
//! and the head an upstream HTTP proxy answers, and encodes the CONNECT ward sends upstream.
//! Pure: no sockets, no tokio, no policy. Its parts: `error` (why a head is refused, and the
//! limits), `fields` (the Host and framing checks, for every request of a connection),
//! `basic` (Basic credentials), `rewrite` (what forwarding changes in a head). Error replies
//! are [`crate::reply`]'s.

mod basic;
mod error;
mod fields;
mod rewrite;
#[cfg(test)]
mod tests;

use crate::Parsed;
use crate::request::Credentials;
use crate::target::Target;

use self::error::malformed;
use self::fields::{Fields, check_framing, check_host};

pub use self::basic::{encode_basic_auth, parse_basic_auth};
pub use self::error::{HttpError, MAX_HEAD, MAX_HEADERS};
pub use self::fields::{check_head, check_request};
pub use self::rewrite::{append_via, strip_hop_by_hop};

/// The reply to a CONNECT once the upstream connection is open.
pub const CONNECT_OK: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// RFC 9112 section 3.2.2: absolute-form `http://` URIs default to port 80.
const DEFAULT_HTTP_PORT: u16 = 80;

/// The first line of the HTTP/2 connection preface (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// What the request line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestTarget {
    /// `CONNECT host:port`: open a tunnel.
    Connect(Target),
    /// `GET http://host[:port]/path?q`: forward plain HTTP (the forwarder reads the rest of
    /// the URI from hyper's parse of the same head).
    Absolute(Target),
    /// `GET /x`: a request for ward itself, not a proxy request.
    Origin(String),
}

/// A parsed proxy request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRequest {
    /// The method as sent (`CONNECT`, `GET`, ...).
    pub method: String,
    /// What the request line asks for.
    pub target: RequestTarget,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Header fields in arrival order, names as the client spelled them.
    pub headers: Vec<(String, Vec<u8>)>,
    /// From `Proxy-Authorization: Basic ...`; `None` when absent or unreadable.
    pub credentials: Option<Credentials>,
}

/// A parsed response head from an upstream HTTP proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The reason phrase, as sent.
    pub reason: String,
    /// Header fields in arrival order, names as the proxy spelled them.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Parses a proxy request head. `consumed` ends after the blank line; any body follows it.
pub fn parse_request_head(buf: &[u8]) -> Result<Parsed<ProxyRequest>, HttpError> {
    // Wait for the whole preface line, so that the refusal says why rather than "bad version".
    if buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(buf) {
        return Ok(Parsed::Incomplete);
    }
    if buf.starts_with(H2_PREFACE) {
        return Err(malformed(
            "HTTP/2 connection preface: a proxy port speaks HTTP/1.1 (use CONNECT for h2)",
        ));
    }
    bounded(buf, |head| {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut fields);
        let consumed = match req.parse(head) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(Parsed::Incomplete),
            Err(e) => return Err(from_httparse(e, "request")),
        };
        let (Some(method), Some(path), Some(version)) = (req.method, req.path, req.version) else {
            return Err(malformed("request line incomplete in a complete head"));
        };
        let headers = own_headers(req.headers);
        let value = build_request(method, path, version, headers)?;
        Ok(Parsed::Done { value, consumed })
    })
}

/// Parses the response head of an upstream HTTP proxy (to ward's CONNECT).
pub fn parse_response_head(buf: &[u8]) -> Result<Parsed<ResponseHead>, HttpError> {
    bounded(buf, |head| {
        let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut fields);
        let consumed = match resp.parse(head) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(Parsed::Incomplete),
            Err(e) => return Err(from_httparse(e, "response")),
        };
        let Some(status) = resp.code else {
            return Err(malformed("status line incomplete in a complete head"));
        };
        let value = ResponseHead {
            status,
            reason: resp.reason.unwrap_or_default().to_owned(),
            headers: own_headers(resp.headers),
        };
        Ok(Parsed::Done { value, consumed })
    })
}

/// Parses at most [`MAX_HEAD`] bytes, so a head past the cap is refused without waiting for
/// its end.
fn bounded<T>(
    buf: &[u8],
    parse: impl FnOnce(&[u8]) -> Result<Parsed<T>, HttpError>,
) -> Result<Parsed<T>, HttpError> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    match parse(window)? {
        Parsed::Incomplete if buf.len() >= MAX_HEAD => Err(HttpError::TooLarge),
        parsed => Ok(parsed),
    }
}

fn from_httparse(err: httparse::Error, what: &str) -> HttpError {
    match err {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
        httparse::Error::HeaderName => malformed(format!(
            "{what} head: invalid header name (spaces, folded lines or bad bytes)"
        )),
        other => malformed(format!("{what} head: {other}")),
    }
}

fn own_headers(fields: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    fields
        .iter()
        .take_while(|h| !h.name.is_empty())
        .map(|h| (h.name.to_owned(), h.value.to_vec()))
        .collect()
}

fn build_request(
    method: &str,
    path: &str,
    version: u8,
    headers: Vec<(String, Vec<u8>)>,
) -> Result<ProxyRequest, HttpError> {
    let is_connect = method == "CONNECT";
    let target = parse_request_target(is_connect, path)?;
    check_host(headers.as_slice(), version, is_connect)?;
    check_framing(headers.as_slice(), version)?;
    let credentials = headers
        .as_slice()
        .values("proxy-authorization")
        .next()
        .and_then(parse_basic_auth);
    Ok(ProxyRequest {
        method: method.to_owned(),
        target,
        version,
        headers,
        credentials,
    })
}

fn parse_request_target(is_connect: bool, raw: &str) -> Result<RequestTarget, HttpError> {
    if is_connect {
        return Target::parse_authority(raw)
            .map(RequestTarget::Connect)
            .map_err(|e| malformed(format!("CONNECT needs host:port: {e}")));
    }
    if raw.starts_with('/') || raw == "*" {
        return Ok(RequestTarget::Origin(raw.to_owned()));
    }
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err(malformed(format!(
            "request target {raw:?} is neither a path nor an http:// URI"
        )));
    };
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(malformed(format!(
            "{scheme}:// in a proxy request: ward forwards only http:// (https goes through CONNECT)"
        )));
    }
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    if authority.contains('@') {
        return Err(malformed("user info in the request URI is not allowed"));
    }
    Target::parse_with_default_port(authority, DEFAULT_HTTP_PORT)
        .map(RequestTarget::Absolute)
        .map_err(|e| malformed(format!("request URI host: {e}")))
}

/// The CONNECT ward sends to an upstream HTTP proxy.
pub fn encode_connect_request(target: &Target, creds: Option<&Credentials>) -> Vec<u8> {
    let mut out = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(creds) = creds {
        out.push_str(&format!(
            "Proxy-Authorization: {}\r\n",
            encode_basic_auth(creds)
        ));
    }
    out.push_str("\r\n");
    out.into_bytes()
}
