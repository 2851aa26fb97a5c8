//! Collects the figures of a run and renders them as Markdown: medians with their spread over
//! repetitions, and ratios against the direct connection. Pure: no I/O but the final write.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::process::Mem;
use crate::subjects::SUBJECTS;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Metric {
    Raw1,
    Raw8,
    Tls1,
    Tls8,
    ConnPerSec,
    P50Ms,
    P99Ms,
    /// The proxy's CPU µs per new connection, at the scenario's concurrency.
    CpuConn,
    /// The same at 10× the concurrency (the cost model's "connections ×10").
    CpuConnX10,
    /// The same at the scenario's concurrency through the proxy's rules-×10 variant.
    CpuConnRulesX10,
    /// The proxy's CPU s per GiB received in each throughput case.
    CpuRaw1,
    CpuRaw8,
    CpuTls1,
    CpuTls8,
}

pub struct MemRow {
    pub subject: &'static str,
    pub kind: &'static str,
    pub wanted: usize,
    pub held: usize,
    pub before: Mem,
    pub after: Mem,
    pub note: Option<String>,
}

pub struct DownloadRow {
    pub subject: &'static str,
    pub bytes: u64,
    pub secs: f64,
    pub samples: Vec<(f64, Mem)>,
}

#[derive(Default)]
pub struct Results {
    /// Per subject and metric: (repetition, value).
    samples: BTreeMap<(&'static str, Metric), Vec<(usize, f64)>>,
    rate_errors: BTreeMap<&'static str, u64>,
    pub memory: Vec<MemRow>,
    pub downloads: Vec<DownloadRow>,
    pub notes: Vec<String>,
}

/// Growth of the proxy's memory during a download that still counts as flat: allocator
/// noise and buffer pools, not a body held in memory (which would be gigabytes).
const FLAT_SLACK_KIB: u64 = 32 * 1024;
const MIB: f64 = 1024.0;

impl Results {
    pub fn push(&mut self, subject: &'static str, metric: Metric, rep: usize, value: f64) {
        self.samples
            .entry((subject, metric))
            .or_default()
            .push((rep, value));
    }

    pub fn add_rate_errors(&mut self, subject: &'static str, errors: u64) {
        *self.rate_errors.entry(subject).or_default() += errors;
    }

    fn values(&self, subject: &str, metric: Metric) -> &[(usize, f64)] {
        self.samples
            .iter()
            .find(|((s, m), _)| *s == subject && *m == metric)
            .map_or(&[], |(_, v)| v.as_slice())
    }

    pub(crate) fn stats(&self, subject: &str, metric: Metric) -> Option<Stats> {
        let values: Vec<f64> = self
            .values(subject, metric)
            .iter()
            .map(|&(_, v)| v)
            .collect();
        Stats::of(&values)
    }

    /// Median over repetitions of subject / direct, each pair measured seconds apart in the
    /// same repetition: robust to load that drifts between repetitions.
    fn paired_ratio(&self, subject: &str, metric: Metric) -> Option<f64> {
        self.paired_ratio_to(subject, "direct", metric)
    }

    /// The same against any reference row (ward alone for the rows behind HAProxy).
    fn paired_ratio_to(&self, subject: &str, reference: &str, metric: Metric) -> Option<f64> {
        self.paired_ratio_of((subject, metric), (reference, metric))
    }

    /// Median over repetitions of one figure over another measured in the same repetition.
    pub(crate) fn paired_ratio_of(
        &self,
        (subject, metric): (&str, Metric),
        (reference, reference_metric): (&str, Metric),
    ) -> Option<f64> {
        let direct = self.values(reference, reference_metric);
        let ratios: Vec<f64> = self
            .values(subject, metric)
            .iter()
            .filter_map(|&(rep, v)| {
                let &(_, d) = direct.iter().find(|&&(r, _)| r == rep)?;
                (d > 0.0).then_some(v / d)
            })
            .collect();
        Stats::of(&ratios).map(|s| s.median)
    }
}

pub(crate) struct Stats {
    pub median: f64,
    min: f64,
    max: f64,
}

impl Stats {
    fn of(values: &[f64]) -> Option<Stats> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len().is_multiple_of(2) {
            (v[mid - 1] + v[mid]) / 2.0
        } else {
            v[mid]
        };
        Some(Stats {
            median,
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

/// A figure with enough digits to compare, not more.
pub(crate) fn num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// The run's context, printed above the tables.
pub struct Meta {
    pub lines: Vec<String>,
}

pub fn render(meta: &Meta, r: &Results) -> String {
    let mut out = String::from("# ward end-to-end benchmark\n\n");
    for line in &meta.lines {
        let _ = writeln!(out, "- {line}");
    }
    throughput_table(&mut out, r);
    rate_table(&mut out, r);
    crate::cost_report::cost_tables(&mut out, r);
    memory_table(&mut out, r);
    download_table(&mut out, r);
    if !r.notes.is_empty() {
        out.push_str("\n## Notes from this run\n\n");
        for note in &r.notes {
            let _ = writeln!(out, "- {}", note.replace('\n', " / "));
        }
    }
    out
}

fn cell(r: &Results, subject: &str, metric: Metric) -> String {
    let Some(s) = r.stats(subject, metric) else {
        return "–".to_owned();
    };
    let ratio = match r.paired_ratio(subject, metric) {
        Some(x) if subject != "direct" => format!(" ×{x:.2}"),
        _ => String::new(),
    };
    let to_ward = lb_reference(subject)
        .and_then(|w| Some((w, r.paired_ratio_to(subject, w, metric)?)))
        .map_or(String::new(), |(w, x)| format!(" (×{x:.2} of {w})"));
    format!("{s}{ratio}{to_ward}")
}

impl std::fmt::Display for Stats {
    /// The median, and (min–max) when the repetitions differ.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&num(self.median))?;
        if self.min < self.max {
            write!(f, " ({}–{})", num(self.min), num(self.max))?;
        }
        Ok(())
    }
}

/// The row a `--lb` row is also compared with: the same ward, reached without HAProxy.
fn lb_reference(subject: &str) -> Option<&'static str> {
    let behind = subject.strip_prefix("haproxy → ")?;
    Some(if behind.ends_with("inspect") {
        "ward inspect"
    } else {
        "ward"
    })
}

fn throughput_table(out: &mut String, r: &Results) {
    out.push_str("\n## Tunnel throughput\n\nMiB/s received by the client, median (min–max) over repetitions; ×: median over repetitions of the ratio to direct measured in the same repetition. \
Raw TCP: the origin streams zeros; TLS: an HTTP/1.1 download over TLS (through an interception for the intercepting rows).\n\n");
    out.push_str("| subject | raw TCP, 1 stream | raw TCP, 8 streams | TLS, 1 stream | TLS, 8 streams |\n|---|---|---|---|---|\n");
    for s in SUBJECTS.iter().filter(|s| !s.rate_only) {
        let cells =
            [Metric::Raw1, Metric::Raw8, Metric::Tls1, Metric::Tls8].map(|m| cell(r, s.name, m));
        if cells.iter().any(|c| c != "–") {
            let _ = writeln!(out, "| {} | {} |", s.name, cells.join(" | "));
        }
    }
}

fn rate_table(out: &mut String, r: &Results) {
    out.push_str("\n## New connections\n\nEach: TCP connect, CONNECT or SOCKS5, full TLS handshake (no resumption), GET 1 KiB, close. \
Connections/s and latency of one whole connection, median (min–max) over repetitions; ×: median over repetitions of the ratio to direct measured in the same repetition.\n\n");
    out.push_str("| subject | connections/s | p50 latency (ms) | p99 latency (ms) | failed |\n|---|---|---|---|---|\n");
    for s in SUBJECTS {
        let cells = [Metric::ConnPerSec, Metric::P50Ms, Metric::P99Ms].map(|m| cell(r, s.name, m));
        if cells.iter().any(|c| c != "–") {
            let failed = r.rate_errors.get(s.name).copied().unwrap_or(0);
            let _ = writeln!(out, "| {} | {} | {failed} |", s.name, cells.join(" | "));
        }
    }
}

fn memory_table(out: &mut String, r: &Results) {
    if r.memory.is_empty() {
        return;
    }
    out.push_str(
        "\n## Idle connections: proxy memory\n\nA fresh proxy for each line. Every connection did a TLS handshake \
(through the tunnel, or with the interception) and one keep-alive GET of 64 bytes, then stays open and silent. \
Memory of the proxy's whole process group (Squid's helpers, Dante's workers), after a warm-up of 16 connections \
and 1 s after the last connection opened: PSS (shared pages split between processes: what the group costs) and \
VmRSS from /proc/PID/status summed over the group (counts shared pages once per process).\n\n",
    );
    out.push_str(
        "| subject | connections | held | PSS before (MiB) | PSS after (MiB) | KiB per connection (PSS) | KiB per connection (VmRSS) |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for m in &r.memory {
        let per = |before: u64, after: u64| {
            if m.held == 0 {
                return "–".to_owned();
            }
            num(after.saturating_sub(before) as f64 / m.held as f64)
        };
        let held = match &m.note {
            Some(note) => format!("{} ({})", m.held, note.replace('|', "/")),
            None => m.held.to_string(),
        };
        let _ = writeln!(
            out,
            "| {} | {} × {} | {held} | {} | {} | {} | {} |",
            m.subject,
            m.wanted,
            m.kind,
            num(m.before.pss_kib as f64 / MIB),
            num(m.after.pss_kib as f64 / MIB),
            per(m.before.pss_kib, m.after.pss_kib),
            per(m.before.rss_kib, m.after.rss_kib),
        );
    }
}

fn download_table(out: &mut String, r: &Results) {
    if r.downloads.is_empty() {
        return;
    }
    out.push_str(
        "\n## One large intercepted download: proxy memory\n\nOne HTTP/1.1 download through the interception, read as \
fast as the client can; the proxy group's PSS sampled every 250 ms. Flat: never more than 32 MiB above the first \
sample.\n\n",
    );
    out.push_str(
        "| subject | downloaded (MiB) | MiB/s | PSS first (MiB) | PSS max (MiB) | PSS last (MiB) | samples | flat |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for d in &r.downloads {
        let pss: Vec<u64> = d
            .samples
            .iter()
            .map(|(_, m)| m.pss_kib)
            .filter(|&k| k > 0)
            .collect();
        let (first, last) = (
            pss.first().copied().unwrap_or(0),
            pss.last().copied().unwrap_or(0),
        );
        let max = pss.iter().copied().max().unwrap_or(0);
        let flat = if pss.is_empty() {
            "?"
        } else if max <= first + FLAT_SLACK_KIB {
            "yes"
        } else {
            "no"
        };
        let mib = d.bytes as f64 / (1024.0 * 1024.0);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {flat} |",
            d.subject,
            num(mib),
            num(mib / d.secs.max(1e-9)),
            num(first as f64 / MIB),
            num(max as f64 / MIB),
            num(last as f64 / MIB),
            pss.len(),
        );
    }
}
