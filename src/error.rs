//! The one failure taxonomy: every way a connection can fail, and each of its faces (HTTP status,
//! RFC 9209 `Proxy-Status` token, SOCKS5 reply, log name). Pure: no I/O here.
//!
//! Each face is one exhaustive `match` on [`ErrorKind`] with no `_` arm, so a new kind does not
//! compile until it has all of them.

use std::fmt;

/// Which party misbehaved or failed: decides who a log reader should blame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The client sent something we cannot accept, or went away.
    Client,
    /// The destination, the DNS, or the upstream proxy.
    Upstream,
    /// ward itself: policy, limits, local resources.
    Local,
}

impl Side {
    /// The name logs use.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
            Side::Local => "local",
        }
    }
}

/// What went wrong; each kind has every face (status, token, SOCKS5 reply, log name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A policy rule (or the default) denied the requested target.
    PolicyDenied,
    /// Proxy credentials missing or wrong.
    AuthRequired,
    /// The name does not resolve, or the resolver failed.
    DnsError,
    /// The resolver did not answer in time.
    DnsTimeout,
    /// The destination answered the SYN with a RST (ECONNREFUSED).
    ConnectionRefused,
    /// No answer to the connect within `timeouts.connect`.
    ConnectionTimeout,
    /// ENETUNREACH / EHOSTUNREACH: no route to the destination.
    Unreachable,
    /// The resolved address is in a range ward refuses (loopback, private, ...).
    DestinationProhibited,
    /// The request (HTTP head or SOCKS5 message) could not be parsed.
    MalformedRequest,
    /// The HTTP request head exceeded the head size cap.
    HeadTooLarge,
    /// SOCKS5 command other than CONNECT.
    UnsupportedCommand,
    /// SOCKS5 address type we do not know.
    UnsupportedAddressType,
    /// The chained upstream proxy refused or failed.
    UpstreamProxy,
    /// `max_connections` reached.
    ConnectionLimit,
    /// Inspecting: the origin's certificate failed verification.
    TlsCertificate,
    /// The origin's TLS handshake failed for a reason other than its certificate.
    TlsHandshake,
    /// The policy denied the name in the ClientHello, after the tunnel opened.
    SniDenied,
    /// The tunnel's first client bytes are not TLS and `non_tls: deny`.
    NonTlsDenied,
    /// The CONNECT host and the SNI name different sites and `sni_mismatch: deny`.
    SniMismatch,
    /// The tunnel's first bytes start a TLS handshake that ward cannot read (malformed, over
    /// the size cap, split over too many records): no policy could be applied to it.
    ClientHelloUnreadable,
    /// No complete ClientHello (nor server bytes) within `timeouts.client_hello`.
    ClientHelloTimeout,
    /// The client did not finish its request head or handshake in time.
    ClientTimeout,
    /// Inspecting: the origin sent no response head while nothing moved for the idle timeout.
    ResponseTimeout,
    /// An I/O error on an established connection.
    Io,
    /// A local resource ran out or a local invariant failed.
    Internal,
}

/// Every kind, in table order: for exhaustive tests and documentation.
pub const ALL_KINDS: [ErrorKind; 25] = [
    ErrorKind::PolicyDenied,
    ErrorKind::AuthRequired,
    ErrorKind::DnsError,
    ErrorKind::DnsTimeout,
    ErrorKind::ConnectionRefused,
    ErrorKind::ConnectionTimeout,
    ErrorKind::Unreachable,
    ErrorKind::DestinationProhibited,
    ErrorKind::MalformedRequest,
    ErrorKind::HeadTooLarge,
    ErrorKind::UnsupportedCommand,
    ErrorKind::UnsupportedAddressType,
    ErrorKind::UpstreamProxy,
    ErrorKind::ConnectionLimit,
    ErrorKind::TlsCertificate,
    ErrorKind::TlsHandshake,
    ErrorKind::SniDenied,
    ErrorKind::NonTlsDenied,
    ErrorKind::SniMismatch,
    ErrorKind::ClientHelloUnreadable,
    ErrorKind::ClientHelloTimeout,
    ErrorKind::ClientTimeout,
    ErrorKind::ResponseTimeout,
    ErrorKind::Io,
    ErrorKind::Internal,
];

/// SOCKS5 reply codes (RFC 1928 section 6).
pub mod socks5_reply {
    /// The tunnel is open.
    pub const SUCCEEDED: u8 = 0x00;
    /// General SOCKS server failure.
    pub const GENERAL_FAILURE: u8 = 0x01;
    /// Connection not allowed by ruleset.
    pub const NOT_ALLOWED: u8 = 0x02;
    /// Network unreachable.
    pub const NETWORK_UNREACHABLE: u8 = 0x03;
    /// Host unreachable.
    pub const HOST_UNREACHABLE: u8 = 0x04;
    /// Connection refused.
    pub const CONNECTION_REFUSED: u8 = 0x05;
    /// TTL expired (what a connect timeout is reported as).
    pub const TTL_EXPIRED: u8 = 0x06;
    /// Command not supported.
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x07;
    /// Address type not supported.
    pub const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;
}

impl ErrorKind {
    /// The HTTP status a proxy client receives.
    pub fn http_status(self) -> u16 {
        use ErrorKind::*;
        match self {
            PolicyDenied | DestinationProhibited | SniDenied | NonTlsDenied | SniMismatch => 403,
            AuthRequired => 407,
            DnsError | ConnectionRefused | Unreachable | UpstreamProxy | TlsCertificate
            | TlsHandshake | Io => 502,
            DnsTimeout | ConnectionTimeout | ResponseTimeout => 504,
            MalformedRequest
            | UnsupportedCommand
            | UnsupportedAddressType
            | ClientHelloUnreadable => 400,
            HeadTooLarge => 431,
            ConnectionLimit => 503,
            ClientHelloTimeout | ClientTimeout => 408,
            Internal => 500,
        }
    }

    /// The RFC 9209 `error=` token; `None` where the reply carries no Proxy-Status error.
    pub fn proxy_status(self) -> Option<&'static str> {
        use ErrorKind::*;
        match self {
            PolicyDenied | SniDenied | NonTlsDenied | SniMismatch => Some("http_request_denied"),
            AuthRequired => None,
            DnsError => Some("dns_error"),
            DnsTimeout => Some("dns_timeout"),
            ConnectionRefused => Some("connection_refused"),
            ConnectionTimeout => Some("connection_timeout"),
            Unreachable => Some("destination_ip_unroutable"),
            DestinationProhibited => Some("destination_ip_prohibited"),
            MalformedRequest | HeadTooLarge | UnsupportedCommand | UnsupportedAddressType => {
                Some("http_request_error")
            }
            UpstreamProxy => Some("proxy_internal_error"),
            ConnectionLimit => Some("connection_limit_reached"),
            TlsCertificate => Some("tls_certificate_error"),
            TlsHandshake | ClientHelloUnreadable => Some("tls_protocol_error"),
            ClientHelloTimeout | ClientTimeout => Some("http_request_error"),
            ResponseTimeout => Some("http_response_timeout"),
            Io => Some("proxy_internal_error"),
            Internal => Some("proxy_internal_error"),
        }
    }

    /// The SOCKS5 reply code (`REP`) a SOCKS5 client receives. Authentication failures are
    /// answered in the method/sub-negotiation, not with a reply, hence `None`.
    pub fn socks5_reply(self) -> Option<u8> {
        use ErrorKind::*;
        use socks5_reply as r;
        match self {
            PolicyDenied | DestinationProhibited | SniDenied | NonTlsDenied | SniMismatch => {
                Some(r::NOT_ALLOWED)
            }
            AuthRequired => None,
            DnsError | DnsTimeout => Some(r::HOST_UNREACHABLE),
            ConnectionRefused => Some(r::CONNECTION_REFUSED),
            ConnectionTimeout | ResponseTimeout => Some(r::TTL_EXPIRED),
            Unreachable => Some(r::NETWORK_UNREACHABLE),
            MalformedRequest | HeadTooLarge => Some(r::GENERAL_FAILURE),
            UnsupportedCommand => Some(r::COMMAND_NOT_SUPPORTED),
            UnsupportedAddressType => Some(r::ADDRESS_TYPE_NOT_SUPPORTED),
            UpstreamProxy | ConnectionLimit | TlsCertificate | TlsHandshake => {
                Some(r::GENERAL_FAILURE)
            }
            ClientHelloUnreadable | ClientHelloTimeout | ClientTimeout | Io | Internal => {
                Some(r::GENERAL_FAILURE)
            }
        }
    }

    /// The stable snake_case name used in logs and metrics.
    pub fn log_name(self) -> &'static str {
        use ErrorKind::*;
        match self {
            PolicyDenied => "policy_denied",
            AuthRequired => "auth_required",
            DnsError => "dns_error",
            DnsTimeout => "dns_timeout",
            ConnectionRefused => "connection_refused",
            ConnectionTimeout => "connection_timeout",
            Unreachable => "destination_unreachable",
            DestinationProhibited => "destination_prohibited",
            MalformedRequest => "malformed_request",
            HeadTooLarge => "head_too_large",
            UnsupportedCommand => "unsupported_command",
            UnsupportedAddressType => "unsupported_address_type",
            UpstreamProxy => "upstream_proxy_error",
            ConnectionLimit => "connection_limit",
            TlsCertificate => "tls_certificate_error",
            TlsHandshake => "tls_handshake_error",
            SniDenied => "sni_denied",
            NonTlsDenied => "non_tls_denied",
            SniMismatch => "sni_mismatch",
            ClientHelloUnreadable => "client_hello_unreadable",
            ClientHelloTimeout => "client_hello_timeout",
            ClientTimeout => "client_timeout",
            ResponseTimeout => "http_response_timeout",
            Io => "io_error",
            Internal => "internal_error",
        }
    }

    /// A short human sentence for reply bodies.
    pub fn summary(self) -> &'static str {
        use ErrorKind::*;
        match self {
            PolicyDenied => "The proxy policy denies this destination.",
            AuthRequired => "The proxy requires authentication.",
            DnsError => "The destination name could not be resolved.",
            DnsTimeout => "The DNS lookup for the destination timed out.",
            ConnectionRefused => "The destination refused the connection.",
            ConnectionTimeout => "Connecting to the destination timed out.",
            Unreachable => "The destination is unreachable from the proxy.",
            DestinationProhibited => "The destination address is not allowed through this proxy.",
            MalformedRequest => "The proxy could not parse the request.",
            HeadTooLarge => "The request head is too large.",
            UnsupportedCommand => "The proxy supports only CONNECT.",
            UnsupportedAddressType => "The address type is not supported.",
            UpstreamProxy => "The upstream proxy failed.",
            ConnectionLimit => "The proxy is at its connection limit; retry later.",
            TlsCertificate => "The destination's TLS certificate failed verification.",
            TlsHandshake => "The TLS handshake with the destination failed.",
            SniDenied => "The proxy policy denies the TLS server name.",
            NonTlsDenied => "The proxy accepts only TLS in tunnels.",
            SniMismatch => "The TLS server name does not match the requested host.",
            ClientHelloUnreadable => "The proxy could not read the TLS ClientHello.",
            ClientHelloTimeout => "No TLS ClientHello arrived in time.",
            ClientTimeout => "The request did not arrive in time.",
            ResponseTimeout => "The destination did not answer in time.",
            Io => "A network error occurred.",
            Internal => "The proxy had an internal error.",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.log_name())
    }
}

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure on a connection's path: what kind, whose fault, and what a user needs to act on it.
#[derive(Debug, thiserror::Error)]
#[error("{kind} ({side}): {detail}", side = side.as_str())]
pub struct ProxyError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Whose fault it is.
    pub side: Side,
    /// Names the host, port and OS error, e.g. "connect 203.0.113.5:443: connection refused".
    pub detail: String,
    /// The underlying error, when there is one.
    #[source]
    pub source: Option<Source>,
}

impl ProxyError {
    /// An error of `kind`, blamed on `side`.
    pub fn new(kind: ErrorKind, side: Side, detail: impl Into<String>) -> Self {
        ProxyError {
            kind,
            side,
            detail: detail.into(),
            source: None,
        }
    }

    /// The same error, keeping `source` as its cause.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// An error the client caused.
    pub fn client(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self::new(kind, Side::Client, detail)
    }

    /// An error of the destination, the DNS or the upstream proxy.
    pub fn upstream(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self::new(kind, Side::Upstream, detail)
    }

    /// An error of ward itself.
    pub fn local(kind: ErrorKind, detail: impl Into<String>) -> Self {
        Self::new(kind, Side::Local, detail)
    }

    /// Classifies an OS error from connecting to `what` (e.g. "203.0.113.5:443").
    pub fn from_connect_io(what: &str, err: std::io::Error) -> Self {
        let kind = connect_error_kind(&err);
        let detail = format!("connect {what}: {}", describe_io(&err));
        ProxyError::upstream(kind, detail).with_source(err)
    }
}

/// Maps an OS connect error to its kind. Pure over the errno so that it is testable.
pub fn connect_error_kind(err: &std::io::Error) -> ErrorKind {
    use std::io::ErrorKind as Io;
    match err.raw_os_error() {
        Some(libc::ECONNREFUSED) => return ErrorKind::ConnectionRefused,
        Some(libc::ETIMEDOUT) => return ErrorKind::ConnectionTimeout,
        Some(libc::ENETUNREACH | libc::EHOSTUNREACH | libc::ENETDOWN | libc::EHOSTDOWN) => {
            return ErrorKind::Unreachable;
        }
        _ => {}
    }
    match err.kind() {
        Io::ConnectionRefused => ErrorKind::ConnectionRefused,
        Io::TimedOut => ErrorKind::ConnectionTimeout,
        Io::NetworkUnreachable | Io::HostUnreachable => ErrorKind::Unreachable,
        _ => ErrorKind::Io,
    }
}

/// "connection refused (os error 111)" reads worse than the bare strerror text users know.
pub fn describe_io(err: &std::io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_lowercase(),
        None => text,
    }
}

/// Renders an RFC 9209 `Proxy-Status` value: `ward; error=TOKEN; details="..."`.
/// `details` is an sf-string: only printable ASCII, with `"` and `\` escaped.
pub fn proxy_status_value(kind: ErrorKind, detail: &str) -> Option<String> {
    let token = kind.proxy_status()?;
    let mut out = format!("ward; error={token}");
    if !detail.is_empty() {
        out.push_str("; details=\"");
        for c in detail.chars() {
            match c {
                '"' | '\\' => {
                    out.push('\\');
                    out.push(c);
                }
                ' '..='~' => out.push(c),
                _ => out.push('?'),
            }
        }
        out.push('"');
    }
    Some(out)
}

#[cfg(test)]
mod tests;
