//! The bench's own origin on 127.0.0.1: a raw TCP source and a TLS server that answers
//! `GET /bytes/N` with N bytes (a tiny HTTP/1.1 responder, HTTP/2 through hyper when the client
//! negotiates h2). It serves only loopback and stops every connection at a byte and time cap.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};
use tokio_rustls::TlsAcceptor;

/// One write's worth of payload; zeros, so neither side spends time generating data.
pub const CHUNK: usize = 64 * 1024;
static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// Safety caps: no connection outlives the longest scenario by much, nor streams forever.
const MAX_CONN_LIFETIME: Duration = Duration::from_secs(20 * 60);
const MAX_BODY: u64 = 1 << 40;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// Idle tunnels are held open for a while: the origin must wait longer than that.
const REQUEST_WAIT: Duration = Duration::from_secs(10 * 60);
const MAX_HEAD: usize = 8 * 1024;
const MAX_REQUESTS_PER_CONN: usize = 10_000;

/// The running origin: its two ports, and the accept loops (aborted on drop).
pub struct Origin {
    pub raw_addr: SocketAddr,
    pub tls_addr: SocketAddr,
    _tasks: JoinSet<()>,
}

impl Origin {
    pub async fn start(tls: Arc<rustls::ServerConfig>) -> Result<Origin> {
        let raw = TcpListener::bind("127.0.0.1:0").await?;
        let tls_listener = TcpListener::bind("127.0.0.1:0").await?;
        let (raw_addr, tls_addr) = (raw.local_addr()?, tls_listener.local_addr()?);
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(raw, |s| async move { serve_raw(s).await }));
        let acceptor = TlsAcceptor::from(tls);
        tasks.spawn(accept_loop(tls_listener, move |s| {
            serve_tls(acceptor.clone(), s)
        }));
        Ok(Origin {
            raw_addr,
            tls_addr,
            _tasks: tasks,
        })
    }
}

async fn accept_loop<F, Fut>(listener: TcpListener, serve: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    // Connections live in their own tasks, tracked so that dropping the origin ends them too.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let served = serve(stream);
                    conns.spawn(async move { let _ = timeout(MAX_CONN_LIFETIME, served).await; });
                }
                // EMFILE and friends: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// Raw source: after one line from the client ("GO\n"), stream zeros until it goes away.
async fn serve_raw(mut stream: TcpStream) {
    let mut line = [0u8; 16];
    if !matches!(timeout(REQUEST_WAIT, stream.read(&mut line)).await, Ok(Ok(n)) if n > 0) {
        return;
    }
    let _ = write_zeros(&mut stream, MAX_BODY).await;
}

async fn write_zeros<S: AsyncWrite + Unpin>(
    stream: &mut S,
    mut remaining: u64,
) -> std::io::Result<()> {
    while remaining > 0 {
        let n = remaining.min(CHUNK as u64) as usize;
        stream.write_all(&ZEROS[..n]).await?;
        remaining -= n as u64;
    }
    stream.flush().await
}

async fn serve_tls(acceptor: TlsAcceptor, stream: TcpStream) {
    let Ok(Ok(tls)) = timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await else {
        return;
    };
    if tls.get_ref().1.alpn_protocol() == Some(crate::pki::ALPN_H2) {
        let service =
            hyper::service::service_fn(|req| async move { Ok::<_, Infallible>(h2_response(&req)) });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(tls), service)
            .await;
    } else {
        serve_h1(tls).await;
    }
}

/// The HTTP/1.1 responder: keep-alive, `Connection: close` honoured, nothing else.
async fn serve_h1<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    let mut buf = Vec::with_capacity(1024);
    for _ in 0..MAX_REQUESTS_PER_CONN {
        let Some(head_len) = read_head(&mut stream, &mut buf).await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_len]).to_ascii_lowercase();
        buf.drain(..head_len);
        let close = head.contains("\r\nconnection: close");
        let Some(len) = body_len(&head) else {
            let _ = stream
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        };
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {len}\r\n\r\n"
        );
        if stream.write_all(reply.as_bytes()).await.is_err()
            || write_zeros(&mut stream, len).await.is_err()
        {
            return;
        }
        if close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Reads until a blank line; returns the head's length (the buffer may hold more after it).
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<usize> {
    let deadline = Instant::now() + REQUEST_WAIT;
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(end + 4);
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let mut chunk = [0u8; 2048];
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
}

/// `GET /bytes/N` → N, capped; anything else is not served.
fn body_len(head: &str) -> Option<u64> {
    let path = head.strip_prefix("get ")?.split(' ').next()?;
    path.strip_prefix("/bytes/")?
        .parse::<u64>()
        .ok()
        .map(|n| n.min(MAX_BODY))
}

fn h2_response(req: &hyper::Request<hyper::body::Incoming>) -> hyper::Response<ZeroBody> {
    let head = format!("get {} ", req.uri().path());
    match body_len(&head) {
        Some(len) => hyper::Response::new(ZeroBody { remaining: len }),
        None => {
            let mut response = hyper::Response::new(ZeroBody { remaining: 0 });
            *response.status_mut() = hyper::StatusCode::NOT_FOUND;
            response
        }
    }
}

/// An h2 response body of `remaining` zeros, streamed a chunk at a time.
pub struct ZeroBody {
    remaining: u64,
}

impl Body for ZeroBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK as u64) as usize;
        self.remaining -= n as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROS[..n])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Drains an h2 response body, counting its bytes (used by the h2 client).
pub async fn drain_body(body: hyper::body::Incoming) -> Result<u64> {
    let mut body = body;
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            total += data.len() as u64;
        }
    }
    Ok(total)
}
