//! The one streamed body: `len` bytes of `x`, made as they are read from one static chunk (so
//! that neither side spends time generating data), counted into a shared counter so a test can
//! see how far the producer ran ahead of the reader. Also the same bytes written to a raw stream.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// One frame's (or one write's) worth of payload.
pub const CHUNK: usize = 64 * 1024;
/// The byte every streamed body is made of.
pub const FILL: u8 = b'x';
static CHUNK_OF_FILL: [u8; CHUNK] = [FILL; CHUNK];

/// A body of `left` bytes of [`FILL`], produced a [`CHUNK`] at a time as it is polled.
pub struct Repeat {
    left: u64,
    produced: Arc<AtomicU64>,
}

impl Repeat {
    /// `len` bytes, each chunk added to `produced` as it is handed out.
    pub fn new(len: u64, produced: Arc<AtomicU64>) -> Repeat {
        Repeat {
            left: len,
            produced,
        }
    }
}

impl Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK as u64);
        self.left -= n;
        self.produced.fetch_add(n, Ordering::Relaxed);
        let data = Bytes::from_static(&CHUNK_OF_FILL[..n as usize]);
        Poll::Ready(Some(Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// Writes `len` bytes of [`FILL`] to `stream`, a [`CHUNK`] per write, then flushes.
pub async fn write_fill<S: AsyncWrite + Unpin>(stream: &mut S, len: u64) -> std::io::Result<()> {
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        stream.write_all(&CHUNK_OF_FILL[..n]).await?;
        left -= n as u64;
    }
    stream.flush().await
}
