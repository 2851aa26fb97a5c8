//! Variants of a proxy's bench set-up, measured beside the stock one: ward with one runtime
//! worker, and each proxy with ten times the access rules of its bench config (the cost
//! model's "rules ×10"). Generates the extra config lines; starts nothing.

use crate::peers::PeerKind;

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Variant {
    /// The bench config as in benches/peers/.
    Stock,
    /// ward with `TOKIO_WORKER_THREADS=1`: its runtime otherwise runs one worker per core.
    OneWorker,
    /// The bench config with nine times its rules added in front of them (ten times in all),
    /// each one checked and rejected for every bench connection.
    RulesX10,
}

/// How many times the bench config's rules the "rules ×10" variant holds.
pub const RULES_SCALE: usize = 10;

/// tokio reads this for `new_multi_thread()` when the builder does not set `worker_threads`,
/// as ward's main does (tokio 1.x `loom::std::sys::num_cpus`).
pub const WORKERS_ENV: &str = "TOKIO_WORKER_THREADS";

/// Why a proxy has no "rules ×10" figure.
pub const NO_RULES_MITMPROXY: &str = "mitmproxy has no access rules of its own (`ignore_hosts` \
     decides what it intercepts, not what it lets through; refusing takes a Python addon)";

/// The template placeholders a variant fills: `EXTRA_RULES` goes before the rules that let the
/// bench through, `EXTRA_CLIENT_RULES` before Dante's `client pass` (its client rules are a
/// list of their own). The stock set-up fills both with nothing.
pub fn template_vars(kind: PeerKind, variant: Variant) -> [(&'static str, String); 2] {
    let (rules, client_rules) = match variant {
        Variant::RulesX10 => extra_rules(kind),
        Variant::Stock | Variant::OneWorker => (String::new(), String::new()),
    };
    [("EXTRA_RULES", rules), ("EXTRA_CLIENT_RULES", client_rules)]
}

/// Whether `kind` has a "rules ×10" variant.
pub fn has_rules_x10(kind: PeerKind) -> bool {
    bench_rules(kind) > 0
}

/// The rules of each bench config that every bench connection is checked against: ward's
/// two rules; Squid's two `http_access` lines; tinyproxy's one `Allow`; Dante's `client pass`
/// and `socks pass`. 0: no variant.
fn bench_rules(kind: PeerKind) -> usize {
    match kind {
        PeerKind::Ward | PeerKind::Squid | PeerKind::Dante => 2,
        PeerKind::Tinyproxy => 1,
        PeerKind::WardLogs
        | PeerKind::MitmTunnel
        | PeerKind::MitmIntercept
        | PeerKind::WardBehindLb
        | PeerKind::WardPairBehindLb => 0,
    }
}

/// The rules added for ×10: each matches the bench's destinations but not its client
/// (127.0.0.1 is never in `10.N.0.0/16`), so each is a candidate every decision must check
/// and reject before the bench's own rules answer. Returns (EXTRA_RULES, EXTRA_CLIENT_RULES).
fn extra_rules(kind: PeerKind) -> (String, String) {
    let added = bench_rules(kind) * (RULES_SCALE - 1);
    match kind {
        // `.test` puts each rule in the index's list for every bench name (origin.test,
        // inspect.test): the decision walks them all, the worst case for ward's host index.
        PeerKind::Ward => (
            numbered(added, |n| {
                format!(
                    "  - {{ name: scale-{n}, action: deny, hosts: [\".test\"], clients: [\"10.{n}.0.0/16\"] }}"
                )
            }),
            String::new(),
        ),
        PeerKind::Squid => (
            numbered(added, |n| {
                format!("acl scale{n} src 10.{n}.0.0/16\nhttp_access deny scale{n}")
            }),
            String::new(),
        ),
        PeerKind::Tinyproxy => (
            numbered(added, |n| format!("Deny 10.{n}.0.0/16")),
            String::new(),
        ),
        // As many client rules as SOCKS rules, as in the config (one of each).
        PeerKind::Dante => (
            numbered(added / 2, |n| {
                format!("socks block {{ from: 10.{n}.0.0/16 to: 0.0.0.0/0 }}")
            }),
            numbered(added / 2, |n| {
                format!("client block {{ from: 10.{n}.0.0/16 to: 0.0.0.0/0 }}")
            }),
        ),
        _ => (String::new(), String::new()),
    }
}

/// Lines 1 to `count`, one per number.
fn numbered(count: usize, line: impl Fn(usize) -> String) -> String {
    (1..=count).map(line).collect::<Vec<_>>().join("\n")
}
