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
    let task = tokio::spawn(async move { relay(&mut client, &mut upstream, idle, shutdown).await });
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

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let far = TcpStream::connect(listener.local_addr().unwrap());
    let (far, near) = tokio::join!(far, listener.accept());
    (far.unwrap(), near.unwrap().0)
}

/// Two connected loopback TCP pairs with a relay between their inner ends.
async fn spawn_relay_tcp(
    idle: Duration,
    shutdown: CancellationToken,
) -> (TcpStream, TcpStream, JoinHandle<Relayed>) {
    let (client_app, mut client) = tcp_pair().await;
    let (upstream_app, mut upstream) = tcp_pair().await;
    let task = tokio::spawn(async move { relay(&mut client, &mut upstream, idle, shutdown).await });
    (client_app, upstream_app, task)
}

/// Enough bytes that a direction counts as bulk and a TCP lane moves onto a pipe.
const BULK: usize = 1024 * 1024;

/// Writes [`BULK`] bytes into `from` and reads them out of `to`.
async fn bulk(from: &mut TcpStream, to: &mut TcpStream) {
    let (_, got) = tokio::join!(from.write_all(&[9; BULK]), read_n(to, BULK));
    assert!(got.iter().all(|b| *b == 9));
}

#[tokio::test]
async fn client_reset_mid_stream() {
    let (mut c, mut u, task) = spawn_relay_tcp(LONG, CancellationToken::new()).await;
    bulk(&mut c, &mut u).await;
    c.write_all(b"partial").await.unwrap();
    assert_eq!(read_n(&mut u, 7).await, b"partial");
    c.set_zero_linger().unwrap();
    drop(c);
    let done = finish(task).await;
    assert!(matches!(done.outcome, Outcome::ClientReset), "{done:?}");
    assert_eq!(done.bytes_up, BULK as u64 + 7);
}

#[tokio::test]
async fn upstream_reset_mid_stream() {
    let (mut c, mut u, task) = spawn_relay_tcp(LONG, CancellationToken::new()).await;
    bulk(&mut u, &mut c).await;
    u.write_all(b"partial").await.unwrap();
    assert_eq!(read_n(&mut c, 7).await, b"partial");
    u.set_zero_linger().unwrap();
    drop(u);
    let done = finish(task).await;
    assert!(matches!(done.outcome, Outcome::UpstreamReset), "{done:?}");
    assert_eq!(done.bytes_down, BULK as u64 + 7);
}

#[tokio::test]
async fn tcp_half_close_both_ways_after_bulk() {
    let (mut c, mut u, task) = spawn_relay_tcp(LONG, CancellationToken::new()).await;
    bulk(&mut c, &mut u).await;
    c.shutdown().await.unwrap();
    let mut rest = Vec::new();
    assert_eq!(u.read_to_end(&mut rest).await.unwrap(), 0, "EOF passed on");
    bulk(&mut u, &mut c).await;
    u.write_all(b"late reply").await.unwrap();
    u.shutdown().await.unwrap();
    c.read_to_end(&mut rest).await.unwrap();
    assert_eq!(rest, b"late reply");
    let done = finish(task).await;
    assert!(matches!(done.outcome, Outcome::ClientClosed), "{done:?}");
    assert_eq!(
        (done.bytes_up, done.bytes_down),
        (BULK as u64, BULK as u64 + 10)
    );
}

#[tokio::test]
async fn tcp_idle_timeout_and_shutdown_keep_the_counters() {
    let idle = Duration::from_millis(150);
    let (mut c, mut u, task) = spawn_relay_tcp(idle, CancellationToken::new()).await;
    bulk(&mut c, &mut u).await;
    bulk(&mut u, &mut c).await;
    let done = finish(task).await;
    assert!(matches!(done.outcome, Outcome::IdleTimeout), "{done:?}");
    assert_eq!((done.bytes_up, done.bytes_down), (BULK as u64, BULK as u64));

    let token = CancellationToken::new();
    let (mut c, mut u, task) = spawn_relay_tcp(LONG, token.clone()).await;
    bulk(&mut u, &mut c).await;
    token.cancel();
    let done = finish(task).await;
    assert!(matches!(done.outcome, Outcome::Shutdown), "{done:?}");
    assert_eq!((done.bytes_up, done.bytes_down), (0, BULK as u64));
}

#[tokio::test]
async fn buffers_exist_only_while_bytes_move() {
    let (mut c, mut client) = duplex(PIPE);
    let (mut u, mut upstream) = duplex(PIPE);
    let token = CancellationToken::new();
    let mut dirs = Directions::new(Copier::new(), Copier::new());
    // Ticks every 50 ms: quiet ticks come well before the idle timeout.
    let idle = Duration::from_millis(400);
    let relaying = drive(&mut dirs, &mut client, &mut upstream, idle, token.clone());
    let talking = async {
        c.write_all(b"ping").await.unwrap();
        read_n(&mut u, 4).await;
        // A burst that fills the buffer, then silence.
        let burst = vec![7; 3 * RELAY_BUFFER_MIN];
        let writing = u.write_all(&burst);
        let (written, got) = tokio::join!(writing, read_n(&mut c, burst.len()));
        written.unwrap();
        assert_eq!(got, burst);
        u.write_all(b"pong").await.unwrap();
        read_n(&mut c, 4).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        token.cancel();
    };
    let (outcome, ()) = tokio::join!(relaying, talking);
    assert!(matches!(outcome, Outcome::Shutdown), "{outcome:?}");
    for copier in [&dirs.up, &dirs.down] {
        assert!(copier.buf.is_none(), "buffer kept while quiet");
        assert_eq!(copier.size, RELAY_BUFFER_MIN, "the next burst starts small");
    }
    let done = dirs.relayed(outcome);
    assert_eq!(done.bytes_down, 3 * RELAY_BUFFER_MIN as u64 + 4);
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
    let (c, u, task) = spawn_relay_tcp(LONG, CancellationToken::new()).await;
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
