//! The one read-until-parsed loop (size cap + absolute deadline) that drives every pure parser
//! over a socket, and the stream that replays already-read bytes to the next stage.
//! Must not parse anything itself nor know any protocol: parsers are passed in.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::time::Instant;

use crate::Parsed;

/// Makes closing `stream` send a RST instead of a FIN (SO_LINGER 0): how a relay passes on a
/// reset from the other side, which a FIN would turn into "that was everything".
pub fn reset_on_close(stream: &tokio::net::TcpStream) {
    if let Err(e) = socket2::SockRef::from(stream).set_linger(Some(std::time::Duration::ZERO)) {
        tracing::debug!(error = %e, "SO_LINGER 0 refused; the close will be a FIN");
    }
}

/// The most one read asks for. Handshake messages are small; a bigger read would only make the
/// buffer outgrow what the next stage needs to replay.
const READ_CHUNK: usize = 8 * 1024;

/// Why [`read_until`] gave up before the parser said `Done`.
#[derive(Debug, thiserror::Error)]
pub enum ReadError<E> {
    /// The parser rejected the bytes.
    #[error("malformed: {0}")]
    Parse(E),
    /// `cap` bytes arrived and the message was still incomplete.
    #[error("message larger than the cap")]
    TooLarge,
    /// The deadline passed before a complete message arrived.
    #[error("timed out")]
    Timeout,
    /// The peer sent EOF before a complete message. The buffer tells whether any byte came.
    #[error("closed before a complete message")]
    Closed,
    /// Reading failed.
    #[error(transparent)]
    Io(io::Error),
}

/// Reads into `buf` until `parse(&buf)` returns `Done`, and returns the value and `consumed`.
///
/// Bytes after `consumed` stay in `buf` for the next stage; bytes already in `buf` on entry are
/// parsed before anything is read. `buf` never grows past `cap`: a message that does not fit is
/// [`ReadError::TooLarge`]. The parser runs only when new bytes arrive, and its first error is
/// returned at once. `deadline` bounds the whole call, not each read.
pub async fn read_until<S, T, E>(
    stream: &mut S,
    buf: &mut BytesMut,
    cap: usize,
    deadline: Instant,
    mut parse: impl FnMut(&[u8]) -> Result<Parsed<T>, E>,
) -> Result<(T, usize), ReadError<E>>
where
    S: AsyncRead + Unpin + ?Sized,
{
    let mut fresh = !buf.is_empty();
    loop {
        if fresh {
            match parse(buf).map_err(ReadError::Parse)? {
                Parsed::Done { value, consumed } => return Ok((value, consumed)),
                Parsed::Incomplete => {}
            }
        }
        let room = cap.saturating_sub(buf.len());
        if room == 0 {
            return Err(ReadError::TooLarge);
        }
        buf.reserve(room.min(READ_CHUNK));
        let mut limited = (&mut *buf).limit(room);
        let read = tokio::time::timeout_at(deadline, stream.read_buf(&mut limited)).await;
        match read {
            Err(_elapsed) => return Err(ReadError::Timeout),
            Ok(Err(e)) => return Err(ReadError::Io(e)),
            Ok(Ok(0)) => return Err(ReadError::Closed),
            Ok(Ok(_)) => fresh = true,
        }
    }
}

/// [`read_until`] for a message handled on its own (a SOCKS5 message, say): removes the
/// message's bytes from the front of `buf`, leaving what followed it, and returns its value.
pub async fn read_message<S, T, E>(
    stream: &mut S,
    buf: &mut BytesMut,
    cap: usize,
    deadline: Instant,
    parse: impl FnMut(&[u8]) -> Result<Parsed<T>, E>,
) -> Result<T, ReadError<E>>
where
    S: AsyncRead + Unpin + ?Sized,
{
    let (value, consumed) = read_until(stream, buf, cap, deadline, parse).await?;
    buf.advance(consumed);
    Ok(value)
}

/// A stream that first replays `prefix` to reads, then reads from `inner`. Writes, flushes and
/// shutdowns go straight to `inner`.
#[derive(Debug)]
pub struct PrefixedStream<S> {
    prefix: Bytes,
    inner: S,
}

impl<S> PrefixedStream<S> {
    /// Replays `prefix` before reading from `inner`.
    pub fn new(prefix: Bytes, inner: S) -> Self {
        PrefixedStream { prefix, inner }
    }

    /// The part of the prefix not read yet, and the inner stream.
    pub fn into_parts(self) -> (Bytes, S) {
        (self.prefix, self.inner)
    }

    /// The inner stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner stream, mutably (writes to it bypass nothing: the prefix is read-only).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PrefixedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.inner).poll_read(cx, out);
        }
        let n = this.prefix.len().min(out.remaining());
        out.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        if this.prefix.is_empty() {
            // An emptied `Bytes` still holds its whole buffer (the 8 KiB read chunk): release
            // it, or every long-lived connection keeps it.
            this.prefix = Bytes::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PrefixedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::{AsyncWriteExt, duplex};

    /// A toy parser: a message is everything up to and including the first `\n`; `!` is illegal.
    fn parse_line(buf: &[u8]) -> Result<Parsed<Vec<u8>>, &'static str> {
        if buf.contains(&b'!') {
            return Err("bang");
        }
        Ok(match buf.iter().position(|&b| b == b'\n') {
            Some(i) => Parsed::Done {
                value: buf[..i].to_vec(),
                consumed: i + 1,
            },
            None => Parsed::Incomplete,
        })
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn one_byte_at_a_time_then_leftover_stays() {
        let (mut client, mut server) = duplex(1);
        let writer = tokio::spawn(async move {
            for &b in b"hello\nrest" {
                client.write_all(&[b]).await.unwrap();
            }
            client
        });
        let mut buf = BytesMut::new();
        let mut calls = 0;
        let counting = |b: &[u8]| {
            calls += 1;
            parse_line(b)
        };
        let (line, consumed) = read_until(&mut server, &mut buf, 64, soon(), counting)
            .await
            .unwrap();
        assert_eq!((line.as_slice(), consumed), (&b"hello"[..], 6));
        assert_eq!(calls, 6, "parsed once per arriving byte, never spinning");
        // Bytes after `consumed` stay for the next stage, which reads on from there.
        buf.advance(consumed);
        for _ in 0..4 {
            if buf.len() == 4 {
                break;
            }
            server.read_buf(&mut buf).await.unwrap();
        }
        assert_eq!(&buf[..], b"rest");
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn bytes_already_buffered_are_parsed_first() {
        let (_client, mut server) = duplex(64);
        let mut buf = BytesMut::from(&b"ready\n"[..]);
        let (line, consumed) = read_until(&mut server, &mut buf, 64, soon(), parse_line)
            .await
            .unwrap();
        assert_eq!((line.as_slice(), consumed), (&b"ready"[..], 6));
    }

    #[tokio::test]
    async fn cap_exceeded_without_growing_past_it() {
        let (mut client, mut server) = duplex(1024);
        client.write_all(&[b'a'; 100]).await.unwrap();
        let mut buf = BytesMut::new();
        let err = read_until(&mut server, &mut buf, 10, soon(), parse_line)
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::TooLarge), "{err:?}");
        assert_eq!(buf.len(), 10);
    }

    #[tokio::test]
    async fn a_message_of_exactly_cap_bytes_fits() {
        let (mut client, mut server) = duplex(1024);
        client.write_all(b"123456789\nmore").await.unwrap();
        let mut buf = BytesMut::new();
        let (_, consumed) = read_until(&mut server, &mut buf, 10, soon(), parse_line)
            .await
            .unwrap();
        assert_eq!(consumed, 10);
    }

    #[tokio::test]
    async fn deadline_is_absolute() {
        let (mut client, mut server) = duplex(64);
        let start = Instant::now();
        let trickle = tokio::spawn(async move {
            // A slow client that keeps sending must not extend the deadline.
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(40)).await;
                if client.write_all(b"x").await.is_err() {
                    break;
                }
            }
        });
        let mut buf = BytesMut::new();
        let deadline = start + Duration::from_millis(200);
        let err = read_until(&mut server, &mut buf, 64, deadline, parse_line)
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::Timeout), "{err:?}");
        let waited = Instant::now() - start;
        assert!(waited >= Duration::from_millis(200) && waited < Duration::from_secs(2));
        assert!(!buf.is_empty());
        trickle.abort();
    }

    #[tokio::test]
    async fn eof_mid_message_is_closed() {
        let (mut client, mut server) = duplex(64);
        client.write_all(b"half a line").await.unwrap();
        drop(client);
        let mut buf = BytesMut::new();
        let err = read_until(&mut server, &mut buf, 64, soon(), parse_line)
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::Closed), "{err:?}");
        assert_eq!(&buf[..], b"half a line");
    }

    #[tokio::test]
    async fn parse_error_returns_at_once() {
        let (mut client, mut server) = duplex(64);
        // The client keeps the connection open: the error must not wait for more bytes.
        client.write_all(b"no!").await.unwrap();
        let mut buf = BytesMut::new();
        let start = Instant::now();
        let err = read_until(&mut server, &mut buf, 64, soon(), parse_line)
            .await
            .unwrap_err();
        assert!(matches!(err, ReadError::Parse("bang")), "{err:?}");
        assert!(Instant::now() - start < Duration::from_secs(1));
        drop(client);
    }

    #[tokio::test]
    async fn prefixed_stream_replays_then_reads_in_small_pieces() {
        let (mut far, near) = duplex(64);
        far.write_all(b" world").await.unwrap();
        drop(far);
        let mut stream = PrefixedStream::new(Bytes::from_static(b"hello"), near);
        let mut got = Vec::new();
        let mut small = [0u8; 2];
        loop {
            let n = stream.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= 2);
            got.extend_from_slice(&small[..n]);
        }
        assert_eq!(got, b"hello world");
        let (rest, _inner) = stream.into_parts();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn prefixed_stream_writes_go_to_inner_and_parts_return_unread_prefix() {
        let (mut far, near) = duplex(64);
        let mut stream = PrefixedStream::new(Bytes::from_static(b"abcdef"), near);
        let mut two = [0u8; 2];
        stream.read_exact(&mut two).await.unwrap();
        assert_eq!(&two, b"ab");
        stream.write_all(b"ping").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut echoed = Vec::new();
        far.read_to_end(&mut echoed).await.unwrap();
        assert_eq!(echoed, b"ping");
        let (rest, _inner) = stream.into_parts();
        assert_eq!(&rest[..], b"cdef");
    }
}
