//! Prometheus histograms with fixed buckets: one relaxed atomic per bucket, the sum in
//! microseconds, rendered cumulatively (`_bucket{le=…}`, `_sum`, `_count`). Fixed buckets
//! keep the series count known in advance, whatever the traffic.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Latencies of one step (a connect, a handshake, a first byte), in seconds: 1 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Connection lifetimes, in seconds: 10 ms to an hour (tunnels live long).
pub const DURATION_BUCKETS: &[f64] = &[
    0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];
/// Room for the longest bucket list above.
const MAX_BUCKETS: usize = 16;

/// One histogram (one label set).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Non-cumulative: `counts[i]` holds observations in `(bounds[i-1], bounds[i]]`; the last
    /// used slot is `+Inf`.
    counts: [AtomicU64; MAX_BUCKETS],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// An empty histogram over `bounds` (ascending, at most 15).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        assert!(bounds.len() < MAX_BUCKETS, "too many buckets");
        Histogram {
            bounds,
            counts: Default::default(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Counts one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = self
            .bounds
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i].fetch_add(1, Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// How many observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// The `_bucket`, `_sum` and `_count` lines of `name`, with `labels` (`k="v"` pairs,
    /// already escaped, or empty) on each.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += self.counts[i].load(Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += self.counts[self.bounds.len()].load(Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {cumulative}"
        );
        let sum = self.sum_micros.load(Relaxed) as f64 / 1e6;
        let braces = |l: &str| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{l}}}")
            }
        };
        let _ = writeln!(out, "{name}_sum{} {sum}", braces(labels));
        let _ = writeln!(out, "{name}_count{} {}", braces(labels), self.count());
    }
}

/// A histogram of [`LATENCY_BUCKETS`].
#[derive(Debug)]
pub struct Latency(pub Histogram);

impl Default for Latency {
    fn default() -> Self {
        Latency(Histogram::new(LATENCY_BUCKETS))
    }
}

/// A histogram of [`DURATION_BUCKETS`].
#[derive(Debug)]
pub struct Lifetime(pub Histogram);

impl Default for Lifetime {
    fn default() -> Self {
        Lifetime(Histogram::new(DURATION_BUCKETS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_inf_counts_all() {
        let h = Histogram::new(&[0.01, 0.1]);
        h.observe(Duration::from_millis(5));
        h.observe(Duration::from_millis(10));
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_secs(3));
        let mut out = String::new();
        h.render(&mut out, "x_seconds", "to=\"origin\"");
        assert!(
            out.contains("x_seconds_bucket{to=\"origin\",le=\"0.01\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{to=\"origin\",le=\"0.1\"} 3\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_bucket{to=\"origin\",le=\"+Inf\"} 4\n"),
            "{out}"
        );
        assert!(
            out.contains("x_seconds_sum{to=\"origin\"} 3.065\n"),
            "{out}"
        );
        assert!(out.contains("x_seconds_count{to=\"origin\"} 4\n"), "{out}");
        let mut bare = String::new();
        h.render(&mut bare, "y", "");
        assert!(
            bare.contains("y_bucket{le=\"+Inf\"} 4\n") && bare.contains("y_count 4\n"),
            "{bare}"
        );
    }
}
