//! Why a head from a client or an upstream proxy could not be read, and the limits that bound
//! one. Pure data: no parsing here.

use std::fmt;

use crate::error::{ErrorKind, ProxyError};

/// The largest request or response head ward reads; a longer one is answered with 431.
pub const MAX_HEAD: usize = 64 * 1024;

/// httparse fills a fixed array; a head with more header fields than this gets 431.
pub const MAX_HEADERS: usize = 128;

/// Error details quote client bytes; past this they stop being useful and start being noise.
const MAX_DETAIL_CHARS: usize = 200;

/// Why a request or response head was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// Longer than [`MAX_HEAD`].
    #[error("head larger than {MAX_HEAD} bytes")]
    TooLarge,
    /// More than [`MAX_HEADERS`] fields.
    #[error("more than {MAX_HEADERS} header fields")]
    TooManyHeaders,
    /// Not HTTP/1.x, or HTTP/1.x that two parsers could read differently; the text says why.
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

/// A [`HttpError::Malformed`] quoting at most [`MAX_DETAIL_CHARS`] characters.
pub(super) fn malformed(msg: impl fmt::Display) -> HttpError {
    HttpError::Malformed(msg.to_string().chars().take(MAX_DETAIL_CHARS).collect())
}
