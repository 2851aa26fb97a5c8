//! Process-wide counters, fed by every access record and rendered in the Prometheus text
//! format for `/metrics`. Relaxed atomics: each counter is monotonic on its own and a scrape
//! needs no cross-counter consistency. Hand-written: a dozen counters do not justify a
//! metrics crate and its dependency tree.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
        out
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
}
