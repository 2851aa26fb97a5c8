//! Destinations as clients name them: a normalised host name or an IP literal, and a port.
//! Pure: parsing and normalisation only, no DNS.
//!
//! Every name ward compares (CONNECT target, SOCKS5 domain, Host header, SNI, rule patterns)
//! goes through [`normalize_name`] first, so `Evil.Test.` and `evil.test` are one name.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// RFC 1035: a full domain name is at most 253 octets in text form.
pub const MAX_NAME_LEN: usize = 253;

/// Why a host or `host:port` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// Nothing before the port.
    #[error("empty host")]
    EmptyHost,
    /// `host:port` without the port.
    #[error("missing port in {0:?}")]
    MissingPort(String),
    /// Not a number in 1..=65535.
    #[error("invalid port in {0:?}")]
    BadPort(String),
    /// Not a valid DNS name; the text says what is wrong with it.
    #[error("invalid host name {0:?}: {1}")]
    BadName(String, &'static str),
}

/// A host as ward compares it: a normalised name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// Lower-case ASCII, punycode A-labels, no trailing dot.
    Name(String),
    /// An IP literal.
    Ip(IpAddr),
}

impl Host {
    /// Parses a host as a client wrote it: an IP literal (IPv6 with or without brackets) or a
    /// name, which is normalised.
    pub fn parse(raw: &str) -> Result<Host, TargetError> {
        let inner = raw
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(raw);
        if let Ok(ip) = inner.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if inner.len() != raw.len() {
            return Err(TargetError::BadName(
                raw.into(),
                "brackets around a non-IPv6 host",
            ));
        }
        normalize_name(raw).map(Host::Name)
    }

    /// The name, when the host is not an IP literal.
    pub fn name(&self) -> Option<&str> {
        match self {
            Host::Name(n) => Some(n),
            Host::Ip(_) => None,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
        }
    }
}

/// A destination: host and port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// The host, normalised.
    pub host: Host,
    /// The TCP port.
    pub port: u16,
}

impl Target {
    /// A target from its parts.
    pub fn new(host: Host, port: u16) -> Self {
        Target { host, port }
    }

    /// Parses `host:port` / `[v6]:port` (CONNECT's authority-form). The port is required.
    pub fn parse_authority(s: &str) -> Result<Target, TargetError> {
        let (host, port) = split_host_port(s)?;
        let port = port.ok_or_else(|| TargetError::MissingPort(s.into()))?;
        Ok(Target::new(Host::parse(host)?, port))
    }

    /// Parses an authority whose port may be omitted (a Host header, an absolute URI).
    pub fn parse_with_default_port(s: &str, default_port: u16) -> Result<Target, TargetError> {
        let (host, port) = split_host_port(s)?;
        Ok(Target::new(
            Host::parse(host)?,
            port.unwrap_or(default_port),
        ))
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Splits an authority into host and optional port; the host keeps IPv6 brackets.
fn split_host_port(s: &str) -> Result<(&str, Option<u16>), TargetError> {
    if s.is_empty() {
        return Err(TargetError::EmptyHost);
    }
    let (host, port) = if s.starts_with('[') {
        let end = s
            .find(']')
            .ok_or_else(|| TargetError::BadName(s.into(), "unclosed '['"))?;
        let rest = &s[end + 1..];
        match rest.strip_prefix(':') {
            Some(p) => (&s[..=end], Some(p)),
            None if rest.is_empty() => (&s[..=end], None),
            None => return Err(TargetError::BadName(s.into(), "junk after ']'")),
        }
    } else if s.parse::<Ipv6Addr>().is_ok() {
        // A bare IPv6 literal: its colons are not a port separator.
        (s, None)
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(TargetError::EmptyHost);
    }
    let port = match port {
        None => None,
        Some(p) => {
            let n: u16 = p
                .parse()
                .ok()
                .filter(|&n| n != 0 && !p.starts_with('+'))
                .ok_or_else(|| TargetError::BadPort(s.into()))?;
            Some(n)
        }
    };
    Ok((host, port))
}

/// Normalises a DNS name: ASCII case folded, one trailing dot removed, IDNs as punycode
/// A-labels (UTS 46). Rejects names no resolver would accept, so they cannot reach policy.
pub fn normalize_name(raw: &str) -> Result<String, TargetError> {
    let bad = |why| TargetError::BadName(raw.chars().take(80).collect(), why);
    let trimmed = raw.strip_suffix('.').unwrap_or(raw);
    if trimmed.is_empty() {
        return Err(bad("empty name"));
    }
    let name = if trimmed.is_ascii() {
        trimmed.to_ascii_lowercase()
    } else {
        idna::domain_to_ascii(trimmed).map_err(|_| bad("not a valid internationalised name"))?
    };
    if name.len() > MAX_NAME_LEN {
        return Err(bad("longer than 253 characters"));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(bad("empty label"));
        }
        if label.len() > 63 {
            return Err(bad("label longer than 63 characters"));
        }
        // Underscores occur in real names (SRV-style, some CDNs); anything else is refused.
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(bad("invalid character"));
        }
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_normalise() {
        assert_eq!(normalize_name("Evil.Test.").unwrap(), "evil.test");
        assert_eq!(
            normalize_name("bücher.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert_eq!(
            normalize_name("XN--BCHER-KVA.example").unwrap(),
            "xn--bcher-kva.example"
        );
        assert!(normalize_name("a..b").is_err());
        assert!(normalize_name(".").is_err());
        assert!(normalize_name("evil.test..").is_err());
        assert!(normalize_name("a b.test").is_err());
        assert!(normalize_name(&"a".repeat(64)).is_err());
    }

    #[test]
    fn authorities_parse() {
        let t = Target::parse_authority("Example.COM.:443").unwrap();
        assert_eq!(t, Target::new(Host::Name("example.com".into()), 443));
        let t = Target::parse_authority("[2001:db8::1]:8443").unwrap();
        assert_eq!(t.to_string(), "[2001:db8::1]:8443");
        let t = Target::parse_authority("127.0.0.1:80").unwrap();
        assert_eq!(t.host, Host::Ip("127.0.0.1".parse().unwrap()));
        assert!(Target::parse_authority("example.com").is_err());
        assert!(Target::parse_authority("example.com:0").is_err());
        assert!(Target::parse_authority("example.com:+80").is_err());
        assert!(Target::parse_authority("example.com:65536").is_err());
        assert!(Target::parse_authority(":443").is_err());
        assert!(Target::parse_authority("[::1:443").is_err());
        assert!(Target::parse_authority("[example.com]:443").is_err());
        let t = Target::parse_with_default_port("2001:db8::2", 80).unwrap();
        assert_eq!(t.to_string(), "[2001:db8::2]:80");
        let t = Target::parse_with_default_port("origin.test", 80).unwrap();
        assert_eq!(t.port, 80);
    }

    proptest! {
        #[test]
        fn authority_parser_never_panics(s in "\\PC{0,80}") {
            let _ = Target::parse_authority(&s);
            let _ = Target::parse_with_default_port(&s, 80);
        }

        #[test]
        fn normalised_names_are_fixed_points(s in "[a-zA-Z0-9-]{1,20}(\\.[a-zA-Z0-9-]{1,20}){0,3}\\.?") {
            if let Ok(n) = normalize_name(&s) {
                prop_assert_eq!(normalize_name(&n).unwrap(), n.clone());
                prop_assert!(!n.ends_with('.'));
                prop_assert_eq!(n.to_ascii_lowercase(), n);
            }
        }
    }
}
