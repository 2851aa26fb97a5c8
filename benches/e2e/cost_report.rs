//! The cost model in the report: what each proxy spends in CPU per new connection and per GiB
//! relayed, how the first grows with ten times the rules and ten times the connections, and
//! what that projects to on a machine with more cores. Pure rendering of `Results`.

use std::fmt::Write as _;

use crate::peers::PeerKind;
use crate::report::{Metric, Results, num};
use crate::subjects::{SUBJECTS, Subject};
use crate::variants::{self, RULES_SCALE, Variant};

/// The machine of the projection: issue 13 asks what 16 cores would give.
const PROJECTED_CORES: usize = 16;
/// "Connections ×10": the new-connection scenario at this many times its concurrency.
pub const CONNS_SCALE: usize = 10;

const PER_GIB: [Metric; 4] = [
    Metric::CpuRaw1,
    Metric::CpuRaw8,
    Metric::CpuTls1,
    Metric::CpuTls8,
];
/// The throughput case the projection's GiB/s comes from: several streams, the load of a
/// busy proxy, and TLS, which every row (interceptions too) carries.
const PROJECTED_GIB: Metric = Metric::CpuTls8;

pub fn cost_tables(out: &mut String, r: &Results) {
    let measured = |s: &&Subject| {
        s.peer.is_some()
            && [Metric::CpuConn, Metric::CpuConnX10, Metric::CpuConnRulesX10]
                .into_iter()
                .chain(PER_GIB)
                .any(|m| r.stats(s.name, m).is_some())
    };
    let rows: Vec<&Subject> = SUBJECTS.iter().filter(measured).collect();
    if rows.is_empty() {
        return;
    }
    let _ = write!(
        out,
        "\n## Cost model: proxy CPU per connection and per GiB\n\n\
The proxy's CPU time over a scenario, summed over every process of its process group (Squid's helpers, \
Dante's workers), divided by what the scenario did: new connections completed (each: connect, CONNECT or SOCKS5, full TLS handshake, GET 1 KiB, \
close; intercepted for the interception rows) or GiB received by the client in the throughput window. \
Median (min–max) over repetitions. Rules ×{RULES_SCALE}: the same new-connection scenario through a \
second instance of the proxy whose config holds {RULES_SCALE}× its bench rules (the added ones match the \
bench's destinations but not its client, so every decision checks and rejects them); connections \
×{CONNS_SCALE}: {CONNS_SCALE}× as many clients at a time; ×N: median over repetitions of the ratio to the \
row's CPU per connection in the same repetition. CPU time: each process's CPU-time clock \
(`clock_getcpuclockid`; in ns, every thread, exited ones included: what /proc/PID/stat counts in 10 ms ticks) \
plus the time of the children it reaped (cutime + cstime, in ticks).\n\n"
    );
    out.push_str(
        "| subject | CPU per new connection (µs) | rules ×10 (µs) | connections ×10 (µs) | \
         CPU per GiB (s): raw TCP, 1 stream | raw TCP, 8 streams | TLS, 1 stream | TLS, 8 streams |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for s in &rows {
        let stat = |m: Metric| r.stats(s.name, m).map_or("–".to_owned(), |x| x.to_string());
        let grown = |m: Metric| match (r.stats(s.name, m), growth(r, s.name, m)) {
            (Some(x), Some(g)) => format!("{x} ×{g:.2}"),
            (Some(x), None) => x.to_string(),
            (None, _) => "–".to_owned(),
        };
        let per_gib = PER_GIB.map(stat);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            s.name,
            stat(Metric::CpuConn),
            grown(Metric::CpuConnRulesX10),
            grown(Metric::CpuConnX10),
            per_gib.join(" | ")
        );
    }
    blanks_explained(out, &rows, r);
    projection(out, &rows, r);
}

/// The median per-repetition ratio of a scaled figure to the row's own CPU per connection.
fn growth(r: &Results, subject: &str, metric: Metric) -> Option<f64> {
    r.paired_ratio_of((subject, metric), (subject, Metric::CpuConn))
}

/// Why a row has "–" where others have figures.
fn blanks_explained(out: &mut String, rows: &[&Subject], r: &Results) {
    let mut notes = vec![
        "raw TCP: an interception has no raw-TCP path; the \"logs on\" rows measure new connections only"
            .to_owned(),
    ];
    let unscaled: Vec<&str> = rows.iter().filter(|s| !s.scaling).map(|s| s.name).collect();
    if !unscaled.is_empty() {
        notes.push(format!(
            "the scaling columns are measured on the stock rows, not on {}: they differ from \"ward\" only in \
             logging, workers or the hop in front",
            unscaled.join(", ")
        ));
    }
    let mitm_measured = rows
        .iter()
        .any(|s| is_mitmproxy(s) && r.stats(s.name, Metric::CpuConn).is_some());
    if mitm_measured {
        notes.push(format!(
            "rules ×10 for mitmproxy: {}",
            variants::NO_RULES_MITMPROXY
        ));
    }
    let _ = writeln!(out, "\n–: {}.", notes.join("; "));
}

fn is_mitmproxy(s: &Subject) -> bool {
    matches!(s.peer, Some(PeerKind::MitmTunnel | PeerKind::MitmIntercept))
}

/// How many cores a row's proxy can keep busy as benched, and why; None: not projected.
fn cores(s: &Subject) -> Option<(Option<usize>, &'static str)> {
    Some(match (s.peer?, s.variant) {
        (PeerKind::Ward | PeerKind::WardLogs, Variant::OneWorker) => {
            (Some(1), "one runtime worker, TOKIO_WORKER_THREADS=1")
        }
        (PeerKind::Ward | PeerKind::WardLogs, _) => (None, "one runtime worker per core"),
        (PeerKind::Squid, _) => (Some(1), "one worker process, no `workers N`"),
        (PeerKind::Tinyproxy, _) => (None, "a thread per connection"),
        (PeerKind::Dante, _) => (None, "worker processes"),
        (PeerKind::MitmTunnel | PeerKind::MitmIntercept, _) => (Some(1), "one Python event loop"),
        (PeerKind::WardBehindLb | PeerKind::WardPairBehindLb, _) => return None,
    })
}

/// The figures carried to a machine with more cores.
fn projection(out: &mut String, rows: &[&Subject], r: &Results) {
    let c = PROJECTED_CORES;
    let _ = write!(
        out,
        "\n### What that projects to\n\n\
A machine whose cores serve only the proxy (clients and origins elsewhere) can expect about \
min(C, cores the proxy can use) × 10⁶ / (CPU µs per new connection) new connections/s and \
min(C, cores the proxy can use) / (CPU s per GiB) GiB/s, less what else runs there. Here for C = {c}, \
with the TLS 8-stream figure for GiB. It assumes the cost per connection stays flat as the load grows \
(the ×{CONNS_SCALE} column checks that on this machine) and that nothing shared (a lock, the accept \
queue, memory bandwidth, the network card) binds first: read it as a ceiling, not a promise. On \
loopback the kernel's work for both ends of a hop is partly charged to whichever process sends, so \
the figures are the proxy's share as this machine counted it.\n\n"
    );
    let _ = writeln!(
        out,
        "| subject | cores it can use | new connections/s per core | on {c} cores | GiB/s per core | on {c} cores |\n\
         |---|---|---|---|---|---|"
    );
    for s in rows {
        let Some((cap, why)) = cores(s) else { continue };
        let used = cap.map_or(c, |n| n.min(c));
        let used_text = cap.map_or(format!("all: {why}"), |n| format!("{n}: {why}"));
        let per_core = |m: Metric, scale: f64| {
            let median = r.stats(s.name, m)?.median;
            (median > 0.0).then(|| scale / median)
        };
        let pair = |x: Option<f64>| {
            x.map_or(["–".to_owned(), "–".to_owned()], |v| {
                [num(v), num(v * used as f64)]
            })
        };
        let conns = pair(per_core(Metric::CpuConn, 1e6));
        let gib = pair(per_core(PROJECTED_GIB, 1.0));
        let _ = writeln!(
            out,
            "| {} | {used_text} | {} | {} |",
            s.name,
            conns.join(" | "),
            gib.join(" | ")
        );
    }
}
