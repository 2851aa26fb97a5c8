//! The phases of a run: speed scenarios alternated round-robin over direct and every proxy,
//! then the memory scenarios on fresh proxies. Progress goes to stderr; figures to `Results`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::client::{Port, Route};
use crate::opts::Options;
use crate::origin::Origin;
use crate::peers::{self, PeerEnv, PeerKind, Running};
use crate::pki::Pki;
use crate::process::{Mem, group_memory};
use crate::report::{DownloadRow, MemRow, Metric, Results};
use crate::scenarios::{self, Idle};
use crate::subjects::{SUBJECTS, Subject};

/// Connections opened and closed before a memory baseline, so that lazy setup (thread
/// pools, a forged leaf in the cache, TLS contexts) is not counted per connection.
const WARM_CONNECTIONS: usize = 16;
const SETTLE: Duration = Duration::from_secs(1);
const MULTI_STREAMS: usize = 8;

/// The speed scenarios, in the order each repetition runs them.
#[derive(Clone, Copy, Debug)]
enum Case {
    Raw1,
    Raw8,
    Tls1,
    Tls8,
    Rate,
}

const CASES: [Case; 5] = [Case::Raw1, Case::Raw8, Case::Tls1, Case::Tls8, Case::Rate];

impl Case {
    fn applies(self, s: &Subject) -> bool {
        match self {
            // An interception has no raw-TCP path; the logging rows measure connections only.
            Case::Raw1 | Case::Raw8 => !s.intercept && !s.rate_only,
            Case::Tls1 | Case::Tls8 => !s.rate_only,
            Case::Rate => true,
        }
    }
}

pub struct Bench<'a> {
    pub opts: &'a Options,
    pub pki: &'a Pki,
    pub origin: &'a Origin,
    pub env: PeerEnv<'a>,
    /// The proxies found installed, with their programs.
    pub peers: Vec<(PeerKind, PathBuf)>,
    /// Most idle connections one measurement may hold (a proxy needs two descriptors each).
    pub max_idle: usize,
}

impl Bench<'_> {
    fn start(&self, kind: PeerKind, results: &mut Results) -> Option<Running> {
        let (_, program) = self.peers.iter().find(|(k, _)| *k == kind)?;
        match peers::start(kind, program, &self.env) {
            Ok(running) => Some(running),
            Err(e) => {
                eprintln!("  {} failed to start: {e:#}", kind.name());
                results
                    .notes
                    .push(format!("{} failed to start: {e:#}", kind.name()));
                None
            }
        }
    }

    /// Every speed scenario, repetition after repetition. Each repetition starts every proxy
    /// afresh, then runs each scenario on direct and every proxy one after the other (the
    /// order rotated each repetition), so that the figures compared were taken seconds apart:
    /// a shared machine's load drifts over minutes.
    pub async fn speed(&self, results: &mut Results) {
        for rep in 0..self.opts.reps {
            eprintln!("repetition {}/{}", rep + 1, self.opts.reps);
            let running: Vec<(PeerKind, Running)> = self
                .peers
                .iter()
                .filter_map(|(kind, _)| Some((*kind, self.start(*kind, results)?)))
                .collect();
            let mut routes = Vec::new();
            let mut pids = Vec::new();
            for s in SUBJECTS {
                let listed = |only: &Vec<String>| only.iter().any(|n| n == s.name);
                if s.peer.is_some() && self.opts.only_subjects.as_ref().is_some_and(|o| !listed(o))
                {
                    continue;
                }
                if self.opts.lb && !s.in_lb_comparison() {
                    continue;
                }
                let proxy = match s.peer {
                    None => None,
                    Some(kind) => match running.iter().find(|(k, _)| *k == kind) {
                        Some((_, r)) => Some(r),
                        None => continue,
                    },
                };
                match s.route(self.origin, proxy, self.pki) {
                    Ok(route) => {
                        routes.push((s, route));
                        pids.push(proxy.map(Running::pids));
                    }
                    Err(e) => results.notes.push(format!("{}: {e:#}", s.name)),
                }
            }
            for case in CASES {
                let name = format!("{case:?}");
                let listed =
                    |only: &Vec<String>| only.iter().any(|n| n.eq_ignore_ascii_case(&name));
                if self.opts.only_cases.as_ref().is_some_and(|o| !listed(o)) {
                    continue;
                }
                let mut line = format!("  {case:?}:");
                for i in 0..routes.len() {
                    let (s, route) = &routes[(i + rep) % routes.len()];
                    let pid = pids[(i + rep) % routes.len()].as_deref();
                    if !case.applies(s) {
                        continue;
                    }
                    let before = pid.map(ProxyCost::now);
                    match self.measure(case, s, route, rep, results).await {
                        Ok(shown) => {
                            line += &format!(" {} {shown}", s.name);
                            // Measurement aid: the proxy's cost per connection in the rate case.
                            let conns = results
                                .last_rate(s.name)
                                .map(|r| (r * self.opts.rate_length.as_secs_f64()).max(1.0));
                            if let (Case::Rate, Some(before), Some(pid), Some(conns)) =
                                (case, before, pid, conns)
                            {
                                line += &ProxyCost::now(pid).per_connection_since(&before, conns);
                            }
                            line += ";";
                        }
                        Err(e) => {
                            line += &format!(" {} failed;", s.name);
                            results.notes.push(format!(
                                "{} {case:?} (repetition {}): {e:#}",
                                s.name,
                                rep + 1
                            ));
                        }
                    }
                }
                eprintln!("{line}");
            }
            drop(running);
        }
    }

    /// One measurement; returns the figure as shown in the progress line.
    async fn measure(
        &self,
        case: Case,
        s: &Subject,
        route: &Route,
        rep: usize,
        results: &mut Results,
    ) -> Result<String> {
        let o = self.opts;
        let (metric, port, streams) = match case {
            Case::Raw1 => (Metric::Raw1, Port::Raw, 1),
            Case::Raw8 => (Metric::Raw8, Port::Raw, MULTI_STREAMS),
            Case::Tls1 => (Metric::Tls1, Port::Tls, 1),
            Case::Tls8 => (Metric::Tls8, Port::Tls, MULTI_STREAMS),
            Case::Rate => {
                let rate =
                    scenarios::connect_rate(route, o.rate_concurrency, o.rate_length).await?;
                results.push(s.name, Metric::ConnPerSec, rep, rate.per_sec);
                results.push(s.name, Metric::P50Ms, rep, rate.p50_ms);
                results.push(s.name, Metric::P99Ms, rep, rate.p99_ms);
                results.add_rate_errors(s.name, rate.errors);
                if let Some(e) = rate.first_error {
                    results.notes.push(format!(
                        "{}: {} failed connections, first: {e}",
                        s.name, rate.errors
                    ));
                }
                return Ok(format!("{:.0}/s p50 {:.1} ms", rate.per_sec, rate.p50_ms));
            }
        };
        let mib = scenarios::throughput(route, port, streams, o.tput_warmup, o.tput_length).await?;
        results.push(s.name, metric, rep, mib);
        Ok(format!("{mib:.0} MiB/s"))
    }

    /// Idle connections held open, on a fresh proxy for each count.
    pub async fn idle_memory(&self, results: &mut Results) {
        for s in SUBJECTS.iter().filter(|s| s.memory) {
            let Some(kind) = s.peer else { continue };
            if !self.peers.iter().any(|(k, _)| *k == kind) {
                continue;
            }
            let modes: &[(Idle, &'static str)] = if s.intercept {
                &[(Idle::H1, "HTTP/1.1"), (Idle::H2, "HTTP/2")]
            } else {
                &[(Idle::H1, "tunnel")]
            };
            for &(mode, label) in modes {
                for &wanted in &self.opts.idle_counts {
                    let count = wanted.min(self.max_idle);
                    let Some(running) = self.start(kind, results) else {
                        break;
                    };
                    let row = self.idle_once(s, &running, mode, label, count).await;
                    drop(running);
                    let unsupported = row.held == 0
                        && row
                            .note
                            .as_deref()
                            .is_some_and(|n| n.contains("h2 not negotiated"));
                    eprintln!(
                        "  {} {label} × {count}: held {} PSS {} → {} KiB {}",
                        s.name,
                        row.held,
                        row.before.pss_kib,
                        row.after.pss_kib,
                        row.note.as_deref().unwrap_or("")
                    );
                    results.memory.push(row);
                    if unsupported {
                        break;
                    }
                }
            }
        }
    }

    async fn idle_once(
        &self,
        s: &Subject,
        running: &Running,
        mode: Idle,
        label: &'static str,
        count: usize,
    ) -> MemRow {
        let mut row = MemRow {
            subject: s.name,
            kind: label,
            wanted: count,
            held: 0,
            before: Mem::default(),
            after: Mem::default(),
            note: None,
        };
        let route = match s.route(self.origin, Some(running), self.pki) {
            Ok(r) => r,
            Err(e) => {
                row.note = Some(format!("{e:#}"));
                return row;
            }
        };
        let warm = scenarios::hold_idle(&route, mode, WARM_CONNECTIONS, self.opts.idle_cap).await;
        if warm.held.is_empty() {
            row.note = warm.first_error;
            return row;
        }
        drop(warm);
        tokio::time::sleep(SETTLE).await;
        let pid = running.pid();
        row.before = memory(pid).await;
        let held = scenarios::hold_idle(&route, mode, count, self.opts.idle_cap).await;
        tokio::time::sleep(SETTLE).await;
        row.after = memory(pid).await;
        row.held = held.held.len();
        if held.errors > 0 {
            row.note = Some(format!(
                "{} failed: {}",
                held.errors,
                held.first_error.unwrap_or_default()
            ));
        } else if row.held < count {
            row.note = Some(format!(
                "set-up time cap of {} s reached",
                self.opts.idle_cap.as_secs()
            ));
        }
        row
    }

    /// One large download through each intercepting subject, on a fresh proxy.
    pub async fn download_memory(&self, results: &mut Results) {
        for s in SUBJECTS.iter().filter(|s| s.intercept && !s.rate_only) {
            let Some(kind) = s.peer else { continue };
            if !self.peers.iter().any(|(k, _)| *k == kind) {
                continue;
            }
            let Some(running) = self.start(kind, results) else {
                continue;
            };
            let outcome = match s.route(self.origin, Some(&running), self.pki) {
                Ok(route) => {
                    scenarios::big_download(
                        &route,
                        self.opts.download_bytes,
                        self.opts.download_cap,
                        running.pid(),
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(d) => {
                    let max = d.samples.iter().map(|(_, m)| m.pss_kib).max().unwrap_or(0);
                    eprintln!(
                        "  {} download: {} MiB in {:.1} s, PSS max {} KiB",
                        s.name,
                        d.bytes >> 20,
                        d.secs,
                        max
                    );
                    results.downloads.push(DownloadRow {
                        subject: s.name,
                        bytes: d.bytes,
                        secs: d.secs,
                        samples: d.samples,
                    });
                }
                Err(e) => results
                    .notes
                    .push(format!("{} large download: {e:#}", s.name)),
            }
        }
    }
}

async fn memory(pid: u32) -> Mem {
    tokio::task::spawn_blocking(move || group_memory(pid))
        .await
        .unwrap_or_default()
}

/// A proxy's CPU time and context switches so far, for the rate case's progress line.
struct ProxyCost {
    cpu_ticks: Option<u64>,
    switches: Option<u64>,
}

impl ProxyCost {
    /// Summed over the processes of a subject (HAProxy and its replicas for the `--lb` rows).
    fn now(pids: &[u32]) -> ProxyCost {
        let sum = |f: fn(u32) -> Option<u64>| pids.iter().map(|&p| f(p)).sum::<Option<u64>>();
        ProxyCost {
            cpu_ticks: sum(crate::process::cpu_ticks),
            switches: sum(crate::process::ctx_switches),
        }
    }

    /// " cpu N us/conn cs N/conn" for what was spent since `before` over `conns` connections;
    /// the parts /proc could not tell are left out.
    fn per_connection_since(&self, before: &ProxyCost, conns: f64) -> String {
        let mut out = String::new();
        if let (Some(b), Some(a)) = (before.cpu_ticks, self.cpu_ticks) {
            let us = (a - b) as f64 * 1e6 / crate::process::ticks_per_sec() / conns;
            out += &format!(" cpu {us:.0} us/conn");
        }
        if let (Some(b), Some(a)) = (before.switches, self.switches) {
            out += &format!(" cs {:.1}/conn", (a - b) as f64 / conns);
        }
        out
    }
}
