//! What the HTTP origin answers, by path: the page browsers load, echoes (of a body, or of the
//! bytes after an upgrade), the request as the origin saw it, the protocol version, a WebSocket
//! echo, and streamed bodies of a given size. Nothing here reaches beyond the one connection.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::body::Repeat;

/// What `GET /` answers: the page Chromium and curl load through the proxy.
pub const INDEX_BODY: &str = "<!DOCTYPE html><html><head><title>ward origin</title></head>\
<body><p id=\"msg\">hello from the ward test origin</p></body></html>\n";
/// What a browser's DOM dump of INDEX_BODY contains.
pub const PAGE_MARKER: &str = r#"<p id="msg">hello from the ward test origin</p>"#;
/// `/bytes/N` refuses more than this (1 TiB: endless for a benchmark, finite for a typo).
pub const MAX_BODY: u64 = 1 << 40;
/// An upgraded echo ends after this long, whatever its peer does.
const UPGRADED_LIFETIME: Duration = Duration::from_secs(5 * 60);

pub(crate) type Reply = Response<BoxBody<Bytes, hyper::Error>>;

/// Routes one request; `produced` counts the bytes of streamed bodies.
pub(crate) async fn route(
    req: Request<Incoming>,
    produced: Arc<AtomicU64>,
) -> Result<Reply, Infallible> {
    let path = req.uri().path().to_owned();
    let reply = match path.as_str() {
        "/" => text(StatusCode::OK, INDEX_BODY.to_owned(), "text/html"),
        "/echo" if req.headers().contains_key(header::UPGRADE) => echo_upgrade(req),
        "/echo" => echo(req),
        "/headers" => text(StatusCode::OK, describe_request(&req), "text/plain"),
        "/hello" => text(StatusCode::OK, hello(&req), "text/plain"),
        "/cookie" => set_cookie(&req),
        "/proto" => text(StatusCode::OK, format!("{:?}", req.version()), "text/plain"),
        "/ws" => websocket(req),
        p => match body_len(p) {
            Some(n) => Response::new(Repeat::new(n, produced).map_err(never).boxed()),
            None => text(
                StatusCode::NOT_FOUND,
                format!("no route {p}\n"),
                "text/plain",
            ),
        },
    };
    Ok(reply)
}

/// `/echo`: the request body back, with the request's `Content-Type` (a typed body comes
/// back as what it was, for recorders that capture by media type).
fn echo(req: Request<Incoming>) -> Reply {
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let mut resp = Response::new(req.into_body().boxed());
    if let Some(v) = content_type {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

/// The N of `/bytes/N`, when it is at most [`MAX_BODY`].
pub(crate) fn body_len(path: &str) -> Option<u64> {
    let n = path.strip_prefix("/bytes/")?.parse::<u64>().ok()?;
    (n <= MAX_BODY).then_some(n)
}

/// `/hello`: the version, the `Authorization` the origin received (`-` for none) and whether a
/// `Via` reached it: what an interception must pass through untouched and add nothing to.
fn hello(req: &Request<Incoming>) -> String {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map_or("-", |v| v.to_str().unwrap_or("?"));
    let via = req.headers().contains_key(header::VIA);
    format!("hello {:?} auth={auth} via={via}", req.version())
}

/// `/cookie`: 200 setting `echo=<the request's Cookie header>`, so that a response carries
/// the client's secret back (what a recorder of response headers must redact).
fn set_cookie(req: &Request<Incoming>) -> Reply {
    let sent = req
        .headers()
        .get(header::COOKIE)
        .map_or(&b""[..], |v| v.as_bytes());
    let mut value = b"echo=".to_vec();
    value.extend(sent.iter().map(|&b| if b == b';' { b'.' } else { b }));
    value.extend_from_slice(b"; Path=/; HttpOnly");
    let mut resp = text(StatusCode::OK, "cookie set\n".to_owned(), "text/plain");
    if let Ok(v) = header::HeaderValue::from_bytes(&value) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// `/echo` with `Upgrade`: 101 with the protocol asked for, then every byte echoed until EOF.
fn echo_upgrade(mut req: Request<Incoming>) -> Reply {
    let protocol = req.headers()[header::UPGRADE].clone();
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let (mut r, mut w) = tokio::io::split(TokioIo::new(upgraded));
        let echo = async {
            tokio::io::copy(&mut r, &mut w).await?;
            tokio::io::AsyncWriteExt::shutdown(&mut w).await
        };
        let _ = tokio::time::timeout(UPGRADED_LIFETIME, echo).await;
    });
    switching_protocols(protocol)
}

/// `/ws`: a WebSocket echo (HTTP/1.1 Upgrade), answered 101 with the accept key RFC 6455
/// prescribes, then frames echoed by `ws::echo` on the upgraded connection.
fn websocket(mut req: Request<Incoming>) -> Reply {
    let key = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|k| k.to_str().ok())
        .map(crate::ws::accept_key);
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
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
            let _ = crate::ws::echo(TokioIo::new(upgraded)).await;
        }
    });
    let mut r = switching_protocols(HeaderValue::from_static("websocket"));
    r.headers_mut().insert(
        "sec-websocket-accept",
        accept.parse().expect("base64 is a valid header value"),
    );
    r
}

fn switching_protocols(protocol: HeaderValue) -> Reply {
    let mut r = Response::new(Full::new(Bytes::new()).map_err(never).boxed());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(header::UPGRADE, protocol);
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
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

fn text(status: StatusCode, body: String, content_type: &'static str) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(never).boxed());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn never(x: Infallible) -> hyper::Error {
    match x {}
}
