//! The PROXY protocol header (HAProxy's doc/proxy-protocol.txt, versions 1 and 2) that a load
//! balancer puts in front of a connection to tell who the real client is. A pure, incremental
//! codec: bytes in, [`Parsed`] out. It must not decide whom to believe (the listener's
//! `trusted` list does that) and never reads past the header it parses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::Parsed;

#[cfg(test)]
mod tests;

/// The spec's bound on a version 1 line: "PROXY UNKNOWN" plus two IPv6 addresses, two ports,
/// spaces and CRLF.
pub const V1_MAX: usize = 107;
/// Version 2's fixed part: signature, version/command, family/transport, length.
pub const V2_FIXED: usize = 16;
/// The most version 2 address-and-TLV bytes accepted. The largest address block (two Unix
/// paths) is 216 bytes; HAProxy's own TLVs (ALPN, authority, unique id, TLS facts) add a few
/// hundred. A bigger length is a broken or hostile sender, refused before waiting for it.
pub const V2_BODY_MAX: usize = 2048;
/// The most header bytes any accepted header has: the read loop's cap.
pub const MAX_HEADER: usize = V2_FIXED + V2_BODY_MAX;

const V1_PREFIX: &[u8] = b"PROXY ";
/// The version 2 signature: chosen so that no HTTP, SOCKS5 or TLS client ever starts with it.
pub const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// v2 address block sizes, per family (spec section 2.2).
const V2_INET_LEN: usize = 12;
const V2_INET6_LEN: usize = 36;
const V2_UNIX_LEN: usize = 216;
/// A TLV's type byte and two length bytes.
const TLV_HEAD: usize = 3;

/// Which header versions a listener accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// Only the text form.
    V1,
    /// Only the binary form.
    V2,
    /// Either, told apart by the first byte.
    Any,
}

/// Which form a header came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The text form (`PROXY TCP4 …\r\n`).
    V1,
    /// The binary form.
    V2,
}

/// The connection as the load balancer saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addresses {
    /// The real client.
    pub source: SocketAddr,
    /// The address the client connected to (on the load balancer).
    pub destination: SocketAddr,
}

/// A parsed header. `addresses` is `None` when the sender vouches for no client: v1
/// `UNKNOWN`, v2 `LOCAL` (health checks), or a v2 family with no IP (unspecified, Unix): the
/// connection's own peer address then stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The form it came in.
    pub version: Version,
    /// The proxied addresses, when the header carries IP ones.
    pub addresses: Option<Addresses>,
}

/// Why bytes are not an acceptable PROXY header. Each says what the sender got wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyHeaderError {
    /// The first bytes are neither `PROXY ` nor the v2 signature.
    #[error("no PROXY protocol header (the connection starts with other bytes)")]
    Missing,
    /// A header of a version the listener does not accept.
    #[error("PROXY protocol {got:?} header, but the listener accepts only {accepted:?}")]
    WrongVersion {
        /// What arrived.
        got: Version,
        /// What the listener accepts.
        accepted: Versions,
    },
    /// No CRLF within the first 107 bytes.
    #[error("PROXY v1 line longer than {V1_MAX} bytes")]
    V1TooLong,
    /// A malformed v1 line.
    #[error("PROXY v1: {0}")]
    V1(&'static str),
    /// The v2 version nibble is not 2.
    #[error("PROXY v2: version {0} (expected 2)")]
    V2Version(u8),
    /// The v2 command nibble is neither LOCAL nor PROXY.
    #[error("PROXY v2: unknown command {0}")]
    V2Command(u8),
    /// The v2 family/transport byte names no defined pair, or a datagram one.
    #[error("PROXY v2: unsupported address family/transport byte {0:#04x}")]
    V2Family(u8),
    /// The v2 length is over [`V2_BODY_MAX`].
    #[error("PROXY v2: length {0} over the {V2_BODY_MAX}-byte limit")]
    V2TooLong(usize),
    /// The v2 length is too short for the address family it declares.
    #[error("PROXY v2: length {len} too short for its addresses ({need} bytes)")]
    V2TooShort {
        /// The declared length.
        len: usize,
        /// What the family needs.
        need: usize,
    },
    /// A TLV runs past the header's end.
    #[error("PROXY v2: a TLV runs past the end of the header")]
    V2Tlv,
}

/// Parses a PROXY header at the start of `buf`, of a version in `accepted`. `Incomplete`
/// only while `buf` is a proper prefix of some acceptable header; bytes after the header are
/// not looked at.
pub fn parse_proxy_header(
    buf: &[u8],
    accepted: Versions,
) -> Result<Parsed<ProxyHeader>, ProxyHeaderError> {
    let Some(&first) = buf.first() else {
        return Ok(Parsed::Incomplete);
    };
    let (version, prefix): (Version, &[u8]) = match first {
        b'P' => (Version::V1, V1_PREFIX),
        b'\r' => (Version::V2, V2_SIGNATURE),
        _ => return Err(ProxyHeaderError::Missing),
    };
    let seen = buf.len().min(prefix.len());
    if buf[..seen] != prefix[..seen] {
        return Err(ProxyHeaderError::Missing);
    }
    let allowed = matches!(
        (accepted, version),
        (Versions::Any, _) | (Versions::V1, Version::V1) | (Versions::V2, Version::V2)
    );
    if !allowed {
        return Err(ProxyHeaderError::WrongVersion {
            got: version,
            accepted,
        });
    }
    match version {
        Version::V1 => parse_v1(buf),
        Version::V2 => parse_v2(buf),
    }
}

/// `PROXY TCP4|TCP6 src dst sport dport\r\n` or `PROXY UNKNOWN[anything]\r\n`.
fn parse_v1(buf: &[u8]) -> Result<Parsed<ProxyHeader>, ProxyHeaderError> {
    let window = &buf[..buf.len().min(V1_MAX)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return match buf.len() >= V1_MAX {
            true => Err(ProxyHeaderError::V1TooLong),
            false => Ok(Parsed::Incomplete),
        };
    };
    let line = match lf.checked_sub(1).map(|cr| (cr, window[cr])) {
        Some((cr, b'\r')) => &window[..cr],
        _ => return Err(ProxyHeaderError::V1("line ends in LF without CR")),
    };
    let line = std::str::from_utf8(line).map_err(|_| ProxyHeaderError::V1("not ASCII"))?;
    if !line.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(ProxyHeaderError::V1("control bytes in the line"));
    }
    let rest = &line[V1_PREFIX.len()..];
    let addresses = match rest.split_once(' ').map_or((rest, ""), |p| p) {
        ("UNKNOWN", _) => None,
        ("TCP4", fields) => Some(v1_addresses(fields, true)?),
        ("TCP6", fields) => Some(v1_addresses(fields, false)?),
        _ => {
            return Err(ProxyHeaderError::V1(
                "protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    Ok(Parsed::Done {
        value: ProxyHeader {
            version: Version::V1,
            addresses,
        },
        consumed: lf + 1,
    })
}

/// `src dst sport dport`, single spaces, addresses of the family the protocol names.
fn v1_addresses(fields: &str, v4: bool) -> Result<Addresses, ProxyHeaderError> {
    let mut it = fields.split(' ');
    let mut next = || it.next().ok_or(ProxyHeaderError::V1("too few fields"));
    let (src, dst, sport, dport) = (next()?, next()?, next()?, next()?);
    if it.next().is_some() {
        return Err(ProxyHeaderError::V1("too many fields"));
    }
    let ip = |s: &str| -> Result<IpAddr, ProxyHeaderError> {
        let parsed = match v4 {
            true => s.parse::<Ipv4Addr>().map(IpAddr::V4),
            false => s.parse::<Ipv6Addr>().map(IpAddr::V6),
        };
        parsed.map_err(|_| ProxyHeaderError::V1("address not of the protocol's family"))
    };
    Ok(Addresses {
        source: SocketAddr::new(ip(src)?, v1_port(sport)?),
        destination: SocketAddr::new(ip(dst)?, v1_port(dport)?),
    })
}

/// Decimal 0..=65535 without sign or leading zero.
fn v1_port(s: &str) -> Result<u16, ProxyHeaderError> {
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let canonical = s == "0" || !s.starts_with('0');
    match (digits && canonical).then(|| s.parse::<u16>()) {
        Some(Ok(port)) => Ok(port),
        _ => Err(ProxyHeaderError::V1("bad port")),
    }
}

/// The binary form: fixed part, then the address block and TLVs its length covers.
fn parse_v2(buf: &[u8]) -> Result<Parsed<ProxyHeader>, ProxyHeaderError> {
    // The fixed part is checked as soon as it is all there, so a bad length is refused
    // without waiting for the bytes it announces.
    if buf.len() < V2_FIXED {
        return Ok(Parsed::Incomplete);
    }
    let (ver_cmd, fam, len) = (
        buf[12],
        buf[13],
        usize::from(u16::from_be_bytes([buf[14], buf[15]])),
    );
    if ver_cmd >> 4 != 2 {
        return Err(ProxyHeaderError::V2Version(ver_cmd >> 4));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        cmd => return Err(ProxyHeaderError::V2Command(cmd)),
    };
    if len > V2_BODY_MAX {
        return Err(ProxyHeaderError::V2TooLong(len));
    }
    let need = match fam {
        // An unspecified family: the sender knows no addresses (spec: "UNKNOWN").
        0x00..=0x02 => 0,
        0x11 => V2_INET_LEN,
        0x21 => V2_INET6_LEN,
        0x31 => V2_UNIX_LEN,
        // Datagram families carry UDP addresses, which cannot describe a TCP connection.
        _ if local => 0,
        _ => return Err(ProxyHeaderError::V2Family(fam)),
    };
    if len < need {
        return Err(ProxyHeaderError::V2TooShort { len, need });
    }
    let Some(body) = buf.get(V2_FIXED..V2_FIXED + len) else {
        return Ok(Parsed::Incomplete);
    };
    skip_tlvs(&body[need..])?;
    let addresses = match (local, fam) {
        (true, _) => None,
        (false, 0x11) => Some(v2_inet(body)),
        (false, 0x21) => Some(v2_inet6(body)),
        _ => None,
    };
    Ok(Parsed::Done {
        value: ProxyHeader {
            version: Version::V2,
            addresses,
        },
        consumed: V2_FIXED + len,
    })
}

fn v2_inet(b: &[u8]) -> Addresses {
    let ip = |at: usize| Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
    let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    Addresses {
        source: SocketAddr::new(ip(0).into(), port(8)),
        destination: SocketAddr::new(ip(4).into(), port(10)),
    }
}

fn v2_inet6(b: &[u8]) -> Addresses {
    let ip = |at: usize| {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&b[at..at + 16]);
        Ipv6Addr::from(octets)
    };
    let port = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    Addresses {
        source: SocketAddr::new(ip(0).into(), port(32)),
        destination: SocketAddr::new(ip(16).into(), port(34)),
    }
}

/// TLVs are not used, but each must fit: a header whose TLVs overrun is not well formed.
fn skip_tlvs(mut tlvs: &[u8]) -> Result<(), ProxyHeaderError> {
    while !tlvs.is_empty() {
        let [_, hi, lo, ..] = *tlvs else {
            return Err(ProxyHeaderError::V2Tlv);
        };
        let end = TLV_HEAD + usize::from(u16::from_be_bytes([hi, lo]));
        tlvs = tlvs.get(end..).ok_or(ProxyHeaderError::V2Tlv)?;
    }
    Ok(())
}
