//! The memory phases of a run, each on a fresh proxy: idle connections held open, and one
//! large download through each interception with the proxy's memory sampled. Progress goes to
//! stderr; figures to `Results`.

use std::time::Duration;

use crate::peers::Running;
use crate::process::{Mem, group_memory};
use crate::report::{DownloadRow, MemRow, Results};
use crate::run::Bench;
use crate::scenarios::{self, Idle};
use crate::subjects::{SUBJECTS, Subject};
use crate::variants::Variant;

/// Connections opened and closed before a memory baseline, so that lazy setup (thread
/// pools, a forged leaf in the cache, TLS contexts) is not counted per connection.
const WARM_CONNECTIONS: usize = 16;
const SETTLE: Duration = Duration::from_secs(1);

impl Bench<'_> {
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
                    let Some(running) = self.start((kind, Variant::Stock), results) else {
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
            let Some(running) = self.start((kind, Variant::Stock), results) else {
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
