//! What the front-end handshake learned: who asks, for what, and through which front-end.
//! Pure data; the front-end codecs produce it and every later stage reads it.

use std::fmt;
use std::net::SocketAddr;

use crate::target::Target;

/// The front-end a request arrived through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// `CONNECT host:port` on the HTTP proxy.
    HttpConnect,
    /// Absolute-form `GET http://...` on the HTTP proxy (plain HTTP forwarding).
    HttpForward,
    /// SOCKS5 CONNECT.
    Socks5,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::HttpConnect => "http-connect",
            Via::HttpForward => "http-forward",
            Via::Socks5 => "socks5",
        }
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A user name and password as a client presented them (HTTP Basic or RFC 1929).
/// `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The result of a front-end handshake.
#[derive(Debug, Clone)]
pub struct Request {
    pub client: SocketAddr,
    /// The authenticated user, when `users` is configured.
    pub user: Option<String>,
    pub target: Target,
    pub via: Via,
}
