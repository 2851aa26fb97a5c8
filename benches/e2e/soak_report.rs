//! The soak's figures and their Markdown: RSS slope by least squares over the steady part,
//! errors by kind, the open-connection gauge before, during and after. Pure: no I/O.

use std::fmt::Write as _;

use crate::opts::Soak;
use crate::soak::{AFTER_SAMPLES, BACK_TO_BASELINE, REOPEN_HOLD, SETUP_CONCURRENCY};
use crate::soak_load::{ErrorsByKind, Kind, REQUEST_BODY, REQUEST_EVERY, TRICKLE, TUNNEL_EVERY};

pub struct KindFigures {
    pub kind: Kind,
    pub opened: u64,
    pub exchanges: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Everything the soak measured; times are seconds since ward started.
#[derive(Default)]
pub struct Figures {
    pub asked: Soak,
    /// What the run tried to hold, after the descriptor limit.
    pub tunnels: usize,
    pub intercepts: usize,
    pub fit: usize,
    pub nofile: u64,
    pub ramp_start: f64,
    pub ramp_end: f64,
    pub steady_start: f64,
    pub hold_end: f64,
    pub clients_gone: f64,
    /// (time, VmRSS KiB) every second.
    pub rss: Vec<(f64, u64)>,
    /// VmRSS before the first client connected.
    pub rss_baseline: Option<u64>,
    /// VmRSS a few seconds after the clients went.
    pub rss_after: Option<u64>,
    /// Each later round of the same connections, held briefly: opened, failed, VmRSS at its
    /// end, and whether the gauge was back at its baseline after it.
    pub reopens: Vec<(u64, u64, Option<u64>, bool)>,
    pub gauge_before: Option<u64>,
    pub gauge_during: Vec<(f64, u64)>,
    pub gauge_after: Option<u64>,
    pub back_after_secs: Option<f64>,
    pub ward_errors_before: Option<u64>,
    pub ward_errors_after: Option<u64>,
    pub kinds: Vec<KindFigures>,
    pub errors: ErrorsByKind,
    pub ward_cpu_secs: Option<f64>,
    pub bench_cpu_secs: Option<f64>,
    pub load_start: String,
    pub load_ramp_end: String,
    pub load_hold_end: String,
    pub ward_died: Option<String>,
}

/// Slope of y over x by least squares, in y units per x unit; None for fewer than 2 points
/// or no spread in x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or("–".to_owned(), |v| format!("{v:.2}"))
}

/// RSS at the last sample at or before `t`.
fn rss_at(f: &Figures, t: f64) -> Option<u64> {
    f.rss.iter().rev().find(|(s, _)| *s <= t).map(|&(_, k)| k)
}

pub fn render(meta: &[String], f: &Figures) -> String {
    let mut out = String::from("# ward soak\n\n");
    for line in meta {
        let _ = writeln!(out, "- {line}");
    }
    let _ = writeln!(
        out,
        "- asked: {} tunnels, {} intercepted connections, held {} s once open; run with {} tunnels and {} \
         intercepted connections ({} HTTP/1.1, {} HTTP/2)",
        f.asked.tunnels,
        f.asked.intercepts,
        f.asked.hold.as_secs(),
        f.tunnels,
        f.intercepts,
        f.intercepts.div_ceil(2),
        f.intercepts / 2
    );
    if f.tunnels + f.intercepts < f.asked.tunnels + f.asked.intercepts {
        let _ = writeln!(
            out,
            "- capped at {} connections in all: ward holds two descriptors per connection (client and origin side), \
             and so does this process (client side and origin side), under RLIMIT_NOFILE {} (the hard limit, which \
             cannot be raised without CAP_SYS_RESOURCE), less a reserve for listeners and files",
            f.fit, f.nofile
        );
    }
    let _ = writeln!(
        out,
        "- traffic: each tunnel sends {TRICKLE} bytes every {} s to an echo origin and reads them back (first sends \
         spread over the period); each intercepted connection makes a GET of {REQUEST_BODY} bytes every {} s; one \
         tokio task per connection; a connection that fails is counted and not reopened",
        TUNNEL_EVERY.as_secs(),
        REQUEST_EVERY.as_secs()
    );
    let _ = writeln!(
        out,
        "- load average (1, 5, 15 min): at start {}, after the ramp-up {}, at the end of the hold {}",
        f.load_start, f.load_ramp_end, f.load_hold_end
    );
    if let Some(died) = &f.ward_died {
        let _ = writeln!(out, "- **ward stopped during the run: {died}**");
    }
    summary(&mut out, f);
    per_kind(&mut out, f);
    errors(&mut out, f);
    series(&mut out, f);
    out
}

fn summary(out: &mut String, f: &Figures) {
    let steady: Vec<(f64, f64)> = f
        .rss
        .iter()
        .filter(|(t, _)| *t >= f.steady_start && *t <= f.hold_end)
        .map(|&(t, k)| (t / 60.0, k as f64))
        .collect();
    let slope = slope(&steady);
    let mean = steady.iter().map(|p| p.1).sum::<f64>() / steady.len().max(1) as f64;
    let minutes = (f.hold_end - f.steady_start) / 60.0;
    // The second half of the hold on its own: a working set that settles once (hyper's
    // HTTP/2 client queue takes its second 32-slot block at a connection's 33rd request, ~100 s
    // in at one request per 3 s) raises the whole slope, but a leak keeps rising here too.
    let half_start = (f.ramp_end + f.hold_end) / 2.0;
    let late: Vec<(f64, f64)> = steady
        .iter()
        .copied()
        .filter(|(t, _)| *t * 60.0 >= half_start)
        .collect();
    let late_slope = self::slope(&late);
    let errors: u64 = f.errors.values().map(|(n, _)| n).sum();
    let (gmin, gmax) = (
        f.gauge_during.iter().map(|g| g.1).min(),
        f.gauge_during.iter().map(|g| g.1).max(),
    );
    let show = |v: Option<u64>| v.map_or("?".to_owned(), |v| v.to_string());
    let back = match (f.back_after_secs, f.gauge_after) {
        (Some(s), _) => format!("back to {} in {s:.1} s", show(f.gauge_before)),
        (None, after) => format!(
            "**not back within {} s: {}**",
            BACK_TO_BASELINE.as_secs(),
            show(after)
        ),
    };
    let ward_errors = match (f.ward_errors_before, f.ward_errors_after) {
        (Some(b), Some(a)) => (a.saturating_sub(b)).to_string(),
        _ => "?".to_owned(),
    };
    let max = f.rss.iter().map(|r| r.1).max().unwrap_or(0);
    let _ = write!(
        out,
        "\n## Summary\n\n| figure | value | goal |\n|---|---|---|\n\
         | RSS slope, least squares over the steady part ({:.0}–{:.0} s, {} samples) | {} KiB/min ({} KiB over those {minutes:.1} min; mean RSS {} MiB) | flat |\n\
         | RSS slope over the second half of the hold ({:.0}–{:.0} s) | {} KiB/min | flat |\n\
         | failed connections (client side, all kinds) | {errors} | 0 |\n\
         | ward's `ward_errors_total`, change over the run | {ward_errors} | 0 |\n\
         | `ward_open_connections`: before / during the hold (min–max) / after the clients went | {} / {}–{} / {back} | back to the baseline |\n\
         | ward RSS (MiB): baseline / start of the steady part / end of the hold / max / {:.0} s after the clients went | {} / {} / {} / {} / {} | |\n\
         | CPU during the hold: ward / this process (client and origins) | {} / {} | |\n",
        f.steady_start,
        f.hold_end,
        steady.len(),
        slope.map_or("?".to_owned(), |s| format!("{s:+.1}")),
        slope.map_or("?".to_owned(), |s| format!("{:+.0}", s * minutes)),
        mib(mean as u64),
        half_start,
        f.hold_end,
        late_slope.map_or("?".to_owned(), |s| format!("{s:+.1}")),
        show(f.gauge_before),
        show(gmin),
        show(gmax),
        AFTER_SAMPLES.as_secs_f64(),
        f.rss_baseline.map_or("?".into(), mib),
        rss_at(f, f.steady_start).map_or("?".into(), mib),
        rss_at(f, f.hold_end).map_or("?".into(), mib),
        mib(max),
        f.rss_after.map_or("?".into(), mib),
        cpu(f.ward_cpu_secs, f.hold_end - f.ramp_end),
        cpu(f.bench_cpu_secs, f.hold_end - f.ramp_end),
    );
    for (n, (opened, failed, peak, back)) in f.reopens.iter().enumerate() {
        let _ = writeln!(
            out,
            "| round {} of the same connections (after the gauge was back), held {} s: opened / failed / ward RSS (MiB) / gauge back | {opened} / {failed} / {} / {} | RSS near the first round's: freed memory reused, not leaked |",
            n + 2,
            REOPEN_HOLD.as_secs(),
            peak.map_or("?".into(), mib),
            if *back { "yes" } else { "**no**" },
        );
    }
    let _ = writeln!(
        out,
        "\nThe ramp-up (all connections opened, {SETUP_CONCURRENCY} at a time) took {:.1} s; the steady part starts {:.0} s after it.",
        f.ramp_end - f.ramp_start,
        f.steady_start - f.ramp_end
    );
}

fn cpu(secs: Option<f64>, over: f64) -> String {
    secs.map_or("?".to_owned(), |s| {
        format!("{s:.1} s ({:.0} % of one core)", 100.0 * s / over.max(1e-9))
    })
}

fn per_kind(out: &mut String, f: &Figures) {
    out.push_str(
        "\n## Connections\n\n| kind | asked | opened | exchanges | p50 (ms) | p99 (ms) |\n|---|---|---|---|---|---|\n",
    );
    for k in &f.kinds {
        let asked = match k.kind {
            Kind::Tunnel => f.tunnels,
            Kind::H1 => f.intercepts.div_ceil(2),
            Kind::H2 => f.intercepts / 2,
        };
        let _ = writeln!(
            out,
            "| {} | {asked} | {} | {} | {} | {} |",
            k.kind.name(),
            k.opened,
            k.exchanges,
            opt_ms(k.p50_ms),
            opt_ms(k.p99_ms)
        );
    }
}

fn errors(out: &mut String, f: &Figures) {
    if f.errors.is_empty() {
        out.push_str("\nNo connection failed.\n");
        return;
    }
    out.push_str(
        "\n## Failed connections\n\n| kind | stage | count | first error |\n|---|---|---|---|\n",
    );
    for ((kind, stage), (n, first)) in &f.errors {
        let _ = writeln!(
            out,
            "| {} | {stage} | {n} | {} |",
            kind.name(),
            first.replace('|', "/").replace('\n', " / ")
        );
    }
}

/// RSS every 30 s and the gauge as read, for a look at the shape.
fn series(out: &mut String, f: &Figures) {
    const EVERY: f64 = 30.0;
    let mut next = 0.0;
    let mut points = Vec::new();
    for &(t, k) in &f.rss {
        if t >= next {
            points.push(format!("{t:.0} s: {}", mib(k)));
            next = t + EVERY;
        }
    }
    let _ = writeln!(
        out,
        "\nward RSS (MiB) every {EVERY:.0} s: {}",
        points.join(", ")
    );
    let gauge: Vec<String> = f
        .gauge_during
        .iter()
        .map(|(t, g)| format!("{t:.0} s: {g}"))
        .collect();
    let _ = writeln!(
        out,
        "\n`ward_open_connections` during the hold: {}",
        gauge.join(", ")
    );
}
