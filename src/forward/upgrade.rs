//! Protocol upgrades (WebSocket) over plain-HTTP forwarding: an `Upgrade` request keeps the
//! two fields a hop would otherwise drop, and once the origin answers 101 both sides are
//! spliced byte for byte by the one relay, under the idle timeout and the force-close. The
//! request's access record is written when the upgraded exchange ends, with its bytes.

use std::time::Duration;

use http::header::{CONNECTION, HeaderMap, HeaderValue, UPGRADE};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::log::{AccessRecord, Stage};
use crate::tunnel;

/// The protocols a request asks to upgrade to, when its `Connection` names `upgrade`
/// (RFC 9110 section 7.8: an `Upgrade` without it is not a request to switch).
pub fn requested(headers: &HeaderMap) -> Option<HeaderValue> {
    let named = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    if !named {
        return None;
    }
    headers.get(UPGRADE).cloned()
}

/// Puts back what [`crate::front::http::strip_hop_by_hop`] removed and the next hop needs to
/// switch protocols: `Upgrade` and `Connection: upgrade`.
pub fn restore(headers: &mut HeaderMap, protocols: HeaderValue) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, protocols);
}

/// Both halves of an upgrade that the origin accepted, not yet switched.
pub struct Switch {
    /// The client's side, switching once ward's 101 reaches it.
    pub client: OnUpgrade,
    /// The origin's side, switching once its 101 was read.
    pub origin: OnUpgrade,
}

impl Switch {
    /// Relays the upgraded exchange on `tasks`, so the connection's drain waits for it; the
    /// record is emitted at its end.
    pub fn spawn(
        self,
        tasks: &TaskTracker,
        mut rec: AccessRecord,
        idle: Duration,
        force_close: CancellationToken,
    ) {
        tasks.spawn(async move {
            let (client, origin) = match tokio::try_join!(self.client, self.origin) {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::debug!(error = %e, "upgrade did not complete");
                    return;
                }
            };
            rec.stage = Stage::Tunnel;
            let (mut client, mut origin) = (TokioIo::new(client), TokioIo::new(origin));
            let done = tunnel::relay(&mut client, &mut origin, idle, force_close).await;
            rec.bytes_up = done.bytes_up;
            rec.bytes_down = done.bytes_down;
            rec.outcome = Some(done.outcome);
            if let Some(err) = &done.error {
                rec.set_error(err);
            }
        });
    }
}
