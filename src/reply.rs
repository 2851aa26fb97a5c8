//! The one reply ward gives when it refuses or fails an HTTP request, built from a
//! [`ProxyError`]: the status, `Proxy-Status` (RFC 9209), the `Proxy-Authenticate` challenge of
//! a 407, and a short readable body. Encoded either as HTTP/1.1 bytes (the front-end and the
//! connection limit write them to a raw client socket) or as an `http::Response` (hyper serves
//! it: plain-HTTP forwarding, and inside interception). Pure: no hyper, no tokio, no I/O.

use bytes::Bytes;
use http::header::{CONTENT_TYPE, PROXY_AUTHENTICATE};
use http::{HeaderValue, Response, StatusCode};

use crate::error::{ErrorKind, ProxyError, proxy_status_value};

/// The name ward gives itself in `Proxy-Status`.
const PROXY_NAME: &str = "ward";

/// RFC 7235 section 4.3: the challenge of a 407, naming the scheme ward reads (Basic).
const CHALLENGE: &str = "Basic realm=\"ward\"";

/// Every reply body is a short plain-text explanation.
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// The header name `proxy-status` (the `http` crate has no constant for it).
const PROXY_STATUS: &str = "proxy-status";

/// The parts of an error reply, whichever way it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The kind's HTTP status, unless the caller chose another ([`Reply::with_status`]).
    pub status: StatusCode,
    /// `ward; error=TOKEN; details="..."`. An auth challenge is not a proxy error (RFC 9209 has
    /// no token for it), but the reply still says which proxy answered: bare `ward`.
    pub proxy_status: HeaderValue,
    /// `Proxy-Authenticate`, on a 407 only.
    pub challenge: Option<HeaderValue>,
    /// The kind's summary sentence, then the detail a user needs to act, one per line.
    pub body: Bytes,
}

impl Reply {
    /// The reply to `err`.
    pub fn from_error(err: &ProxyError) -> Reply {
        let status = StatusCode::from_u16(err.kind.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // The value is printable ASCII by construction; the fallback only keeps this total.
        let proxy_status = proxy_status_value(err.kind, &err.detail)
            .and_then(|v| HeaderValue::from_str(&v).ok())
            .unwrap_or(HeaderValue::from_static(PROXY_NAME));
        let challenge =
            (err.kind == ErrorKind::AuthRequired).then_some(HeaderValue::from_static(CHALLENGE));
        let mut body = format!("{}\n", err.kind.summary());
        if !err.detail.is_empty() {
            body.push_str(&err.detail);
            body.push('\n');
        }
        Reply {
            status,
            proxy_status,
            challenge,
            body: Bytes::from(body),
        }
    }

    /// The same reply with another status, where the place of the failure decides it (421
    /// inside interception: the request may be fine, the connection is the wrong one).
    pub fn with_status(mut self, status: StatusCode) -> Reply {
        self.status = status;
        self
    }

    /// The whole HTTP/1.1 response, framed by `Content-Length`; `close` says whether ward
    /// closes the connection after it.
    pub fn encode_http1(&self, close: bool) -> Vec<u8> {
        let reason = self.status.canonical_reason().unwrap_or("Error");
        let mut out = format!("HTTP/1.1 {} {reason}\r\n", self.status.as_u16()).into_bytes();
        put_field(&mut out, "Proxy-Status", &self.proxy_status);
        if let Some(challenge) = &self.challenge {
            put_field(&mut out, "Proxy-Authenticate", challenge);
        }
        let connection = if close { "close" } else { "keep-alive" };
        let tail = format!(
            "Content-Type: {TEXT_PLAIN}\r\nContent-Length: {}\r\nConnection: {connection}\r\n\r\n",
            self.body.len()
        );
        out.extend_from_slice(tail.as_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// The reply as a response for hyper to serve, which adds the framing and connection
    /// fields itself.
    pub fn to_response(&self) -> Response<Bytes> {
        let mut resp = Response::new(self.body.clone());
        *resp.status_mut() = self.status;
        let headers = resp.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(TEXT_PLAIN));
        headers.insert(PROXY_STATUS, self.proxy_status.clone());
        if let Some(challenge) = &self.challenge {
            headers.insert(PROXY_AUTHENTICATE, challenge.clone());
        }
        resp
    }
}

/// The HTTP/1.1 bytes of the reply to `err` (see [`Reply::encode_http1`]).
pub fn encode_error_response(err: &ProxyError, close: bool) -> Vec<u8> {
    Reply::from_error(err).encode_http1(close)
}

/// The reply to `err` as a response for hyper (see [`Reply::to_response`]).
pub fn error_response(err: &ProxyError) -> Response<Bytes> {
    Reply::from_error(err).to_response()
}

fn put_field(out: &mut Vec<u8>, name: &str, value: &HeaderValue) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
