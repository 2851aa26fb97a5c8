//! Plain HTTP forwarding (absolute-form `GET http://…` from browsers): hyper serves the client
//! connection (the first head, already read by the front-end, is replayed), and each request is
//! decided, dialed through the same path as a tunnel, and sent on in origin-form with
//! hop-by-hop headers and `Proxy-Authorization` removed and `Via: 1.1 ward` added.
//! One access record per request. The client connection is kept alive.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{HOST, HeaderValue, PROXY_AUTHORIZATION};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::context::Context;
use crate::error::{ErrorKind, ProxyError, proxy_status_value};
use crate::front::{authenticate, http as codec};
use crate::io::PrefixedStream;
use crate::log::{AccessRecord, Stage};
use crate::request::{self, Via};
use crate::route;
use crate::target::Target;

type Body = BoxBody<Bytes, hyper::Error>;

/// The upstream connection of the previous request, reused when the next one goes to the same
/// destination (browsers send many requests to one host over one proxy connection).
type Reusable = Arc<Mutex<Option<(Target, SendRequest<Incoming>)>>>;

/// Serves plain-HTTP proxy requests on `stream` until the client closes or idles out.
pub async fn serve<S>(
    stream: S,
    buffered: BytesMut,
    client: SocketAddr,
    user: Option<String>,
    ctx: Context,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(PrefixedStream::new(buffered.freeze(), stream));
    let reuse: Reusable = Arc::default();
    let ctx = Arc::new(ctx);
    let service = hyper::service::service_fn(move |req| {
        let (ctx, reuse, user) = (ctx.clone(), reuse.clone(), user.clone());
        async move {
            Ok::<_, std::convert::Infallible>(forward_one(req, client, user, &ctx, &reuse).await)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Some(std::time::Duration::from_secs(300)))
        .max_buf_size(codec::MAX_HEAD)
        .serve_connection(io, service)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%client, error = %e, "forwarding connection ended");
    }
}

async fn forward_one(
    req: Request<Incoming>,
    client: SocketAddr,
    first_user: Option<String>,
    ctx: &Context,
    reuse: &Reusable,
) -> Response<Body> {
    let mut rec = AccessRecord::new(client, ctx.metrics.clone());
    rec.via = Some(Via::HttpForward);
    rec.method = Some(req.method().to_string());
    rec.user = first_user;
    rec.stage = Stage::Forward;
    let result = forward_inner(req, client, ctx, reuse, &mut rec).await;
    let response = match result {
        Ok(resp) => resp,
        Err(err) => {
            rec.set_error(&err);
            error_response(&err)
        }
    };
    rec.status = Some(response.status().as_u16());
    response
}

async fn forward_inner(
    mut req: Request<Incoming>,
    client: SocketAddr,
    ctx: &Context,
    reuse: &Reusable,
    rec: &mut AccessRecord,
) -> Result<Response<Body>, ProxyError> {
    let cfg = &*ctx.config;
    // Every request on the connection carries its own credentials (browsers resend them).
    let creds = req
        .headers()
        .get(PROXY_AUTHORIZATION)
        .and_then(|v| codec::parse_basic_auth(v.as_bytes()));
    rec.user = authenticate(&cfg.users, creds.as_ref())?;
    if req.method() == http::Method::CONNECT {
        // Tunnels start on a fresh connection; browsers and curl never mix them into a
        // forwarding connection, so this stays a precise refusal rather than a second path.
        return Err(ProxyError::client(
            ErrorKind::MalformedRequest,
            format!(
                "CONNECT {} after plain-HTTP requests on the same connection: open a new connection for tunnels",
                req.uri()
            ),
        ));
    }
    let target = absolute_target(req.uri())?;
    let proxied = request::Request {
        client,
        user: rec.user.clone(),
        target: target.clone(),
        via: Via::HttpForward,
    };
    rec.target = Some(target.clone());

    let mut sender = take_reusable(reuse, &target).await;
    if sender.is_none() {
        let routed = route::route(&proxied, cfg, rec).await?;
        sender = Some(handshake(routed.stream, &target).await?);
    }
    let Some(mut sender) = sender else {
        return Err(ProxyError::local(
            ErrorKind::Internal,
            "no upstream connection",
        ));
    };

    rec.stage = Stage::Forward;
    prepare_request(&mut req, &target)?;
    let mut resp = sender.send_request(req).await.map_err(|e| {
        ProxyError::upstream(ErrorKind::Io, format!("{target}: {e}")).with_source(e)
    })?;
    *reuse.lock().await = Some((target, sender));
    codec::strip_hop_by_hop(resp.headers_mut());
    let version = resp.version();
    codec::append_via(resp.headers_mut(), version);
    Ok(resp.map(|b| b.boxed()))
}

async fn take_reusable(reuse: &Reusable, target: &Target) -> Option<SendRequest<Incoming>> {
    let mut slot = reuse.lock().await;
    match slot.take() {
        Some((t, sender)) if &t == target && sender.is_ready() => Some(sender),
        _ => None,
    }
}

async fn handshake(
    stream: TcpStream,
    target: &Target,
) -> Result<SendRequest<Incoming>, ProxyError> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ProxyError::upstream(ErrorKind::Io, format!("{target}: {e}")))?;
    tokio::spawn(async move {
        // Ends when the origin closes or the sender is dropped; neither is worth a log line.
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

/// Only absolute `http://` URIs can be forwarded; anything else gets a precise 400.
fn absolute_target(uri: &Uri) -> Result<Target, ProxyError> {
    let bad = |why: &str| {
        ProxyError::client(
            ErrorKind::MalformedRequest,
            format!("request target {uri}: {why}"),
        )
    };
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => {
            return Err(bad(&format!(
                "scheme {other} cannot be forwarded; use CONNECT"
            )));
        }
        None => return Err(bad("ward is a proxy; send an absolute URI or CONNECT")),
    }
    let authority = uri.authority().ok_or_else(|| bad("no host"))?;
    Target::parse_with_default_port(authority.as_str(), 80).map_err(|e| bad(&e.to_string()))
}

/// Origin-form request line, cleaned headers, `Via` appended, `Host` present.
fn prepare_request(req: &mut Request<Incoming>, target: &Target) -> Result<(), ProxyError> {
    let authority = req.uri().authority().map(|a| a.as_str().to_owned());
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *req.uri_mut() = path
        .parse()
        .map_err(|_| ProxyError::client(ErrorKind::MalformedRequest, format!("bad path {path}")))?;
    codec::strip_hop_by_hop(req.headers_mut());
    let version = req.version();
    codec::append_via(req.headers_mut(), version);
    if !req.headers().contains_key(HOST) {
        let host = authority.unwrap_or_else(|| target.to_string());
        if let Ok(v) = HeaderValue::from_str(&host) {
            req.headers_mut().insert(HOST, v);
        }
    }
    Ok(())
}

/// The same reply the front-end gives, as a hyper response.
pub fn error_response(err: &ProxyError) -> Response<Body> {
    let status =
        StatusCode::from_u16(err.kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = format!("{}\n{}\n", err.kind.summary(), err.detail);
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(v) =
        proxy_status_value(err.kind, &err.detail).and_then(|v| HeaderValue::from_str(&v).ok())
    {
        headers.insert("proxy-status", v);
    }
    if err.kind == ErrorKind::AuthRequired {
        headers.insert(
            http::header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"ward\""),
        );
    }
    resp
}
