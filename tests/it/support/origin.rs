//! The destinations the proxy is tested against, all in this process on 127.0.0.1 ports the OS
//! picks: a TLS origin (h1 and h2 via ALPN, a WebSocket echo at /ws) signed by the test CA,
//! the same routes over plain HTTP, a TLS origin with a self-signed certificate, a server that
//! speaks first, an echo server that honours half-close, and addresses that refuse or never
//! answer.
//! Shared by every test (one runtime, one set of listeners); it must never reach off loopback.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::pki::TestPki;

/// What `GET /` answers: the page Chromium and curl load through the proxy.
pub const INDEX_BODY: &str = "<!DOCTYPE html><html><head><title>ward origin</title></head>\
<body><p id=\"msg\">hello from the ward test origin</p></body></html>\n";
/// What a browser's DOM dump of INDEX_BODY contains.
pub const PAGE_MARKER: &str = r#"<p id="msg">hello from the ward test origin</p>"#;
/// The first line the speak-first server sends, before it reads anything (like an SSH server).
pub const BANNER: &[u8] = b"SSH-2.0-ward_test_banner\r\n";
/// `/bytes/N` refuses more than this, so a typo cannot stream forever.
const MAX_STREAMED_BYTES: u64 = 1 << 30;
/// `/bytes/N` streams in chunks of this size.
const STREAM_CHUNK: usize = 16 * 1024;
/// Runtime threads serving the origins: the machine has 2 cores and ward runs beside.
const ORIGIN_THREADS: usize = 2;

/// One listening test server.
#[derive(Clone)]
pub struct Server {
    pub addr: SocketAddr,
}

impl Server {
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

pub struct Origins {
    pub pki: TestPki,
    /// TLS, certificate for origin.test / *.lab.test / localhost / 127.0.0.1, ALPN h2 + http/1.1.
    pub tls: Server,
    /// The same routes over plain HTTP.
    pub plain: Server,
    /// TLS with a self-signed certificate.
    pub untrusted: Server,
    /// Sends BANNER at once, then echoes.
    pub banner: Server,
    /// Echoes; on the client's EOF writes `EOF after N bytes\n` and closes.
    pub echo: Server,
}

impl Origins {
    /// The test CA's PEM path as text, for `--cacert`.
    pub fn ca(&self) -> &str {
        self.pki.ca_pem_path.to_str().expect("utf-8 temp path")
    }

    /// `https://HOST:PORT/PATH` on the trusted TLS origin.
    pub fn https(&self, host: &str, path: &str) -> String {
        format!("https://{host}:{}{path}", self.tls.port())
    }

    /// `http://HOST:PORT/PATH` on the plain origin.
    pub fn http(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.plain.port())
    }
}

/// The process-wide origins, started on first use.
pub fn origins() -> &'static Origins {
    static ORIGINS: OnceLock<Origins> = OnceLock::new();
    ORIGINS.get_or_init(start_origins)
}

/// The runtime that serves the origins (and anything else async the harness needs).
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(ORIGIN_THREADS)
            .thread_name("test-origin")
            .enable_all()
            .build()
            .expect("origin runtime")
    })
}

fn start_origins() -> Origins {
    // Kept for the whole process: external clients read ca.pem from it.
    let dir = tempfile::Builder::new()
        .prefix("ward-it-pki-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("pki dir")
        .keep();
    let pki = TestPki::generate(&dir);
    let alpn: &[&[u8]] = &[b"h2", b"http/1.1"];
    let trusted = TlsAcceptor::from(pki.origin_server_config(alpn));
    let untrusted = TlsAcceptor::from(pki.untrusted_server_config(alpn));
    let rt = runtime();
    let _guard = rt.enter();
    Origins {
        tls: spawn_server(rt, Kind::Http(Some(trusted))),
        plain: spawn_server(rt, Kind::Http(None)),
        untrusted: spawn_server(rt, Kind::Http(Some(untrusted))),
        banner: spawn_server(rt, Kind::Banner),
        echo: spawn_server(rt, Kind::Echo),
        pki,
    }
}

enum Kind {
    Http(Option<TlsAcceptor>),
    Banner,
    Echo,
}

fn spawn_server(rt: &tokio::runtime::Runtime, kind: Kind) -> Server {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind origin");
    std_listener.set_nonblocking(true).expect("nonblocking");
    let addr = std_listener.local_addr().expect("origin addr");
    let listener = TcpListener::from_std(std_listener).expect("tokio listener");
    let kind = Arc::new(kind);
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let kind = kind.clone();
            tokio::spawn(async move {
                let _ = serve_one(stream, &kind).await;
            });
        }
    });
    Server { addr }
}

async fn serve_one(mut stream: tokio::net::TcpStream, kind: &Kind) -> std::io::Result<()> {
    match kind {
        Kind::Http(None) => serve_http(TokioIo::new(stream)).await,
        Kind::Http(Some(acceptor)) => {
            let tls = acceptor.accept(stream).await?;
            serve_http(TokioIo::new(tls)).await
        }
        Kind::Banner => {
            stream.write_all(BANNER).await?;
            let (mut r, mut w) = stream.split();
            tokio::io::copy(&mut r, &mut w).await.map(drop)
        }
        Kind::Echo => {
            let mut total = 0u64;
            let mut buf = vec![0u8; STREAM_CHUNK];
            loop {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                total += n as u64;
                stream.write_all(&buf[..n]).await?;
            }
            stream
                .write_all(format!("EOF after {total} bytes\n").as_bytes())
                .await?;
            stream.shutdown().await
        }
    }
}

async fn serve_http<I>(io: TokioIo<I>) -> std::io::Result<()>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(io, hyper::service::service_fn(route))
        .await
        .map_err(std::io::Error::other)
}

type Reply = Response<BoxBody<Bytes, hyper::Error>>;

async fn route(req: Request<Incoming>) -> Result<Reply, Infallible> {
    let path = req.uri().path().to_owned();
    let reply = match path.as_str() {
        "/" => text(StatusCode::OK, INDEX_BODY.to_owned(), "text/html"),
        "/echo" => Response::new(req.into_body().boxed()),
        "/headers" => text(StatusCode::OK, describe_request(&req), "text/plain"),
        "/proto" => text(StatusCode::OK, format!("{:?}", req.version()), "text/plain"),
        "/ws" => websocket(req),
        p => match p
            .strip_prefix("/bytes/")
            .and_then(|n| n.parse::<u64>().ok())
        {
            Some(n) if n <= MAX_STREAMED_BYTES => {
                let mut r = Response::new(Repeat { left: n }.map_err(never).boxed());
                r.headers_mut().insert("content-length", n.into());
                r
            }
            _ => text(
                StatusCode::NOT_FOUND,
                format!("no route {p}\n"),
                "text/plain",
            ),
        },
    };
    Ok(reply)
}

/// `/ws`: a WebSocket echo (HTTP/1.1 Upgrade), answered 101 with the accept key RFC 6455
/// prescribes, then frames echoed by `ws::echo` on the upgraded connection.
fn websocket(mut req: Request<Incoming>) -> Reply {
    let key = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|k| k.to_str().ok())
        .map(super::ws::accept_key);
    let upgrade = req
        .headers()
        .get("upgrade")
        .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let (Some(accept), true) = (key, upgrade) else {
        return text(
            StatusCode::BAD_REQUEST,
            "a WebSocket upgrade needs Upgrade: websocket and Sec-WebSocket-Key\n".into(),
            "text/plain",
        );
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let _ = super::ws::echo(TokioIo::new(upgraded)).await;
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()).map_err(never).boxed());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert("upgrade", http::HeaderValue::from_static("websocket"));
    h.insert("connection", http::HeaderValue::from_static("Upgrade"));
    h.insert(
        "sec-websocket-accept",
        accept.parse().expect("base64 is a valid header value"),
    );
    r
}

/// The request line as the origin saw it, then every header as `name: value`, one a line, in
/// the order received (to assert Via ordering and that proxy credentials were stripped).
fn describe_request(req: &Request<Incoming>) -> String {
    let mut out = format!("{} {} {:?}\n", req.method(), req.uri(), req.version());
    for (name, value) in req.headers() {
        let _ = writeln!(
            out,
            "{}: {}",
            name,
            String::from_utf8_lossy(value.as_bytes())
        );
    }
    out
}

fn text(status: StatusCode, body: String, content_type: &str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(never).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        "content-type",
        content_type.parse().expect("static content type"),
    );
    r
}

fn never(x: Infallible) -> hyper::Error {
    match x {}
}

/// A body of `left` bytes of `x`, produced as it is read.
struct Repeat {
    left: u64,
}

impl Body for Repeat {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(STREAM_CHUNK as u64);
        self.left -= n;
        let chunk = Bytes::from(vec![b'x'; n as usize]);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
}

/// A loopback port where nothing listens: connecting gets ECONNREFUSED.
pub fn refused_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    port
}

/// A listener whose accept queue is full and never drained: the kernel drops further SYNs,
/// so connecting to it times out instead of being refused. Dropping it frees the port.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _fillers: Vec<TcpStream>,
}

/// How many connections may sit in the queue of a listener made with backlog 0 before the
/// kernel drops SYNs; the loop below stops at the first that does not complete, so this only
/// bounds it.
const BLACKHOLE_MAX_FILL: usize = 16;
/// A connect to a full queue is judged "hanging" after this long.
const BLACKHOLE_PROBE: std::time::Duration = std::time::Duration::from_millis(300);

impl Blackhole {
    pub fn new() -> Blackhole {
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        sock.bind(&SockAddr::from(any)).expect("bind");
        sock.listen(0).expect("listen");
        let addr = sock
            .local_addr()
            .expect("local addr")
            .as_socket()
            .expect("inet");
        let mut fillers = Vec::new();
        for _ in 0..BLACKHOLE_MAX_FILL {
            match TcpStream::connect_timeout(&addr, BLACKHOLE_PROBE) {
                Ok(s) => fillers.push(s),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    return Blackhole {
                        addr,
                        _listener: sock,
                        _fillers: fillers,
                    };
                }
                Err(e) => panic!("filling the blackhole's queue: {e}"),
            }
        }
        panic!("the blackhole's accept queue never filled after {BLACKHOLE_MAX_FILL} connections");
    }
}
