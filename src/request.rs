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
    /// The name logs and records use.
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

/// A user name and password: one `users:` entry of the policy, what a client presented (HTTP
/// Basic or RFC 1929), or what ward presents to an upstream proxy. `Debug` never shows the
/// password, so a `Config` or a request can be logged whole.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password, in clear: compare it in constant time, never log it.
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
    /// The client's address.
    pub client: SocketAddr,
    /// The authenticated user, when `users` is configured.
    pub user: Option<String>,
    /// What the client asked to reach.
    pub target: Target,
    /// The front-end it asked through.
    pub via: Via,
    /// The HTTP request line, for a request ward forwards (plain HTTP); `None` for a tunnel.
    pub http: Option<HttpLine>,
}

/// What `methods` and `paths` rules judge of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLine {
    /// The method, as sent.
    pub method: String,
    /// The path without the query, normalised (`policy::normalize_path`).
    pub path: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_password() {
        let creds = Credentials {
            user: "alice".into(),
            password: "hunter2".into(),
        };
        let shown = format!("{creds:?}");
        assert!(
            shown.contains("alice") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
