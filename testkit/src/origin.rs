//! The one test origin: a server on a 127.0.0.1 port the OS picks, speaking what a [`Service`]
//! says (HTTP/1.1 and HTTP/2 over TLS or plain, a minimal HTTP/1.1 responder for load, or a raw
//! TCP server), every connection in a task that ends with the origin. It serves loopback only,
//! and caps every connection in time and every body in size.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

use crate::raw;
use crate::routes::route;

pub use crate::raw::BANNER;
pub use crate::routes::{INDEX_BODY, MAX_BODY, PAGE_MARKER};

/// No connection outlives the longest benchmark scenario by much.
const MAX_CONN_LIFETIME: Duration = Duration::from_secs(20 * 60);
/// A client that never finishes its TLS handshake is dropped after this long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// After a failed accept (EMFILE and friends), back off instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// What an origin's port speaks.
pub enum Service {
    /// HTTP/1.1 and HTTP/2 through hyper (upgrades included, no `Date` header, so a `Date` a
    /// client sees can only come from the proxy), over TLS when given a config (ALPN picks the
    /// protocol), else plain. Every route of [`crate::routes`].
    Http(Option<Arc<rustls::ServerConfig>>),
    /// For load: TLS; HTTP/2 through hyper when ALPN says h2, else a minimal HTTP/1.1 responder
    /// that answers only `GET /bytes/N` (keep-alive, `Connection: close` honoured), so that the
    /// origin's cost per request stays small and fixed.
    Load(Arc<rustls::ServerConfig>),
    /// Sends [`BANNER`] at once (a server that speaks first, like SSH), then echoes.
    Banner,
    /// Echoes; on the client's EOF writes `EOF after N bytes\n` and closes.
    Echo,
    /// After one read from the client (a line such as `GO\n`), streams bytes until it goes away.
    Source,
}

/// A running origin; dropping it stops its accept loop and every connection it serves.
pub struct Origin {
    /// Where it listens (127.0.0.1).
    pub addr: SocketAddr,
    produced: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl Origin {
    /// Binds 127.0.0.1:0 and serves `service` on the current tokio runtime.
    pub async fn start(service: Service) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let produced = Arc::new(AtomicU64::new(0));
        let conn = Conn {
            service: Arc::new(service),
            produced: produced.clone(),
        };
        let accept = tokio::spawn(accept_loop(listener, conn));
        Origin {
            addr,
            produced,
            accept,
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Bytes of streamed bodies (`/bytes/N`) handed out so far, over all connections.
    pub fn produced(&self) -> u64 {
        self.produced.load(Ordering::Relaxed)
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        // The connections live in the accept task's JoinSet: aborting it ends them too.
        self.accept.abort();
    }
}

/// What each connection needs: the service and the origin's body counter.
#[derive(Clone)]
struct Conn {
    service: Arc<Service>,
    produced: Arc<AtomicU64>,
}

async fn accept_loop(listener: TcpListener, conn: Conn) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let served = conn.clone().serve(stream);
                    conns.spawn(async move { let _ = timeout(MAX_CONN_LIFETIME, served).await; });
                }
                Err(_) => tokio::time::sleep(ACCEPT_BACKOFF).await,
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

impl Conn {
    async fn serve(self, stream: TcpStream) {
        match &*self.service {
            Service::Http(None) => self.serve_http(stream).await,
            Service::Http(Some(tls)) => {
                if let Some(tls) = handshake(tls, stream).await {
                    self.serve_http(tls).await;
                }
            }
            Service::Load(tls) => {
                let Some(tls) = handshake(tls, stream).await else {
                    return;
                };
                if tls.get_ref().1.alpn_protocol() == Some(crate::ALPN_H2) {
                    self.serve_h2(tls).await;
                } else {
                    raw::serve_h1(tls, &self.produced).await;
                }
            }
            Service::Banner => raw::banner(stream).await,
            Service::Echo => raw::echo(stream).await,
            Service::Source => raw::source(stream).await,
        }
    }

    async fn serve_http<I>(&self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let produced = self.produced.clone();
        let service = hyper::service::service_fn(move |req| route(req, produced.clone()));
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder.http1().auto_date_header(false);
        builder.http2().auto_date_header(false);
        let _ = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .await;
    }

    async fn serve_h2<I>(&self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let produced = self.produced.clone();
        let service = hyper::service::service_fn(move |req| route(req, produced.clone()));
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(io), service)
            .await;
    }
}

async fn handshake(
    tls: &Arc<rustls::ServerConfig>,
    stream: TcpStream,
) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
    let accept = TlsAcceptor::from(tls.clone()).accept(stream);
    timeout(HANDSHAKE_TIMEOUT, accept).await.ok()?.ok()
}
