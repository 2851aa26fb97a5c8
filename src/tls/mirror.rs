//! What ward's hello to an inspected origin offers, following the client's ClientHello: the TLS
//! versions, cipher suites and key-exchange groups, in the client's order, within what ward's
//! crypto provider can do. Pure: it picks code points from facts; building a rustls config from
//! them is `mitm::upstream`'s, and nothing here may fail a connection (a dimension with nothing
//! usable falls back to ward's defaults, and says so).

use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{NamedGroup, ProtocolVersion};

use super::facts::ClientHelloFacts;
use super::legs::is_pq_hybrid;

/// The versions rustls speaks, newest first: what ward offers when it mirrors nothing.
const TLS13: u16 = 0x0304;
const TLS12: u16 = 0x0303;
const RUSTLS_VERSIONS: [u16; 2] = [TLS13, TLS12];

/// What ward's crypto provider can offer an origin, as code points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// Every cipher suite with the version it belongs to, in the provider's (default) order.
    pub suites: Vec<(u16, u16)>,
    /// Every key-exchange group ward could offer, and whether TLS 1.2 can use it (a KEM cannot).
    pub groups: Vec<(u16, bool)>,
    /// The groups offered when the client's list gives nothing usable: the provider's defaults.
    pub default_groups: Vec<u16>,
}

impl Capabilities {
    /// `provider`'s suites and default groups, with `groups` as the pool a client may pick
    /// from (the provider's defaults leave out groups a client may still offer, such as
    /// `secp256r1MLKEM768`).
    pub fn of(provider: &CryptoProvider, groups: &[&'static dyn SupportedKxGroup]) -> Capabilities {
        Capabilities {
            suites: provider
                .cipher_suites
                .iter()
                .map(|s| (u16::from(s.suite()), u16::from(s.version().version)))
                .collect(),
            groups: groups
                .iter()
                .map(|g| {
                    (
                        u16::from(g.name()),
                        g.usable_for_version(ProtocolVersion::TLSv1_2),
                    )
                })
                .collect(),
            default_groups: provider
                .kx_groups
                .iter()
                .map(|g| u16::from(g.name()))
                .collect(),
        }
    }
}

/// The choices ward's upstream hello makes. Two connections with equal mirrors (and equal ALPN
/// and SNI presence) share one rustls config.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mirror {
    /// The versions offered, newest first (rustls writes supported_versions in its own order).
    pub versions: Vec<u16>,
    /// Cipher suites in the client's order.
    pub suites: Vec<u16>,
    /// Key-exchange groups in the client's order; rustls sends a key share for the first (and,
    /// when that is a hybrid, one for its classical half too).
    pub groups: Vec<u16>,
    /// The dimensions where the client offered nothing ward can use, so ward's defaults went.
    pub defaulted: Defaulted,
    /// `upstream_tls.require_pq` made ward offer TLS 1.3 or a hybrid group the client did not:
    /// mirroring the client there would have refused every origin.
    pub for_require_pq: bool,
}

/// Which dimensions of a [`Mirror`] are ward's defaults rather than the client's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Defaulted {
    /// No TLS 1.2 or 1.3 among the client's versions.
    pub versions: bool,
    /// No cipher suite the provider has, for the versions chosen.
    pub suites: bool,
    /// No supported group the provider has (or, for TLS 1.2 alone, none that TLS 1.2 can use).
    pub groups: bool,
}

impl Defaulted {
    /// `versions,suites`, or `-` when the client was followed everywhere: for logs.
    pub fn names(&self) -> String {
        let names: Vec<&str> = [
            (self.versions, "versions"),
            (self.suites, "suites"),
            (self.groups, "groups"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        if names.is_empty() {
            "-".to_owned()
        } else {
            names.join(",")
        }
    }
}

/// Chooses what the upstream hello offers, following `hello` within `can`. With `require_pq`
/// the hello always offers TLS 1.3 and a hybrid group first, the client's or not.
pub fn choose(hello: &ClientHelloFacts, can: &Capabilities, require_pq: bool) -> Mirror {
    let mut defaulted = Defaulted::default();
    let mut for_require_pq = false;
    let mut versions: Vec<u16> = RUSTLS_VERSIONS
        .into_iter()
        .filter(|v| hello.versions.contains(v))
        .collect();
    if versions.is_empty() {
        defaulted.versions = true;
        versions = RUSTLS_VERSIONS.to_vec();
    }
    if require_pq && !versions.contains(&TLS13) {
        for_require_pq = true;
        versions.insert(0, TLS13);
    }
    let suite_fits = |s: u16| {
        can.suites
            .iter()
            .any(|&(c, v)| c == s && versions.contains(&v))
    };
    let mut suites = unique(
        hello
            .ja4_input
            .ciphers
            .iter()
            .copied()
            .filter(|&s| suite_fits(s)),
    );
    if suites.is_empty() {
        defaulted.suites = true;
        suites = can
            .suites
            .iter()
            .filter(|(_, v)| versions.contains(v))
            .map(|&(s, _)| s)
            .collect();
    } else if for_require_pq && !suites.iter().any(|&s| version_of(can, s) == Some(TLS13)) {
        // The client's suites are all TLS 1.2 ones: TLS 1.3 needs its own, ward's.
        suites.extend(
            can.suites
                .iter()
                .filter(|(_, v)| *v == TLS13)
                .map(|&(s, _)| s),
        );
    }
    // A version none of the chosen suites serves is not offered (rustls would drop it too).
    versions.retain(|&v| suites.iter().any(|&s| version_of(can, s) == Some(v)));

    let tls12_only = versions == [TLS12];
    let group_fits = |g: u16| {
        can.groups
            .iter()
            .any(|&(c, tls12)| c == g && (tls12 || !tls12_only))
    };
    let mut groups = unique(hello.groups.iter().copied().filter(|&g| group_fits(g)));
    if groups.is_empty() {
        defaulted.groups = true;
        groups = can.default_groups.clone();
    }
    if require_pq && !groups.iter().any(|&g| is_pq_hybrid(NamedGroup::from(g))) {
        for_require_pq = true;
        groups.insert(0, u16::from(NamedGroup::X25519MLKEM768));
    }
    Mirror {
        versions,
        suites,
        groups,
        defaulted,
        for_require_pq,
    }
}

fn version_of(can: &Capabilities, suite: u16) -> Option<u16> {
    can.suites
        .iter()
        .find(|&&(s, _)| s == suite)
        .map(|&(_, v)| v)
}

/// The values in their first-seen order, each once: a client may repeat one, a rustls
/// provider must not.
fn unique(values: impl Iterator<Item = u16>) -> Vec<u16> {
    let mut out: Vec<u16> = Vec::new();
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// The rustls version a mirrored code point names (only TLS 1.2 and 1.3 are ever chosen).
pub fn rustls_version(v: u16) -> Option<&'static rustls::SupportedProtocolVersion> {
    match ProtocolVersion::from(v) {
        ProtocolVersion::TLSv1_3 => Some(&rustls::version::TLS13),
        ProtocolVersion::TLSv1_2 => Some(&rustls::version::TLS12),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
