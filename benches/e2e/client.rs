//! The load generator's client side: reach the origin directly, through an HTTP CONNECT proxy
//! or a SOCKS5 proxy, then speak raw bytes, TLS + HTTP/1.1, or TLS + HTTP/2. Every step has a
//! timeout; nothing here loops without a bound.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use http_body_util::BodyExt;
use testkit::body::CHUNK;
use testkit::raw::read_head;

/// One step (connect, proxy handshake, TLS handshake, one small response) may take this long.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(15);
const SOCKS_VERSION: u8 = 5;
const SOCKS_CMD_CONNECT: u8 = 1;
const SOCKS_ATYP_V4: u8 = 1;
const SOCKS_ATYP_DOMAIN: u8 = 3;
const SOCKS_ATYP_V6: u8 = 4;

/// How the client reaches the origin.
#[derive(Clone, Copy, Debug)]
pub enum Front {
    Direct,
    Connect(SocketAddr),
    Socks5(SocketAddr),
}

/// Where a subject's client connects: the front, the name (or IP literal) it asks the proxy
/// for, the SNI, and the CA it trusts for that SNI.
#[derive(Clone)]
pub struct Route {
    pub front: Front,
    /// What goes into CONNECT / the SOCKS5 request: a name for proxies told our `hosts`,
    /// an IP literal for the others.
    pub host: String,
    pub sni: &'static str,
    pub raw_origin: SocketAddr,
    pub tls_origin: SocketAddr,
    /// ALPN http/1.1 only.
    pub tls_h1: Arc<ClientConfig>,
    /// ALPN h2 then http/1.1, as a browser offers them.
    pub tls_h2: Arc<ClientConfig>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Port {
    Raw,
    Tls,
}

impl Route {
    /// A TCP stream that reaches the origin's `port` (proxy handshake done).
    pub async fn open(&self, port: Port) -> Result<TcpStream> {
        let origin = match port {
            Port::Raw => self.raw_origin,
            Port::Tls => self.tls_origin,
        };
        let stream = match self.front {
            Front::Direct => connect(origin).await?,
            Front::Connect(proxy) => {
                let mut s = connect(proxy).await?;
                timeout(
                    STEP_TIMEOUT,
                    http_connect(&mut s, &self.host, origin.port()),
                )
                .await
                .context("CONNECT timed out")??;
                s
            }
            Front::Socks5(proxy) => {
                let mut s = connect(proxy).await?;
                timeout(
                    STEP_TIMEOUT,
                    socks5_connect(&mut s, &self.host, origin.port()),
                )
                .await
                .context("SOCKS5 timed out")??;
                s
            }
        };
        Ok(stream)
    }

    /// The Host header of requests to the TLS origin: the name and its (non-default) port.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.sni, self.tls_origin.port())
    }

    /// Tunnel + TLS handshake with the given ALPN offer.
    pub async fn open_tls(&self, config: &Arc<ClientConfig>) -> Result<TlsStream<TcpStream>> {
        let tcp = self.open(Port::Tls).await?;
        let name = ServerName::try_from(self.sni).map_err(|e| anyhow!("{e}"))?;
        let tls = timeout(
            STEP_TIMEOUT,
            TlsConnector::from(config.clone()).connect(name, tcp),
        )
        .await
        .context("TLS handshake timed out")?
        .context("TLS handshake")?;
        Ok(tls)
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = timeout(STEP_TIMEOUT, TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

async fn http_connect(stream: &mut TcpStream, host: &str, port: u16) -> Result<()> {
    let authority = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]:{port}"),
        _ => format!("{host}:{port}"),
    };
    let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    let head_len = read_head(stream, &mut buf)
        .await
        .context("no CONNECT reply")?;
    // The origin only speaks after the client does, so nothing may follow the reply yet.
    ensure!(
        buf.len() == head_len,
        "proxy sent bytes after its CONNECT reply"
    );
    let status = String::from_utf8_lossy(&buf[..head_len.min(64)]).into_owned();
    ensure!(
        status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200"),
        "CONNECT refused: {}",
        status.lines().next().unwrap_or("")
    );
    Ok(())
}

async fn socks5_connect(stream: &mut TcpStream, host: &str, port: u16) -> Result<()> {
    stream.write_all(&[SOCKS_VERSION, 1, 0]).await?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await?;
    ensure!(
        choice == [SOCKS_VERSION, 0],
        "SOCKS5 method refused: {choice:?}"
    );
    let mut request = vec![SOCKS_VERSION, SOCKS_CMD_CONNECT, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            request.push(SOCKS_ATYP_V4);
            request.extend_from_slice(&v4.octets());
        }
        Ok(IpAddr::V6(v6)) => {
            request.push(SOCKS_ATYP_V6);
            request.extend_from_slice(&v6.octets());
        }
        Err(_) => {
            request.push(SOCKS_ATYP_DOMAIN);
            request.push(u8::try_from(host.len())?);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await?;
    ensure!(
        reply[0] == SOCKS_VERSION && reply[1] == 0,
        "SOCKS5 reply {:#04x}",
        reply[1]
    );
    let addr_len = match reply[3] {
        SOCKS_ATYP_V4 => 4,
        SOCKS_ATYP_V6 => 16,
        SOCKS_ATYP_DOMAIN => usize::from(stream.read_u8().await?),
        other => bail!("SOCKS5 reply address type {other}"),
    };
    let mut rest = vec![0u8; addr_len + 2];
    stream.read_exact(&mut rest).await?;
    Ok(())
}

/// One HTTP/1.1 GET of `len` bytes on an open stream; the stream stays usable unless `close`.
pub async fn get_h1<S>(stream: &mut S, host: &str, len: u64, close: bool) -> Result<u64>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let connection = if close { "close" } else { "keep-alive" };
    let request =
        format!("GET /bytes/{len} HTTP/1.1\r\nHost: {host}\r\nConnection: {connection}\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    let head_len = read_head(stream, &mut buf)
        .await
        .context("no response head")?;
    let head = String::from_utf8_lossy(&buf[..head_len]).to_ascii_lowercase();
    ensure!(
        head.starts_with("http/1.1 200"),
        "origin said {}",
        head.lines().next().unwrap_or("")
    );
    let mut got = (buf.len() - head_len) as u64;
    let mut chunk = vec![0u8; CHUNK];
    while got < len {
        let n = stream.read(&mut chunk).await?;
        ensure!(n > 0, "body cut short at {got} of {len} bytes");
        got += n as u64;
    }
    Ok(got)
}

/// An HTTP/2 connection over `tls` (which must have negotiated h2) with one GET done; the
/// returned sender keeps the connection, whose driver task ends when the sender is dropped.
pub async fn h2_session(
    tls: TlsStream<TcpStream>,
    host: &str,
    len: u64,
) -> Result<(
    hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    tokio::task::JoinHandle<()>,
)> {
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    let driver = tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = hyper::Request::get(format!("https://{host}/bytes/{len}"))
        .body(http_body_util::Empty::new())?;
    let response = timeout(STEP_TIMEOUT, sender.send_request(request))
        .await
        .context("h2 request timed out")??;
    ensure!(
        response.status() == hyper::StatusCode::OK,
        "h2 status {}",
        response.status()
    );
    let got = timeout(STEP_TIMEOUT, drain_body(response.into_body()))
        .await
        .context("h2 body timed out")??;
    ensure!(got == len, "h2 body {got} of {len} bytes");
    Ok((sender, driver))
}

/// Drains an h2 response body, counting its bytes.
pub async fn drain_body(mut body: hyper::body::Incoming) -> Result<u64> {
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            total += data.len() as u64;
        }
    }
    Ok(total)
}
