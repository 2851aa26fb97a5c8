//! Raw policy.yaml → [`Config`]: defaults, typed values, compiled rules, and every problem
//! collected with its place (nothing stops at the first). Pure.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::Location;

use super::pac::{
    DEFAULT_SETUP_HOST, MAX_PAC_BYPASS, Pac, parse_bypass, parse_pac_proxy, parse_setup_host,
};
use super::raw::{
    Entries, Names, RawConfig, RawDns, RawPac, RawPinning, RawRule, RawTimeouts, RawUser, S,
};
use super::values::{
    parse_action, parse_bool, parse_duration, parse_grace, parse_ip, parse_net, parse_positive,
    parse_socket_addr, parse_toggle,
};
use super::{
    Config, ConfigError, ConfigIssue, DEFAULT_UPSTREAM, HostsOverrides, ListFile, Listener,
    PinningPassthrough, RESERVED_UPSTREAM_NAMES, Timeouts, Upstreams, parse_upstream,
};
use crate::policy::{Action, Checks, HostPattern, Policy, PortRange, RuleInfo, Toggle, Way};
use crate::request::Credentials;
use crate::tls::Ja4;

const DEFAULT_CA_DIR: &str = "certs";
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
const DEFAULT_DNS_PORT: u16 = 53;
/// RFC 1929 carries user names and passwords in one length byte each.
const MAX_CREDENTIAL_LEN: usize = 255;
/// Far above any real policy; keeps rule indices comfortably inside `u32`.
const MAX_RULES: usize = 1_000_000;

mod listen;

/// Collects issues while validating one file.
pub(super) struct Checker<'a> {
    file: &'a Path,
    /// The folder relative paths in the file are resolved against.
    base: PathBuf,
    pub(super) issues: Vec<ConfigIssue>,
    /// The rule list files read so far.
    pub(super) lists: Vec<ListFile>,
}

/// `prefix.key`, or `key` at the top level.
pub(super) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

impl Checker<'_> {
    pub(super) fn issue(&mut self, at: Location, key: &str, message: impl Into<String>) {
        self.issues.push(ConfigIssue {
            file: self.file.to_path_buf(),
            line: u32::try_from(at.line()).unwrap_or(u32::MAX),
            column: u32::try_from(at.column()).unwrap_or(u32::MAX),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    fn unknown(&mut self, prefix: &str, unknown: &[S<String>], known: &[&str]) {
        for k in unknown {
            let msg = format!("unknown key (expected one of: {})", known.join(", "));
            self.issue(k.referenced, &join(prefix, &k.value), msg);
        }
    }

    /// Parses a scalar; a bad one is recorded and gives `None`, like an absent one.
    fn parsed<T>(
        &mut self,
        field: Option<&S<String>>,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let field = field?;
        match parse(field.value.trim()) {
            Ok(v) => Some(v),
            Err(msg) => {
                self.issue(field.referenced, key, msg);
                None
            }
        }
    }

    /// Each item of a list, parsed; `[]` is refused because it would read as "no constraint".
    fn list<T>(
        &mut self,
        field: Option<&S<Vec<S<String>>>>,
        key: &str,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        let Some(field) = field else {
            return Vec::new();
        };
        if field.value.is_empty() {
            self.issue(field.referenced, key, "empty list; omit the key instead");
        }
        let items = field.value.iter();
        items
            .filter_map(|item| self.parsed(Some(item), key, &parse))
            .collect()
    }

    fn duration(&mut self, field: Option<&S<String>>, key: &str, default: Duration) -> Duration {
        self.parsed(field, key, parse_duration).unwrap_or(default)
    }

    pub(super) fn path(&mut self, field: Option<&S<String>>, key: &str) -> Option<PathBuf> {
        let base = self.base.clone();
        self.parsed(field, key, |s| match s {
            "" => Err("empty path".into()),
            s => Ok(base.join(s)),
        })
    }
}

pub(super) fn validate(raw: RawConfig, source: &Path) -> Result<Config, ConfigError> {
    let base = source.parent().unwrap_or(Path::new("")).to_path_buf();
    let mut c = Checker {
        file: source,
        base,
        issues: Vec::new(),
        lists: Vec::new(),
    };
    c.unknown("", &raw.unknown, RawConfig::KEYS);
    let listen = c.listen(raw.listen.as_ref());
    let ca_dir = c.path(raw.ca_dir.as_ref(), "ca_dir");
    let users = raw.users.map(|u| c.users(u)).unwrap_or_default();
    let open_proxy = c.parsed(raw.open_proxy.as_ref(), "open_proxy", parse_bool);
    let open_proxy = open_proxy.unwrap_or(false);
    if users.is_empty() && !open_proxy {
        c.refuse_open_proxy(&listen);
    }
    if let Some(dns) = raw.dns {
        c.dns(dns.value);
    }
    let upstreams = c.upstreams(raw.upstreams, raw.upstream.as_ref());
    let checks = Checks {
        non_tls: c
            .parsed(raw.non_tls.as_ref(), "non_tls", parse_toggle)
            .unwrap_or(Toggle::Allow),
        sni_mismatch: c
            .parsed(raw.sni_mismatch.as_ref(), "sni_mismatch", parse_toggle)
            .unwrap_or(Toggle::Allow),
    };
    let admin = c.parsed(raw.admin.as_ref(), "admin", parse_socket_addr);
    let pac = raw.pac.map(|p| c.pac(p.value)).unwrap_or_default();
    if admin.is_some() && pac.proxy.is_none() {
        c.refuse_wildcard_pac(&listen);
    }
    let setup_host = c.parsed(raw.setup_host.as_ref(), "setup_host", parse_setup_host);
    let config = Config {
        source: source.to_path_buf(),
        listen: listen.into_iter().map(|(_, l)| l).collect(),
        admin,
        ca_dir: ca_dir.unwrap_or_else(|| c.base.join(DEFAULT_CA_DIR)),
        upstream_ca: c.path(raw.upstream_ca.as_ref(), "upstream_ca"),
        upstreams: upstreams.clone(),
        hosts: raw.hosts.map(|h| c.hosts(h.value)).unwrap_or_default(),
        timeouts: raw
            .timeouts
            .map(|t| c.timeouts(t.value))
            .unwrap_or_default(),
        shutdown_grace: c
            .parsed(raw.shutdown_grace.as_ref(), "shutdown_grace", parse_grace)
            .unwrap_or(DEFAULT_SHUTDOWN_GRACE),
        max_connections: c
            .parsed(
                raw.max_connections.as_ref(),
                "max_connections",
                parse_positive,
            )
            .unwrap_or(DEFAULT_MAX_CONNECTIONS),
        open_proxy,
        flows: c.path(raw.flows.as_ref(), "flows"),
        pinning_passthrough: raw.pinning_passthrough.map(|p| c.pinning(p.value)),
        policy: {
            let default = c.parsed(raw.default.as_ref(), "default", parse_action);
            let rules = raw.rules.map(|r| c.rules(r, &users, &upstreams));
            let rules = rules.unwrap_or_default();
            Policy::new(rules, default.unwrap_or(Action::Allow)).with_checks(checks)
        },
        lists: std::mem::take(&mut c.lists),
        users,
        pac,
        setup_host: setup_host.unwrap_or_else(|| {
            parse_setup_host(DEFAULT_SETUP_HOST).expect("the default setup host is a name")
        }),
    };
    if c.issues.is_empty() {
        return Ok(config);
    }
    // The policy file's issues first, by place; then each list file's, by line.
    c.issues.sort_by(|a, b| {
        (a.file != source, &a.file, a.line, a.column).cmp(&(
            b.file != source,
            &b.file,
            b.line,
            b.column,
        ))
    });
    Err(ConfigError { errors: c.issues })
}

impl Checker<'_> {
    fn users(&mut self, list: S<Vec<S<RawUser>>>) -> Vec<Credentials> {
        let mut seen: HashMap<String, u64> = HashMap::new();
        let mut out = Vec::new();
        for (i, raw) in list.value.into_iter().enumerate() {
            let prefix = format!("users[{i}]");
            self.unknown(&prefix, &raw.value.unknown, RawUser::KEYS);
            let name = self.credential(&raw, raw.value.name.as_ref(), &prefix, "name");
            let password = self.credential(&raw, raw.value.password.as_ref(), &prefix, "password");
            let (Some(name), Some(password)) = (name, password) else {
                continue;
            };
            if name.contains(':') {
                self.issue(
                    raw.referenced,
                    &join(&prefix, "name"),
                    "':' cannot appear in a name",
                );
            } else if let Some(line) = seen.insert(name.clone(), raw.referenced.line()) {
                let msg = format!("user {name:?} is already defined on line {line}");
                self.issue(raw.referenced, &join(&prefix, "name"), msg);
            } else {
                out.push(Credentials {
                    user: name,
                    password,
                });
            }
        }
        out
    }

    fn credential(
        &mut self,
        user: &S<RawUser>,
        field: Option<&S<String>>,
        prefix: &str,
        key: &str,
    ) -> Option<String> {
        let key = join(prefix, key);
        let Some(field) = field else {
            self.issue(user.referenced, &key, "missing");
            return None;
        };
        self.parsed(Some(field), &key, |s| match s.len() {
            0 => Err("empty".into()),
            n if n > MAX_CREDENTIAL_LEN => Err(format!("longer than {MAX_CREDENTIAL_LEN} bytes")),
            _ => Ok(field.value.clone()),
        })
    }

    fn hosts(&mut self, entries: Entries) -> HostsOverrides {
        let mut out = HostsOverrides::default();
        for (key, value) in entries.0 {
            let ip = self.parsed(Some(&value), &join("hosts", &key.value), parse_ip);
            let pattern = self.parsed(Some(&key), "hosts", |s| match HostPattern::parse(s)? {
                HostPattern::Ip(_) => Err(format!("{s:?}: an override maps a name, not an IP")),
                p => Ok(p),
            });
            let (Some(pattern), Some(ip)) = (pattern, ip.map(|ip| ip.to_canonical())) else {
                continue;
            };
            let clash = match pattern {
                HostPattern::Exact(x) => out.names.insert(x, ip).is_some(),
                HostPattern::Subdomains(x) => out.suffixes.insert(x, ip).is_some(),
                HostPattern::Domain(x) => {
                    out.names.insert(x.clone(), ip).is_some() | out.suffixes.insert(x, ip).is_some()
                }
                HostPattern::Ip(_) => false,
            };
            if clash {
                self.issue(
                    key.referenced,
                    "hosts",
                    "overlaps an earlier override of the same name",
                );
            }
        }
        out
    }

    /// `upstreams:` (name → URL) and the top-level `upstream:` (a URL, or names from
    /// `upstreams` tried in order).
    fn upstreams(&mut self, named: Option<S<Entries>>, top: Option<&S<Names>>) -> Upstreams {
        let mut out = Upstreams::default();
        for (name, url) in named.map(|n| n.value.0).unwrap_or_default() {
            let key = join("upstreams", &name.value);
            let Some(up) = self.parsed(Some(&url), &key, parse_upstream) else {
                continue;
            };
            let checked = self.parsed(Some(&name), "upstreams", |n| {
                if RESERVED_UPSTREAM_NAMES.contains(&n) {
                    return Err(format!("{n:?} is reserved; choose another name"));
                }
                if n.is_empty()
                    || !n
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    return Err(format!(
                        "{n:?}: a name is letters, digits, '-', '_' and '.'"
                    ));
                }
                Ok(n.to_owned())
            });
            if let Some(n) = checked
                && out.named.insert(n, up).is_some()
            {
                self.issue(name.referenced, "upstreams", "named twice");
            }
        }
        let Some(top) = top else {
            return out;
        };
        match &top.value {
            Names::One(url) if url.contains("://") => {
                let field = S::new(url.clone(), top.referenced, top.defined);
                if let Some(up) = self.parsed(Some(&field), "upstream", parse_upstream) {
                    out.named.insert(DEFAULT_UPSTREAM.to_owned(), up);
                    out.default = vec![DEFAULT_UPSTREAM.to_owned()];
                }
            }
            names => {
                let way = self.names_way(names, top, "upstream", &out);
                match way {
                    Way::Via(names) => out.default = names,
                    Way::Direct | Way::Default => {}
                }
            }
        }
        out
    }

    /// A rule's `upstream:`: `direct`, a name from `upstreams`, or a list of them.
    fn rule_way(&mut self, field: Option<&S<Names>>, key: &str, upstreams: &Upstreams) -> Way {
        match field {
            None => Way::Default,
            Some(field) => self.names_way(&field.value, field, key, upstreams),
        }
    }

    fn names_way(
        &mut self,
        names: &Names,
        field: &S<Names>,
        key: &str,
        upstreams: &Upstreams,
    ) -> Way {
        let items: Vec<S<String>> = match names {
            Names::One(n) if n == "direct" => return Way::Direct,
            Names::One(n) => vec![S::new(n.clone(), field.referenced, field.defined)],
            Names::Many(list) => list.clone(),
        };
        if items.is_empty() {
            self.issue(field.referenced, key, "empty list; omit the key instead");
        }
        let known = |n: &str| -> Result<String, String> {
            match (n, upstreams.named.contains_key(n)) {
                (_, true) => Ok(n.to_owned()),
                ("direct", false) => Err("`direct` stands alone, not in a list".to_owned()),
                (n, false) if n.contains("://") => Err(format!(
                    "{n:?}: a rule names an upstream; put its URL in `upstreams`"
                )),
                (n, false) => {
                    let names: Vec<&str> = upstreams.named.keys().map(String::as_str).collect();
                    Err(format!(
                        "{n:?} is not one of the `upstreams` ({})",
                        if names.is_empty() {
                            "none defined".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ))
                }
            }
        };
        let names: Vec<String> = items
            .iter()
            .filter_map(|i| self.parsed(Some(i), key, known))
            .collect();
        Way::Via(names)
    }

    /// `dns:` is checked, not kept: custom resolvers are refused until they exist.
    fn dns(&mut self, raw: RawDns) {
        self.unknown("dns", &raw.unknown, RawDns::KEYS);
        let Some(servers) = raw.servers.as_ref() else {
            return;
        };
        if let Some(first) = servers.value.first() {
            // Silently falling back to the system resolver would send lookups where the
            // operator said they must not go: refuse until custom resolvers exist.
            self.issue(
                first.referenced,
                "dns.servers",
                "custom DNS servers are not supported yet; leave the list empty to use the system resolver",
            );
        }
        let items = servers.value.iter();
        let parse = |s: &str| {
            let with_port = parse_ip(s).map(|ip| SocketAddr::new(ip, DEFAULT_DNS_PORT));
            with_port.or_else(|_| parse_socket_addr(s))
        };
        for item in items {
            self.parsed(Some(item), "dns.servers", parse);
        }
    }

    fn timeouts(&mut self, raw: RawTimeouts) -> Timeouts {
        self.unknown("timeouts", &raw.unknown, RawTimeouts::KEYS);
        let d = Timeouts::default();
        Timeouts {
            connect: self.duration(raw.connect.as_ref(), "timeouts.connect", d.connect),
            client_hello: self.duration(
                raw.client_hello.as_ref(),
                "timeouts.client_hello",
                d.client_hello,
            ),
            idle: self.duration(raw.idle.as_ref(), "timeouts.idle", d.idle),
            handshake: self.duration(raw.handshake.as_ref(), "timeouts.handshake", d.handshake),
            dns: self.duration(raw.dns.as_ref(), "timeouts.dns", d.dns),
        }
    }

    fn pinning(&mut self, raw: RawPinning) -> PinningPassthrough {
        const KEY: &str = "pinning_passthrough";
        self.unknown(KEY, &raw.unknown, RawPinning::KEYS);
        let d = PinningPassthrough::default();
        PinningPassthrough {
            failures: self
                .parsed(
                    raw.failures.as_ref(),
                    &join(KEY, "failures"),
                    parse_positive,
                )
                .unwrap_or(d.failures),
            window: self.duration(raw.window.as_ref(), &join(KEY, "window"), d.window),
            ttl: self.duration(raw.ttl.as_ref(), &join(KEY, "ttl"), d.ttl),
        }
    }

    fn rules(
        &mut self,
        list: S<Vec<S<RawRule>>>,
        users: &[Credentials],
        upstreams: &Upstreams,
    ) -> Vec<RuleInfo> {
        if list.value.len() > MAX_RULES {
            self.issue(
                list.referenced,
                "rules",
                format!("more than {MAX_RULES} rules"),
            );
            return Vec::new();
        }
        let mut names: HashMap<String, u64> = HashMap::new();
        let mut out = Vec::with_capacity(list.value.len());
        for (i, raw) in list.value.iter().enumerate() {
            let prefix = format!("rules[{i}]");
            if let Some(mut rule) = self.rule(raw, &prefix, users, &mut names) {
                let key = join(&prefix, "upstream");
                rule.upstream = self.rule_way(raw.value.upstream.as_ref(), &key, upstreams);
                out.push(rule);
            }
        }
        out
    }

    /// One rule; `names` holds the names seen so far, with their lines.
    fn rule(
        &mut self,
        raw: &S<RawRule>,
        prefix: &str,
        users: &[Credentials],
        names: &mut HashMap<String, u64>,
    ) -> Option<RuleInfo> {
        let r = &raw.value;
        self.unknown(prefix, &r.unknown, RawRule::KEYS);
        let name_key = join(prefix, "name");
        let name = self.parsed(r.name.as_ref(), &name_key, |s| match s {
            "" => Err("empty rule name".to_owned()),
            s => match names.insert(s.to_owned(), raw.referenced.line()) {
                Some(line) => Err(format!("rule name {s:?} is already used on line {line}")),
                None => Ok(s.to_owned()),
            },
        });
        if r.name.is_none() {
            self.issue(
                raw.referenced,
                &name_key,
                "missing: every rule needs a name",
            );
        }
        let action = self.parsed(r.action.as_ref(), &join(prefix, "action"), parse_action);
        if r.action.is_none() {
            let msg = "missing: allow, deny or inspect";
            self.issue(raw.referenced, &join(prefix, "action"), msg);
        }
        let user_known = |s: &str| match users.iter().any(|u| u.user == s) {
            true => Ok(s.to_owned()),
            false => Err(format!("{s:?} is not one of the configured `users`")),
        };
        let mut rule = RuleInfo {
            line: u32::try_from(raw.referenced.line()).unwrap_or(u32::MAX),
            hosts: self.list(r.hosts.as_ref(), &join(prefix, "hosts"), HostPattern::parse),
            ports: self.list(r.ports.as_ref(), &join(prefix, "ports"), PortRange::parse),
            clients: self.list(r.clients.as_ref(), &join(prefix, "clients"), parse_net),
            users: self.list(r.users.as_ref(), &join(prefix, "users"), user_known),
            dst: self.list(r.dst.as_ref(), &join(prefix, "dst"), parse_net),
            ja4: self.list(r.ja4.as_ref(), &join(prefix, "ja4"), Ja4::parse),
            ..RuleInfo::new(name?, action?)
        };
        self.rule_lists(r, prefix, &mut rule);
        Some(rule)
    }
}

/// `pac:` and the PAC's advertised address.
impl Checker<'_> {
    fn pac(&mut self, raw: RawPac) -> Pac {
        self.unknown("pac", &raw.unknown, RawPac::KEYS);
        let d = Pac::default();
        if let Some(list) = raw.bypass.as_ref()
            && list.value.len() > MAX_PAC_BYPASS
        {
            let msg = format!("more than {MAX_PAC_BYPASS} entries");
            self.issue(list.referenced, "pac.bypass", msg);
            return d;
        }
        Pac {
            proxy: self.parsed(raw.proxy.as_ref(), "pac.proxy", parse_pac_proxy),
            bypass: self.list(raw.bypass.as_ref(), "pac.bypass", parse_bypass),
            socks: self
                .parsed(raw.socks.as_ref(), "pac.socks", parse_bool)
                .unwrap_or(d.socks),
        }
    }

    /// The PAC advertises the first listener unless `pac.proxy` says otherwise, and a
    /// wildcard bind address (0.0.0.0, ::) is no address a browser can connect to.
    fn refuse_wildcard_pac(&mut self, listen: &[(Location, Listener)]) {
        let first = listen.first().map(|(at, l)| (at, l.addr));
        if let Some((at, addr)) = first.filter(|(_, a)| a.ip().is_unspecified()) {
            let msg = format!(
                "{addr} is a wildcard bind address, and the admin's /proxy.pac would advertise \
                 it to browsers; set `pac.proxy` to the address devices use (like \
                 ward.example:{})",
                addr.port()
            );
            self.issue(*at, "listen", msg);
        }
    }
}
