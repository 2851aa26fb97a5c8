//! The rule engine: compiled rules and `decide(&Facts) -> Verdict`, first match wins.
//! Pure: no I/O and no DNS; when a rule needs the resolved address it says so (`NeedsDst`).
//!
//! Rules are indexed by host pattern so a decision costs a few hash lookups plus a merge of
//! short sorted candidate lists, not a scan of every rule (see [`index`]).

mod explain;
mod forbidden;
mod index;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::target::{Host, normalize_name};

pub use explain::explain;
pub use forbidden::is_forbidden_dst;
use index::HostIndex;

/// What the policy says to do with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Allow,
    Deny,
    Inspect,
}

impl Action {
    /// The word policy.yaml uses for this action.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
            Action::Inspect => "inspect",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        match s {
            "allow" => Some(Action::Allow),
            "deny" => Some(Action::Deny),
            "inspect" => Some(Action::Inspect),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known about a connection when the policy is asked.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The requested host (CONNECT target, SOCKS5 address, Host header).
    pub host: Option<&'a Host>,
    pub port: u16,
    pub client: IpAddr,
    /// The authenticated user, when `users` is configured.
    pub user: Option<&'a str>,
    /// The resolved destination address, once DNS has answered.
    pub dst: Option<IpAddr>,
    /// The ClientHello's server name, once it has been read.
    pub sni: Option<&'a Host>,
}

impl Facts<'_> {
    /// The host rules match: the SNI once the ClientHello is read, else the requested host.
    pub fn effective_host(&self) -> Option<&Host> {
        self.sni.or(self.host)
    }
}

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
    pub lo: u16,
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

/// One compiled rule. An empty list means the rule does not constrain that fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    pub name: String,
    pub action: Action,
    /// Line of the rule in its policy file (1-based; 0 when built in code).
    pub line: u32,
    pub hosts: Vec<HostPattern>,
    pub ports: Vec<PortRange>,
    pub clients: Vec<IpNet>,
    pub users: Vec<String>,
    pub dst: Vec<IpNet>,
}

/// How one rule relates to the facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleMatch {
    No,
    Yes,
    /// Everything else matches, but the rule has `dst` and the address is not known yet.
    NeedsDst,
}

impl RuleInfo {
    pub fn new(name: impl Into<String>, action: Action) -> RuleInfo {
        RuleInfo {
            name: name.into(),
            action,
            line: 0,
            hosts: Vec::new(),
            ports: Vec::new(),
            clients: Vec::new(),
            users: Vec::new(),
            dst: Vec::new(),
        }
    }

    /// Whether the rule's `hosts` (if any) match the effective host.
    pub fn matches_host(&self, host: Option<&Host>) -> bool {
        self.hosts.is_empty() || host.is_some_and(|h| self.hosts.iter().any(|p| p.matches(h)))
    }

    /// Every field but `hosts` (which the index has already checked).
    fn matches_rest(&self, f: &Facts) -> RuleMatch {
        let client = f.client.to_canonical();
        let fits = (self.ports.is_empty() || self.ports.iter().any(|r| r.contains(f.port)))
            && (self.clients.is_empty() || self.clients.iter().any(|n| n.contains(&client)))
            && (self.users.is_empty() || f.user.is_some_and(|u| self.users.iter().any(|x| x == u)));
        if !fits {
            return RuleMatch::No;
        }
        match f.dst {
            _ if self.dst.is_empty() => RuleMatch::Yes,
            None => RuleMatch::NeedsDst,
            Some(ip) if self.dst_contains(ip) => RuleMatch::Yes,
            Some(_) => RuleMatch::No,
        }
    }

    /// The whole rule, without the index: what `decide` must agree with.
    pub fn check(&self, f: &Facts) -> RuleMatch {
        if self.matches_host(f.effective_host()) {
            self.matches_rest(f)
        } else {
            RuleMatch::No
        }
    }

    fn dst_contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.dst.iter().any(|n| n.contains(&ip))
    }
}

/// What the policy decided, and which rule decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Index into the rules; `None` means the default action.
    pub rule: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Decided(Decision),
    /// The first rule that could match has `dst` and the address is unknown: resolve, then
    /// decide again with `dst` set.
    NeedsDst,
}

/// The compiled rule set plus the default action.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<RuleInfo>,
    default: Action,
    index: HostIndex,
}

impl Policy {
    pub fn new(rules: Vec<RuleInfo>, default: Action) -> Policy {
        let index = HostIndex::build(&rules);
        Policy {
            rules,
            default,
            index,
        }
    }

    /// First match wins, over the rules whose hosts match, in file order.
    pub fn decide(&self, f: &Facts) -> Verdict {
        match self.first_match(f) {
            Some((_, RuleMatch::NeedsDst)) => Verdict::NeedsDst,
            Some((i, _)) => Verdict::Decided(Decision {
                action: self.rules[i].action,
                rule: Some(i),
            }),
            None => Verdict::Decided(Decision {
                action: self.default,
                rule: None,
            }),
        }
    }

    /// The rule that made `decide` answer `NeedsDst`, if it did (for explanations).
    pub fn rule_needing_dst(&self, f: &Facts) -> Option<usize> {
        match self.first_match(f) {
            Some((i, RuleMatch::NeedsDst)) => Some(i),
            _ => None,
        }
    }

    /// The first candidate, in rule order, that matches or could match once `dst` is known.
    fn first_match(&self, f: &Facts) -> Option<(usize, RuleMatch)> {
        let mut candidates = self.index.candidates(f.effective_host());
        while let Some(i) = candidates.next_index() {
            match self.rules[i].matches_rest(f) {
                RuleMatch::No => {}
                m => return Some((i, m)),
            }
        }
        None
    }

    pub fn rule(&self, i: usize) -> &RuleInfo {
        &self.rules[i]
    }

    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    pub fn rules_len(&self) -> usize {
        self.rules.len()
    }

    pub fn default_action(&self) -> Action {
        self.default
    }

    /// Whether a forbidden destination is allowed anyway: the deciding rule is an allow or
    /// inspect rule whose `dst` names the address explicitly.
    pub fn permits_dst(&self, d: &Decision, ip: IpAddr) -> bool {
        let Some(rule) = d.rule.and_then(|i| self.rules.get(i)) else {
            return false;
        };
        rule.action != Action::Deny && rule.dst_contains(ip)
    }
}
