//! policy.yaml → a validated [`Config`], in two steps: raw serde structs (`raw`), then checks
//! that turn text into typed values and compiled rules (`validate`), collecting every issue
//! with its file:line:column. Pure apart from reading files: the policy in [`load`], and the
//! rule lists it names (`hosts_file`, `dst_file`, `clients_file`) in `validate`; no sockets.

pub mod admin_token;
mod flows;
mod lists;
mod pac;
mod raw;
mod upstream;
mod validate;
mod values;

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

pub use crate::front::proxy_protocol::Versions;
use crate::policy::Policy;
pub use crate::policy::Toggle;
use crate::request::Credentials;
use crate::target::{Host, Target};
use crate::users::Users;
pub use admin_token::AdminToken;

pub use flows::{BodyCapture, DEFAULT_KEEP, Flows, MAX_BODY_CAPTURE, MAX_KEEP, MediaRange};
pub use pac::{DEFAULT_SETUP_HOST, MAX_PAC_BYPASS, Pac, PacBypass};
pub use upstream::{DEFAULT_UPSTREAM, RESERVED_UPSTREAM_NAMES, Upstreams, parse_upstream};

/// The policy `ward run` uses when there is no ./policy.yaml.
pub const EMBEDDED_POLICY: &str = include_str!("../policy.yaml");
/// The `source` of the embedded policy; relative paths in it resolve against the current folder.
pub const EMBEDDED_SOURCE: &str = "<embedded>";
/// A policy file larger than this is refused before parsing (100k rules fit in a few MiB).
pub const MAX_POLICY_BYTES: usize = 32 * 1024 * 1024;
/// A rule list file larger than this is refused (a million names are about 25 MiB).
pub const MAX_LIST_BYTES: usize = 256 * 1024 * 1024;

/// The validated configuration. Passed by `Arc` and swapped whole on reload.
#[derive(Debug, Clone)]
pub struct Config {
    /// The policy file (or `<embedded>`).
    pub source: PathBuf,
    /// The proxy's listeners, each with its address and options.
    pub listen: Vec<Listener>,
    /// The admin endpoint (`admin`), off when absent.
    pub admin: Option<SocketAddr>,
    /// The bearer token the admin asks for (`admin_token`, `admin_token_file`); required when
    /// `admin` is not on loopback. Its Debug is `<redacted>`.
    pub admin_token: Option<AdminToken>,
    /// `/metrics` answers without the token (`admin_public_metrics`).
    pub admin_public_metrics: bool,
    /// Where the interception CA lives, resolved against the policy file's folder.
    pub ca_dir: PathBuf,
    /// Extra PEM roots trusted for upstream servers.
    pub upstream_ca: Option<PathBuf>,
    /// When non-empty, every client must authenticate as one of these (`users`, and
    /// `users_file`).
    pub users: Users,
    /// The upstream proxies (`upstreams`, `upstream`) and which one each decision takes.
    pub upstreams: Upstreams,
    /// `hosts:` name overrides, consulted before DNS.
    pub hosts: HostsOverrides,
    /// Every bounded wait (`timeouts`).
    pub timeouts: Timeouts,
    /// How long a drain waits for open connections (`shutdown_grace`).
    pub shutdown_grace: Duration,
    /// Open client connections at most (`max_connections`); more get 503.
    pub max_connections: usize,
    /// Open connections one client address may hold (`max_connections_per_client`); more get
    /// 503 while other clients are still served.
    pub max_connections_per_client: usize,
    /// Whether a non-loopback listener without `users` is allowed (`open_proxy`).
    pub open_proxy: bool,
    /// `flows:`: the JSON-lines file of inspected requests, the live ring, body capture.
    pub flows: Flows,
    /// Tunnel sites whose clients keep rejecting the forged certificate, when set.
    pub pinning_passthrough: Option<PinningPassthrough>,
    /// `upstream_tls.require_pq`: refuse an inspected origin that cannot do a post-quantum
    /// hybrid key exchange.
    pub require_pq: bool,
    /// The rules and checks, judged by [`Policy`].
    pub policy: Policy,
    /// The list files the policy reads (the rules' lists, `users_file`): watched with it.
    pub lists: Vec<ListFile>,
    /// What loads but deserves attention (a plaintext password, a weak hash): `ward check`
    /// prints them, `ward run` logs them.
    pub warnings: Vec<ConfigIssue>,
    /// What `/proxy.pac` advertises and bypasses (`pac`).
    pub pac: Pac,
    /// The reserved name ward answers its onboarding page on (`setup_host`, default
    /// `ward.setup`): never resolved, never dialled.
    pub setup_host: Host,
}

/// One list file (`hosts_file`, `dst_file`, `clients_file`, `ja4_file`, `users_file`) and
/// what it gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFile {
    /// The file, resolved against the policy file's folder.
    pub path: PathBuf,
    /// Where the policy names it, e.g. `rules[2].hosts_file`.
    pub key: String,
    /// How many entries it loaded.
    pub entries: usize,
}

/// One `listen` entry. A plain `IP:PORT` string is a listener with no option set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Serve the proxy over TLS (an HTTPS proxy), with this certificate.
    pub tls: Option<ListenerTls>,
    /// Expect a PROXY protocol header first, of these versions.
    pub proxy_protocol: Option<Versions>,
    /// The peers whose PROXY header is believed; required with `proxy_protocol`.
    pub trusted: Vec<IpNet>,
}

impl Listener {
    /// `IP:PORT`, then its options: `127.0.0.1:8443 (tls, proxy v2)`.
    pub fn describe(&self) -> String {
        let mut options = Vec::new();
        if self.tls.is_some() {
            options.push("tls".to_owned());
        }
        if let Some(v) = self.proxy_protocol {
            options.push(format!("proxy {}", format!("{v:?}").to_lowercase()));
        }
        match options.is_empty() {
            true => self.addr.to_string(),
            false => format!("{} ({})", self.addr, options.join(", ")),
        }
    }

    /// A listener with no option set.
    pub fn plain(addr: SocketAddr) -> Listener {
        Listener {
            addr,
            tls: None,
            proxy_protocol: None,
            trusted: Vec::new(),
        }
    }
}

/// An HTTPS listener's certificate chain and key (PEM files), with the place of its `tls`
/// key in the policy file, for errors found when the files are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Where `tls` is written: the policy file, line, column and key path.
    pub place: ConfigIssue,
}

impl ListenerTls {
    /// An issue about these files, placed at the `tls` key.
    pub fn issue(&self, message: String) -> ConfigIssue {
        ConfigIssue {
            message,
            ..self.place.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// How ward talks to its upstream proxy.
pub enum UpstreamScheme {
    /// `http://`: HTTP CONNECT.
    Http,
    /// `socks5://` and `socks5h://` alike: ward sends the name and lets the proxy resolve.
    Socks5,
}

/// The proxy ward chains through, when `upstream` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// Its protocol.
    pub scheme: UpstreamScheme,
    /// Its host and port.
    pub target: Target,
    /// The user and password from the URL, sent to it (never logged).
    pub credentials: Option<Credentials>,
}

/// `hosts:` DNS overrides: exact names, `*.x` and `.x` patterns, each to one address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostsOverrides {
    /// Exact names, and the `x` of `.x`.
    names: HashMap<String, IpAddr>,
    /// The `x` of `*.x` and `.x`: consulted for proper suffixes of a name.
    suffixes: HashMap<String, IpAddr>,
}

impl HostsOverrides {
    /// The override for `name` (normalised first); the most specific pattern wins.
    pub fn lookup(&self, name: &str) -> Option<IpAddr> {
        let Ok(Host::Name(name)) = Host::parse(name) else {
            return None;
        };
        if let Some(ip) = self.names.get(&name) {
            return Some(*ip);
        }
        let mut rest = name.as_str();
        while let Some((_, parent)) = rest.split_once('.') {
            if let Some(ip) = self.suffixes.get(parent) {
                return Some(*ip);
            }
            rest = parent;
        }
        None
    }

    /// How many overrides there are.
    pub fn len(&self) -> usize {
        self.names.len() + self.suffixes.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// Every bounded wait (`timeouts:`).
pub struct Timeouts {
    /// Connecting to an origin or the upstream proxy.
    pub connect: Duration,
    /// Waiting for the client's first TLS bytes after the tunnel is up.
    pub client_hello: Duration,
    /// A tunnel or kept-alive connection with no bytes either way.
    pub idle: Duration,
    /// The front-end request head / SOCKS5 handshake.
    pub handshake: Duration,
    /// One name lookup.
    pub dns: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            client_hello: Duration::from_secs(10),
            idle: Duration::from_secs(300),
            handshake: Duration::from_secs(10),
            dns: Duration::from_secs(5),
        }
    }
}

/// Tunnel (instead of inspect) a site whose clients keep rejecting the forged certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinningPassthrough {
    /// Handshake failures within `window` that switch a site to passthrough.
    pub failures: u32,
    /// The time within which `failures` must happen.
    pub window: Duration,
    /// How long a site stays in passthrough.
    pub ttl: Duration,
}

impl Default for PinningPassthrough {
    fn default() -> Self {
        PinningPassthrough {
            failures: 3,
            window: Duration::from_secs(5 * 60),
            ttl: Duration::from_secs(60 * 60),
        }
    }
}

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// The file the problem is in.
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no place (the file could not be read).
    pub line: u32,
    /// 1-based; 0 when unknown.
    pub column: u32,
    /// Where in the document, e.g. `rules[2].ports`; empty when unknown.
    pub key: String,
    /// What is wrong, in words.
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        // A list file's issues are per line, without a column.
        if self.line > 0 && self.column > 0 {
            write!(f, ":{}", self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a policy file, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Never empty.
    pub errors: Vec<ConfigIssue>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, issue) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{issue}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn unplaced(file: &Path, message: String) -> ConfigError {
        ConfigError {
            errors: vec![ConfigIssue {
                file: file.to_path_buf(),
                line: 0,
                column: 0,
                key: String::new(),
                message,
            }],
        }
    }
}

/// Reads and validates a policy file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let cap = u64::try_from(MAX_POLICY_BYTES).unwrap_or(u64::MAX);
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(cap + 1).read_to_string(&mut text))
        .map_err(|e| ConfigError::unplaced(path, format!("cannot read: {e}")))?;
    parse(&text, path)
}

/// Validates policy text; `source` names it in errors and anchors its relative paths.
pub fn parse(text: &str, source: &Path) -> Result<Config, ConfigError> {
    if text.len() > MAX_POLICY_BYTES {
        let msg = format!("larger than {} MiB", MAX_POLICY_BYTES / (1024 * 1024));
        return Err(ConfigError::unplaced(source, msg));
    }
    let raw = raw::parse_raw(text).map_err(|e| ConfigError {
        errors: vec![ConfigIssue {
            file: source.to_path_buf(),
            line: u32::try_from(e.line).unwrap_or(u32::MAX),
            column: u32::try_from(e.column).unwrap_or(u32::MAX),
            key: String::new(),
            message: e.message,
        }],
    })?;
    validate::validate(raw, source)
}

impl Config {
    /// The embedded default policy, validated.
    pub fn embedded() -> Result<Config, ConfigError> {
        parse(EMBEDDED_POLICY, Path::new(EMBEDDED_SOURCE))
    }

    /// One line for `ward check`.
    pub fn summary(&self) -> String {
        let listen: Vec<String> = self.listen.iter().map(Listener::describe).collect();
        let rules = self.policy.rules_len();
        let entries: usize = self.lists.iter().map(|l| l.entries).sum();
        let lists = match self.lists.len() {
            0 => String::new(),
            n => format!(
                ", {n} list file{} ({entries} entries)",
                if n == 1 { "" } else { "s" }
            ),
        };
        format!(
            "{}: ok, {} rule{}, default {}, listen {}, {} user{}{lists}",
            self.source.display(),
            rules,
            if rules == 1 { "" } else { "s" },
            self.policy.default_action(),
            listen.join(" "),
            self.users.len(),
            if self.users.len() == 1 { "" } else { "s" },
        )
    }

    /// One line per list file for `ward check`: the file, the rule key, the entries loaded.
    pub fn list_lines(&self) -> Vec<String> {
        self.lists
            .iter()
            .map(|l| format!("{}: {} entries ({})", l.path.display(), l.entries, l.key))
            .collect()
    }
}

/// Reads a rule list file, bounded by [`MAX_LIST_BYTES`].
fn read_list(path: &Path) -> Result<String, String> {
    let cap = u64::try_from(MAX_LIST_BYTES).unwrap_or(u64::MAX);
    let mut text = String::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(cap + 1).read_to_string(&mut text))
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.len() > MAX_LIST_BYTES {
        let mib = MAX_LIST_BYTES / (1024 * 1024);
        return Err(format!("{}: larger than {mib} MiB", path.display()));
    }
    Ok(text)
}

#[cfg(test)]
mod admin_tests;
#[cfg(test)]
mod listen_tests;
#[cfg(test)]
mod tests;
