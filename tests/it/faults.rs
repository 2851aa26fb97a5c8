//! Faults, each against the real binary: an origin that resets mid-download (tunnel, inspected
//! h1 and h2), an origin that stalls, an upstream proxy that dies mid-tunnel, a client that
//! vanishes without FIN, accept hitting EMFILE, a reload storm under load, and SIGTERM during a
//! large intercepted download. Each asserts on the bytes a client received, not only on exit
//! codes, and on what the records say. (A failing flows file is tested in flows_file.rs.)

use std::convert::Infallible;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::task::{JoinHandle, JoinSet};

use crate::inspect::{inspecting_policy, ward_ca};
use crate::support::net::{self, IO_TIMEOUT, http_connect};
use crate::support::origin::{INDEX_BODY, runtime};
use crate::support::tools;
use crate::support::ward::{EVENT_WAIT, field, is_access, message};
use crate::support::{Policy, Ward, client_config_trusting, have, origins, wait_until};

/// What `/big` and `/stall-body` announce in their Content-Length: far more than any test
/// here lets through, so a complete-looking body can only be a bug.
const BIG_BODY: u64 = 256 * 1024 * 1024;
/// What `/stall-body` and `/reset-stream` send before they stall or fail.
const SENT_BEFORE_FAULT: u64 = 64 * 1024;
/// The resetting origin sends a TCP RST once it has written this much (TLS records included):
/// past the handshake and the response head, far short of `/big`.
const RESET_AFTER: u64 = 512 * 1024;
/// One chunk of a fault origin's body.
const CHUNK: usize = 16 * 1024;
static CHUNK_OF_X: [u8; CHUNK] = [b'x'; CHUNK];

/// Timeouts for a ward whose idle timeout is short enough to wait for in a test.
const SHORT_IDLE: &str = "{connect: 3s, client_hello: 3s, idle: 1s, handshake: 3s, dns: 3s}";

// ---------------------------------------------------------------------------------------------
// A fault origin: HTTP/1.1 and HTTP/2 (ALPN) over TLS with the test CA's leaf, whose paths
// fail on purpose, and which can reset its TCP connection after a number of bytes written.

/// `/big`: [`BIG_BODY`] bytes. `/stall-head`: never answers. `/stall-body`: announces
/// [`BIG_BODY`], sends [`SENT_BEFORE_FAULT`], then nothing. `/reset-stream`: the same, then
/// fails the body (HTTP/2: RST_STREAM).
struct FaultOrigin {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl FaultOrigin {
    /// With `reset_after`, every connection is reset (SO_LINGER 0, then closed) once that many
    /// bytes have been written to it.
    fn start(reset_after: Option<u64>) -> FaultOrigin {
        let tls = origins().server_config(testkit::ALPN_BOTH);
        runtime().block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let addr = l.local_addr().expect("addr");
            let accept = tokio::spawn(async move {
                // Connections live in the set, so they end with the accept task.
                let mut conns = JoinSet::new();
                while let Ok((s, _)) = l.accept().await {
                    conns.spawn(serve_faulty(s, tls.clone(), reset_after));
                    while conns.try_join_next().is_some() {}
                }
            });
            FaultOrigin { addr, accept }
        })
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for FaultOrigin {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve_faulty(
    s: tokio::net::TcpStream,
    tls: Arc<rustls::ServerConfig>,
    reset_after: Option<u64>,
) {
    let io = ResetAfter {
        inner: s,
        left: reset_after,
    };
    let Ok(tls) = tokio_rustls::TlsAcceptor::from(tls).accept(io).await else {
        return;
    };
    let service = hyper::service::service_fn(fault_route);
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let _ = builder.serve_connection(TokioIo::new(tls), service).await;
}

async fn fault_route(req: Request<Incoming>) -> Result<Response<Fill>, Infallible> {
    let (stop_at, then) = match req.uri().path() {
        "/stall-head" => std::future::pending::<(u64, Then)>().await,
        "/stall-body" => (SENT_BEFORE_FAULT, Then::Stall),
        "/reset-stream" => (SENT_BEFORE_FAULT, Then::Fail),
        _ => (BIG_BODY, Then::End),
    };
    Ok(Response::new(Fill {
        sent: 0,
        stop_at,
        then,
        fail_at: None,
    }))
}

#[derive(Clone, Copy)]
enum Then {
    End,
    Stall,
    Fail,
}

/// A body announcing [`BIG_BODY`] bytes of `x`; at `stop_at` it ends, stalls for ever, or fails.
struct Fill {
    sent: u64,
    stop_at: u64,
    then: Then,
    /// A failing body fails this long after its last bytes: a server resetting a stream drops
    /// the frames it has not written yet, and the head and those bytes must reach the proxy.
    fail_at: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// How long after its last bytes `/reset-stream` fails.
const FAIL_DELAY: Duration = Duration::from_millis(300);

impl Body for Fill {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        if self.sent < self.stop_at {
            let n = (self.stop_at - self.sent).min(CHUNK as u64);
            self.sent += n;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                &CHUNK_OF_X[..n as usize],
            )))));
        }
        match self.then {
            Then::End => Poll::Ready(None),
            // Never woken: the origin goes silent with the connection open.
            Then::Stall => Poll::Pending,
            Then::Fail => {
                let delay = self
                    .fail_at
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(FAIL_DELAY)));
                ready!(delay.as_mut().poll(cx));
                Poll::Ready(Some(Err(std::io::Error::other("origin gave up"))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.then, Then::End) && self.sent >= self.stop_at
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(BIG_BODY - self.sent)
    }
}

/// A TCP stream that, once `left` bytes are written, resets the connection: SO_LINGER 0, and
/// the write fails, so the server drops it and the kernel sends a RST.
struct ResetAfter {
    inner: tokio::net::TcpStream,
    left: Option<u64>,
}

impl AsyncRead for ResetAfter {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetAfter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let Some(left) = self.left else {
            return Pin::new(&mut self.inner).poll_write(cx, buf);
        };
        if left == 0 {
            reset_on_close(&self.inner);
            return Poll::Ready(Err(std::io::ErrorKind::ConnectionReset.into()));
        }
        let cap = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &buf[..cap]))?;
        self.left = Some(left - n as u64);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Closing this socket will send a RST instead of a FIN.
fn reset_on_close<S: std::os::fd::AsFd>(s: &S) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// `curl -sS --max-time 20 -o /dev/null ARGS…`: (exit code, HTTP status, bytes received, stderr).
fn curl_download(args: &[&str]) -> (Option<i32>, u16, u64, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "-o", "/dev/null"])
        .args(["-w", "%{http_code} %{size_download}"])
        .args(args)
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy");
    let out = tools::run(cmd, Duration::from_secs(30));
    let mut it = out.stdout.split_whitespace();
    let status = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let size = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    (out.code, status, size, out.stderr)
}

/// The value of an unlabelled series on the admin's `/metrics`.
fn metric(admin: SocketAddr, name: &str) -> u64 {
    let mut s = net::connect(admin);
    let (status, body) = net::http_get(&mut s, "admin", "/metrics");
    assert_eq!(status, 200, "{}", net::lossy(&body));
    net::lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// How many descriptors the process has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // utime and stime are the 12th and 13th fields after the parenthesised name.
    let rest = stat.rsplit_once(") ").expect("stat format").1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime")
}

/// Resident memory of the process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn is_flow(v: &Value) -> bool {
    v["target"] == "ward::flow"
}

/// Waits for a flow record of a request to `path` and returns it.
fn expect_flow(ward: &Ward, path: &str) -> Value {
    ward.wait_log(EVENT_WAIT, |v| {
        is_flow(v) && field(v, "path").as_deref() == Some(path)
    })
    .unwrap_or_else(|| panic!("no flow record for {path}; log:\n{}", ward.log()))
}

/// Reads from `s` until `want` bytes have come (panicking on an early end).
fn read_exactly(s: &mut impl Read, mut have: Vec<u8>, want: usize) -> Vec<u8> {
    let mut chunk = vec![0u8; 64 * 1024];
    while have.len() < want {
        match s.read(&mut chunk) {
            Ok(0) => panic!("the stream ended after {} of {want} bytes", have.len()),
            Ok(n) => have.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("read failed after {} of {want} bytes: {e}", have.len()),
        }
    }
    have
}

// ---------------------------------------------------------------------------------------------
// The origin resets mid-download.

/// Bytes the raw origin sends before its reset.
const TUNNEL_SENT: usize = 300_000;

/// A tunnel relays bytes it cannot judge: a FIN after the origin's reset would tell the client
/// "that was everything". It must see the reset.
#[test]
fn tunnel_passes_an_origin_reset_on_to_the_client_as_a_reset() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (release, released) = std::sync::mpsc::channel::<()>();
    // Speaks first (so ward relays at once), then resets once the client has every byte.
    let origin = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.write_all(&vec![b'x'; TUNNEL_SENT]).expect("write");
        let _ = released.recv_timeout(IO_TIMEOUT);
        reset_on_close(&s);
    });
    let ward = Ward::start(&Policy::new());
    let (mut s, head) = http_connect(ward.addr, &format!("127.0.0.1:{port}"), &[]);
    assert_eq!(head.status, 200, "{head:?}");
    let got = read_exactly(&mut s, head.rest, TUNNEL_SENT);
    assert_eq!(
        got.len(),
        TUNNEL_SENT,
        "not a byte more than the origin sent"
    );
    release.send(()).expect("release the origin");
    origin.join().expect("origin thread");
    let mut chunk = [0u8; 1024];
    let end = s.read(&mut chunk);
    assert!(
        matches!(&end, Err(e) if net::is_reset(e)),
        "after the origin's reset the client must see a reset, not a clean end: {end:?}\n{}",
        ward.log()
    );
    let rec = ward.expect_access("of the reset tunnel", |v| {
        field(v, "stage").as_deref() == Some("tunnel")
    });
    assert_eq!(field(&rec, "outcome").as_deref(), Some("upstream_reset"));
    assert_eq!(field(&rec, "bytes_down"), Some(TUNNEL_SENT.to_string()));
}

/// Inside interception the client is told by HTTP framing: a body short of its length (h1) or
/// a reset stream (h2), never a complete response; each flow record says `upstream_reset`.
#[test]
fn inspected_origin_reset_mid_body_is_a_truncated_body_and_upstream_reset() {
    if !have("curl") {
        return;
    }
    let origin = FaultOrigin::start(Some(RESET_AFTER));
    let ward = Ward::start(&inspecting_policy());
    let ca = ward_ca(&ward);
    let proxy = ward.http_url();
    // A TCP reset right behind the bytes may overtake the response head on HTTP/2 (ward, like
    // any h2 server, drops a reset stream's unsent frames): the client then sees only the reset.
    let cases = [
        // curl: 18 partial file, 56 receive failure, 92 HTTP/2 stream not closed cleanly.
        ("--http1.1", "/big", RESET_AFTER, true),
        ("--http2", "/big-h2", RESET_AFTER, false),
        ("--http2", "/reset-stream", SENT_BEFORE_FAULT, true),
    ];
    for (flag, path, at_most, head_sure) in cases {
        let url = format!("https://reset.lab.test:{}{path}", origin.port());
        let (code, status, size, stderr) =
            curl_download(&[flag, "-x", &proxy, "--cacert", &ca, &url]);
        let flow = expect_flow(&ward, path);
        assert_eq!(field(&flow, "status").as_deref(), Some("200"), "{flow}");
        assert!(
            status == 200 || !head_sure,
            "{flag} {path}: the head came through: {stderr}\n{flow}"
        );
        assert!(
            matches!(code, Some(18 | 56 | 92)),
            "{flag} {path}: curl must report the lost bytes, got exit {code:?} after {size} bytes: {stderr}"
        );
        assert!(
            (size > 0 || !head_sure) && size <= at_most,
            "{flag} {path}: {size} bytes received, the origin sent at most {at_most}"
        );
        assert_eq!(
            field(&flow, "error").as_deref(),
            Some("upstream_reset"),
            "{flag} {path}: {flow}"
        );
    }
    // The h1 connection died with its exchange: its record says why.
    let h1 = ward.expect_access("of the h1 connection", |v| {
        field(v, "alpn").as_deref() == Some("http/1.1")
    });
    assert_eq!(
        field(&h1, "outcome").as_deref(),
        Some("upstream_reset"),
        "{h1}"
    );
}

// ---------------------------------------------------------------------------------------------
// The origin stalls.

#[test]
fn inspected_h1_origin_silent_after_the_request_gets_504_http_response_timeout() {
    let origin = FaultOrigin::start(None);
    let ward = Ward::start(&inspecting_policy().set("timeouts", SHORT_IDLE));
    let ca = ward_ca(&ward);
    let (s, head) = http_connect(ward.addr, &format!("stall.lab.test:{}", origin.port()), &[]);
    assert_eq!(head.status, 200, "{head:?}");
    let cfg = client_config_trusting(Path::new(&ca), &[b"http/1.1"]);
    let mut tls = net::tls_over(s, "stall.lab.test", cfg);
    let asked = Instant::now();
    tls.write_all(b"GET /stall-head HTTP/1.1\r\nHost: stall.lab.test\r\n\r\n")
        .expect("write request");
    let head = net::read_head(&mut tls).unwrap_or_else(|| {
        panic!(
            "ward closed without answering a request the origin never answered\n{}",
            ward.log()
        )
    });
    let waited = asked.elapsed();
    assert_eq!(head.status, 504, "{head:?}");
    assert_eq!(head.proxy_error().as_deref(), Some("http_response_timeout"));
    assert!(
        waited >= Duration::from_millis(900),
        "answered before the idle timeout: {waited:?}"
    );
    let flow = expect_flow(&ward, "/stall-head");
    assert_eq!(field(&flow, "status").as_deref(), Some("504"), "{flow}");
    assert_eq!(
        field(&flow, "error").as_deref(),
        Some("http_response_timeout"),
        "{flow}"
    );
}

/// Once the head is relayed there is no answer left to give: the idle timeout ends the
/// connection, and the client holds every byte the origin sent and a body short of its length.
#[test]
fn origin_stalling_after_the_head_is_ended_by_the_idle_timeout() {
    if !have("curl") {
        return;
    }
    let origin = FaultOrigin::start(None);
    let ward = Ward::start(&inspecting_policy().set("timeouts", SHORT_IDLE));
    let ward_ca = ward_ca(&ward);
    let proxy = ward.http_url();
    // Inspected (h1 and h2), then tunnelled (origin.test is not inspected).
    let cases = [
        ("--http1.1", "stall.lab.test", ward_ca.as_str()),
        ("--http2", "stall.lab.test", ward_ca.as_str()),
        ("--http1.1", "origin.test", origins().ca()),
    ];
    for (flag, host, ca) in cases {
        let url = format!("https://{host}:{}/stall-body", origin.port());
        let started = Instant::now();
        let (code, status, size, stderr) =
            curl_download(&[flag, "-x", &proxy, "--cacert", ca, &url]);
        let took = started.elapsed();
        assert_eq!(status, 200, "{flag} {host}: {stderr}");
        assert_eq!(
            size, SENT_BEFORE_FAULT,
            "{flag} {host}: every byte sent before the stall, and no more: {stderr}"
        );
        assert!(
            matches!(code, Some(18 | 56 | 92)),
            "{flag} {host}: curl must see the body cut short, got {code:?}: {stderr}"
        );
        assert!(
            took < Duration::from_secs(15),
            "{flag} {host}: the idle timeout (1s) must end it, took {took:?}"
        );
    }
    let ended = |via_tunnel: bool| {
        ward.expect_access("of a stalled connection", |v| {
            (field(v, "stage").as_deref() == Some("tunnel")) == via_tunnel
                && field(v, "outcome").as_deref() == Some("idle_timeout")
        })
    };
    ended(true);
    ended(false);
}

// ---------------------------------------------------------------------------------------------
// The upstream proxy dies mid-tunnel.

/// Bytes the dying proxy relays to ward before it crashes.
const PROXY_DIES_AFTER: u64 = 1024 * 1024;

/// An HTTP CONNECT proxy that relays to 127.0.0.1 (whatever the host) and, once it has passed
/// [`PROXY_DIES_AFTER`] bytes down, dies: both its connections reset.
fn dying_proxy() -> (SocketAddr, JoinHandle<()>) {
    runtime().block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let Ok((mut client, _)) = l.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let Some(len) = testkit::raw::read_head(&mut client, &mut buf).await else {
                return;
            };
            let head = String::from_utf8_lossy(&buf[..len]).into_owned();
            let port: u16 = head
                .split_whitespace()
                .nth(1)
                .and_then(|t| t.rsplit_once(':'))
                .and_then(|(_, p)| p.parse().ok())
                .expect("CONNECT host:port");
            let mut origin = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .expect("proxy connects to the origin");
            origin.write_all(&buf[len..]).await.expect("early bytes");
            client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await
                .expect("reply");
            let (mut cr, mut cw) = client.split();
            let (mut or, mut ow) = origin.split();
            let down = async {
                let mut passed = 0u64;
                let mut chunk = vec![0u8; 16 * 1024];
                while passed < PROXY_DIES_AFTER {
                    let n = or.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    cw.write_all(&chunk[..n]).await.expect("relay down");
                    passed += n as u64;
                }
            };
            tokio::select! {
                _ = tokio::io::copy(&mut cr, &mut ow) => {}
                () = down => {}
            }
            reset_on_close(&client);
            reset_on_close(&origin);
        });
        (addr, task)
    })
}

#[test]
fn upstream_proxy_dying_mid_tunnel_is_a_reset_the_client_sees() {
    if !have("curl") {
        return;
    }
    let (proxy_addr, proxy) = dying_proxy();
    let ward = Ward::start(
        &Policy::new()
            .set("default", "allow")
            .set("upstream", &format!("\"http://{proxy_addr}\""))
            .unset("hosts")
            .without_lab_rule(),
    );
    let o = origins();
    let url = o.https("localhost", "/bytes/100000000");
    let (code, status, size, stderr) =
        curl_download(&["-x", &ward.http_url(), "--cacert", o.ca(), &url]);
    runtime().block_on(proxy).expect("proxy task");
    // The reset is passed on as a reset, and a reset discards what the client had not read
    // yet: on a busy machine curl may meet it before the response head (a send or receive
    // failure, nothing received). Either way it sees the failure, never a clean end.
    assert!(
        size <= PROXY_DIES_AFTER,
        "{size} bytes received; the proxy relayed about {PROXY_DIES_AFTER}"
    );
    assert!(
        matches!(code, Some(18 | 55 | 56)),
        "curl must see the tunnel fail, got {code:?}: {stderr}"
    );
    assert!(
        status == 200 || (status == 0 && size == 0),
        "a head is the origin's or none: {status}, {size} bytes: {stderr}"
    );
    let rec = ward.expect_access("of the tunnel through the dead proxy", |v| {
        field(v, "stage").as_deref() == Some("tunnel")
    });
    assert_eq!(
        field(&rec, "outcome").as_deref(),
        Some("upstream_reset"),
        "{rec}"
    );
    assert_eq!(
        field(&rec, "upstream_name").as_deref(),
        Some("default"),
        "{rec}"
    );
    assert_eq!(
        field(&rec, "upstream"),
        Some(proxy_addr.to_string()),
        "{rec}"
    );
}

// ---------------------------------------------------------------------------------------------
// The client vanishes during an intercepted 1 GiB download.

/// The download the client asks for (the origin streams it as it is read).
const GIB: u64 = 1 << 30;
/// What the client reads before it stops.
const READ_FIRST: usize = 4 * 1024 * 1024;
/// How far the origin may run ahead of a client that stopped reading: socket buffers on three
/// connections and ward's relay buffers, with room to spare. Unbounded buffering would pull
/// the whole GiB.
const AHEAD_MAX: u64 = 64 * 1024 * 1024;
/// Resident memory ward may gain while a stalled download is open.
const RSS_GROWTH_MAX_KIB: u64 = 64 * 1024;

struct Download {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    origin: testkit::Origin,
}

/// Starts an intercepted `GET /bytes/1GiB` from a dedicated origin (so its produced-bytes count
/// is this test's alone), reads [`READ_FIRST`] of it, then stops reading.
fn start_gib_download(ward: &Ward) -> Download {
    let cfg = origins().server_config(testkit::ALPN_BOTH);
    let origin = runtime().block_on(testkit::Origin::start(testkit::Service::Http(Some(cfg))));
    let ca = ward_ca(ward);
    let target = format!("big.lab.test:{}", origin.port());
    let (s, head) = http_connect(ward.addr, &target, &[]);
    assert_eq!(head.status, 200, "{head:?}");
    let cfg = client_config_trusting(Path::new(&ca), &[b"http/1.1"]);
    let mut tls = net::tls_over(s, "big.lab.test", cfg);
    write!(
        tls,
        "GET /bytes/{GIB} HTTP/1.1\r\nHost: big.lab.test\r\n\r\n"
    )
    .expect("request");
    tls.flush().expect("flush");
    let head = net::read_head(&mut tls).expect("response head");
    assert_eq!(head.status, 200, "{head:?}");
    read_exactly(&mut tls, head.rest, READ_FIRST);
    Download { tls, origin }
}

/// Waits until the origin has stopped producing (the same count twice, 300 ms apart).
fn produced_settles(origin: &testkit::Origin) -> u64 {
    wait_until(EVENT_WAIT, "the origin to stop producing", || {
        let before = origin.produced();
        std::thread::sleep(Duration::from_millis(300));
        let after = origin.produced();
        (after == before).then_some(after)
    })
}

#[test]
fn client_vanishing_without_fin_mid_intercepted_download_leaves_nothing_behind() {
    let ward = Ward::start(&inspecting_policy().set("admin", "\"127.0.0.1:0\""));
    let admin = ward.admin_addr();
    let idle_fds = open_fds(ward.pid());
    let idle_rss = rss_kib(ward.pid());
    let download = start_gib_download(&ward);
    assert_eq!(metric(admin, "ward_open_connections"), 1);
    let ahead = produced_settles(&download.origin);
    assert!(
        ahead < READ_FIRST as u64 + AHEAD_MAX,
        "with the client not reading, the origin produced {ahead} bytes: something buffers"
    );
    let rss = rss_kib(ward.pid());
    assert!(
        rss < idle_rss + RSS_GROWTH_MAX_KIB,
        "ward grew from {idle_rss} KiB to {rss} KiB holding a stalled download"
    );
    // Gone without a FIN: the socket is closed with SO_LINGER 0, so the kernel sends a RST.
    let Download { tls, origin } = download;
    reset_on_close(&tls.sock);
    drop(tls);
    wait_until(EVENT_WAIT, "ward_open_connections back to 0", || {
        metric(admin, "ward_open_connections") == 0
    });
    // The origin side is closed too: no descriptor, no task still pulling the body.
    wait_until(
        EVENT_WAIT,
        "ward's descriptors back to their idle count",
        || open_fds(ward.pid()) <= idle_fds,
    );
    let last = produced_settles(&origin);
    assert!(last < READ_FIRST as u64 + AHEAD_MAX, "{last}");
    let rec = ward.expect_access("of the vanished client", |v| {
        field(v, "stage").as_deref() == Some("intercept")
    });
    let down: u64 = field(&rec, "bytes_down")
        .and_then(|b| b.parse().ok())
        .unwrap_or(0);
    assert!(down >= READ_FIRST as u64, "{rec}");
}

#[test]
fn client_that_stops_reading_is_ended_by_the_idle_timeout_and_leaves_nothing_behind() {
    let ward = Ward::start(
        &inspecting_policy()
            .set("admin", "\"127.0.0.1:0\"")
            .set("timeouts", SHORT_IDLE),
    );
    let admin = ward.admin_addr();
    let idle_fds = open_fds(ward.pid());
    let download = start_gib_download(&ward);
    // The client keeps its socket open and never reads again: the proxy's buffers fill, then
    // nothing moves, and the idle timeout must end it.
    wait_until(EVENT_WAIT, "ward_open_connections back to 0", || {
        metric(admin, "ward_open_connections") == 0
    });
    wait_until(
        EVENT_WAIT,
        "ward's descriptors back to their idle count",
        || open_fds(ward.pid()) <= idle_fds,
    );
    let produced = produced_settles(&download.origin);
    assert!(produced < READ_FIRST as u64 + AHEAD_MAX, "{produced}");
    let rec = ward.expect_access("of the stalled client", |v| {
        field(v, "stage").as_deref() == Some("intercept")
    });
    assert_eq!(
        field(&rec, "outcome").as_deref(),
        Some("idle_timeout"),
        "{rec}"
    );
    drop(download);
}

// ---------------------------------------------------------------------------------------------
// accept hits EMFILE.

/// ward's descriptor limit in this test: its start needs about 20; the rest go to clients.
const NOFILE: u32 = 64;
/// Clients opened against it: more than the limit, so accept must fail.
const EMFILE_CLIENTS: usize = 100;
/// How long the log and the CPU are watched while accept fails.
const EMFILE_WINDOW: Duration = Duration::from_secs(3);
/// CPU ward may spend in that window (clock ticks, 100 a second): a busy loop takes them all.
const EMFILE_CPU_MAX_TICKS: u64 = 30;

#[test]
fn accept_out_of_descriptors_backs_off_and_logs_once_a_second() {
    if !have("prlimit") {
        return;
    }
    let dir = tempfile::Builder::new()
        .prefix("ward-it-")
        .tempdir()
        .expect("dir");
    let policy_path = dir.path().join("policy.yaml");
    // Clients that send nothing are kept for the whole test.
    let policy = Policy::new().set(
        "timeouts",
        "{connect: 3s, client_hello: 3s, idle: 60s, handshake: 60s, dns: 3s}",
    );
    std::fs::write(&policy_path, policy.render()).expect("policy");
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={NOFILE}:{NOFILE}"))
        .arg("--")
        .arg(crate::support::ward::ward_bin())
        .args(["--log-format", "json", "-c"])
        .arg(&policy_path)
        .arg("run")
        .current_dir(dir.path());
    let ward = Ward::spawn(dir, policy_path, cmd);
    let clients: Vec<TcpStream> = (0..EMFILE_CLIENTS)
        .map(|_| net::connect(ward.addr))
        .collect();
    let out_of_fds =
        |v: &Value| message(v).is_some_and(|m| m.starts_with("out of file descriptors"));
    ward.wait_log(EVENT_WAIT, out_of_fds)
        .unwrap_or_else(|| panic!("accept never hit EMFILE\n{}", ward.log()));
    let count = || ward.records().iter().filter(|v| out_of_fds(v)).count();
    let (lines, ticks) = (count(), cpu_ticks(ward.pid()));
    std::thread::sleep(EMFILE_WINDOW);
    let (lines, ticks) = (count() - lines, cpu_ticks(ward.pid()) - ticks);
    assert!(
        lines <= EMFILE_WINDOW.as_secs() as usize + 1,
        "{lines} lines in {EMFILE_WINDOW:?}: at most one a second"
    );
    assert!(
        ticks <= EMFILE_CPU_MAX_TICKS,
        "{ticks} ticks of CPU in {EMFILE_WINDOW:?}: accept must back off, not spin"
    );
    assert!(ward.alive(), "{}", ward.log());
    drop(clients);
    // Descriptors free again: a new client is served (after ward drains the closed ones).
    let o = origins();
    wait_until(EVENT_WAIT, "a new client served after EMFILE", || {
        let (mut s, head) = http_connect(ward.addr, &format!("127.0.0.1:{}", o.echo.port()), &[]);
        if head.status != 200 {
            return false;
        }
        s.write_all(b"abc").expect("write");
        net::shutdown_write(&s);
        net::read_all(&mut s) == b"abcEOF after 3 bytes\n"
    });
}

// ---------------------------------------------------------------------------------------------
// A reload storm under load.

/// Reloads in the storm (half SIGHUP, half file rewrites).
const STORM_RELOADS: usize = 20;
/// Client threads making new TLS connections through ward meanwhile.
const STORM_THREADS: usize = 3;
/// Each thread stops after this many connections, storm or not.
const STORM_MAX_PER_THREAD: usize = 1500;
/// Fewer connections than this during the storm would not be "under load".
const STORM_MIN_TOTAL: usize = 100;

#[test]
fn reload_storm_under_new_tls_connections_loses_none() {
    let policy = inspecting_policy().set("admin", "\"127.0.0.1:0\"");
    let ward = Ward::start(&policy);
    let admin = ward.admin_addr();
    let ward_ca_path = ward_ca(&ward);
    let o = origins();
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..STORM_THREADS)
        .map(|i| {
            let (stop, failures, done) = (stop.clone(), failures.clone(), done.clone());
            let addr = ward.addr;
            let tls_port = o.tls.port();
            // Odd threads go inspected (a leaf forged by ward), even ones tunnelled.
            let (host, cfg) = if i % 2 == 1 {
                let ca = Path::new(&ward_ca_path);
                ("storm.lab.test", client_config_trusting(ca, &[b"http/1.1"]))
            } else {
                ("origin.test", o.client_config(&[b"http/1.1"]))
            };
            std::thread::spawn(move || {
                let mut errors = Vec::new();
                for _ in 0..STORM_MAX_PER_THREAD {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    // A failure is counted with what it said, and the storm goes on.
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let (s, head) = http_connect(addr, &format!("{host}:{tls_port}"), &[]);
                        assert_eq!(head.status, 200);
                        let mut tls = net::tls_over(s, host, cfg.clone());
                        let (status, body) = net::http_get(&mut tls, host, "/");
                        assert_eq!((status, net::lossy(&body).as_str()), (200, INDEX_BODY));
                    }));
                    match r {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            errors.push(format!("{e:?}"));
                            failures.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
                errors
            })
        })
        .collect();
    let yaml = policy.render();
    for n in 0..STORM_RELOADS {
        let before = ward.reload_count();
        if n % 2 == 0 {
            ward.signal("HUP");
        } else {
            // A different file each time, so the watcher has a change to see.
            ward.write_policy(&format!("{yaml}# storm {n}\n"));
        }
        ward.wait_reloaded(before);
    }
    stop.store(true, Ordering::Relaxed);
    let errors: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    let done = done.load(Ordering::Relaxed) as usize;
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "{errors:?}\n{}",
        ward.log()
    );
    assert!(
        done >= STORM_MIN_TOTAL,
        "only {done} connections during the storm: not under load"
    );
    assert!(metric(admin, "ward_reloads_total") >= STORM_RELOADS as u64);
    assert_eq!(metric(admin, "ward_reload_failures_total"), 0);
    eprintln!("reload storm: {STORM_RELOADS} reloads during {done} new TLS connections, 0 errors");
}

// ---------------------------------------------------------------------------------------------
// SIGTERM during a large intercepted download.

/// The download: large enough to be in flight when SIGTERM comes, small enough for the grace.
const DRAIN_BODY: u64 = 64 * 1024 * 1024;
/// curl's pace, so that the download takes a few seconds whatever the machine.
const DRAIN_RATE: &str = "16M";
/// How far each download has come (at the origin) when SIGTERM is sent.
const DRAIN_UNDER_WAY: u64 = 4 * 1024 * 1024;

#[test]
fn sigterm_during_large_intercepted_downloads_lets_them_finish_within_the_grace() {
    if !have("curl") {
        return;
    }
    let grace = Duration::from_secs(15);
    let mut ward = Ward::start(&inspecting_policy().set("shutdown_grace", "15s"));
    let ca = ward_ca(&ward);
    let proxy = ward.http_url();
    // One origin per download, so that each one's progress can be seen.
    let started: Vec<_> = ["--http1.1", "--http2"]
        .into_iter()
        .map(|flag| {
            let cfg = origins().server_config(testkit::ALPN_BOTH);
            let origin =
                runtime().block_on(testkit::Origin::start(testkit::Service::Http(Some(cfg))));
            let url = format!(
                "https://drain.lab.test:{}/bytes/{DRAIN_BODY}",
                origin.port()
            );
            let (proxy, ca) = (proxy.clone(), ca.clone());
            let curl = std::thread::spawn(move || {
                curl_download(&[
                    flag,
                    "--limit-rate",
                    DRAIN_RATE,
                    "-x",
                    proxy.as_str(),
                    "--cacert",
                    ca.as_str(),
                    url.as_str(),
                ])
            });
            (curl, origin)
        })
        .collect();
    for (_, origin) in &started {
        wait_until(EVENT_WAIT, "both downloads under way", || {
            origin.produced() >= DRAIN_UNDER_WAY
        });
    }
    let sent = Instant::now();
    ward.signal("TERM");
    for ((curl, _origin), flag) in started.into_iter().zip(["--http1.1", "--http2"]) {
        let (code, status, size, stderr) = curl.join().expect("curl thread");
        assert_eq!(
            (code, status, size),
            (Some(0), 200, DRAIN_BODY),
            "{flag}: the whole body, despite SIGTERM: {stderr}\n{}",
            ward.log()
        );
    }
    let exit = ward
        .wait_exit(grace + Duration::from_secs(5))
        .unwrap_or_else(|| panic!("ward did not exit\n{}", ward.log()));
    assert!(exit.success(), "{exit:?}\n{}", ward.log());
    assert!(
        sent.elapsed() < grace,
        "exited {:?} after SIGTERM: the drain waited for the grace period",
        sent.elapsed()
    );
    assert!(
        !ward
            .records()
            .iter()
            .any(|v| message(v) == Some("grace period over: closing the rest")),
        "{}",
        ward.log()
    );
    let drained = ward
        .records()
        .iter()
        .filter(|v| is_access(v) && field(v, "stage").as_deref() == Some("intercept"))
        .count();
    assert_eq!(drained, 2, "{}", ward.log());
}
