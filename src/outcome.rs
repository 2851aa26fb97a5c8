//! How a connection ended, as the access record names it. Pure: one enum and its log names, no
//! I/O. Endings are outcomes, not errors: when an ending is an error, the `ProxyError` that
//! says so travels beside the outcome (in the record's `error`), never inside it.

/// Every way a connection (a tunnel, an interception, or the pipeline before either) can end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A tunnel: both sides closed; the client's EOF came first. Also a client that closed
    /// before sending a byte of its ClientHello.
    ClientClosed,
    /// A tunnel: both sides closed; the upstream's EOF came first.
    UpstreamClosed,
    /// A tunnel: both sides closed, and both EOFs were already there when the relay looked.
    BothClosed,
    /// No byte moved either way for the idle timeout.
    IdleTimeout,
    /// The shutdown grace period ended (or, inside interception, drained) the connection.
    Shutdown,
    /// A tunnel: the client reset or aborted the connection.
    ClientReset,
    /// A tunnel: the upstream reset or aborted the connection.
    UpstreamReset,
    /// A tunnel ended on another I/O error; the error says which side.
    IoError,
    /// An intercepted connection was relayed until it closed; also a record with neither an
    /// outcome nor an error.
    Closed,
    /// Inspection was due, but the host's clients keep rejecting the forged leaf: tunnelled.
    PinnedPassthrough,
    /// The origin's TLS failed; every request was answered with ward's 502 (+ Proxy-Status).
    UpstreamTlsFailed,
    /// The client aborted the handshake with this alert: it does not trust ward's CA, or pins.
    ClientRejectedCertificate {
        /// The alert's name (`unknown_ca`, `bad_certificate`, ...).
        alert: &'static str,
    },
    /// The client offered ECH; ward answered as the public name without accepting it, and
    /// the client aborted (`ech_required`) to retry without ECH (RFC 9849 §6.1.6).
    EchRejected,
    /// An error ended the connection before any more specific ending was known.
    Failed,
}

impl Outcome {
    /// The stable snake_case name in the access record's `outcome` field.
    pub fn log_name(self) -> &'static str {
        match self {
            Outcome::ClientClosed => "client_closed",
            Outcome::UpstreamClosed => "upstream_closed",
            Outcome::BothClosed => "both_closed",
            Outcome::IdleTimeout => "idle_timeout",
            Outcome::Shutdown => "shutdown",
            Outcome::ClientReset => "client_reset",
            Outcome::UpstreamReset => "upstream_reset",
            Outcome::IoError => "io_error",
            Outcome::Closed => "closed",
            Outcome::PinnedPassthrough => "pinned_passthrough",
            Outcome::UpstreamTlsFailed => "upstream_tls_failed",
            Outcome::ClientRejectedCertificate { .. } => "client_rejected_certificate",
            Outcome::EchRejected => "ech_rejected",
            Outcome::Failed => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Users and tests read these names: they must never change.
    #[test]
    fn log_names_are_the_written_ones() {
        let table = [
            (Outcome::ClientClosed, "client_closed"),
            (Outcome::UpstreamClosed, "upstream_closed"),
            (Outcome::BothClosed, "both_closed"),
            (Outcome::IdleTimeout, "idle_timeout"),
            (Outcome::Shutdown, "shutdown"),
            (Outcome::ClientReset, "client_reset"),
            (Outcome::UpstreamReset, "upstream_reset"),
            (Outcome::IoError, "io_error"),
            (Outcome::Closed, "closed"),
            (Outcome::PinnedPassthrough, "pinned_passthrough"),
            (Outcome::UpstreamTlsFailed, "upstream_tls_failed"),
            (
                Outcome::ClientRejectedCertificate {
                    alert: "unknown_ca",
                },
                "client_rejected_certificate",
            ),
            (Outcome::EchRejected, "ech_rejected"),
            (Outcome::Failed, "error"),
        ];
        for (outcome, name) in table {
            assert_eq!(outcome.log_name(), name, "{outcome:?}");
        }
    }
}
