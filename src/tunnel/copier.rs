//! A lane through a buffer in user space, for any pair of streams. Must not hold a buffer
//! while its direction is quiet.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a direction has done so far.
#[derive(Debug, Default)]
pub(super) struct Flow {
    pub(super) read_eof: bool,
    /// The EOF has been passed on as a shutdown: nothing more to do.
    pub(super) finished: bool,
    /// Delivered to the writer.
    pub(super) bytes: u64,
}

/// A failed read or write, so that the error can be blamed on the right side.
pub(super) enum Fault {
    Read(io::Error),
    Write(io::Error),
}

/// Each direction's buffer starts at one TLS record's worth, enough for interactive traffic, so
/// that many open tunnels stay cheap...
pub const RELAY_BUFFER_MIN: usize = 16 * 1024;
/// ...and grows (by [`RELAY_BUFFER_GROWTH`], only while reads keep filling it) up to this for
/// bulk transfers: loopback throughput measured with the ignored `throughput_vs_direct` test
/// is about 1.5x higher at 256 KiB than at 16-64 KiB, as fewer, larger reads mean fewer wake-ups.
pub const RELAY_BUFFER_MAX: usize = 256 * 1024;
/// So a bulk direction reaches the maximum after two reallocations: 16 → 64 → 256 KiB.
const RELAY_BUFFER_GROWTH: usize = 4;

/// A lane through a buffer in user space: fills it from the reader, drains it into the writer.
/// The buffer exists only while bytes are moving: an interactive direction gives it back each
/// time the reader runs dry, a bulk one when the relay finds it quiet (see [`Copier::rest`]), so an idle
/// tunnel holds no buffer (two 16 KiB buffers were most of an idle tunnel's 40 KiB).
pub(super) struct Copier {
    pub(super) flow: Flow,
    pub(super) buf: Option<Box<[u8]>>,
    /// The size of the next buffer: grows while reads keep filling it.
    pub(super) size: usize,
    /// Buffered bytes not yet written are `buf[pos..filled]`.
    pub(super) pos: usize,
    pub(super) filled: usize,
    /// Written since the last flush; flushed before waiting on the reader, so that a writer
    /// that buffers (TLS, say) never sits on bytes while the relay waits.
    pub(super) unflushed: bool,
}

impl Copier {
    pub(super) fn new() -> Self {
        Copier {
            flow: Flow::default(),
            buf: None,
            size: RELAY_BUFFER_MIN,
            pos: 0,
            filled: 0,
            unflushed: false,
        }
    }

    /// Called once the buffer is drained: a read that filled all of it says more was waiting.
    pub(super) fn grow_if_full(&mut self) {
        if self.filled == self.size && self.size < RELAY_BUFFER_MAX {
            self.size = (self.size * RELAY_BUFFER_GROWTH).min(RELAY_BUFFER_MAX);
            self.buf = None;
            (self.pos, self.filled) = (0, 0);
        }
    }

    /// The reader has nothing now and the buffer is empty: an unstretched buffer goes back at
    /// once (allocating 16 KiB per burst costs far less than the reads it serves); a grown one
    /// is kept for the next read of a bulk transfer, until [`Copier::rest`].
    pub(super) fn release_if_small(&mut self) {
        if self.size == RELAY_BUFFER_MIN {
            self.buf = None;
        }
    }
}

impl Copier {
    /// Moves what can be moved now, from `reader` to `writer`; `Ready(Ok(()))` once the
    /// reader's EOF has been passed on as a shutdown of the writer.
    pub(super) fn poll_lane<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        reader: &mut R,
        writer: &mut W,
        active: &AtomicBool,
    ) -> Poll<Result<(), Fault>>
    where
        R: AsyncRead + Unpin + ?Sized,
        W: AsyncWrite + Unpin + ?Sized,
    {
        while !self.flow.finished {
            if self.pos == self.filled && !self.flow.read_eof {
                let size = self.size;
                let buf = self
                    .buf
                    .get_or_insert_with(|| vec![0; size].into_boxed_slice());
                let mut out = ReadBuf::new(buf);
                match Pin::new(&mut *reader).poll_read(cx, &mut out) {
                    Poll::Ready(Ok(())) if out.filled().is_empty() => {
                        self.flow.read_eof = true;
                        self.buf = None;
                    }
                    Poll::Ready(Ok(())) => {
                        (self.pos, self.filled) = (0, out.filled().len());
                        active.store(true, Ordering::Relaxed);
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Fault::Read(e))),
                    Poll::Pending => {
                        self.release_if_small();
                        if self.unflushed {
                            ready!(Pin::new(&mut *writer).poll_flush(cx)).map_err(Fault::Write)?;
                            self.unflushed = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while let Some(buf) = self.buf.as_deref().filter(|_| self.pos < self.filled) {
                let chunk = &buf[self.pos..self.filled];
                let n =
                    ready!(Pin::new(&mut *writer).poll_write(cx, chunk)).map_err(Fault::Write)?;
                if n == 0 {
                    return Poll::Ready(Err(Fault::Write(io::ErrorKind::WriteZero.into())));
                }
                self.pos += n;
                self.flow.bytes += n as u64;
                self.unflushed = true;
                active.store(true, Ordering::Relaxed);
            }
            self.grow_if_full();
            if self.flow.read_eof {
                ready!(Pin::new(&mut *writer).poll_shutdown(cx)).map_err(Fault::Write)?;
                self.flow.finished = true;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// What the direction holds only for moving bytes, given back when a whole tick passed
    /// without any byte moving either way: what a bulk transfer grew is not kept by a tunnel
    /// gone idle.
    pub(super) fn rest(&mut self) {
        if self.pos == self.filled {
            self.buf = None;
            self.size = RELAY_BUFFER_MIN;
        }
    }
}
