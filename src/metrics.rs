//! Process-wide counters, fed by every access record and rendered in the Prometheus text
//! format for `/metrics`. Relaxed atomics: each counter is monotonic on its own and a scrape
//! needs no cross-counter consistency. Hand-written: a dozen counters, a few fixed-bucket
//! histograms (`histogram`) and policy-named counters with a bounded label set (`labels`) do
//! not justify a metrics crate and its dependency tree.

mod histogram;
mod labels;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub use histogram::{DURATION_BUCKETS, Histogram, LATENCY_BUCKETS, Latency, Lifetime};
pub use labels::{BoundedCounter, MAX_LABEL_VALUES, OTHER};

use crate::error::{ALL_KINDS, ErrorKind};
use crate::policy::Action;

#[derive(Debug, Default)]
/// Every counter `/metrics` shows (`ward_*`).
pub struct Metrics {
    /// Client connections accepted and served.
    pub connections: AtomicU64,
    /// Client connections open now (a gauge).
    pub open: AtomicU64,
    /// Connections refused because `max_connections` were open.
    pub over_limit: AtomicU64,
    /// Connections refused because their client held `max_connections_per_client`.
    pub over_client_limit: AtomicU64,
    /// Decisions `allow`.
    pub allowed: AtomicU64,
    /// Decisions `deny`.
    pub denied: AtomicU64,
    /// Decisions `inspect`.
    pub inspected: AtomicU64,
    /// Bytes relayed client to upstream.
    pub bytes_up: AtomicU64,
    /// Bytes relayed upstream to client.
    pub bytes_down: AtomicU64,
    /// Policy reloads that took effect.
    pub reloads: AtomicU64,
    /// Policy reloads refused (the old policy stayed).
    pub reload_failures: AtomicU64,
    errors: [AtomicU64; ALL_KINDS.len()],
    /// PROXY header refusals, by [`PROXY_REASONS`].
    proxy_refused: [AtomicU64; PROXY_REASONS.len()],
    /// HTTPS listeners' failed TLS handshakes with clients.
    pub listener_tls_failures: AtomicU64,
    /// TCP connect to the origin (direct), once DNS has answered.
    pub connect_origin: Latency,
    /// TCP connect to an upstream proxy.
    pub connect_upstream: Latency,
    /// ward's TLS handshake with an inspected origin.
    pub upstream_tls: Latency,
    /// From the client's first bytes written upstream (a tunnel's ClientHello, a forwarded
    /// request) to the first byte or the response head back.
    pub first_byte: Latency,
    /// Client connections (and forwarded requests) from accept to their record.
    pub duration: Lifetime,
    /// Decisions by rule (`-` for the default), one family per action, by [`ACTIONS`].
    rule_decisions: [BoundedCounter; 3],
    /// Failures reaching or asking an upstream proxy, by its name.
    upstream_errors: BoundedCounter,
    /// The forged-leaf cache, shared with every interceptor a reload builds.
    pub leaves: Arc<LeafCounters>,
}

/// The `action` label values of `ward_rule_decisions_total`, in [`Action`] order.
const ACTIONS: [Action; 3] = [Action::Allow, Action::Deny, Action::Inspect];

/// The forged-leaf cache's counters.
#[derive(Debug, Default)]
pub struct LeafCounters {
    /// A fresh cached leaf was served.
    pub hits: AtomicU64,
    /// No fresh leaf was cached (one was forged, or another connection's forge awaited).
    pub misses: AtomicU64,
    /// Leaves signed.
    pub forges: AtomicU64,
}

/// The `reason` label values of `ward_proxy_protocol_rejected_total`: a fixed set, so the
/// label cannot grow with what peers send.
pub const PROXY_REASONS: [&str; 5] = ["untrusted", "malformed", "truncated", "timeout", "io"];

impl Metrics {
    /// Counts one decision.
    pub fn record_action(&self, action: Action) {
        let counter = match action {
            Action::Allow => &self.allowed,
            Action::Deny => &self.denied,
            Action::Inspect => &self.inspected,
        };
        counter.fetch_add(1, Relaxed);
    }

    /// Counts one decision under the rule that made it (`None`: the default).
    pub fn record_rule(&self, action: Action, rule: Option<&str>) {
        if let Some(i) = ACTIONS.iter().position(|a| *a == action) {
            self.rule_decisions[i].add(rule.unwrap_or("-"));
        }
    }

    /// Counts one failure to reach or use the upstream proxy `name`.
    pub fn record_upstream_error(&self, name: &str) {
        self.upstream_errors.add(name);
    }

    /// Counts one error by kind.
    pub fn record_error(&self, kind: ErrorKind) {
        if let Some(i) = ALL_KINDS.iter().position(|k| *k == kind) {
            self.errors[i].fetch_add(1, Relaxed);
        }
    }

    /// A connection closed at its PROXY header; `reason` is one of [`PROXY_REASONS`].
    pub fn record_proxy_refusal(&self, reason: &str) {
        if let Some(i) = PROXY_REASONS.iter().position(|r| *r == reason) {
            self.proxy_refused[i].fetch_add(1, Relaxed);
        }
    }

    /// Adds one connection's relayed bytes.
    pub fn record_bytes(&self, up: u64, down: u64) {
        self.bytes_up.fetch_add(up, Relaxed);
        self.bytes_down.fetch_add(down, Relaxed);
    }

    /// The Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut counter = |name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Relaxed)
            );
        };
        counter(
            "ward_connections_total",
            "Client connections accepted.",
            &self.connections,
        );
        counter(
            "ward_over_limit_total",
            "Connections refused at max_connections.",
            &self.over_limit,
        );
        counter(
            "ward_over_client_limit_total",
            "Connections refused at max_connections_per_client.",
            &self.over_client_limit,
        );
        counter(
            "ward_bytes_up_total",
            "Payload bytes relayed client to upstream.",
            &self.bytes_up,
        );
        counter(
            "ward_bytes_down_total",
            "Payload bytes relayed upstream to client.",
            &self.bytes_down,
        );
        counter(
            "ward_reloads_total",
            "Policy reloads applied.",
            &self.reloads,
        );
        counter(
            "ward_reload_failures_total",
            "Policy reloads refused (invalid file).",
            &self.reload_failures,
        );
        counter(
            "ward_listener_tls_failures_total",
            "TLS handshakes with clients of an HTTPS listener that failed.",
            &self.listener_tls_failures,
        );
        let _ = writeln!(
            out,
            "# HELP ward_open_connections Client connections open now.\n# TYPE ward_open_connections gauge\nward_open_connections {}",
            self.open.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP ward_decisions_total Policy decisions by action.\n# TYPE ward_decisions_total counter"
        );
        for (action, v) in [
            ("allow", &self.allowed),
            ("deny", &self.denied),
            ("inspect", &self.inspected),
        ] {
            let _ = writeln!(
                out,
                "ward_decisions_total{{action=\"{action}\"}} {}",
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ward_errors_total Failed connections by error kind.\n# TYPE ward_errors_total counter"
        );
        for (kind, v) in ALL_KINDS.iter().zip(&self.errors) {
            let _ = writeln!(
                out,
                "ward_errors_total{{kind=\"{}\"}} {}",
                kind.log_name(),
                v.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP ward_proxy_protocol_rejected_total Connections closed at their PROXY header, by reason.\n# TYPE ward_proxy_protocol_rejected_total counter"
        );
        for (reason, v) in PROXY_REASONS.iter().zip(&self.proxy_refused) {
            let _ = writeln!(
                out,
                "ward_proxy_protocol_rejected_total{{reason=\"{reason}\"}} {}",
                v.load(Relaxed)
            );
        }
        self.render_observed(&mut out);
        out
    }

    /// The histograms and the policy-labelled counters.
    fn render_observed(&self, out: &mut String) {
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        let name = "ward_connect_seconds";
        head(
            out,
            name,
            "histogram",
            "TCP connect time, to the origin or to an upstream proxy.",
        );
        self.connect_origin.0.render(out, name, "to=\"origin\"");
        self.connect_upstream.0.render(out, name, "to=\"upstream\"");
        for (name, help, h) in [
            (
                "ward_upstream_tls_handshake_seconds",
                "TLS handshake with inspected origins.",
                &self.upstream_tls.0,
            ),
            (
                "ward_first_byte_seconds",
                "From the client's first bytes sent upstream to the first byte (or response head) back.",
                &self.first_byte.0,
            ),
            (
                "ward_connection_duration_seconds",
                "Client connections and forwarded requests, accept to close.",
                &self.duration.0,
            ),
        ] {
            head(out, name, "histogram", help);
            h.render(out, name, "");
        }
        let name = "ward_rule_decisions_total";
        head(
            out,
            name,
            "counter",
            "Decisions by rule (\"-\": the default; past 64 rule names: \"other\").",
        );
        for (action, c) in ACTIONS.iter().zip(&self.rule_decisions) {
            c.render(out, name, &format!("action=\"{action}\","), "rule");
        }
        let name = "ward_upstream_errors_total";
        head(
            out,
            name,
            "counter",
            "Upstream proxies that could not be reached or refused, by name.",
        );
        self.upstream_errors.render(out, name, "", "upstream");
        let l = &self.leaves;
        for (name, help, v) in [
            (
                "ward_leaf_cache_hits_total",
                "Forged leaves served from the cache.",
                &l.hits,
            ),
            (
                "ward_leaf_cache_misses_total",
                "Leaf lookups that found no fresh cached leaf.",
                &l.misses,
            ),
            (
                "ward_leaves_forged_total",
                "Leaf certificates signed by the CA.",
                &l.forges,
            ),
        ] {
            head(out, name, "counter", help);
            let _ = writeln!(out, "{name} {}", v.load(Relaxed));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.record_action(Action::Deny);
        m.record_error(ErrorKind::ConnectionRefused);
        m.record_bytes(10, 20);
        let text = m.render();
        assert!(text.contains("ward_decisions_total{action=\"deny\"} 1"));
        assert!(text.contains("ward_errors_total{kind=\"connection_refused\"} 1"));
        assert!(text.contains("ward_bytes_down_total 20"));
    }

    #[test]
    fn renders_histograms_and_rule_counters() {
        let m = Metrics::default();
        m.record_rule(Action::Deny, Some("no-ads"));
        m.record_rule(Action::Allow, None);
        m.record_upstream_error("corp");
        m.connect_origin
            .0
            .observe(std::time::Duration::from_millis(3));
        m.leaves.hits.fetch_add(2, Relaxed);
        let text = m.render();
        for line in [
            "ward_rule_decisions_total{action=\"deny\",rule=\"no-ads\"} 1\n",
            "ward_rule_decisions_total{action=\"allow\",rule=\"-\"} 1\n",
            "ward_upstream_errors_total{upstream=\"corp\"} 1\n",
            "ward_connect_seconds_bucket{to=\"origin\",le=\"0.005\"} 1\n",
            "ward_connect_seconds_count{to=\"upstream\"} 0\n",
            "ward_first_byte_seconds_bucket{le=\"+Inf\"} 0\n",
            "ward_leaf_cache_hits_total 2\n",
        ] {
            assert!(text.contains(line), "{line} in:\n{text}");
        }
        // Every family is declared once.
        let types = text
            .lines()
            .filter(|l| l.starts_with("# TYPE ward_connect_seconds "))
            .count();
        assert_eq!(types, 1);
    }
}
