//! The patterns a rule's `hosts` and `ports` are written in: parsed as policy.yaml spells them,
//! matched against a target, shown as written.

use std::fmt;
use std::net::IpAddr;

use crate::target::{Host, normalize_name};

/// One `hosts` entry of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `a.b`: only that name.
    Exact(String),
    /// `*.x`: any name ending in `.x`, at any depth, but not `x`.
    Subdomains(String),
    /// `.x`: `x` and any name ending in `.x`.
    Domain(String),
    /// An IP literal: a target given as that address.
    Ip(IpAddr),
}

impl HostPattern {
    /// Parses a pattern as written in policy.yaml; names are normalised like every name.
    pub fn parse(raw: &str) -> Result<HostPattern, String> {
        let bracketed = raw.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
        if let Ok(ip) = bracketed.unwrap_or(raw).parse::<IpAddr>() {
            return Ok(HostPattern::Ip(ip.to_canonical()));
        }
        if raw.contains('/') {
            return Err(format!(
                "{raw:?} is not a host pattern (CIDR ranges belong in `dst`)"
            ));
        }
        let name = |s: &str| normalize_name(s).map_err(|e| e.to_string());
        if let Some(rest) = raw.strip_prefix("*.") {
            Ok(HostPattern::Subdomains(name(rest)?))
        } else if raw.contains('*') {
            Err(format!(
                "{raw:?}: '*' is only allowed as a leading \"*.\"; omit `hosts` to match every host"
            ))
        } else if let Some(rest) = raw.strip_prefix('.') {
            Ok(HostPattern::Domain(name(rest)?))
        } else {
            Ok(HostPattern::Exact(name(raw)?))
        }
    }

    /// Whether `host` (already normalised) matches; the reference the index must agree with.
    pub fn matches(&self, host: &Host) -> bool {
        let under = |name: &str, x: &str| {
            name.len() > x.len()
                && name.ends_with(x)
                && name.as_bytes()[name.len() - x.len() - 1] == b'.'
        };
        match (self, host) {
            (HostPattern::Ip(p), Host::Ip(ip)) => *p == ip.to_canonical(),
            (HostPattern::Exact(x), Host::Name(n)) => n == x,
            (HostPattern::Subdomains(x), Host::Name(n)) => under(n, x),
            (HostPattern::Domain(x), Host::Name(n)) => n == x || under(n, x),
            _ => false,
        }
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(x) => f.write_str(x),
            HostPattern::Subdomains(x) => write!(f, "*.{x}"),
            HostPattern::Domain(x) => write!(f, ".{x}"),
            HostPattern::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// An inclusive port range; a single port is `lo == hi`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// The first port of the range.
    pub lo: u16,
    /// The last port of the range (inclusive).
    pub hi: u16,
}

impl PortRange {
    /// Parses `443` or `8000-8999`; port 0 is never a destination, so it is refused.
    pub fn parse(raw: &str) -> Result<PortRange, String> {
        let port = |s: &str| match s.trim().parse::<u16>() {
            Ok(p) if p != 0 && !s.trim().starts_with('+') => Ok(p),
            _ => Err(format!(
                "{raw:?} is not a port (1-65535) or a range \"LO-HI\""
            )),
        };
        let (lo, hi) = match raw.split_once('-') {
            Some((a, b)) => (port(a)?, port(b)?),
            None => (port(raw)?, port(raw)?),
        };
        if lo > hi {
            return Err(format!("{raw:?}: range start is above its end"));
        }
        Ok(PortRange { lo, hi })
    }

    /// Whether `port` is in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.lo..=self.hi).contains(&port)
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}
