//! The rule vocabulary: actions, toggles, the facts a rule is matched against, host patterns,
//! port ranges and one compiled rule. Pure values and matching; which rule wins is the judge's.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::ipset::IpSet;
use super::lists::NameList;
use super::paths::PathPattern;

use crate::target::Host;
use crate::tls::Ja4;

mod patterns;

pub use patterns::{HostPattern, PortRange};

/// What the policy says to do with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Tunnel the bytes untouched.
    Allow,
    /// Refuse the connection.
    Deny,
    /// Terminate TLS with a forged leaf and relay the HTTP inside.
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

    /// The action a policy.yaml word names.
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
    /// The destination port.
    pub port: u16,
    /// The client's address (after any PROXY header).
    pub client: IpAddr,
    /// The authenticated user, when `users` is configured.
    pub user: Option<&'a str>,
    /// The resolved destination address, once DNS has answered.
    pub dst: Option<IpAddr>,
    /// The ClientHello's server name, once it has been read.
    pub sni: Option<&'a Host>,
    /// The ClientHello (JA4, ECH), as far as the connection has come.
    pub hello: HelloFact<'a>,
    /// The HTTP request, as far as the connection has come.
    pub request: RequestFact<'a>,
}

/// What a connection's HTTP request is at the stage it is judged: `methods` and `paths` rules
/// judge requests ward reads (plain HTTP, and each request inside interception).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFact<'a> {
    /// A tunnel before interception: its requests are still to come, and only interception
    /// would show them.
    Pending,
    /// A tunnel that carries no TLS: its bytes are never read as requests.
    Absent,
    /// A request ward reads: its method and its path in [`super::normalize_path`] form.
    Seen {
        /// The request method, as sent.
        method: &'a str,
        /// The request path, normalised, without the query.
        path: &'a str,
    },
}

/// What a connection's ClientHello is at the stage it is judged: its fingerprint and whether
/// it offers ECH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloFact<'a> {
    /// A tunnel before its ClientHello: a `ja4` or `ech` rule may still match, or not.
    Pending,
    /// There is no ClientHello (plain HTTP, a tunnel that carries no TLS): `ja4` and `ech`
    /// rules never match.
    Absent,
    /// The ClientHello.
    Seen {
        /// Its fingerprint; `None` when not known (`ward explain` without `--ja4`), which a
        /// `ja4` rule takes as still to come.
        ja4: Option<&'a Ja4>,
        /// It carries the outer encrypted_client_hello extension (real ECH or GREASE).
        ech: bool,
    },
}

impl<'a> HelloFact<'a> {
    /// A ClientHello with this fingerprint and no ECH.
    pub fn with_ja4(ja4: &'a Ja4) -> HelloFact<'a> {
        HelloFact::Seen {
            ja4: Some(ja4),
            ech: false,
        }
    }
}

impl<'a> Facts<'a> {
    /// The host rules match: the SNI once the ClientHello is read, else the requested host.
    pub fn effective_host(&self) -> Option<&'a Host> {
        self.hello_sni().or(self.host)
    }

    /// The ClientHello's SNI as the rules read it. Under ECH the cleartext SNI is the ECH
    /// config's public name (a front such as a CDN's), never the site: the host asked for is
    /// the destination, and the SNI neither decides nor mismatches. Asked by IP literal, the
    /// address is all that is known: an `ech: true` rule can refuse exactly that, and no
    /// `hosts` rule is met by a public name.
    pub fn hello_sni(&self) -> Option<&'a Host> {
        match self.hello {
            HelloFact::Seen { ech: true, .. } => None,
            _ => self.sni,
        }
    }
}

/// One compiled rule. An empty list means the rule does not constrain that fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// The rule's `name`, as logs and `ward explain` show it.
    pub name: String,
    /// What the rule does when it matches.
    pub action: Action,
    /// Line of the rule in its policy file (1-based; 0 when built in code).
    pub line: u32,
    /// The requested host or SNI matches one of these (or a pattern of `host_lists`).
    pub hosts: Vec<HostPattern>,
    /// The patterns of `hosts_file`, kept compact (a list can hold a million names).
    pub host_lists: Vec<Arc<NameList>>,
    /// The destination port is in one of these.
    pub ports: Vec<PortRange>,
    /// The client address is in one of these.
    pub clients: Vec<IpNet>,
    /// The authenticated user is one of these.
    pub users: Vec<String>,
    /// The resolved destination address is in one of these.
    pub dst: Vec<IpNet>,
    /// Where the connections it lets through are dialled (`upstream:`).
    pub upstream: Way,
    /// The ClientHello's JA4 is one of these (inline and from `ja4_file`); sorted and without
    /// repeats once the policy is compiled.
    pub ja4: Vec<Ja4>,
    /// The ClientHello offers ECH (`true`) or does not (`false`).
    pub ech: Option<bool>,
    /// The request method is one of these.
    pub methods: Vec<String>,
    /// The request path matches one of these.
    pub paths: Vec<PathPattern>,
}

/// Where a rule sends what it lets through: the names are those of policy.yaml's `upstreams`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Way {
    /// The top-level `upstream`, or direct when there is none.
    #[default]
    Default,
    /// Straight to the destination, whatever the top-level `upstream` says.
    Direct,
    /// Through these upstream proxies: the first one ward can reach, in order.
    Via(Vec<String>),
}

/// How one rule relates to the facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleMatch {
    /// Some fact rules the rule out.
    No,
    /// Every listed field matches.
    Yes,
    /// Everything else matches, but the rule has `dst` and the address is not known yet.
    NeedsDst,
}

impl RuleInfo {
    /// A rule that matches everything, to be narrowed field by field.
    pub fn new(name: impl Into<String>, action: Action) -> RuleInfo {
        RuleInfo {
            name: name.into(),
            action,
            line: 0,
            hosts: Vec::new(),
            host_lists: Vec::new(),
            ports: Vec::new(),
            clients: Vec::new(),
            users: Vec::new(),
            dst: Vec::new(),
            upstream: Way::Default,
            ja4: Vec::new(),
            ech: None,
            methods: Vec::new(),
            paths: Vec::new(),
        }
    }

    /// Whether the rule's `hosts` and `host_lists` (if any) match the effective host, by a
    /// scan: the reference the index must agree with.
    pub fn matches_host(&self, host: Option<&Host>) -> bool {
        if self.hosts.is_empty() && self.host_lists.is_empty() {
            return true;
        }
        host.is_some_and(|h| {
            self.hosts.iter().any(|p| p.matches(h)) || self.host_lists.iter().any(|l| l.matches(h))
        })
    }

    /// Every field but `hosts` (which the index has already checked). `nets` is the rule's
    /// compiled address sets; without them the lists are scanned (the reference).
    pub(super) fn matches_rest(&self, f: &Facts, nets: Option<&RuleNets>) -> RuleMatch {
        let client = f.client.to_canonical();
        let client_in = match nets {
            Some(n) => n.clients.contains(client),
            None => self.clients.iter().any(|n| n.contains(&client)),
        };
        let fits = (self.ports.is_empty() || self.ports.iter().any(|r| r.contains(f.port)))
            && (self.clients.is_empty() || client_in)
            && (self.users.is_empty() || f.user.is_some_and(|u| self.users.iter().any(|x| x == u)));
        if !fits || !self.may_match_hello(f.hello) || !self.may_match_request(f.request) {
            return RuleMatch::No;
        }
        let dst_in = |ip: IpAddr| match nets {
            Some(n) => n.dst.contains(ip),
            None => self.dst_contains(ip),
        };
        match f.dst {
            _ if self.dst.is_empty() => RuleMatch::Yes,
            None => RuleMatch::NeedsDst,
            Some(ip) if dst_in(ip) => RuleMatch::Yes,
            Some(_) => RuleMatch::No,
        }
    }

    /// The whole rule, without the index or the compiled sets: what `decide` must agree with.
    pub fn check(&self, f: &Facts) -> RuleMatch {
        if self.matches_host(f.effective_host()) {
            self.matches_rest(f, None)
        } else {
            RuleMatch::No
        }
    }

    /// Whether the rule's `ja4` and `ech` (if any) match. Before the ClientHello, an allow or
    /// inspect rule on them lets the connection go on (the ClientHello is judged again, and
    /// then it may not match), while a deny rule cannot refuse yet: either way, no connection
    /// is decided on a hello not yet seen.
    fn may_match_hello(&self, hello: HelloFact) -> bool {
        if !self.names_hello() {
            return true;
        }
        match hello {
            HelloFact::Pending => self.action != Action::Deny,
            HelloFact::Absent => false,
            HelloFact::Seen { ja4, ech } => {
                let ja4_fits = match ja4 {
                    _ if self.ja4.is_empty() => true,
                    Some(fp) => self.ja4.binary_search(fp).is_ok(),
                    None => self.action != Action::Deny,
                };
                ja4_fits && self.ech.is_none_or(|want| want == ech)
            }
        }
    }

    /// Whether the rule judges the ClientHello itself (`ja4`, `ech`).
    fn names_hello(&self) -> bool {
        !self.ja4.is_empty() || self.ech.is_some()
    }

    /// Whether the rule's `methods` and `paths` (if any) match. Before interception only an
    /// inspect rule can: interception judges each request again, while a tunnel's requests
    /// are never seen, so an allow or deny rule on them would decide on facts nobody checks.
    fn may_match_request(&self, req: RequestFact) -> bool {
        if !self.names_requests() {
            return true;
        }
        match req {
            RequestFact::Pending => self.action == Action::Inspect,
            RequestFact::Absent => false,
            RequestFact::Seen { method, path } => {
                (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
                    && (self.paths.is_empty() || self.paths.iter().any(|p| p.matches(path)))
            }
        }
    }

    /// Whether the rule judges requests (`methods`, `paths`).
    pub fn names_requests(&self) -> bool {
        !self.methods.is_empty() || !self.paths.is_empty()
    }

    /// Whether a judgement this rule made before the ClientHello was provisional: it names
    /// fingerprints or ECH, or requests that only interception would show, so a tunnel that
    /// turns out to carry no TLS must be judged again.
    pub fn needs_hello(&self) -> bool {
        self.names_hello() || self.names_requests()
    }

    pub(super) fn dst_contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.dst.iter().any(|n| n.contains(&ip))
    }
}

/// A rule's `clients` and `dst` as sorted ranges: a lookup is a binary search, however long
/// the list (100k entries from a `dst_file` included).
#[derive(Debug, Clone, Default)]
pub(super) struct RuleNets {
    pub(super) clients: IpSet,
    pub(super) dst: IpSet,
}

impl RuleNets {
    pub(super) fn of(rule: &RuleInfo) -> RuleNets {
        RuleNets {
            clients: IpSet::new(&rule.clients),
            dst: IpSet::new(&rule.dst),
        }
    }
}

/// A policy switch that is either on or off: `non_tls`, `sni_mismatch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toggle {
    /// Let the connection through.
    Allow,
    /// Refuse it.
    Deny,
}
