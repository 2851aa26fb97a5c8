//! SOCKS5 on the wire, for both sides of ward's SOCKS5 (RFC 1928, RFC 1929): the protocol's
//! codes, its error, and the byte reader and writers its messages are built from. Pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::Parsed;
use crate::error::{ErrorKind, ProxyError};
use crate::target::{Host, Target, TargetError};

/// The protocol version byte that opens every SOCKS5 message.
pub const VERSION: u8 = 0x05;

/// RFC 1929 section 2: the version of the user/password sub-negotiation.
pub const AUTH_VERSION: u8 = 0x01;

/// Method codes (RFC 1928 section 3).
pub mod method {
    /// No authentication.
    pub const NO_AUTH: u8 = 0x00;
    /// User/password (RFC 1929).
    pub const USER_PASSWORD: u8 = 0x02;
    /// None of the offered methods: the server closes.
    pub const NONE_ACCEPTABLE: u8 = 0xFF;
}

/// Command codes (RFC 1928 section 4).
pub mod command {
    /// Open a TCP connection to the destination: the only command ward serves.
    pub const CONNECT: u8 = 0x01;
    /// Accept one inbound connection (refused).
    pub const BIND: u8 = 0x02;
    /// Relay UDP (refused).
    pub const UDP_ASSOCIATE: u8 = 0x03;
}

/// Address types (RFC 1928 section 5).
pub(super) mod atyp {
    /// Four octets.
    pub const IPV4: u8 = 0x01;
    /// A length byte, then the name.
    pub const DOMAIN: u8 = 0x03;
    /// Sixteen octets.
    pub const IPV6: u8 = 0x04;
}

/// RFC 1929 section 2: status 0x00 is success, anything else is failure.
pub(super) const AUTH_SUCCESS: u8 = 0x00;
pub(super) const AUTH_FAILURE: u8 = 0x01;

/// Unwraps a field, or reports that more bytes are needed (the parser returns Incomplete).
macro_rules! need {
    ($field:expr) => {
        match $field {
            Some(value) => value,
            None => return Ok(None),
        }
    };
}
pub(super) use need;

/// Why a SOCKS5 message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Socks5Error {
    /// A message opened with the wrong version byte (not SOCKS5, or not RFC 1929).
    #[error("{what}: version {got:#04x}, expected {expected:#04x}")]
    BadVersion {
        /// Which message.
        what: &'static str,
        /// The version it must carry.
        expected: u8,
        /// The version it carried.
        got: u8,
    },
    /// A message that breaks its own framing; the text says how.
    #[error("{0}")]
    Malformed(&'static str),
    /// A user name, password or domain name that is not UTF-8.
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    /// A field too long for its one-byte length (only when encoding).
    #[error("{0} is longer than 255 bytes")]
    TooLong(&'static str),
    /// A domain name that is not a valid host name.
    #[error("domain name: {0}")]
    BadName(TargetError),
    /// An ATYP other than IPv4, domain name and IPv6.
    #[error("address type {0:#04x} is not supported")]
    UnsupportedAddressType(u8),
    /// A command other than CONNECT.
    #[error("command {0:#04x} is not supported: only CONNECT")]
    UnsupportedCommand(u8),
}

impl Socks5Error {
    /// The kind when a client sent the bytes; failures of an upstream SOCKS5 proxy are the
    /// caller's to report as [`ErrorKind::UpstreamProxy`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Socks5Error::BadVersion { .. }
            | Socks5Error::Malformed(_)
            | Socks5Error::NotUtf8(_)
            | Socks5Error::TooLong(_)
            | Socks5Error::BadName(_) => ErrorKind::MalformedRequest,
            Socks5Error::UnsupportedAddressType(_) => ErrorKind::UnsupportedAddressType,
            Socks5Error::UnsupportedCommand(_) => ErrorKind::UnsupportedCommand,
        }
    }
}

impl From<Socks5Error> for ProxyError {
    fn from(err: Socks5Error) -> Self {
        ProxyError::client(err.kind(), format!("socks5: {err}"))
    }
}

/// Runs a parser body where `Ok(None)` means Incomplete, and counts what it consumed.
pub(super) fn parse_with<T>(
    buf: &[u8],
    body: impl FnOnce(&mut Reader<'_>) -> Result<Option<T>, Socks5Error>,
) -> Result<Parsed<T>, Socks5Error> {
    let mut reader = Reader { buf, pos: 0 };
    Ok(match body(&mut reader)? {
        Some(value) => Parsed::Done {
            value,
            consumed: reader.pos,
        },
        None => Parsed::Incomplete,
    })
}

/// A cursor whose reads return `None` past the end of the bytes seen so far.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(bytes)
    }

    pub(super) fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(super) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|b| b.try_into().ok())
    }

    pub(super) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    /// Checks the version byte as soon as it arrives, so garbage fails at once.
    pub(super) fn version(
        &mut self,
        what: &'static str,
        expected: u8,
    ) -> Result<Option<()>, Socks5Error> {
        match self.u8() {
            None => Ok(None),
            Some(got) if got == expected => Ok(Some(())),
            Some(got) => Err(Socks5Error::BadVersion {
                what,
                expected,
                got,
            }),
        }
    }

    /// A one-byte length, then that many bytes of UTF-8.
    pub(super) fn short_string(
        &mut self,
        what: &'static str,
    ) -> Result<Option<String>, Socks5Error> {
        let len = need!(self.u8());
        let bytes = need!(self.take(usize::from(len)));
        let text = std::str::from_utf8(bytes).map_err(|_| Socks5Error::NotUtf8(what))?;
        Ok(Some(text.to_owned()))
    }

    /// `ATYP ADDR PORT`.
    pub(super) fn address(&mut self) -> Result<Option<Target>, Socks5Error> {
        let host = match need!(self.u8()) {
            atyp::IPV4 => Host::Ip(Ipv4Addr::from(need!(self.array::<4>())).into()),
            atyp::IPV6 => Host::Ip(Ipv6Addr::from(need!(self.array::<16>())).into()),
            atyp::DOMAIN => {
                let name = need!(self.short_string("domain name")?);
                if name.is_empty() {
                    return Err(Socks5Error::Malformed("empty domain name"));
                }
                Host::parse(&name).map_err(Socks5Error::BadName)?
            }
            other => return Err(Socks5Error::UnsupportedAddressType(other)),
        };
        let port = need!(self.u16());
        Ok(Some(Target::new(host, port)))
    }
}

pub(super) fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            out.push(atyp::IPV4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(atyp::IPV6);
            out.extend_from_slice(&v6.octets());
        }
    }
}

pub(super) fn put_short(
    out: &mut Vec<u8>,
    field: &[u8],
    what: &'static str,
) -> Result<(), Socks5Error> {
    // The length prefix is one byte.
    let len = u8::try_from(field.len()).map_err(|_| Socks5Error::TooLong(what))?;
    out.push(len);
    out.extend_from_slice(field);
    Ok(())
}
