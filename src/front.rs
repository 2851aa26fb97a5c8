//! The front-end: sniff the protocol on a fresh client connection, drive the HTTP or SOCKS5
//! codec over the socket, authenticate, and hand back what the client asked for. It replies to
//! the client itself when the handshake fails; replies after dialing go through
//! [`TunnelRequest::reply_ok`] / [`TunnelRequest::reply_err`]. No policy, no dialing here.

pub mod entry;
pub mod http;
pub mod proxy_protocol;
pub mod refuse;
pub mod socks5;

use std::net::SocketAddr;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::error::{ErrorKind, ProxyError, socks5_reply};
use crate::io::{ReadError, read_message, read_until};
use crate::reply::encode_error_response;
use crate::request::{Request, Via};

pub use self::entry::ClientStream;
use self::http::{ProxyRequest, RequestTarget};

/// SOCKS5 messages are tiny (a request is at most 262 bytes); this bounds a hostile client.
const SOCKS5_MESSAGE_CAP: usize = 1024;
/// The first buffer's capacity: a typical CONNECT head fits without growing it.
const FIRST_READ: usize = 4096;

/// What a client asked for, once its handshake succeeded.
pub enum Accepted {
    /// CONNECT or SOCKS5 CONNECT: the caller dials, then replies.
    Tunnel(TunnelRequest),
    /// Absolute-form HTTP: the forwarder serves this and later requests on the connection.
    /// `buffered` holds every byte read so far, the first request head included.
    Forward {
        /// The client connection.
        stream: ClientStream,
        /// Every byte read so far, to be replayed to the forwarder's HTTP parser.
        buffered: BytesMut,
        /// The first request head, as the front-end parsed and checked it.
        first: Box<ProxyRequest>,
        /// The user its credentials name, when `users` is configured.
        user: Option<String>,
    },
}

/// How a tunnel's success or failure is told to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replier {
    Http,
    Socks5,
}

/// A tunnel the client asked for (HTTP CONNECT or SOCKS5 CONNECT), not yet answered.
pub struct TunnelRequest {
    /// The client connection.
    pub stream: ClientStream,
    /// Bytes the client sent after its request (e.g. the start of a ClientHello, pipelined).
    pub leftover: BytesMut,
    /// Who asked for what, through which front-end.
    pub request: Request,
    replier: Replier,
}

impl TunnelRequest {
    /// Tells the client its tunnel to `upstream` is open. Only SOCKS5 reports the bound address
    /// (BND.ADDR), so only SOCKS5 asks the kernel for it: a syscall the HTTP reply skips.
    pub async fn reply_ok(&mut self, upstream: &TcpStream) -> std::io::Result<()> {
        match self.replier {
            Replier::Http => self.stream.write_all(http::CONNECT_OK).await,
            Replier::Socks5 => {
                let bound = upstream.local_addr().ok();
                let reply = socks5::encode_reply(socks5_reply::SUCCEEDED, bound);
                self.stream.write_all(&reply).await
            }
        }
    }

    /// Tells the client why its tunnel failed. Best effort: the client may be gone.
    pub async fn reply_err(&mut self, err: &ProxyError) {
        reply_error(&mut self.stream, self.replier, err).await;
    }
}

async fn reply_error<S: AsyncWrite + Unpin>(stream: &mut S, replier: Replier, err: &ProxyError) {
    let bytes = match replier {
        Replier::Http => encode_error_response(err, true),
        Replier::Socks5 => match socks5::encode_failure(err.kind) {
            Some(reply) => reply,
            None => return,
        },
    };
    // The client may already have gone: nothing more to tell it then.
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
}

/// Runs the front-end handshake on a fresh connection, by `deadline` (the handshake timeout
/// from accept, which the listener's entry steps share).
pub async fn accept(
    mut stream: ClientStream,
    client: SocketAddr,
    (cfg, auth): (&Config, &Authenticator),
    deadline: Instant,
) -> Result<Accepted, ProxyError> {
    // The first read both sniffs the protocol and starts its message: a peek first would cost
    // a syscall per connection. It asks for no more than a SOCKS5 message may hold, so either
    // protocol's buffer stays within its cap.
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    let n = tokio::time::timeout_at(
        deadline,
        stream.read_buf(&mut (&mut buf).limit(SOCKS5_MESSAGE_CAP)),
    )
    .await
    .map_err(|_| {
        ProxyError::client(
            ErrorKind::ClientTimeout,
            "no request before the handshake timeout",
        )
    })?
    .map_err(|e| ProxyError::client(ErrorKind::Io, format!("read: {e}")).with_source(e))?;
    if n == 0 {
        return Err(ProxyError::client(
            ErrorKind::Io,
            "client closed before a request",
        ));
    }
    if buf.first() == Some(&socks5::VERSION) {
        accept_socks5(stream, buf, client, (cfg, auth), deadline).await
    } else {
        accept_http(stream, buf, client, (cfg, auth), deadline).await
    }
}

/// `buf` holds the bytes read so far (at least one).
async fn accept_http(
    mut stream: ClientStream,
    mut buf: BytesMut,
    client: SocketAddr,
    (cfg, auth): (&Config, &Authenticator),
    deadline: Instant,
) -> Result<Accepted, ProxyError> {
    let read = read_until(
        &mut stream,
        &mut buf,
        http::MAX_HEAD,
        deadline,
        http::parse_request_head,
    )
    .await;
    let (req, consumed) = match read {
        Ok(done) => done,
        Err(e) => {
            let err = read_error_to_proxy(e, ProxyError::from);
            if err.kind != ErrorKind::Io {
                reply_error(&mut stream, Replier::Http, &err).await;
            }
            return Err(err);
        }
    };
    let checked = auth.authenticate(&cfg.users, req.credentials.as_ref());
    let user = match within(deadline, checked).await {
        Ok(user) => user,
        Err(err) => {
            reply_error(&mut stream, Replier::Http, &err).await;
            return Err(err);
        }
    };
    match &req.target {
        RequestTarget::Connect(target) => {
            let leftover = buf.split_off(consumed);
            let request = Request {
                client,
                user,
                target: target.clone(),
                via: Via::HttpConnect,
                http: None,
            };
            Ok(Accepted::Tunnel(TunnelRequest {
                stream,
                leftover,
                request,
                replier: Replier::Http,
            }))
        }
        RequestTarget::Absolute(_) => Ok(Accepted::Forward {
            stream,
            buffered: buf,
            first: Box::new(req),
            user,
        }),
        RequestTarget::Origin(path) => {
            let err = ProxyError::client(
                ErrorKind::MalformedRequest,
                format!(
                    "{} {path}: ward is a proxy; send CONNECT host:port or an absolute URI",
                    req.method
                ),
            );
            reply_error(&mut stream, Replier::Http, &err).await;
            Err(err)
        }
    }
}

/// `buf` holds the bytes read so far (at least one).
async fn accept_socks5(
    mut stream: ClientStream,
    mut buf: BytesMut,
    client: SocketAddr,
    (cfg, auth): (&Config, &Authenticator),
    deadline: Instant,
) -> Result<Accepted, ProxyError> {
    use socks5::{AfterGreeting, ExpectGreeting};
    let state = ExpectGreeting::new(!cfg.users.is_empty());
    let greeting = read_socks5(&mut stream, &mut buf, deadline, |b| state.parse(b)).await?;
    let (answer, next) = state.answer(&greeting);
    write_client(&mut stream, &answer).await?;
    let (state, user) = match next {
        AfterGreeting::ExpectRequest(state) => (state, None),
        AfterGreeting::ExpectAuth(state) => {
            let creds = read_socks5(&mut stream, &mut buf, deadline, |b| state.parse(b)).await?;
            // No users configured: a client that insists on user/password gets in with any.
            let verdict = match cfg.users.is_empty() {
                true => Ok(None),
                false => within(deadline, auth.authenticate(&cfg.users, Some(&creds))).await,
            };
            let (answer, next) = state.answer(verdict.is_ok());
            write_client(&mut stream, &answer).await?;
            let user = verdict?;
            match next {
                Some(state) => (state, user),
                None => return Err(ProxyError::local(ErrorKind::Internal, "auth state")),
            }
        }
        AfterGreeting::Refused => {
            return Err(ProxyError::client(
                ErrorKind::AuthRequired,
                "SOCKS5 client offered no acceptable authentication method",
            ));
        }
    };
    let target = match read_socks5(&mut stream, &mut buf, deadline, |b| state.parse(b))
        .await
        .and_then(|req| req.connect_target().map_err(ProxyError::from))
    {
        Ok(target) => target,
        Err(err) => {
            reply_error(&mut stream, Replier::Socks5, &err).await;
            return Err(err);
        }
    };
    let request = Request {
        client,
        user,
        target,
        via: Via::Socks5,
        http: None,
    };
    Ok(Accepted::Tunnel(TunnelRequest {
        stream,
        leftover: buf,
        request,
        replier: Replier::Socks5,
    }))
}

/// Reads one SOCKS5 message and removes it from the front of `buf`.
async fn read_socks5<T>(
    stream: &mut ClientStream,
    buf: &mut BytesMut,
    deadline: Instant,
    parse: impl FnMut(&[u8]) -> Result<crate::Parsed<T>, socks5::Socks5Error>,
) -> Result<T, ProxyError> {
    read_message(stream, buf, SOCKS5_MESSAGE_CAP, deadline, parse)
        .await
        .map_err(|e| read_error_to_proxy(e, ProxyError::from))
}

async fn write_client<S: AsyncWrite + Unpin>(
    stream: &mut S,
    bytes: &[u8],
) -> Result<(), ProxyError> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| ProxyError::client(ErrorKind::Io, format!("write: {e}")).with_source(e))
}

fn read_error_to_proxy<E>(e: ReadError<E>, parse: impl FnOnce(E) -> ProxyError) -> ProxyError {
    match e {
        ReadError::Parse(p) => parse(p),
        ReadError::TooLarge => {
            ProxyError::client(ErrorKind::HeadTooLarge, "request head over the size limit")
        }
        ReadError::Timeout => ProxyError::client(
            ErrorKind::ClientTimeout,
            "request incomplete at the handshake timeout",
        ),
        ReadError::Closed => {
            ProxyError::client(ErrorKind::Io, "client closed in the middle of its request")
        }
        ReadError::Io(e) => ProxyError::client(ErrorKind::Io, format!("read: {e}")).with_source(e),
    }
}

/// A password check within the handshake's deadline: when logins queue for the hash pool, a
/// client waits no longer than for the rest of its handshake.
async fn within(
    deadline: Instant,
    check: impl Future<Output = Result<Option<String>, ProxyError>>,
) -> Result<Option<String>, ProxyError> {
    tokio::time::timeout_at(deadline, check)
        .await
        .unwrap_or_else(|_| {
            Err(ProxyError::client(
                ErrorKind::ClientTimeout,
                "credentials not checked before the handshake timeout",
            ))
        })
}
