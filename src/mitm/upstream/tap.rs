//! The origin's TCP stream, keeping a copy of the first bytes ward writes to it until they hold
//! one whole ClientHello: the upstream leg's JA4 is computed from the hello ward actually sent,
//! not from what its config should produce. Must not change a byte, and costs one branch per
//! write once the hello is read.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::Parsed;
use crate::tls::{Ja4, MAX_CLIENT_HELLO, parse_client_hello};

/// A stream that reads ward's own ClientHello off its first writes.
#[derive(Debug)]
pub(crate) struct HelloTap<S> {
    inner: S,
    hello: Tapped,
}

#[derive(Debug)]
enum Tapped {
    /// The bytes written so far, fewer than a whole hello.
    Reading(Vec<u8>),
    /// The hello's JA4; `None` if the bytes were no hello the parser reads.
    Read(Option<Ja4>),
}

impl<S> HelloTap<S> {
    pub(crate) fn new(inner: S) -> Self {
        HelloTap {
            inner,
            hello: Tapped::Reading(Vec::new()),
        }
    }

    /// The JA4 of the hello written through this stream, once it is whole.
    pub(crate) fn ja4(&self) -> Option<Ja4> {
        match self.hello {
            Tapped::Read(ja4) => ja4,
            Tapped::Reading(_) => None,
        }
    }

    /// Notes `n` written bytes taken from the front of `bufs`.
    fn note(&mut self, bufs: &[&[u8]], mut n: usize) {
        let Tapped::Reading(seen) = &mut self.hello else {
            return;
        };
        for buf in bufs {
            let take = n.min(buf.len());
            seen.extend_from_slice(&buf[..take]);
            n -= take;
        }
        self.hello = match parse_client_hello(seen) {
            Ok(Parsed::Done { value, .. }) => Tapped::Read(Some(value.ja4)),
            // The parser's cap bounds the copy: past it, it has said `TooLarge`.
            Ok(Parsed::Incomplete) if seen.len() < MAX_CLIENT_HELLO => return,
            Ok(Parsed::Incomplete) | Err(_) => Tapped::Read(None),
        };
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for HelloTap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for HelloTap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = written {
            self.note(&[buf], n);
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = written
            && matches!(self.hello, Tapped::Reading(_))
        {
            let slices: Vec<&[u8]> = bufs.iter().map(|b| &**b).collect();
            self.note(&slices, n);
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    const CURL: &[u8] = include_bytes!("../../../tests/fixtures/curl.bin");

    #[tokio::test]
    async fn a_hello_written_in_pieces_is_read_whole_and_nothing_is_changed() {
        let mut tap = HelloTap::new(Vec::new());
        for piece in CURL.chunks(100) {
            assert_eq!(tap.ja4(), None, "not whole yet");
            tap.write_all(piece).await.unwrap();
        }
        let want = match parse_client_hello(CURL) {
            Ok(Parsed::Done { value, .. }) => value.ja4,
            other => panic!("{other:?}"),
        };
        assert_eq!(tap.ja4(), Some(want));
        tap.write_all(b"after the hello").await.unwrap();
        assert_eq!(tap.inner.len(), CURL.len() + 15);
        assert_eq!(&tap.inner[..CURL.len()], CURL);
    }

    #[tokio::test]
    async fn bytes_that_are_no_hello_stop_the_copy() {
        let mut tap = HelloTap::new(Vec::new());
        tap.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert!(matches!(tap.hello, Tapped::Read(None)));
    }
}
