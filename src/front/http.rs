//! HTTP/1.x proxy codec: parses the request head a client sends to ward (CONNECT, absolute-form),
//! Basic credentials, and the head an upstream HTTP proxy answers; encodes error replies and the
//! CONNECT ward sends upstream. Pure: no sockets, no tokio, no policy.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::Parsed;
use crate::error::{ErrorKind, ProxyError, proxy_status_value};
use crate::request::Credentials;
use crate::target::Target;

/// The largest request or response head ward reads; a longer one is answered with 431.
pub const MAX_HEAD: usize = 64 * 1024;

/// httparse fills a fixed array; a head with more header fields than this gets 431.
pub const MAX_HEADERS: usize = 128;

/// The reply to a CONNECT once the upstream connection is open.
pub const CONNECT_OK: &[u8] = b"HTTP/1.1 200 Connection established\r\n\r\n";

/// The name ward gives itself in `Via` and `Proxy-Status`.
const PROXY_NAME: &str = "ward";

/// RFC 9112 section 3.2.2: absolute-form `http://` URIs default to port 80.
const DEFAULT_HTTP_PORT: u16 = 80;

/// Error details quote client bytes; past this they stop being useful and start being noise.
const MAX_DETAIL_CHARS: usize = 200;

/// The first line of the HTTP/2 connection preface (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

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

/// Basic credentials: some clients omit the base64 padding, which loses nothing.
const BASIC_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What the request line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestTarget {
    /// `CONNECT host:port`: open a tunnel.
    Connect(Target),
    /// `GET http://host[:port]/path?q`: forward plain HTTP; `origin_form` is `/path?q`.
    Absolute { target: Target, origin_form: String },
    /// `GET /x`: a request for ward itself, not a proxy request.
    Origin(String),
}

/// A parsed proxy request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRequest {
    pub method: String,
    pub target: RequestTarget,
    /// The minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    /// Header fields in arrival order, names as the client spelled them.
    pub headers: Vec<(String, Vec<u8>)>,
    /// From `Proxy-Authorization: Basic ...`; `None` when absent or unreadable.
    pub credentials: Option<Credentials>,
    /// Whether the client expects the connection to stay open after the response.
    pub keep_alive: bool,
}

impl ProxyRequest {
    /// The first value of a header field (names compare case-insensitively).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        header_values(&self.headers, name).next()
    }
}

/// A parsed response head from an upstream HTTP proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    #[error("{0}")]
    Malformed(String),
}

impl HttpError {
    /// The kind when the client sent the head; a head from an upstream proxy is the caller's
    /// to report as [`ErrorKind::UpstreamProxy`] (see [`HttpError::upstream`]).
    pub fn kind(&self) -> ErrorKind {
        match self {
            HttpError::TooLarge | HttpError::TooManyHeaders => ErrorKind::HeadTooLarge,
            HttpError::Malformed(_) => ErrorKind::MalformedRequest,
        }
    }

    /// This error as the failure of an upstream proxy's reply.
    pub fn upstream(&self) -> ProxyError {
        ProxyError::upstream(
            ErrorKind::UpstreamProxy,
            format!("upstream proxy reply: {self}"),
        )
    }
}

impl From<HttpError> for ProxyError {
    fn from(err: HttpError) -> Self {
        ProxyError::client(err.kind(), err.to_string())
    }
}

fn malformed(msg: impl fmt::Display) -> HttpError {
    HttpError::Malformed(msg.to_string().chars().take(MAX_DETAIL_CHARS).collect())
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

fn header_values<'a>(
    headers: &'a [(String, Vec<u8>)],
    name: &str,
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// The comma-separated elements of every line of a list-valued field, trimmed.
fn list_elements<'a>(
    headers: &'a [(String, Vec<u8>)],
    name: &str,
) -> impl Iterator<Item = &'a [u8]> {
    header_values(headers, name)
        .flat_map(|v| v.split(|&b| b == b','))
        .map(|e| e.trim_ascii())
        .filter(|e| !e.is_empty())
}

fn build_request(
    method: &str,
    path: &str,
    version: u8,
    headers: Vec<(String, Vec<u8>)>,
) -> Result<ProxyRequest, HttpError> {
    let is_connect = method == "CONNECT";
    let target = parse_request_target(is_connect, path)?;
    check_host(&headers, version, is_connect)?;
    check_framing(&headers, version)?;
    let credentials = header_values(&headers, "proxy-authorization")
        .next()
        .and_then(parse_basic_auth);
    let keep_alive = keep_alive(&headers, version);
    Ok(ProxyRequest {
        method: method.to_owned(),
        target,
        version,
        headers,
        credentials,
        keep_alive,
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
    let (authority, tail) = rest.split_at(rest.find(['/', '?', '#']).unwrap_or(rest.len()));
    if authority.contains('@') {
        return Err(malformed("user info in the request URI is not allowed"));
    }
    let target = Target::parse_with_default_port(authority, DEFAULT_HTTP_PORT)
        .map_err(|e| malformed(format!("request URI host: {e}")))?;
    // A fragment is the client's own business; it never travels to the origin.
    let tail = tail.split('#').next().unwrap_or_default();
    let origin_form = match tail.starts_with('/') {
        true => tail.to_owned(),
        false => format!("/{tail}"),
    };
    Ok(RequestTarget::Absolute {
        target,
        origin_form,
    })
}

/// RFC 9112 section 3.2: one Host at most; HTTP/1.1 must send one, except that CONNECT clients
/// commonly omit it and lose nothing by it.
fn check_host(
    headers: &[(String, Vec<u8>)],
    version: u8,
    is_connect: bool,
) -> Result<(), HttpError> {
    match header_values(headers, "host").count() {
        0 if version >= 1 && !is_connect => Err(malformed("HTTP/1.1 request without Host")),
        0 | 1 => Ok(()),
        _ => Err(malformed("more than one Host header")),
    }
}

/// RFC 9112 section 6: refuse every framing two parsers could read differently, so that no
/// request can be smuggled past ward to an origin.
fn check_framing(headers: &[(String, Vec<u8>)], version: u8) -> Result<(), HttpError> {
    let mut length: Option<u64> = None;
    for element in list_elements(headers, "content-length") {
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
    let Some(last_coding) = list_elements(headers, "transfer-encoding").last() else {
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

/// HTTP/1.1 stays open unless told `close`; HTTP/1.0 closes unless told `keep-alive`. Old
/// clients say it in `Proxy-Connection`, so both fields count.
fn keep_alive(headers: &[(String, Vec<u8>)], version: u8) -> bool {
    let tokens =
        || list_elements(headers, "connection").chain(list_elements(headers, "proxy-connection"));
    if tokens().any(|t| t.eq_ignore_ascii_case(b"close")) {
        return false;
    }
    version >= 1 || tokens().any(|t| t.eq_ignore_ascii_case(b"keep-alive"))
}

/// Reads `Basic base64(user:password)`. The scheme is case-insensitive; the password may hold
/// colons, the user may not. `None` for anything else, which the caller treats as no
/// credentials.
pub fn parse_basic_auth(value: &[u8]) -> Option<Credentials> {
    let value = value.trim_ascii();
    let split = value.iter().position(|&b| b == b' ')?;
    let (scheme, token) = value.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = BASIC_ENGINE.decode(token.trim_ascii()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

/// `Basic base64(user:password)`, the value of `Proxy-Authorization`.
pub fn encode_basic_auth(creds: &Credentials) -> String {
    let pair = format!("{}:{}", creds.user, creds.password);
    format!("Basic {}", general_purpose::STANDARD.encode(pair))
}

/// The whole reply to a request ward refuses: status, `Proxy-Status`, and a short body that
/// names the detail a user needs to act.
pub fn encode_error_response(err: &ProxyError, close: bool) -> Vec<u8> {
    let status = err.kind.http_status();
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    // An auth challenge is not a proxy error (RFC 9209 has no token for it), but the reply
    // still says which proxy answered.
    let proxy_status =
        proxy_status_value(err.kind, &err.detail).unwrap_or_else(|| PROXY_NAME.to_owned());
    let mut body = format!("{}\n", err.kind.summary());
    if !err.detail.is_empty() {
        body.push_str(&err.detail);
        body.push('\n');
    }
    let mut head = format!("HTTP/1.1 {status} {reason}\r\nProxy-Status: {proxy_status}\r\n");
    if err.kind == ErrorKind::AuthRequired {
        head.push_str("Proxy-Authenticate: Basic realm=\"ward\"\r\n");
    }
    let connection = if close { "close" } else { "keep-alive" };
    head.push_str(&format!(
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
        body.len()
    ));
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Removes the fields that belong to one hop: `Connection` and every field it names, and the
/// fixed list in RFC 9110 section 7.6.1 plus the proxy credentials.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
        .filter(|n| !NOT_REMOVABLE_BY_CONNECTION.contains(&n.as_str()))
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Host;
    use proptest::prelude::*;

    /// What `curl -x http://127.0.0.1:8080 https://example.com/` sends.
    const CURL_CONNECT: &[u8] = b"CONNECT example.com:443 HTTP/1.1\r\n\
        Host: example.com:443\r\n\
        User-Agent: curl/8.5.0\r\n\
        Proxy-Connection: Keep-Alive\r\n\r\n";

    /// What `curl -x http://alice:s3cret@127.0.0.1:8080 http://origin.test/a?b=1` sends.
    const CURL_GET: &[u8] = b"GET http://origin.test/a?b=1 HTTP/1.1\r\n\
        Host: origin.test\r\n\
        Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\
        User-Agent: curl/8.5.0\r\n\
        Accept: */*\r\n\
        Proxy-Connection: Keep-Alive\r\n\r\n";

    fn done<T>(parsed: Parsed<T>) -> (T, usize) {
        match parsed {
            Parsed::Done { value, consumed } => (value, consumed),
            Parsed::Incomplete => panic!("incomplete"),
        }
    }

    fn request(bytes: &[u8]) -> ProxyRequest {
        done(parse_request_head(bytes).expect("parses")).0
    }

    fn error(bytes: &[u8]) -> HttpError {
        parse_request_head(bytes).expect_err("must be refused")
    }

    fn name(n: &str) -> Host {
        Host::Name(n.into())
    }

    /// Every prefix is Incomplete, the whole is the answer; extra bytes are not consumed.
    fn assert_prefixes<T: PartialEq + fmt::Debug>(
        msg: &[u8],
        parse: impl Fn(&[u8]) -> Result<Parsed<T>, HttpError>,
    ) {
        let whole = parse(msg).expect("whole message parses");
        assert_eq!(
            whole,
            Parsed::Done {
                value: done(parse(msg).unwrap()).0,
                consumed: msg.len()
            }
        );
        for i in 0..msg.len() {
            assert_eq!(
                parse(&msg[..i]),
                Ok(Parsed::Incomplete),
                "prefix of {i} bytes"
            );
        }
        let mut longer = msg.to_vec();
        longer.extend_from_slice(b"\x16\x03\x01body");
        assert_eq!(parse(&longer), Ok(whole));
    }

    #[test]
    fn curl_connect() {
        let (req, consumed) = done(parse_request_head(CURL_CONNECT).unwrap());
        assert_eq!(consumed, CURL_CONNECT.len());
        assert_eq!(req.method, "CONNECT");
        assert_eq!(
            req.target,
            RequestTarget::Connect(Target::new(name("example.com"), 443))
        );
        assert_eq!(req.version, 1);
        assert!(req.keep_alive);
        assert_eq!(req.credentials, None);
        assert_eq!(req.header("user-agent"), Some(&b"curl/8.5.0"[..]));
    }

    #[test]
    fn curl_absolute_get_with_credentials() {
        let req = request(CURL_GET);
        let expected = RequestTarget::Absolute {
            target: Target::new(name("origin.test"), 80),
            origin_form: "/a?b=1".into(),
        };
        assert_eq!(req.target, expected);
        let creds = req.credentials.expect("credentials");
        assert_eq!(
            (creds.user.as_str(), creds.password.as_str()),
            ("alice", "s3cret")
        );
    }

    #[test]
    fn every_prefix_is_incomplete() {
        for msg in [CURL_CONNECT, CURL_GET] {
            assert_prefixes(msg, parse_request_head);
        }
        let resp = b"HTTP/1.1 200 Connection established\r\nVia: 1.1 squid\r\n\r\n";
        assert_prefixes(resp, parse_response_head);
    }

    #[test]
    fn request_targets() {
        let t =
            |raw: &str| request(format!("GET {raw} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).target;
        let abs = |host: Host, port, path: &str| RequestTarget::Absolute {
            target: Target::new(host, port),
            origin_form: path.into(),
        };
        assert_eq!(
            t("HTTP://Origin.Test:8080"),
            abs(name("origin.test"), 8080, "/")
        );
        assert_eq!(
            t("http://origin.test?q=1"),
            abs(name("origin.test"), 80, "/?q=1")
        );
        assert_eq!(
            t("http://origin.test/p#frag"),
            abs(name("origin.test"), 80, "/p")
        );
        let v6 = Host::Ip("2001:db8::1".parse().unwrap());
        assert_eq!(t("http://[2001:db8::1]/x"), abs(v6, 80, "/x"));
        assert_eq!(t("/status"), RequestTarget::Origin("/status".into()));
        assert_eq!(t("*"), RequestTarget::Origin("*".into()));
        let c = |raw: &str| request(format!("CONNECT {raw} HTTP/1.1\r\n\r\n").as_bytes()).target;
        let v6 = Host::Ip("2001:db8::1".parse().unwrap());
        assert_eq!(
            c("[2001:db8::1]:443"),
            RequestTarget::Connect(Target::new(v6, 443))
        );
        assert_eq!(
            c("Evil.Test.:8443"),
            RequestTarget::Connect(Target::new(name("evil.test"), 8443))
        );
    }

    #[test]
    fn bad_targets_are_malformed() {
        for head in [
            "CONNECT example.com HTTP/1.1\r\n\r\n",
            "CONNECT http://example.com:443/ HTTP/1.1\r\n\r\n",
            "CONNECT [::1:443 HTTP/1.1\r\n\r\n",
            "CONNECT a..b:443 HTTP/1.1\r\n\r\n",
            "GET example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET ftp://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET http://user:pw@example.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET http:///x HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET http://example.com:0/ HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            let err = error(head.as_bytes());
            assert_eq!(err.kind(), ErrorKind::MalformedRequest, "{head:?}: {err}");
        }
        let err = error(b"GET https://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(err.to_string().contains("https://"), "{err}");
        assert!(err.to_string().contains("CONNECT"), "{err}");
    }

    #[test]
    fn garbage_and_protocol_violations_are_malformed() {
        for head in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
            b"G@T / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n folded: no\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n  continued\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
            b"GET / HTTP/3.0\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            let err = error(head);
            assert_eq!(err.kind(), ErrorKind::MalformedRequest, "{head:?}: {err}");
        }
        // Agreeing duplicates are one length (RFC 9110 section 8.6).
        let req = request(
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3, 03\r\n\r\n",
        );
        assert_eq!(req.header("content-length"), Some(&b"3"[..]));
    }

    #[test]
    fn http2_preface_is_refused_with_a_reason() {
        let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
        for i in 0..H2_PREFACE.len() {
            assert_eq!(parse_request_head(&preface[..i]), Ok(Parsed::Incomplete));
        }
        let err = error(&preface[..H2_PREFACE.len()]);
        assert_eq!(err, error(preface));
        assert_eq!(err.kind(), ErrorKind::MalformedRequest);
        assert!(err.to_string().contains("HTTP/2"), "{err}");
    }

    #[test]
    fn oversized_heads_are_refused_before_they_end() {
        let mut head = b"GET http://a/ HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
        head.resize(MAX_HEAD + 10, b'a');
        assert_eq!(parse_request_head(&head), Err(HttpError::TooLarge));
        assert_eq!(
            parse_request_head(&head[..MAX_HEAD]),
            Err(HttpError::TooLarge)
        );
        assert_eq!(
            parse_request_head(&head[..MAX_HEAD - 1]),
            Ok(Parsed::Incomplete)
        );
        assert_eq!(HttpError::TooLarge.kind(), ErrorKind::HeadTooLarge);
        // Exactly at the cap is still fine.
        let mut exact = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
        exact.resize(MAX_HEAD - 4, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(done(parse_request_head(&exact).unwrap()).1, MAX_HEAD);
        let mut resp = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        resp.resize(MAX_HEAD + 1, b'a');
        assert_eq!(parse_response_head(&resp), Err(HttpError::TooLarge));
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut head = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 0..MAX_HEADERS {
            head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        let err = error(&head);
        assert_eq!(err, HttpError::TooManyHeaders);
        assert_eq!(err.kind().http_status(), 431);
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let ka = |head: &str| request(head.as_bytes()).keep_alive;
        assert!(ka("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n"
        ));
        assert!(!ka(
            "GET / HTTP/1.1\r\nHost: a\r\nProxy-Connection: close\r\n\r\n"
        ));
        assert!(!ka("GET / HTTP/1.0\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        assert!(ka("GET / HTTP/1.0\r\nProxy-Connection: Keep-Alive\r\n\r\n"));
        assert!(!ka(
            "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
        ));
    }

    #[test]
    fn leading_blank_lines_and_bare_lf_are_tolerated() {
        let req = request(b"\r\nCONNECT a.test:443 HTTP/1.0\n\n");
        assert_eq!(req.version, 0);
        assert!(matches!(req.target, RequestTarget::Connect(_)));
    }

    #[test]
    fn basic_auth_edge_cases() {
        let creds = |v: &[u8]| parse_basic_auth(v).map(|c| (c.user, c.password));
        let pair = |u: &str, p: &str| Some((u.to_owned(), p.to_owned()));
        assert_eq!(creds(b"Basic YWxpY2U6czNjcmV0"), pair("alice", "s3cret"));
        assert_eq!(
            creds(b"bAsIc   YWxpY2U6czNjcmV0  "),
            pair("alice", "s3cret")
        );
        // "a:b:c": the password keeps its colons.
        assert_eq!(creds(b"Basic YTpiOmM="), pair("a", "b:c"));
        assert_eq!(creds(b"Basic YTpiOmM"), pair("a", "b:c"));
        // "a:" and ":b"
        assert_eq!(creds(b"Basic YTo="), pair("a", ""));
        assert_eq!(creds(b"Basic OmI="), pair("", "b"));
        // "bücher:ü" in UTF-8
        let utf8 = general_purpose::STANDARD.encode("bücher:ü");
        assert_eq!(
            creds(format!("Basic {utf8}").as_bytes()),
            pair("bücher", "ü")
        );
        assert_eq!(creds(b"Basic !!!notbase64"), None);
        assert_eq!(creds(b"Basic YWxpY2U="), None, "no colon");
        let latin1 = general_purpose::STANDARD.encode(b"b\xfccher:x");
        assert_eq!(
            creds(format!("Basic {latin1}").as_bytes()),
            None,
            "not UTF-8"
        );
        assert_eq!(creds(b"Bearer YWxpY2U6czNjcmV0"), None);
        assert_eq!(creds(b"Basic"), None);
        assert_eq!(creds(b"BasicYWxpY2U6czNjcmV0"), None);
        assert_eq!(creds(b""), None);
        assert_eq!(creds(b"Basic \xff\xfe"), None);
    }

    #[test]
    fn error_responses_carry_proxy_status_and_detail() {
        use ErrorKind::*;
        let rows = [
            (PolicyDenied, "403 Forbidden", "http_request_denied"),
            (DnsError, "502 Bad Gateway", "dns_error"),
            (DnsTimeout, "504 Gateway Timeout", "dns_timeout"),
            (ConnectionRefused, "502 Bad Gateway", "connection_refused"),
            (
                ConnectionTimeout,
                "504 Gateway Timeout",
                "connection_timeout",
            ),
            (Unreachable, "502 Bad Gateway", "destination_ip_unroutable"),
            (
                DestinationProhibited,
                "403 Forbidden",
                "destination_ip_prohibited",
            ),
            (MalformedRequest, "400 Bad Request", "http_request_error"),
            (
                HeadTooLarge,
                "431 Request Header Fields Too Large",
                "http_request_error",
            ),
            (UpstreamProxy, "502 Bad Gateway", "proxy_internal_error"),
            (
                ConnectionLimit,
                "503 Service Unavailable",
                "connection_limit_reached",
            ),
            (TlsCertificate, "502 Bad Gateway", "tls_certificate_error"),
        ];
        for (kind, status, token) in rows {
            let err = ProxyError::upstream(kind, "connect 203.0.113.5:443: \"why\"");
            let text = String::from_utf8(encode_error_response(&err, true)).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            assert!(
                head.starts_with(&format!("HTTP/1.1 {status}\r\n")),
                "{head}"
            );
            let ps = format!(
                "\r\nProxy-Status: ward; error={token}; details=\"connect 203.0.113.5:443: \\\"why\\\"\"\r\n"
            );
            assert!(head.contains(&ps), "{head}");
            assert!(head.contains("\r\nConnection: close"), "{head}");
            assert!(
                head.contains(&format!("\r\nContent-Length: {}", body.len())),
                "{head}"
            );
            assert!(!head.contains("Proxy-Authenticate"), "{head}");
            assert_eq!(
                body,
                format!("{}\nconnect 203.0.113.5:443: \"why\"\n", kind.summary())
            );
        }
    }

    #[test]
    fn auth_challenge() {
        let err = ProxyError::client(ErrorKind::AuthRequired, "no Proxy-Authorization");
        let text = String::from_utf8(encode_error_response(&err, false)).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 407 Proxy Authentication Required\r\n"),
            "{text}"
        );
        assert!(
            text.contains("\r\nProxy-Authenticate: Basic realm=\"ward\"\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nProxy-Status: ward\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: keep-alive\r\n"), "{text}");
        assert!(text.ends_with("no Proxy-Authorization\n"), "{text}");
        // The reply is itself a well-formed response head.
        let (resp, _) = done(parse_response_head(text.as_bytes()).unwrap());
        assert_eq!(resp.status, 407);
    }

    #[test]
    fn hop_by_hop_headers_are_stripped() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("host", "origin.test"),
            ("connection", "keep-alive, X-Secret, host, content-length"),
            ("connection", "Upgrade"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic YTpi"),
            ("proxy-authenticate", "Basic"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("content-length", "3"),
            ("accept", "*/*"),
        ] {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "content-length", "host"]);
    }

    #[test]
    fn via_is_appended_after_earlier_proxies() {
        let mut h = HeaderMap::new();
        append_via(&mut h, http::Version::HTTP_11);
        assert_eq!(h.get(header::VIA).unwrap(), "1.1 ward");
        let mut h = HeaderMap::new();
        h.append(header::VIA, HeaderValue::from_static("1.0 fred"));
        h.append(
            header::VIA,
            HeaderValue::from_static("1.1 p.example (Apache/1.1)"),
        );
        append_via(&mut h, http::Version::HTTP_10);
        let all: Vec<_> = h.get_all(header::VIA).iter().collect();
        assert_eq!(all, ["1.0 fred, 1.1 p.example (Apache/1.1), 1.0 ward"]);
    }

    #[test]
    fn connect_request_round_trips() {
        let creds = Credentials {
            user: "u".into(),
            password: "p:w".into(),
        };
        for target in [
            Target::new(name("example.com"), 443),
            Target::new(Host::Ip("2001:db8::1".parse().unwrap()), 8443),
            Target::new(Host::Ip("192.0.2.7".parse().unwrap()), 22),
        ] {
            let bytes = encode_connect_request(&target, Some(&creds));
            assert_prefixes(&bytes, parse_request_head);
            let req = request(&bytes);
            assert_eq!(req.target, RequestTarget::Connect(target.clone()));
            assert_eq!(req.credentials.as_ref(), Some(&creds));
            let bytes = encode_connect_request(&target, None);
            assert_eq!(request(&bytes).credentials, None);
        }
    }

    #[test]
    fn upstream_responses() {
        let reply = b"HTTP/1.0 407 Proxy Auth\r\nProxy-Authenticate: Basic\r\n\r\nxx";
        let (resp, n) = done(parse_response_head(reply).unwrap());
        assert_eq!((resp.status, resp.reason.as_str()), (407, "Proxy Auth"));
        assert_eq!(n, reply.len() - 2, "the body is not part of the head");
        assert_eq!(
            resp.headers,
            [("Proxy-Authenticate".into(), b"Basic".to_vec())]
        );
        let err = parse_response_head(b"SSH-2.0-OpenSSH_9.6\r\n").unwrap_err();
        assert_eq!(err.upstream().kind, ErrorKind::UpstreamProxy);
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_request_head(&bytes);
            let _ = parse_response_head(&bytes);
            let _ = parse_basic_auth(&bytes);
        }

        #[test]
        fn random_heads_never_panic(
            method in "[A-Z]{1,8}",
            target in "[ -~]{0,40}",
            lines in proptest::collection::vec("[ -~]{0,30}", 0..6),
        ) {
            let head = format!("{method} {target} HTTP/1.1\r\n{}\r\n\r\n", lines.join("\r\n"));
            let _ = parse_request_head(head.as_bytes());
        }

        #[test]
        fn basic_auth_round_trips(user in "[^:]{0,20}", password in "\\PC{0,20}") {
            let creds = Credentials { user, password };
            prop_assert_eq!(parse_basic_auth(encode_basic_auth(&creds).as_bytes()), Some(creds));
        }
    }
}
