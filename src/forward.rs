//! Plain HTTP forwarding (absolute-form `GET http://…` from browsers): hyper serves the client
//! connection (the first head, already read by the front-end, is replayed), and each request is
//! decided, dialed through the same path as a tunnel, and sent on in origin-form with
//! hop-by-hop headers and `Proxy-Authorization` removed and `Via: 1.1 ward` added.
//! One access record per request. The client connection is kept alive for the idle timeout;
//! a drain closes it after the request in flight, the end of the grace period at once.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::header::{HOST, HeaderValue, PROXY_AUTHORIZATION, UPGRADE};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::context::Context;
use crate::error::{ErrorKind, ProxyError};
use crate::front::http as codec;
use crate::io::PrefixedStream;
use crate::log::{AccessRecord, ConnId, Stage};
use crate::mitm::ca::CERT_FILE;
use crate::onboarding::{self, CaCert, Site};
use crate::policy::normalize_path;
use crate::reply;
use crate::request::{self, Via};
use crate::route;
use crate::target::Target;

mod reuse;
mod upgrade;

use reuse::{Kept, Reusable};

type Body = BoxBody<Bytes, hyper::Error>;

/// Serves plain-HTTP proxy requests on `stream` until the client closes or idles out.
/// `local` is the address the client reached ward at: what the setup page tells it to use.
pub async fn serve<S>(
    stream: S,
    buffered: BytesMut,
    (client, local): Ends,
    user: Option<String>,
    conn_id: ConnId,
    ctx: Context,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(PrefixedStream::new(buffered.freeze(), stream));
    let reuse: Reusable = Arc::default();
    let (draining, force_close, idle) = (
        ctx.draining.clone(),
        ctx.force_close.clone(),
        ctx.config.timeouts.idle,
    );
    let ctx = Arc::new(ctx);
    let upgrades = TaskTracker::new();
    let tasks = upgrades.clone();
    let service = hyper::service::service_fn(move |req| {
        let (ctx, reuse, user, tasks) = (ctx.clone(), reuse.clone(), user.clone(), tasks.clone());
        async move {
            let ends = (client, local);
            let resp = forward_one(req, (ends, conn_id), user, &ctx, &reuse, &tasks).await;
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    // hyper's head timeout also bounds the wait for the next request of a kept-alive
    // connection: that wait is the connection's idle time.
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Some(idle))
        .max_buf_size(codec::MAX_HEAD)
        .preserve_header_case(true)
        .serve_connection(io, service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    let ended = tokio::select! {
        ended = conn.as_mut() => ended,
        () = draining.cancelled() => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                ended = conn.as_mut() => ended,
                () = force_close.cancelled() => return,
            }
        }
    };
    if let Err(e) = ended {
        tracing::debug!(%client, error = %e, "forwarding connection ended");
    }
    // An upgraded exchange outlives the HTTP connection it came from; the connection is not
    // over, for the drain, until it ends.
    upgrades.close();
    upgrades.wait().await;
}

/// The client's address and, when known, the local address it reached.
type Ends = (SocketAddr, Option<SocketAddr>);

async fn forward_one(
    req: Request<Incoming>,
    ((client, local), conn_id): (Ends, ConnId),
    first_user: Option<String>,
    ctx: &Context,
    reuse: &Reusable,
    upgrades: &TaskTracker,
) -> Response<Body> {
    let mut rec = AccessRecord::new(client, ctx.metrics.clone());
    // One id for every request of the client's connection, as for an interception's flows.
    rec.conn_id = conn_id;
    rec.via = Some(Via::HttpForward);
    rec.method = Some(req.method().to_string());
    rec.user = first_user;
    rec.stage = Stage::Forward;
    let result = forward_inner(req, (client, local), ctx, reuse, &mut rec).await;
    let (response, switch) = match result {
        Ok(answer) => answer,
        Err(err) => {
            rec.set_error(&err);
            (error_response(&err), None)
        }
    };
    rec.status = Some(response.status().as_u16());
    if let Some(switch) = switch {
        let force_close = ctx.force_close.clone();
        switch.spawn(upgrades, rec, ctx.config.timeouts.idle, force_close);
    }
    response
}

async fn forward_inner(
    mut req: Request<Incoming>,
    (client, local): Ends,
    ctx: &Context,
    reuse: &Reusable,
    rec: &mut AccessRecord,
) -> Result<(Response<Body>, Option<upgrade::Switch>), ProxyError> {
    let cfg = &*ctx.config;
    // Every request on the connection carries its own credentials (browsers resend them).
    let creds = req
        .headers()
        .get(PROXY_AUTHORIZATION)
        .and_then(|v| codec::parse_basic_auth(v.as_bytes()));
    rec.user = ctx.auth.authenticate(&cfg.users, creds.as_ref()).await?;
    // The front-end checked the first head; hyper parsed the rest, and each is held to the
    // same rules before anything is dialled.
    codec::check_request(&req)?;
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
    if target.host == cfg.setup_host {
        rec.target = Some(target);
        return Ok((setup_page(&req, cfg, local).await, None));
    }
    let proxied = request::Request {
        client,
        user: rec.user.clone(),
        target: target.clone(),
        via: Via::HttpForward,
        http: Some(request::HttpLine {
            method: req.method().to_string(),
            path: normalize_path(req.uri().path()),
        }),
    };
    rec.target = Some(target.clone());

    let (mut sender, judgement, dst) = match reuse::take(reuse, &proxied, cfg, rec).await? {
        Some(kept) => (kept.sender, kept.judgement, kept.dst),
        None => {
            let routed = route::route(&proxied, cfg, rec).await?;
            let (judgement, dst) = (routed.judgement, routed.dst);
            (handshake(routed.stream, &target).await?, judgement, dst)
        }
    };

    rec.stage = Stage::Forward;
    let protocols = upgrade::requested(req.headers());
    let client_upgrade = protocols.is_some().then(|| hyper::upgrade::on(&mut req));
    prepare_request(&mut req, &target)?;
    if let Some(protocols) = &protocols {
        upgrade::restore(req.headers_mut(), protocols.clone());
    }
    let asked = tokio::time::Instant::now();
    let mut resp = sender.send_request(req).await.map_err(|e| {
        ProxyError::upstream(ErrorKind::Io, format!("{target}: {e}")).with_source(e)
    })?;
    rec.metrics().first_byte.0.observe(asked.elapsed());
    let accepted = resp.headers().get(UPGRADE).cloned();
    let switch = match (client_upgrade, accepted) {
        (Some(client), Some(accepted)) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
            codec::strip_hop_by_hop(resp.headers_mut());
            upgrade::restore(resp.headers_mut(), accepted);
            // The origin connection now belongs to the upgrade: it is not put back for reuse.
            let origin = hyper::upgrade::on(&mut resp);
            Some(upgrade::Switch { client, origin })
        }
        _ => {
            *reuse.lock().await = Some(Kept {
                target,
                judgement,
                dst,
                sender,
            });
            codec::strip_hop_by_hop(resp.headers_mut());
            None
        }
    };
    let version = resp.version();
    codec::append_via(resp.headers_mut(), version);
    Ok((resp.map(|b| b.boxed()), switch))
}

async fn handshake(
    stream: TcpStream,
    target: &Target,
) -> Result<SendRequest<Incoming>, ProxyError> {
    // The client's header-name case goes on as it came (hyper keeps it with the request).
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .preserve_header_case(true)
        .handshake(TokioIo::new(stream))
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

/// `setup_host` (default `ward.setup`): ward's own onboarding page, answered here, on any port
/// and whatever the rules say; never resolved, never dialled.
async fn setup_page(
    req: &Request<Incoming>,
    cfg: &Config,
    local: Option<SocketAddr>,
) -> Response<Body> {
    let proxy = match (&cfg.pac.proxy, local) {
        (Some(t), _) => t.to_string(),
        (None, Some(a)) => a.to_string(),
        (None, None) => cfg
            .listen
            .first()
            .map_or_else(String::new, |l| l.addr.to_string()),
    };
    let proxy_host = proxy.rsplit_once(':').map_or(proxy.as_str(), |(h, _)| h);
    let pem = tokio::fs::read_to_string(cfg.ca_dir.join(CERT_FILE)).await;
    let site = Site {
        ca: pem.ok().and_then(|p| CaCert::from_pem(&p).ok()),
        pac_url: onboarding::admin_pac_url(cfg.admin, proxy_host),
        setup_url: Site::setup_url(&cfg.setup_host),
        proxy,
    };
    let served = match *req.method() {
        Method::GET | Method::HEAD => onboarding::respond(req.uri().path(), &site),
        _ => Some(onboarding::refusal(
            StatusCode::METHOD_NOT_ALLOWED,
            "GET only\n",
        )),
    };
    let served = served.unwrap_or_else(onboarding::not_found);
    served
        .into_response()
        .map(|b| Full::new(b).map_err(|never| match never {}).boxed())
}

/// The one reply ward gives for `err` (see [`reply`]), as this connection's body type.
fn error_response(err: &ProxyError) -> Response<Body> {
    reply::error_response(err).map(|b| Full::new(b).map_err(|never| match never {}).boxed())
}
