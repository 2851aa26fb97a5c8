//! What a listener does between accept and the front-end handshake: believe a PROXY header
//! only from a `trusted` peer, read it under the handshake deadline, then, on an HTTPS
//! listener, run the TLS handshake with the client. Hands the front-end one [`ClientStream`]
//! and the client's address, whichever way it came. No HTTP or SOCKS5 here, no policy.

pub mod cert;
#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use arc_swap::ArcSwap;
use bytes::BytesMut;
use ipnet::IpNet;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::proxy_protocol::{self, ProxyHeaderError, Versions};
use crate::config::{ConfigIssue, Listener, ListenerTls};
use crate::io::{PrefixedStream, ReadError, read_until};

/// A client connection, in clear or inside the TLS of an HTTPS listener. Either way it
/// replays first what was read past a PROXY header.
pub enum ClientStream {
    /// A plain listener.
    Plain(PrefixedStream<TcpStream>),
    /// An HTTPS listener (boxed: the TLS state is large, the plain case common).
    Tls(Box<TlsStream<PrefixedStream<TcpStream>>>),
}

/// Why a connection was closed before its front-end handshake.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    /// A PROXY listener's peer is not in `trusted`.
    #[error("PROXY header from {0}, which is not in the listener's `trusted` list")]
    Untrusted(std::net::IpAddr),
    /// The PROXY header is malformed.
    #[error("{0}")]
    Header(ProxyHeaderError),
    /// The peer closed before a whole PROXY header.
    #[error("closed in the middle of the PROXY header ({0} bytes)")]
    Truncated(usize),
    /// No whole PROXY header before the handshake timeout.
    #[error("PROXY header incomplete at the handshake timeout")]
    Timeout,
    /// No TLS handshake before the handshake timeout.
    #[error("TLS handshake incomplete at the handshake timeout")]
    TlsTimeout,
    /// The TLS handshake with the client failed.
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    /// Reading failed.
    #[error("read: {0}")]
    Io(io::Error),
}

impl EntryError {
    /// The `reason` label of the rejection counters: a fixed, small set.
    pub fn reason(&self) -> &'static str {
        match self {
            EntryError::Untrusted(_) => "untrusted",
            EntryError::Header(_) => "malformed",
            EntryError::Truncated(_) => "truncated",
            EntryError::Timeout | EntryError::TlsTimeout => "timeout",
            EntryError::Tls(_) => "tls",
            EntryError::Io(_) => "io",
        }
    }

    /// Whether the PROXY header step refused the connection (rather than TLS).
    pub fn is_proxy_protocol(&self) -> bool {
        !matches!(self, EntryError::Tls(_) | EntryError::TlsTimeout)
    }
}

/// One listener's entry steps; shared by its connections, its certificate swapped on reload.
pub struct Entry {
    /// The listener's configured address, for logs.
    pub addr: SocketAddr,
    proxy: Option<(Versions, Vec<IpNet>)>,
    tls: Option<(ListenerTls, ArcSwap<ServerConfig>)>,
}

impl Entry {
    /// The entry of `listener`, its certificate loaded now.
    pub fn new(listener: &Listener) -> Result<Entry, ConfigIssue> {
        let tls = match &listener.tls {
            Some(t) => Some((t.clone(), ArcSwap::new(cert::load(t)?))),
            None => None,
        };
        Ok(Entry {
            addr: listener.addr,
            proxy: listener
                .proxy_protocol
                .map(|v| (v, listener.trusted.clone())),
            tls,
        })
    }

    /// Whether clients speak TLS first to this listener.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The certificate files, when this is an HTTPS listener.
    pub fn tls_files(&self) -> Option<&ListenerTls> {
        self.tls.as_ref().map(|(files, _)| files)
    }

    /// Reads the certificate files again; on error the current certificate stays.
    pub fn reload_tls(&self) -> Result<(), ConfigIssue> {
        if let Some((files, current)) = &self.tls {
            current.store(cert::load(files)?);
        }
        Ok(())
    }

    /// Only the PROXY header step (none on a listener without one): who the client is, for
    /// a connection refused before anything else is read (`max_connections`). The bytes
    /// after the header stay in the returned stream.
    pub async fn client_of(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
        deadline: Instant,
    ) -> Result<(PrefixedStream<TcpStream>, SocketAddr), EntryError> {
        let (client, rest) = match &self.proxy {
            None => (peer, BytesMut::new()),
            Some((versions, trusted)) => {
                read_proxy_header(&mut stream, peer, *versions, trusted, deadline).await?
            }
        };
        Ok((PrefixedStream::new(rest.freeze(), stream), client))
    }

    /// Runs the entry steps on a fresh connection from `peer`; returns the stream the
    /// front-end reads and the client's address (the PROXY header's source, if any).
    pub async fn open(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        deadline: Instant,
    ) -> Result<(ClientStream, SocketAddr), EntryError> {
        let (stream, client) = self.client_of(stream, peer, deadline).await?;
        let Some((_, config)) = &self.tls else {
            return Ok((ClientStream::Plain(stream), client));
        };
        let acceptor = TlsAcceptor::from(config.load_full());
        let tls = tokio::time::timeout_at(deadline, acceptor.accept(stream))
            .await
            .map_err(|_| EntryError::TlsTimeout)?
            .map_err(EntryError::Tls)?;
        Ok((ClientStream::Tls(Box::new(tls)), client))
    }
}

/// The PROXY header, from a trusted peer only; returns the client and the bytes after it.
async fn read_proxy_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
    versions: Versions,
    trusted: &[IpNet],
    deadline: Instant,
) -> Result<(SocketAddr, BytesMut), EntryError> {
    let ip = peer.ip().to_canonical();
    if !trusted.iter().any(|net| net.contains(&ip)) {
        return Err(EntryError::Untrusted(ip));
    }
    let mut buf = BytesMut::with_capacity(proxy_protocol::MAX_HEADER);
    let parse = |b: &[u8]| proxy_protocol::parse_proxy_header(b, versions);
    let read = read_until(
        stream,
        &mut buf,
        proxy_protocol::MAX_HEADER,
        deadline,
        parse,
    )
    .await;
    let (header, consumed) = read.map_err(|e| match e {
        ReadError::Parse(e) => EntryError::Header(e),
        // The parser refuses an oversized header before the cap is reached.
        ReadError::TooLarge => EntryError::Header(ProxyHeaderError::V2TooLong(buf.len())),
        ReadError::Timeout => EntryError::Timeout,
        ReadError::Closed => EntryError::Truncated(buf.len()),
        ReadError::Io(e) => EntryError::Io(e),
    })?;
    let client = header.addresses.map_or(peer, |a| a.source);
    Ok((client, buf.split_off(consumed)))
}

/// Every call goes to the stream in use; nothing is buffered here.
macro_rules! delegate {
    ($self:ident, $s:ident => $call:expr) => {
        match $self.get_mut() {
            ClientStream::Plain($s) => {
                let $s = Pin::new($s);
                $call
            }
            ClientStream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $call
            }
        }
    };
}

impl ClientStream {
    /// Makes closing this connection send a RST (see [`crate::io::reset_on_close`]).
    pub fn reset_on_close(&self) {
        let tcp = match self {
            ClientStream::Plain(s) => s.get_ref(),
            ClientStream::Tls(t) => t.get_ref().0.get_ref(),
        };
        crate::io::reset_on_close(tcp);
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(s) => s.is_write_vectored(),
            ClientStream::Tls(s) => s.is_write_vectored(),
        }
    }
}
