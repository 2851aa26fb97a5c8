//! Raw policy.yaml → [`Config`]: defaults, typed values, compiled rules, and every problem
//! collected with its place (nothing stops at the first). Pure.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::Location;

use super::pac::{DEFAULT_SETUP_HOST, parse_setup_host};
use super::raw::{Entries, RawConfig, RawDns, RawPinning, RawTimeouts, RawUpstreamTls, S};
use super::values::{
    parse_action, parse_bool, parse_duration, parse_grace, parse_ip, parse_positive,
    parse_socket_addr, parse_toggle,
};
use super::{
    Config, ConfigError, ConfigIssue, HostsOverrides, ListFile, PinningPassthrough, Timeouts,
};
use crate::policy::{Action, Checks, HostPattern, Policy, Toggle};

const DEFAULT_CA_DIR: &str = "certs";
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// A tenth of the default total: one address cannot starve the rest, while a NAT gateway for a
/// few dozen browsers (6 connections per host, a few hundred in all) still fits.
const DEFAULT_MAX_CONNECTIONS_PER_CLIENT: usize = 1_000;
const DEFAULT_DNS_PORT: u16 = 53;
/// RFC 1929 carries user names and passwords in one length byte each.
const MAX_CREDENTIAL_LEN: usize = 255;
/// Far above any real policy; keeps rule indices comfortably inside `u32`.
const MAX_RULES: usize = 1_000_000;

mod admin;
mod flows;
mod listen;
mod pac;
mod rules;
mod upstreams;
mod users;

/// Collects issues while validating one file.
pub(super) struct Checker<'a> {
    file: &'a Path,
    /// The folder relative paths in the file are resolved against.
    base: PathBuf,
    pub(super) issues: Vec<ConfigIssue>,
    /// What loads but deserves attention (a plaintext password): `ward check` prints them.
    pub(super) warnings: Vec<ConfigIssue>,
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

    pub(super) fn warn(&mut self, at: Location, key: &str, message: impl Into<String>) {
        self.warnings.push(ConfigIssue {
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
        warnings: Vec::new(),
        lists: Vec::new(),
    };
    c.unknown("", &raw.unknown, RawConfig::KEYS);
    let listen = c.listen(raw.listen.as_ref());
    let ca_dir = c.path(raw.ca_dir.as_ref(), "ca_dir");
    let users = c.users(raw.users, raw.users_file.as_ref());
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
    let admin = c.admin(admin::RawAdmin {
        addr: raw.admin.as_ref(),
        token: raw.admin_token.as_ref(),
        token_file: raw.admin_token_file.as_ref(),
        public_metrics: raw.admin_public_metrics.as_ref(),
    });
    let pac = raw.pac.map(|p| c.pac(p.value)).unwrap_or_default();
    if admin.addr.is_some() && pac.proxy.is_none() {
        c.refuse_wildcard_pac(&listen);
    }
    let setup_host = c.parsed(raw.setup_host.as_ref(), "setup_host", parse_setup_host);
    let config = Config {
        source: source.to_path_buf(),
        listen: listen.into_iter().map(|(_, l)| l).collect(),
        admin: admin.addr,
        admin_token: admin.token,
        admin_public_metrics: admin.public_metrics,
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
        max_connections_per_client: c
            .parsed(
                raw.max_connections_per_client.as_ref(),
                "max_connections_per_client",
                parse_positive,
            )
            .unwrap_or(DEFAULT_MAX_CONNECTIONS_PER_CLIENT),
        open_proxy,
        flows: c.flows(raw.flows),
        pinning_passthrough: raw.pinning_passthrough.map(|p| c.pinning(p.value)),
        require_pq: raw.upstream_tls.is_some_and(|u| c.upstream_tls(u.value)),
        policy: {
            let default = c.parsed(raw.default.as_ref(), "default", parse_action);
            let rules = raw.rules.map(|r| c.rules(r, &users, &upstreams));
            let rules = rules.unwrap_or_default();
            Policy::new(rules, default.unwrap_or(Action::Allow)).with_checks(checks)
        },
        lists: std::mem::take(&mut c.lists),
        warnings: std::mem::take(&mut c.warnings),
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

    fn upstream_tls(&mut self, raw: RawUpstreamTls) -> bool {
        const KEY: &str = "upstream_tls";
        self.unknown(KEY, &raw.unknown, RawUpstreamTls::KEYS);
        let key = join(KEY, "require_pq");
        self.parsed(raw.require_pq.as_ref(), &key, parse_bool)
            .unwrap_or(false)
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
}
