//! `/readyz` (serving or draining) beside `/healthz` (the process answers). A load balancer or
//! Kubernetes takes a replica out of rotation when `/readyz` fails, while `/healthz` stays up
//! so nothing restarts a replica that is only finishing its open connections. Reads one token;
//! changes nothing.

use http::StatusCode;
use tokio_util::sync::CancellationToken;

/// The `/readyz` answer: 200 `ready` while ward accepts connections, 503 `draining` once the
/// listeners stopped accepting (SIGTERM / SIGINT; `draining` is the server's stop-accepting
/// token).
pub fn readyz(draining: &CancellationToken) -> (StatusCode, &'static str) {
    if draining.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_until_the_drain_starts() {
        let t = CancellationToken::new();
        assert_eq!(readyz(&t).0, StatusCode::OK);
        t.cancel();
        assert_eq!(readyz(&t), (StatusCode::SERVICE_UNAVAILABLE, "draining\n"));
    }
}
