//! The speed phase of a run: every scenario alternated round-robin over direct and every proxy,
//! each proxy's CPU read around it (the memory phases are in memory.rs). Progress goes to
//! stderr; figures to `Results`.

use std::path::PathBuf;

use anyhow::Result;
use tokio::time::timeout;

use crate::client::{Port, Route, STEP_TIMEOUT};
use crate::cost;
use crate::cost_report::CONNS_SCALE;
use crate::opts::Options;
use crate::origin::Origin;
use crate::peers::{self, PeerEnv, PeerKind, Running};
use crate::pki::Pki;
use crate::report::{Metric, Results};
use crate::scenarios;
use crate::subjects::{SUBJECTS, Subject};
use crate::variants::{self, Variant};

const MULTI_STREAMS: usize = 8;

/// The speed scenarios, in the order each repetition runs them.
#[derive(Clone, Copy, Debug)]
enum Case {
    Raw1,
    Raw8,
    Tls1,
    Tls8,
    Rate,
    /// The cost model's scaling: new connections at 10× the concurrency, and through the
    /// proxy's rules-×10 variant.
    Cost,
}

const CASES: [Case; 6] = [
    Case::Raw1,
    Case::Raw8,
    Case::Tls1,
    Case::Tls8,
    Case::Rate,
    Case::Cost,
];

impl Case {
    fn applies(self, s: &Subject) -> bool {
        match self {
            // An interception has no raw-TCP path; the logging rows measure connections only.
            Case::Raw1 | Case::Raw8 => !s.intercept && !s.rate_only,
            Case::Tls1 | Case::Tls8 => !s.rate_only,
            Case::Rate => true,
            Case::Cost => s.scaling,
        }
    }
}

/// One row in one repetition: how the client reaches the origin through it, whose CPU is its
/// cost, and for the scaling case the same row through the proxy's rules-×10 variant.
struct Target {
    s: &'static Subject,
    route: Route,
    /// The proxy's processes (each leads its group); empty for direct.
    pids: Vec<u32>,
    rules_x10: Option<(Route, Vec<u32>)>,
}

type Instance = (PeerKind, Variant);

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
    pub(crate) fn start(
        &self,
        (kind, variant): Instance,
        results: &mut Results,
    ) -> Option<Running> {
        let (_, program) = self.peers.iter().find(|(k, _)| *k == kind)?;
        match peers::start(kind, variant, program, &self.env) {
            Ok(running) => Some(running),
            Err(e) => {
                eprintln!("  {} ({variant:?}) failed to start: {e:#}", kind.name());
                results.notes.push(format!(
                    "{} ({variant:?}) failed to start: {e:#}",
                    kind.name()
                ));
                None
            }
        }
    }

    fn wants_case(&self, case: Case) -> bool {
        let name = format!("{case:?}");
        let listed = |only: &Vec<String>| only.iter().any(|n| n.eq_ignore_ascii_case(&name));
        let scaling_here = !matches!(case, Case::Cost) || !self.opts.lb;
        scaling_here && self.opts.only_cases.as_ref().is_none_or(listed)
    }

    /// The rows of the speed scenarios this run measures (direct always; a proxy's rows when
    /// it is installed and not filtered out).
    fn subjects(&self) -> impl Iterator<Item = &'static Subject> + '_ {
        SUBJECTS.iter().filter(|s| {
            let Some(kind) = s.peer else { return true };
            let listed = |only: &Vec<String>| only.iter().any(|n| n == s.name);
            self.peers.iter().any(|(k, _)| *k == kind)
                && self.opts.only_subjects.as_ref().is_none_or(listed)
                && (!self.opts.lb || s.in_lb_comparison())
        })
    }

    /// The proxy instances a repetition starts: each row's, and the rules-×10 variants when
    /// the scaling case runs.
    fn instances(&self) -> Vec<Instance> {
        let mut out: Vec<Instance> = Vec::new();
        for s in self.subjects() {
            let Some(kind) = s.peer else { continue };
            let rules = (self.wants_case(Case::Cost) && s.scaling && variants::has_rules_x10(kind))
                .then_some((kind, Variant::RulesX10));
            for instance in std::iter::once((kind, s.variant)).chain(rules) {
                if !out.contains(&instance) {
                    out.push(instance);
                }
            }
        }
        out
    }

    fn targets(&self, running: &[(Instance, Running)], results: &mut Results) -> Vec<Target> {
        let find =
            |instance: Instance| running.iter().find(|(i, _)| *i == instance).map(|(_, r)| r);
        let mut out = Vec::new();
        for s in self.subjects() {
            let proxy = match s.peer {
                None => None,
                Some(kind) => match find((kind, s.variant)) {
                    Some(r) => Some(r),
                    None => continue,
                },
            };
            let rules_x10 = s
                .peer
                .and_then(|kind| find((kind, Variant::RulesX10)))
                .filter(|_| s.scaling)
                .and_then(|r| Some((s.route(self.origin, Some(r), self.pki).ok()?, r.pids())));
            match s.route(self.origin, proxy, self.pki) {
                Ok(route) => out.push(Target {
                    s,
                    route,
                    pids: proxy.map(Running::pids).unwrap_or_default(),
                    rules_x10,
                }),
                Err(e) => results.notes.push(format!("{}: {e:#}", s.name)),
            }
        }
        out
    }

    /// Every speed scenario, repetition after repetition. Each repetition starts every proxy
    /// afresh, then runs each scenario on direct and every proxy one after the other (the
    /// order rotated each repetition), so that the figures compared were taken seconds apart:
    /// a shared machine's load drifts over minutes.
    pub async fn speed(&self, results: &mut Results) {
        for rep in 0..self.opts.reps {
            eprintln!("repetition {}/{}", rep + 1, self.opts.reps);
            let running: Vec<(Instance, Running)> = self
                .instances()
                .into_iter()
                .filter_map(|i| Some((i, self.start(i, results)?)))
                .collect();
            let targets = self.targets(&running, results);
            // One connection through each first: what a proxy sets up lazily (a forged leaf,
            // Squid's certificate helper) is no new connection's cost.
            let warm = targets.iter().flat_map(|t| {
                std::iter::once(&t.route).chain(t.rules_x10.as_ref().map(|(route, _)| route))
            });
            for route in warm {
                let _ = timeout(STEP_TIMEOUT, scenarios::one_connection(route)).await;
            }
            for case in CASES.into_iter().filter(|&c| self.wants_case(c)) {
                let mut line = format!("  {case:?}:");
                for i in 0..targets.len() {
                    let t = &targets[(i + rep) % targets.len()];
                    if !case.applies(t.s) {
                        continue;
                    }
                    match self.measure(case, t, rep, results).await {
                        Ok(shown) => line += &format!(" {} {shown};", t.s.name),
                        Err(e) => {
                            line += &format!(" {} failed;", t.s.name);
                            results.notes.push(format!(
                                "{} {case:?} (repetition {}): {e:#}",
                                t.s.name,
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
        t: &Target,
        rep: usize,
        results: &mut Results,
    ) -> Result<String> {
        let o = self.opts;
        let name = t.s.name;
        let (metric, cpu_metric, port, streams) = match case {
            Case::Raw1 => (Metric::Raw1, Metric::CpuRaw1, Port::Raw, 1),
            Case::Raw8 => (Metric::Raw8, Metric::CpuRaw8, Port::Raw, MULTI_STREAMS),
            Case::Tls1 => (Metric::Tls1, Metric::CpuTls1, Port::Tls, 1),
            Case::Tls8 => (Metric::Tls8, Metric::CpuTls8, Port::Tls, MULTI_STREAMS),
            Case::Rate => {
                let costed =
                    cost::costed_rate(&t.route, &t.pids, o.rate_concurrency, o.rate_length).await?;
                let rate = &costed.rate;
                anyhow::ensure!(
                    rate.per_sec > 0.0,
                    "no connection completed inside the window"
                );
                results.push(name, Metric::ConnPerSec, rep, rate.per_sec);
                results.push(name, Metric::P50Ms, rep, rate.p50_ms);
                results.push(name, Metric::P99Ms, rep, rate.p99_ms);
                if let Some(us) = costed.cpu_us_per_conn {
                    results.push(name, Metric::CpuConn, rep, us);
                }
                results.add_rate_errors(name, rate.errors);
                if let Some(e) = &rate.first_error {
                    results.notes.push(format!(
                        "{name}: {} failed connections, first: {e}",
                        rate.errors
                    ));
                }
                return Ok(format!(
                    "{:.0}/s p50 {:.1} ms{}",
                    rate.per_sec, rate.p50_ms, costed.shown
                ));
            }
            Case::Cost => return self.scaling(t, rep, results).await,
        };
        let tput = scenarios::throughput(
            &t.route,
            port,
            streams,
            o.tput_warmup,
            o.tput_length,
            &t.pids,
        )
        .await?;
        results.push(name, metric, rep, tput.mib_per_s);
        let mut shown = format!("{:.0} MiB/s", tput.mib_per_s);
        if let Some(secs) = tput.cpu_s_per_gib {
            results.push(name, cpu_metric, rep, secs);
            shown += &format!(" cpu {secs:.2} s/GiB");
        }
        Ok(shown)
    }

    /// The cost model's scaling: the proxy's CPU per new connection with 10× the clients at a
    /// time, and through its rules-×10 variant at the usual concurrency.
    async fn scaling(&self, t: &Target, rep: usize, results: &mut Results) -> Result<String> {
        let o = self.opts;
        let mut runs = vec![(
            Metric::CpuConnX10,
            "conns×10",
            &t.route,
            &t.pids,
            o.rate_concurrency * CONNS_SCALE,
        )];
        if let Some((route, pids)) = &t.rules_x10 {
            runs.push((
                Metric::CpuConnRulesX10,
                "rules×10",
                route,
                pids,
                o.rate_concurrency,
            ));
        }
        let mut shown = String::new();
        for (metric, label, route, pids, concurrency) in runs {
            let costed = cost::costed_rate(route, pids, concurrency, o.cost_length).await?;
            if let Some(us) = costed.cpu_us_per_conn {
                results.push(t.s.name, metric, rep, us);
            }
            if let Some(e) = &costed.rate.first_error {
                results.notes.push(format!(
                    "{} {label}: {} failed connections, first: {e}",
                    t.s.name, costed.rate.errors
                ));
            }
            shown += &format!(" {label} {:.0}/s{}", costed.rate.per_sec, costed.shown);
        }
        Ok(shown.trim_start().to_owned())
    }
}
