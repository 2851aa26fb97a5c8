//! The TCP-to-TCP lane of Linux: copies until its direction proves bulk, then splices
//! through a kernel pipe. Must not strand a byte in the pipe when it changes how it moves them.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use super::copier::Copier;
use super::{Counted, Fault, Flow, Lane, Rest};
use crate::splice::{self, KernelPipe};

/// A TCP-to-TCP lane. It starts as a copier, so that an interactive tunnel costs no pipe (two
/// file descriptors and pipe quota); once reads have kept filling its buffer until it grew to
/// the maximum, the direction is bulk and moves on to a kernel pipe. It stays copying when no
/// pipe can be had or the kernel cannot splice these sockets.
pub(super) enum TcpLane {
    Copy { copier: Copier, may_splice: bool },
    Splice { flow: Flow, pipe: KernelPipe },
}

impl TcpLane {
    pub(super) fn new() -> Self {
        TcpLane::Copy {
            copier: Copier::new(),
            may_splice: true,
        }
    }

    /// Moves a bulk copier, with nothing left in its buffer, onto a pipe if one can be had.
    fn promote_if_bulk(&mut self) {
        let TcpLane::Copy { copier, may_splice } = self else {
            return;
        };
        if !*may_splice || !copier.is_bulk() || copier.flow.read_eof {
            return;
        }
        match KernelPipe::new() {
            Ok(pipe) => {
                let flow = std::mem::take(&mut copier.flow);
                *self = TcpLane::Splice { flow, pipe };
            }
            Err(e) => {
                tracing::debug!(error = %e, "no pipe for splicing: copying");
                *may_splice = false;
            }
        }
    }
}

impl Rest for TcpLane {
    /// An empty pipe goes back too (two descriptors and pipe quota): should the direction turn
    /// bulk again, it earns a new one the same way.
    fn rest(&mut self) {
        match self {
            TcpLane::Copy { copier, .. } => copier.rest(),
            TcpLane::Splice { flow, pipe } if pipe.is_empty() && !flow.finished => {
                let copier = Copier::resuming(std::mem::take(flow));
                *self = TcpLane::Copy {
                    copier,
                    may_splice: true,
                };
            }
            TcpLane::Splice { .. } => {}
        }
    }
}

impl Counted for TcpLane {
    fn bytes(&self) -> u64 {
        Lane::<TcpStream, TcpStream>::flow(self).bytes
    }
}

impl Lane<TcpStream, TcpStream> for TcpLane {
    fn flow(&self) -> &Flow {
        match self {
            TcpLane::Copy { copier, .. } => &copier.flow,
            TcpLane::Splice { flow, .. } => flow,
        }
    }

    fn poll_lane(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut TcpStream,
        writer: &mut TcpStream,
        active: &AtomicBool,
    ) -> Poll<Result<(), Fault>> {
        let (flow, pipe) = match self {
            TcpLane::Splice { flow, pipe } => (flow, pipe),
            TcpLane::Copy { copier, .. } => {
                // Wait for bytes before taking a buffer to read them into.
                if copier.is_waiting_unbuffered() {
                    ready!(reader.poll_read_ready(cx)).map_err(Fault::Read)?;
                }
                let polled = copier.poll_lane(cx, reader, writer, active);
                if polled.is_pending() {
                    self.promote_if_bulk();
                    if let TcpLane::Splice { .. } = self {
                        // The splice lane waits on the same readiness: poll it so it is the
                        // one registered to be woken.
                        return self.poll_lane(cx, reader, writer, active);
                    }
                }
                return polled;
            }
        };
        match poll_splice(flow, pipe, cx, reader, writer, active) {
            // Only a fill fails this way, and a fill starts from an empty pipe: no byte is
            // stranded in it when the copier takes over.
            Poll::Ready(Err(Fault::Read(e))) if splice::is_unsupported(&e) => {
                tracing::debug!(error = %e, "splice unavailable: copying");
                let copier = Copier::resuming(std::mem::take(flow));
                *self = TcpLane::Copy {
                    copier,
                    may_splice: false,
                };
                self.poll_lane(cx, reader, writer, active)
            }
            polled => polled,
        }
    }
}

/// The splice lane's loop: fill the empty pipe from the reader, drain it all into the writer.
fn poll_splice(
    flow: &mut Flow,
    pipe: &mut KernelPipe,
    cx: &mut Context<'_>,
    reader: &mut TcpStream,
    writer: &mut TcpStream,
    active: &AtomicBool,
) -> Poll<Result<(), Fault>> {
    while !flow.finished {
        if pipe.is_empty() && !flow.read_eof {
            match ready!(pipe.poll_fill(cx, reader)).map_err(Fault::Read)? {
                0 => flow.read_eof = true,
                _ => active.store(true, Ordering::Relaxed),
            }
        }
        while !pipe.is_empty() {
            let n = ready!(pipe.poll_drain(cx, writer)).map_err(Fault::Write)?;
            flow.bytes += n as u64;
            active.store(true, Ordering::Relaxed);
        }
        if flow.read_eof {
            ready!(Pin::new(&mut *writer).poll_shutdown(cx)).map_err(Fault::Write)?;
            flow.finished = true;
        }
    }
    Poll::Ready(Ok(()))
}
