//! Raw clients over std sockets, for what curl cannot do: hand-written HTTP proxy requests,
//! SOCKS5 byte by byte, TLS with a chosen SNI through an open tunnel, slow writers.
//! Every socket gets read and write timeouts, so no test can hang on a silent peer.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

/// Every read and write on a test socket gives up after this long.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// A proxy reply head larger than this is a bug in itself.
const MAX_REPLY_HEAD: usize = 64 * 1024;
/// read_all stops collecting after this much (responses in tests are small).
const MAX_READ_ALL: usize = 16 * 1024 * 1024;

pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
    s.set_write_timeout(Some(IO_TIMEOUT))
        .expect("write timeout");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// A parsed HTTP response head, with whatever body bytes arrived in the same reads.
#[derive(Debug, Clone)]
pub struct Head {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub rest: Vec<u8>,
}

impl Head {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `error=` token of `Proxy-Status: ward; error=TOKEN; details="…"`.
    pub fn proxy_error(&self) -> Option<String> {
        self.proxy_status_param("error")
    }

    /// The `details` parameter, unquoted.
    pub fn proxy_details(&self) -> Option<String> {
        self.proxy_status_param("details")
    }

    fn proxy_status_param(&self, key: &str) -> Option<String> {
        let v = self.header("proxy-status")?;
        let mut parts = v.split(';').map(str::trim);
        if parts.next() != Some("ward") {
            return None;
        }
        parts.find_map(|p| {
            let (k, val) = p.split_once('=')?;
            (k.trim() == key).then(|| val.trim().trim_matches('"').to_owned())
        })
    }
}

/// Reads one response head (until CRLFCRLF), parsed with httparse. Panics on timeout or a
/// malformed head; returns None when the peer closed before sending anything.
pub fn read_head(s: &mut impl Read) -> Option<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match s.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if is_reset(&e) && buf.is_empty() => return None,
            Err(e) => panic!("reading a reply head: {e} (have {:?})", lossy(&buf)),
        };
        if n == 0 {
            assert!(buf.is_empty(), "peer closed mid-head: {:?}", lossy(&buf));
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                return Some(Head {
                    status: resp.code.expect("status"),
                    headers: resp
                        .headers
                        .iter()
                        .map(|h| (h.name.to_owned(), lossy(h.value)))
                        .collect(),
                    rest: buf[len..].to_vec(),
                });
            }
            Ok(httparse::Status::Partial) => {
                assert!(buf.len() < MAX_REPLY_HEAD, "reply head over 64 KiB");
            }
            Err(e) => panic!("malformed reply head ({e}): {:?}", lossy(&buf)),
        }
    }
}

pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn is_reset(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe
    )
}

/// Reads until EOF (or a reset), bounded by IO_TIMEOUT per read and MAX_READ_ALL in size.
pub fn read_all(s: &mut impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    while out.len() < MAX_READ_ALL {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&chunk[..n]),
            Err(e) if is_reset(&e) => break,
            Err(e) => panic!("read_all: {e} after {} bytes", out.len()),
        }
    }
    out
}

/// True when the peer closes (EOF or reset) within `within`, false if it is still open.
pub fn closes_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).expect("timeout");
    let mut chunk = [0u8; 4096];
    let deadline = Instant::now() + within;
    let closed = loop {
        match s.read(&mut chunk) {
            Ok(0) => break true,
            Ok(_) if Instant::now() < deadline => continue,
            Ok(_) => break false,
            Err(e) if is_reset(&e) => break true,
            Err(_) => break false,
        }
    };
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    closed
}

/// Sends `request` (a whole head, CRLFs included) to the proxy and reads the reply head.
pub fn http_exchange(proxy: SocketAddr, request: &str) -> (TcpStream, Option<Head>) {
    let mut s = connect(proxy);
    s.write_all(request.as_bytes()).expect("write request");
    let head = read_head(&mut s);
    (s, head)
}

/// `CONNECT target HTTP/1.1` with optional extra header lines; returns the stream and reply.
pub fn http_connect(proxy: SocketAddr, target: &str, extra: &[&str]) -> (TcpStream, Head) {
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    for h in extra {
        req.push_str(h);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    let (s, head) = http_exchange(proxy, &req);
    let head = head.unwrap_or_else(|| panic!("proxy closed without replying to CONNECT {target}"));
    (s, head)
}

/// `Proxy-Authorization: Basic …` for user:password.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Proxy-Authorization: Basic {token}")
}

/// Destination of a SOCKS5 CONNECT.
pub enum SocksAddr<'a> {
    Ip(SocketAddr),
    Domain(&'a str, u16),
}

/// What SOCKS5 reply codes are called in RFC 1928, for readable assertion messages.
pub mod socks_reply {
    pub const GENERAL_FAILURE: u8 = 0x01;
    pub const NOT_ALLOWED: u8 = 0x02;
    pub const HOST_UNREACHABLE: u8 = 0x04;
    pub const CONNECTION_REFUSED: u8 = 0x05;
    pub const TTL_EXPIRED: u8 = 0x06;
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x07;
    pub const ADDRESS_TYPE_NOT_SUPPORTED: u8 = 0x08;
}

/// Sends the greeting offering `methods`; returns the method the proxy chose (0xFF: none).
pub fn socks5_greet(s: &mut TcpStream, methods: &[u8]) -> u8 {
    let mut greeting = vec![0x05, methods.len() as u8];
    greeting.extend_from_slice(methods);
    s.write_all(&greeting).expect("write greeting");
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply).expect("read method choice");
    assert_eq!(reply[0], 0x05, "method choice version");
    reply[1]
}

/// RFC 1929 username/password; returns the status byte (0 = success).
pub fn socks5_auth(s: &mut TcpStream, user: &str, password: &str) -> u8 {
    let mut msg = vec![0x01, user.len() as u8];
    msg.extend_from_slice(user.as_bytes());
    msg.push(password.len() as u8);
    msg.extend_from_slice(password.as_bytes());
    s.write_all(&msg).expect("write auth");
    let mut reply = [0u8; 2];
    s.read_exact(&mut reply).expect("read auth status");
    assert_eq!(reply[0], 0x01, "auth reply version");
    reply[1]
}

/// Encodes a SOCKS5 request with command `cmd` (1 = CONNECT).
pub fn socks5_request(cmd: u8, to: &SocksAddr) -> Vec<u8> {
    let mut req = vec![0x05, cmd, 0x00];
    match to {
        SocksAddr::Ip(SocketAddr::V4(a)) => {
            req.push(0x01);
            req.extend_from_slice(&a.ip().octets());
            req.extend_from_slice(&a.port().to_be_bytes());
        }
        SocksAddr::Ip(SocketAddr::V6(a)) => {
            req.push(0x04);
            req.extend_from_slice(&a.ip().octets());
            req.extend_from_slice(&a.port().to_be_bytes());
        }
        SocksAddr::Domain(name, port) => {
            req.push(0x03);
            req.push(name.len() as u8);
            req.extend_from_slice(name.as_bytes());
            req.extend_from_slice(&port.to_be_bytes());
        }
    }
    req
}

/// Sends a request and reads the whole reply (its bound address included); returns REP.
pub fn socks5_send(s: &mut TcpStream, request: &[u8]) -> u8 {
    s.write_all(request).expect("write request");
    read_socks5_reply(s)
}

/// Reads one SOCKS5 reply and returns its REP byte; panics on a short or malformed reply.
pub fn read_socks5_reply(s: &mut TcpStream) -> u8 {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).expect("read reply head");
    assert_eq!(head[0], 0x05, "reply version: {head:?}");
    let addr_len = match head[3] {
        0x01 => 4,
        0x04 => 16,
        0x03 => {
            let mut l = [0u8; 1];
            s.read_exact(&mut l).expect("read name length");
            l[0] as usize
        }
        other => panic!("reply address type {other:#x}"),
    };
    let mut rest = vec![0u8; addr_len + 2];
    s.read_exact(&mut rest).expect("read bound address");
    head[1]
}

/// Greets (no auth, or user/password when `creds` is given), asks CONNECT, returns the
/// stream when the reply is 0x00 and the reply code otherwise.
pub fn socks5_open(
    proxy: SocketAddr,
    to: &SocksAddr,
    creds: Option<(&str, &str)>,
) -> Result<TcpStream, u8> {
    let mut s = connect(proxy);
    match creds {
        None => assert_eq!(socks5_greet(&mut s, &[0x00]), 0x00, "no-auth method"),
        Some((u, p)) => {
            assert_eq!(socks5_greet(&mut s, &[0x02]), 0x02, "user/password method");
            assert_eq!(socks5_auth(&mut s, u, p), 0x00, "auth status");
        }
    }
    match socks5_send(&mut s, &socks5_request(0x01, to)) {
        0x00 => Ok(s),
        code => Err(code),
    }
}

/// A TLS client over an open tunnel, with `sni` as the server name and the test CA trusted.
pub fn tls_over<S: Read + Write>(
    stream: S,
    sni: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, S> {
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    let conn = rustls::ClientConnection::new(cfg, name).expect("client connection");
    rustls::StreamOwned::new(conn, stream)
}

/// Sends `GET path` with Connection: close over any stream and returns (status, body).
pub fn http_get(s: &mut (impl Read + Write), host: &str, path: &str) -> (u16, Vec<u8>) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("write GET");
    s.flush().expect("flush");
    let head = read_head(s).expect("a response");
    let mut body = head.rest.clone();
    body.extend(read_all(s));
    (head.status, body)
}

/// A writer that sends its first `slow` bytes one per write, each followed by a pause: the
/// 1-byte-at-a-time client (each byte lands in its own TCP segment with TCP_NODELAY).
pub struct Trickle {
    pub inner: TcpStream,
    pub slow: usize,
    pub pause: Duration,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Write for Trickle {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.slow == 0 || buf.is_empty() {
            return self.inner.write(buf);
        }
        let n = self.inner.write(&buf[..1])?;
        self.slow -= n;
        std::thread::sleep(self.pause);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Half-closes the write side (the client's FIN).
pub fn shutdown_write(s: &TcpStream) {
    s.shutdown(Shutdown::Write).expect("shutdown write");
}

/// The bytes of a real ClientHello (rustls, SNI `sni`, ALPN h2 + http/1.1), made without a
/// socket, for truncated and fragmented hello tests.
pub fn client_hello_bytes(sni: &str, cfg: Arc<rustls::ClientConfig>) -> Vec<u8> {
    let name = ServerName::try_from(sni.to_owned()).expect("server name");
    let mut conn = rustls::ClientConnection::new(cfg, name).expect("client connection");
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).expect("write hello");
    }
    out
}

/// Drives a TLS handshake to completion; Err carries rustls' error when the peer refused.
pub fn handshake<S: Read + Write>(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, S>,
) -> Result<(), rustls::Error> {
    while tls.conn.is_handshaking() {
        if let Err(e) = tls.conn.complete_io(&mut tls.sock) {
            let inner = e
                .get_ref()
                .and_then(|i| i.downcast_ref::<rustls::Error>())
                .cloned();
            return Err(inner.unwrap_or_else(|| rustls::Error::General(format!("io: {e}"))));
        }
    }
    Ok(())
}
