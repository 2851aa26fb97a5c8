//! The ClientHello stage: wait for the client's first bytes after the tunnel opened, until one
//! complete ClientHello, bytes that are not TLS, or the server speaking first — within
//! `timeouts.client_hello`. Whatever was read stays in the caller's buffer, to be replayed.
//! Parsing is `tls`'s; judging what was read is the policy's.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncRead;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::Parsed;
use crate::error::{ErrorKind, ProxyError};
use crate::io::{ReadError, read_until};
use crate::tls::{self, ClientHelloFacts, HelloError};

/// What the client's first bytes turned out to be.
pub enum First {
    /// A complete ClientHello (boxed: it is several times the size of the other answers).
    Hello(Box<ClientHelloFacts>),
    /// Not TLS (or the server spoke first), with the reason: `non_tls` judges it.
    NotTls(String),
    /// A TLS handshake record, but no ClientHello ward can read in it.
    Unreadable(ProxyError),
    /// The client closed before sending anything.
    ClientGone,
    /// A timeout or an I/O error.
    Failed(ProxyError),
}

/// The reason given when the destination sends before the client.
pub const SERVER_FIRST: &str = "the server spoke first";

/// Bytes that are not TLS are `non_tls`'s to judge; TLS that cannot be read is refused, or a
/// client could slip any name past the SNI policy by shaping its hello past ward's caps.
fn hello_error(e: HelloError) -> First {
    match e {
        HelloError::NotTls(why) => First::NotTls(why.to_string()),
        e => First::Unreadable(ProxyError::client(
            ErrorKind::ClientHelloUnreadable,
            e.to_string(),
        )),
    }
}

/// Reads from `client` into `buf` (which may already hold bytes read with the request) until
/// its first bytes can be classified, or `upstream` becomes readable first.
pub async fn read_first<S: AsyncRead + Unpin>(
    client: &mut S,
    upstream: &TcpStream,
    buf: &mut BytesMut,
    wait: Duration,
) -> First {
    if !buf.is_empty() {
        match tls::parse_client_hello(buf) {
            Ok(Parsed::Done { value, .. }) => return First::Hello(Box::new(value)),
            Ok(Parsed::Incomplete) => {}
            Err(e) => return hello_error(e),
        }
    }
    let deadline = Instant::now() + wait;
    let read = read_until(
        client,
        buf,
        tls::MAX_CLIENT_HELLO,
        deadline,
        tls::parse_client_hello,
    );
    let timeout = |what: String| ProxyError::client(ErrorKind::ClientHelloTimeout, what);
    let waited = humantime::format_duration(wait);
    tokio::select! {
        r = read => match r {
            Ok((hello, _)) => First::Hello(Box::new(hello)),
            Err(ReadError::Parse(e)) => hello_error(e),
            Err(ReadError::TooLarge) => hello_error(HelloError::TooLarge),
            Err(ReadError::Closed) if buf.is_empty() => First::ClientGone,
            Err(ReadError::Closed) => First::NotTls("client closed mid-ClientHello".into()),
            Err(ReadError::Timeout) if buf.is_empty() => {
                First::Failed(timeout(format!("no bytes within {waited}")))
            }
            Err(ReadError::Timeout) => First::Failed(timeout(format!(
                "ClientHello incomplete after {waited} ({} bytes)",
                buf.len()
            ))),
            Err(ReadError::Io(e)) => {
                First::Failed(ProxyError::client(ErrorKind::Io, format!("read: {e}")))
            }
        },
        // A server that speaks first (SSH, SMTP) gets the client's attention at once.
        _ = upstream.readable() => First::NotTls(SERVER_FIRST.into()),
    }
}
