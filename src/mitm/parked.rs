//! The origin side of an intercepted HTTP/1.1 connection, parked between requests: while no
//! exchange is in flight only the TLS stream is kept, and each request gets a fresh hyper
//! client connection over it. Must not reorder, pipeline, or retry requests.
//!
//! Why: an idle hyper HTTP/1 client connection holds a 9.8 KiB request queue, an 8 KiB read
//! buffer, an 8 KiB write buffer and a driver task (measured with heaptrack: 27 KiB of heap
//! per idle intercepted connection); HTTP/1.1 keeps no state between exchanges that a new
//! client connection on the same stream would lose.

use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Mutex, oneshot};

use super::body::ClientBody;
use super::upstream::Origin;

/// How long closing a parked stream may take (TLS close_notify, then FIN) when the client's
/// connection ends: as long as hyper's own shutdown would, but bounded.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// When the client's connection ends with an exchange still busy, how long its stream may take
/// to come back: a response read to its end hands it back at once; one abandoned mid-body (the
/// client went away, the origin stalls) never does, and its task is ended instead.
const HANDBACK_WAIT: Duration = Duration::from_millis(500);

/// Where the origin's stream is between and during exchanges.
enum Slot {
    /// No exchange in flight: the stream alone.
    Parked(Origin),
    /// An exchange's connection is running (its task, to end it when abandoned); it hands the
    /// stream back when its response ends (`None` if the origin closed it or broke HTTP/1.1).
    Busy(oneshot::Receiver<Option<Origin>>, tokio::task::AbortHandle),
    /// An `Upgrade` request was sent: that connection stays (and may become the tunnel).
    Kept(http1::SendRequest<ClientBody>),
    /// The origin closed the connection.
    Gone,
}

pub(crate) struct ParkedHttp1 {
    slot: Mutex<Slot>,
}

impl ParkedHttp1 {
    pub fn new(origin: Origin) -> Self {
        ParkedHttp1 {
            slot: Mutex::new(Slot::Parked(origin)),
        }
    }

    /// Sends one request over the origin's stream and returns its response head, or what
    /// went wrong. The next call waits until this response's body has been read to its end.
    pub async fn send(
        &self,
        req: http::Request<ClientBody>,
    ) -> Result<http::Response<Incoming>, String> {
        self.exchange(req).await.map_err(|e| e.to_string())
    }

    async fn exchange(
        &self,
        req: http::Request<ClientBody>,
    ) -> Result<http::Response<Incoming>, Lost> {
        let mut slot = self.slot.lock().await;
        if let Slot::Kept(sender) = &mut *slot {
            sender.ready().await?;
            return Ok(sender.send_request(req).await?);
        }
        let origin = match std::mem::replace(&mut *slot, Slot::Gone) {
            Slot::Parked(origin) => Some(origin),
            Slot::Busy(back, _) => back.await.ok().flatten(),
            Slot::Kept(_) | Slot::Gone => None,
        };
        let Some(origin) = origin else {
            return Err(Lost::Closed);
        };
        let (mut sender, conn) = builder().handshake(TokioIo::new(origin)).await?;
        if req.headers().contains_key(http::header::UPGRADE) {
            tokio::spawn(async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "upstream http/1 connection ended");
                }
            });
            let resp = sender.send_request(req).await;
            *slot = Slot::Kept(sender);
            return Ok(resp?);
        }
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            // Ends once the response is read and `sender` is gone: the stream comes back
            // unless bytes followed the response (not HTTP/1.1 any more: drop it).
            let back = match conn.without_shutdown().await {
                Ok(parts) if parts.read_buf.is_empty() => Some(parts.io.into_inner()),
                Ok(_) => {
                    tracing::debug!("origin sent bytes after a response; closing it");
                    None
                }
                Err(e) => {
                    tracing::debug!(error = %e, "upstream http/1 connection ended");
                    None
                }
            };
            let _ = tx.send(back);
        });
        *slot = Slot::Busy(rx, task.abort_handle());
        drop(slot);
        Ok(sender.send_request(req).await?)
    }

    /// Closes the stream as hyper would have (close_notify, then FIN), once the exchange in
    /// flight, if any, has handed it back; bounded by `CLOSE_TIMEOUT`.
    pub async fn close(&self) {
        let closing = async {
            let slot = std::mem::replace(&mut *self.slot.lock().await, Slot::Gone);
            let origin = match slot {
                Slot::Parked(origin) => Some(origin),
                Slot::Busy(back, task) => {
                    let back = tokio::time::timeout(HANDBACK_WAIT, back).await;
                    // Abandoned mid-response: nothing will read the rest, so nothing may hold
                    // the origin's connection open for it.
                    task.abort();
                    back.ok().and_then(Result::ok).flatten()
                }
                Slot::Kept(_) | Slot::Gone => None,
            };
            if let Some(mut origin) = origin {
                let _ = origin.shutdown().await;
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, closing).await;
    }
}

/// Why no response came.
#[derive(Debug, thiserror::Error)]
enum Lost {
    #[error("closed by the origin")]
    Closed,
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

/// The client connection settings: the client's header case is kept.
fn builder() -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder.preserve_header_case(true);
    builder
}
