//! The phases of a run: speed scenarios alternated round-robin over direct and every proxy,
//! then the memory scenarios on fresh proxies. Progress goes to stderr; figures to `Results`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;

use crate::client::Port;
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

    /// Every speed scenario, repetition after repetition, each repetition visiting direct and
    /// every proxy in turn (rotated, so no one always goes first).
    pub async fn speed(&self, results: &mut Results) {
        let mut groups: Vec<Option<PeerKind>> = vec![None];
        groups.extend(self.peers.iter().map(|(k, _)| Some(*k)));
        for rep in 0..self.opts.reps {
            eprintln!("repetition {}/{}", rep + 1, self.opts.reps);
            for i in 0..groups.len() {
                let group = groups[(i + rep) % groups.len()];
                let running = match group {
                    Some(kind) => match self.start(kind, results) {
                        Some(r) => Some(r),
                        None => continue,
                    },
                    None => None,
                };
                for subject in SUBJECTS.iter().filter(|s| s.peer == group) {
                    if let Err(e) = self.speed_subject(subject, running.as_ref(), results).await {
                        eprintln!("  {}: {e:#}", subject.name);
                        results.notes.push(format!(
                            "{} (repetition {}): {e:#}",
                            subject.name,
                            rep + 1
                        ));
                    }
                }
            }
        }
    }

    async fn speed_subject(
        &self,
        s: &Subject,
        running: Option<&Running>,
        results: &mut Results,
    ) -> Result<()> {
        let route = s.route(self.origin, running, self.pki)?;
        let o = self.opts;
        let mut line = format!("  {:<22}", s.name);
        if !s.rate_only {
            let mut cases = vec![
                (Metric::Tls1, Port::Tls, 1),
                (Metric::Tls8, Port::Tls, MULTI_STREAMS),
            ];
            if !s.intercept {
                cases.splice(
                    0..0,
                    [
                        (Metric::Raw1, Port::Raw, 1),
                        (Metric::Raw8, Port::Raw, MULTI_STREAMS),
                    ],
                );
            }
            for (metric, port, streams) in cases {
                match scenarios::throughput(&route, port, streams, o.tput_warmup, o.tput_length)
                    .await
                {
                    Ok(mib) => {
                        results.push(s.name, metric, mib);
                        line += &format!(" {metric:?} {mib:.0} MiB/s");
                    }
                    Err(e) => results.notes.push(format!("{} {metric:?}: {e:#}", s.name)),
                }
            }
        }
        let rate = scenarios::connect_rate(&route, o.rate_concurrency, o.rate_length).await?;
        results.push(s.name, Metric::ConnPerSec, rate.per_sec);
        results.push(s.name, Metric::P50Ms, rate.p50_ms);
        results.push(s.name, Metric::P99Ms, rate.p99_ms);
        results.add_rate_errors(s.name, rate.errors);
        if let Some(e) = rate.first_error {
            results.notes.push(format!(
                "{}: {} failed connections, first: {e}",
                s.name, rate.errors
            ));
        }
        eprintln!(
            "{line} | {:.0} conn/s p50 {:.2} ms p99 {:.2} ms",
            rate.per_sec, rate.p50_ms, rate.p99_ms
        );
        Ok(())
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
