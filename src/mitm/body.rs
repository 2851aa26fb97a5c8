//! The bodies of an intercepted exchange: passed through frame by frame and counted, the
//! response's carrying the flow record that is written when it ends. Must never buffer a body:
//! a capture (`flows.bodies`) copies at most its cap, the frames themselves pass at once.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::Instant;

use super::flows::bodies::{self, SharedTap};
use super::flows::capture::Timings;
use super::flows::{FlowRecord, FlowSink, millis};
use crate::error::ErrorKind;
use crate::outcome::Outcome;

/// A client's request body on its way upstream.
pub(crate) type ClientBody = Counting<Incoming>;
/// What the client gets: the origin's body, or ward's own short answer.
pub(crate) type RelayBody = Either<Counting<Incoming>, Full<Bytes>>;

/// A finished request's record, emitted once when the response body ends or is dropped.
pub(crate) struct FlowDone {
    /// The record, completed by the relay as the exchange goes.
    pub record: FlowRecord,
    /// When the request arrived, for the record's duration.
    pub started: Instant,
    /// Request body bytes, counted by the request's [`Counting`].
    pub request_bytes: Arc<AtomicU64>,
    /// Response body bytes, counted by the response's [`Counting`].
    pub response_bytes: Arc<AtomicU64>,
    /// Microseconds from `started` to the request body's end; [`NOT_YET`] until then.
    pub request_end_us: Arc<AtomicU64>,
    /// When the response head came back, if it did.
    pub response_head: Option<Instant>,
    /// The request body's capture, when one was asked for.
    pub request_tap: Option<SharedTap>,
    /// The response body's capture, when one was asked for.
    pub response_tap: Option<SharedTap>,
    /// Where the record goes.
    pub sink: Arc<FlowSink>,
}

/// A mark not (yet) reached.
pub(crate) const NOT_YET: u64 = u64::MAX;

fn micros_since(start: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(start).as_micros()).unwrap_or(NOT_YET - 1)
}

impl Drop for FlowDone {
    fn drop(&mut self) {
        self.record.request_bytes = self.request_bytes.load(Ordering::Relaxed);
        self.record.response_bytes = self.response_bytes.load(Ordering::Relaxed);
        let now = Instant::now();
        self.record.duration_ms = millis(now.saturating_duration_since(self.started));
        let request_end = self.request_end_us.load(Ordering::Relaxed);
        self.record.timings = Some(Timings::from_marks(
            (request_end != NOT_YET).then_some(request_end),
            self.response_head.map(|h| micros_since(self.started, h)),
            micros_since(self.started, now),
        ));
        self.record.request_body = self.request_tap.as_ref().map(bodies::take);
        self.record.response_body = self.response_tap.as_ref().map(bodies::take);
        let record = std::mem::replace(&mut self.record, FlowRecord::empty());
        self.sink.emit(record);
    }
}

/// A body passed through frame by frame, counting data bytes; it holds the flow record of
/// its exchange (on the response side) so that the record is written when the body ends.
/// The record is boxed: the request type, body included, sizes every slot of hyper's
/// per-connection client queue (32 slots); inline, the 376-byte record made that queue 21 KiB.
pub(crate) struct Counting<B> {
    inner: B,
    bytes: Arc<AtomicU64>,
    done: Option<Box<FlowDone>>,
    /// Where to note, once, when the body ended (micros since the given start).
    end_mark: Option<(Instant, Arc<AtomicU64>)>,
    /// Where the body's first bytes are copied, when they are captured.
    tap: Option<SharedTap>,
}

impl<B> Counting<B> {
    /// Counts `inner`'s data into `bytes`; `done` is written when the body ends or is dropped.
    pub fn new(inner: B, bytes: Arc<AtomicU64>, done: Option<Box<FlowDone>>) -> Self {
        Counting {
            inner,
            bytes,
            done,
            end_mark: None,
            tap: None,
        }
    }

    /// Also copies the body's first bytes into `tap` (bounded by the tap's cap).
    pub fn tapped(mut self, tap: Option<SharedTap>) -> Self {
        self.tap = tap;
        self
    }

    /// Also notes in `slot` when the body ends, as micros since `start` (a request's `send`).
    /// An empty body is never polled (hyper asks `is_end_stream` first): it ends now.
    pub fn marking_end(mut self, start: Instant, slot: Arc<AtomicU64>) -> Self
    where
        B: Body,
    {
        if self.inner.is_end_stream() {
            slot.store(micros_since(start, Instant::now()), Ordering::Relaxed);
        } else {
            self.end_mark = Some((start, slot));
        }
        self
    }
}

impl<B> Body for Counting<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::error::Error + 'static,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
                    if let Some(tap) = &self.tap
                        && let Ok(mut tap) = tap.lock()
                    {
                        tap.feed(data);
                    }
                }
            }
            Poll::Ready(Some(Err(e))) => {
                if let Some(done) = &mut self.done {
                    // The response body broke off: the record says who broke it.
                    done.record.error = Some(if upstream_torn_down(e) {
                        Outcome::UpstreamReset.log_name()
                    } else {
                        ErrorKind::Io.log_name()
                    });
                }
                if let Some((start, slot)) = self.end_mark.take() {
                    slot.store(micros_since(start, Instant::now()), Ordering::Relaxed);
                }
                self.done = None;
            }
            Poll::Ready(None) => {
                if let Some((start, slot)) = self.end_mark.take() {
                    slot.store(micros_since(start, Instant::now()), Ordering::Relaxed);
                }
                self.done = None;
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether an error in a relayed exchange comes from the origin tearing it down: a reset or
/// abort of the connection under its TLS, or an HTTP/2 RST_STREAM or GOAWAY it sent with an
/// error. A body that merely ended early (a FIN mid-length) is not a reset.
pub(crate) fn upstream_torn_down(err: &(dyn std::error::Error + 'static)) -> bool {
    use std::io::ErrorKind as K;
    let mut cause = Some(err);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(io.kind(), K::ConnectionReset | K::ConnectionAborted)
        {
            return true;
        }
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            // h2 keeps its I/O error to itself (no `source`).
            let io_reset = h2
                .get_io()
                .is_some_and(|io| matches!(io.kind(), K::ConnectionReset | K::ConnectionAborted));
            let remote_reset = h2.is_remote() && (h2.is_reset() || h2.is_go_away());
            return io_reset || remote_reset;
        }
        cause = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::upstream_torn_down;
    use std::io;

    /// An error whose cause is another, as hyper wraps the I/O error under it.
    #[derive(Debug, thiserror::Error)]
    #[error("body failed")]
    struct Wrapped(#[source] io::Error);

    #[test]
    fn resets_are_told_apart_from_other_failures() {
        let reset = || io::Error::from(io::ErrorKind::ConnectionReset);
        assert!(upstream_torn_down(&reset()));
        assert!(upstream_torn_down(&Wrapped(reset())));
        assert!(upstream_torn_down(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        // A body cut by a FIN is truncated, not reset; a reset ward itself chose is not the
        // origin's.
        assert!(!upstream_torn_down(&Wrapped(io::Error::from(
            io::ErrorKind::UnexpectedEof
        ))));
        assert!(!upstream_torn_down(&h2::Error::from(
            h2::Reason::INTERNAL_ERROR
        )));
    }
}
