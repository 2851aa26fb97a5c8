//! Chaining: reaching the destination through the configured upstream proxy (HTTP CONNECT or
//! SOCKS5 with domain names, credentials included), the way proxy managers stack proxies.
//! Whatever the upstream says no with becomes an `UpstreamProxy` error that quotes it.

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{Config, Upstream, UpstreamScheme};
use crate::error::{ErrorKind, ProxyError};
use crate::front::http;
use crate::front::socks5::{self, client};
use crate::io::{ReadError, read_message, read_until};
use crate::target::Target;
use crate::{Parsed, dial};

/// SOCKS5 replies are at most 262 bytes; anything longer is not a SOCKS5 proxy.
const SOCKS5_REPLY_CAP: usize = 512;

/// Connects to the upstream proxy itself. A failure here means the proxy is unreachable (the
/// next one of a rule's list may be tried), unlike a refusal it answers with.
pub async fn reach(up: &Upstream, cfg: &Config) -> Result<TcpStream, ProxyError> {
    let proxy = up.target.to_string();
    let wrap = |e: ProxyError| {
        ProxyError::upstream(
            ErrorKind::UpstreamProxy,
            format!("upstream proxy {proxy}: {}", e.detail),
        )
    };
    let override_ip = up.target.host.name().and_then(|n| cfg.hosts.lookup(n));
    let addrs = dial::resolve(&up.target, override_ip, cfg.timeouts.dns)
        .await
        .map_err(wrap)?;
    let (stream, _) = dial::connect(&addrs, cfg.timeouts.connect)
        .await
        .map_err(wrap)?;
    Ok(stream)
}

/// Asks the upstream proxy on `stream` (see [`reach`]) for a tunnel to `target`. Returns the
/// stream and any bytes the destination already sent after the proxy's reply (a server that
/// speaks first).
pub async fn open(
    mut stream: TcpStream,
    up: &Upstream,
    target: &Target,
    cfg: &Config,
) -> Result<(TcpStream, Bytes), ProxyError> {
    let deadline = Instant::now() + cfg.timeouts.connect;
    let early = match up.scheme {
        UpstreamScheme::Http => http_connect(&mut stream, up, target, deadline).await,
        UpstreamScheme::Socks5 => socks5_connect(&mut stream, up, target, deadline).await,
    }
    .map_err(|detail| {
        ProxyError::upstream(
            ErrorKind::UpstreamProxy,
            format!("upstream proxy {} for {target}: {detail}", up.target),
        )
    })?;
    Ok((stream, early))
}

async fn http_connect(
    stream: &mut TcpStream,
    up: &Upstream,
    target: &Target,
    deadline: Instant,
) -> Result<Bytes, String> {
    let request = http::encode_connect_request(target, up.credentials.as_ref());
    stream
        .write_all(&request)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = BytesMut::with_capacity(1024);
    let (head, consumed) = read_until(
        stream,
        &mut buf,
        http::MAX_HEAD,
        deadline,
        http::parse_response_head,
    )
    .await
    .map_err(|e| read_failure(e, |h| h.to_string()))?;
    if !(200..300).contains(&head.status) {
        // Another ward (or any RFC 9209 proxy) says exactly why: pass that on.
        let status_detail = head
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("proxy-status"))
            .map(|(_, v)| format!(" ({})", String::from_utf8_lossy(v)))
            .unwrap_or_default();
        return Err(format!(
            "CONNECT answered {} {}{status_detail}",
            head.status, head.reason
        ));
    }
    Ok(buf.split_off(consumed).freeze())
}

async fn socks5_connect(
    stream: &mut TcpStream,
    up: &Upstream,
    target: &Target,
    deadline: Instant,
) -> Result<Bytes, String> {
    let creds = up.credentials.as_ref();
    let mut buf = BytesMut::with_capacity(64);
    write(stream, &client::encode_greeting(creds.is_some())).await?;
    let method = read_msg(stream, &mut buf, deadline, client::parse_method_choice).await?;
    match (method, creds) {
        (socks5::method::NO_AUTH, _) => {}
        (socks5::method::USER_PASSWORD, Some(c)) => {
            let auth = client::encode_auth(c).map_err(|e| e.to_string())?;
            write(stream, &auth).await?;
            if !read_msg(stream, &mut buf, deadline, client::parse_auth_status).await? {
                return Err("SOCKS5 authentication rejected".into());
            }
        }
        (m, _) => {
            return Err(format!(
                "SOCKS5 proxy chose method {m:#04x}, which ward cannot use"
            ));
        }
    }
    let request = client::encode_request(target).map_err(|e| e.to_string())?;
    write(stream, &request).await?;
    let reply = read_msg(stream, &mut buf, deadline, client::parse_reply).await?;
    if reply.rep != crate::error::socks5_reply::SUCCEEDED {
        let rep = reply.rep;
        return Err(format!(
            "SOCKS5 reply {rep:#04x} ({})",
            client::reply_name(rep)
        ));
    }
    Ok(buf.freeze())
}

async fn write(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), String> {
    stream
        .write_all(bytes)
        .await
        .map_err(|e| format!("write: {e}"))
}

/// Reads one SOCKS5 message, leaving what follows it in `buf`.
async fn read_msg<T>(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    deadline: Instant,
    parse: impl FnMut(&[u8]) -> Result<Parsed<T>, socks5::Socks5Error>,
) -> Result<T, String> {
    read_message(stream, buf, SOCKS5_REPLY_CAP, deadline, parse)
        .await
        .map_err(|e| read_failure(e, |s| s.to_string()))
}

fn read_failure<E>(e: ReadError<E>, parse: impl FnOnce(E) -> String) -> String {
    match e {
        ReadError::Parse(p) => format!("unintelligible reply: {}", parse(p)),
        ReadError::TooLarge => "reply too large".into(),
        ReadError::Timeout => "no reply in time".into(),
        ReadError::Closed => "closed the connection without a reply".into(),
        ReadError::Io(e) => format!("read: {e}"),
    }
}
