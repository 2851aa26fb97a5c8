//! The decrypted relay: one hyper service that forwards each request of the client's
//! connection over the upstream connection, streaming bodies and splicing upgrades, and writes
//! one flow record per request. Must add nothing to the exchange and never buffer a body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use http::{Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::activity::Activity;
use super::body::{ClientBody, Counting, FlowDone, NOT_YET, RelayBody};
use super::flows::bodies::{BodyTap, SharedTap};
use super::flows::capture;
use super::flows::{FlowRecord, FlowSink};
use super::parked::ParkedHttp1;
use super::requests::RequestJudge;
use super::upstream::Origin;
use crate::config::BodyCapture;
use crate::error::{ErrorKind, ProxyError};
use crate::policy::names_differ;
use crate::reply::Reply;
use crate::target::{Host, Target};

/// The port assumed for a Host header without one: these requests arrived over TLS.
const HTTPS_PORT: u16 = 443;

/// The upstream half: a live connection, or the reason there is none, which every request is
/// answered with (an upstream certificate failure is never hidden).
pub(crate) enum UpstreamSender {
    Http1(ParkedHttp1),
    Http2(http2::SendRequest<ClientBody>),
    Failed { kind: ErrorKind, detail: String },
}

/// What the decrypted bytes speak, from the ALPN both sides agreed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http1,
    Http2,
    /// Any other ALPN: relayed as bytes, no flow records.
    Opaque,
}

impl Protocol {
    /// No ALPN at all is taken as HTTP/1.1: that is what a client that offers none speaks
    /// to an inspected (HTTPS) port.
    pub fn from_alpn(alpn: Option<&[u8]>) -> Protocol {
        match alpn {
            None | Some(b"http/1.1" | b"http/1.0") => Protocol::Http1,
            Some(b"h2") => Protocol::Http2,
            Some(_) => Protocol::Opaque,
        }
    }
}

/// Opens the HTTP client half over the upstream TLS stream. HTTP/2: a driver task that ends
/// when the relay (the only sender) is dropped or the origin closes. HTTP/1.1: the stream is
/// parked, and each exchange gets its own short-lived client connection.
pub(crate) async fn connect_upstream(
    origin: Origin,
    protocol: Protocol,
) -> Result<UpstreamSender, hyper::Error> {
    if protocol == Protocol::Http2 {
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .handshake(TokioIo::new(origin))
            .await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "upstream h2 connection ended");
            }
        });
        return Ok(UpstreamSender::Http2(sender));
    }
    Ok(UpstreamSender::Http1(ParkedHttp1::new(origin)))
}

mod serve;

pub(crate) use serve::{HeadWaits, relay_bytes, serve_http};

/// What every flow record of this connection shares.
#[derive(Debug, Clone)]
pub(crate) struct FlowMeta {
    pub conn_id: String,
    pub client: SocketAddr,
    pub user: Option<String>,
    pub sni: Option<String>,
    pub rule: Option<String>,
    /// The CONNECT target as text, for the records.
    pub connect: String,
    /// The CONNECT host and the TLS server name name different sites.
    pub connect_mismatch: bool,
    /// The name the leaf was forged for (SNI, else the CONNECT host): what every request on
    /// this connection must be for.
    pub tls_name: Host,
    pub deny_host_mismatch: bool,
    /// What each TLS leg negotiated, copied into every record.
    pub legs: crate::tls::Legs,
    /// How long the origin leg took to set up, for the first exchange's record.
    pub setup: crate::log::Setup,
    /// The client's ClientHello JA4, copied into every record beside `legs.ja4_upstream`.
    pub ja4: Option<crate::tls::Ja4>,
}

pub(crate) struct Relay {
    pub upstream: UpstreamSender,
    pub meta: FlowMeta,
    pub sink: Arc<FlowSink>,
    /// `flows.bodies`: which bodies are captured, and how much of each.
    pub bodies: Option<Arc<BodyCapture>>,
    /// Judges each request, when the policy has rules on requests.
    pub judge: Option<RequestJudge>,
    pub requests: AtomicU64,
    /// Spliced upgrades, awaited before the connection counts as finished.
    pub upgrades: TaskTracker,
    /// A spliced upgrade ends after this long without a byte, as the connection would.
    pub idle: Duration,
    /// Ends spliced upgrades when the shutdown grace period is over.
    pub shutdown: CancellationToken,
    /// The client connection's byte activity: an origin that sends no head while nothing
    /// moves for `idle` is answered with 504.
    pub activity: Arc<Activity>,
    pub heads: HeadWaits,
}

impl Relay {
    pub(crate) async fn forward(
        self: Arc<Self>,
        mut req: Request<Incoming>,
    ) -> Result<Response<RelayBody>, Infallible> {
        let first = self.requests.fetch_add(1, Ordering::Relaxed) == 0;
        let (mut done, misdirected) = self.start_flow(&req);
        if first {
            // HAR's convention: the connection's set-up belongs to its first exchange only.
            done.record.setup = Some(self.meta.setup);
        }
        if misdirected && self.meta.deny_host_mismatch {
            return Ok(self.misdirected(done));
        }
        if let Some(judge) = &self.judge {
            let (rule, refusal) = judge.judge(req.method().as_str(), req.uri().path());
            done.record.rule = rule;
            if let Some(err) = refusal {
                return Ok(refused(&err, done));
            }
        }
        let client_upgrade = req
            .headers()
            .contains_key(header::UPGRADE)
            .then(|| hyper::upgrade::on(&mut req));
        done.request_tap = tap_for(self.bodies.as_deref(), req.headers());
        let request_tap = done.request_tap.clone();
        let req = req.map(|b| {
            Counting::new(b, done.request_bytes.clone(), None)
                .marking_end(done.started, done.request_end_us.clone())
                .tapped(request_tap)
        });
        let mut resp = match self.send_within_idle(req).await {
            Ok(resp) => resp,
            Err((kind, detail)) => {
                let status =
                    StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::BAD_GATEWAY);
                let mut resp = error_response(kind, status, &detail, done);
                if kind == ErrorKind::ResponseTimeout
                    && matches!(self.upstream, UpstreamSender::Http1(_))
                {
                    // The origin may still answer this request: its stream cannot carry the
                    // client's next one.
                    let close = http::HeaderValue::from_static("close");
                    resp.headers_mut().insert(header::CONNECTION, close);
                }
                return Ok(resp);
            }
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let upstream_upgrade = hyper::upgrade::on(&mut resp);
            self.upgrades.spawn(splice(
                client_upgrade,
                upstream_upgrade,
                self.idle,
                self.shutdown.clone(),
            ));
        }
        done.response_head = Some(Instant::now());
        capture::record_response(&mut done.record, &resp);
        done.response_tap = tap_for(self.bodies.as_deref(), resp.headers());
        let (bytes, tap) = (done.response_bytes.clone(), done.response_tap.clone());
        Ok(resp.map(|b| Either::Left(Counting::new(b, bytes, Some(done)).tapped(tap))))
    }

    /// The request's flow record (emitted when dropped), and whether its Host / `:authority`
    /// names another site than this connection's TLS name.
    fn start_flow(&self, req: &Request<Incoming>) -> (Box<FlowDone>, bool) {
        let mut record = FlowRecord::from_request(req, SystemTime::now());
        record.conn_id.clone_from(&self.meta.conn_id);
        record.client = self.meta.client;
        record.user.clone_from(&self.meta.user);
        record.sni.clone_from(&self.meta.sni);
        record.rule.clone_from(&self.meta.rule);
        record.connect = Some(self.meta.connect.clone());
        record.set_legs(&self.meta.legs);
        record.ja4 = self.meta.ja4.map(|j| j.to_string());
        if self.meta.connect_mismatch {
            record.mismatch.push("connect_sni");
        }
        let misdirected = record
            .authority
            .as_deref()
            .is_some_and(|a| authority_differs(a, &self.meta.tls_name));
        if misdirected {
            record.mismatch.push("sni_authority");
        }
        let done = Box::new(FlowDone {
            record,
            started: Instant::now(),
            request_bytes: Arc::new(AtomicU64::new(0)),
            response_bytes: Arc::new(AtomicU64::new(0)),
            request_end_us: Arc::new(AtomicU64::new(NOT_YET)),
            response_head: None,
            request_tap: None,
            response_tap: None,
            sink: self.sink.clone(),
        });
        (done, misdirected)
    }

    /// `sni_mismatch: deny` inside interception. 421 rather than 403: the request may be fine,
    /// the connection is the wrong one, and a client that pooled it because the certificate
    /// also covered this name retries on a connection of its own (RFC 9110, 15.5.20).
    fn misdirected(&self, done: Box<FlowDone>) -> Response<RelayBody> {
        let detail = format!(
            "request for {} on a TLS connection for {}; sni_mismatch: deny",
            done.record.authority.as_deref().unwrap_or_default(),
            self.meta.tls_name
        );
        let status = StatusCode::MISDIRECTED_REQUEST;
        error_response(ErrorKind::SniMismatch, status, &detail, done)
    }

    /// Sends upstream and waits for the response head as long as bytes move on the client's
    /// connection (an upload still arriving, other streams); after `idle` with nothing moving
    /// and no head, ward answers 504 `http_response_timeout` rather than close in silence.
    async fn send_within_idle(
        &self,
        req: Request<ClientBody>,
    ) -> Result<Response<Incoming>, (ErrorKind, String)> {
        let _waiting = self.heads.start();
        tokio::select! {
            sent = self.send(req) => sent,
            () = self.activity.idle_for(self.idle) => {
                let detail = format!(
                    "{} sent no response head within {} (timeouts.idle)",
                    self.meta.tls_name,
                    humantime::format_duration(self.idle)
                );
                Err((ErrorKind::ResponseTimeout, detail))
            }
        }
    }

    /// Sends upstream; an error is what ward answers instead: its kind and details.
    async fn send(
        &self,
        req: Request<ClientBody>,
    ) -> Result<Response<Incoming>, (ErrorKind, String)> {
        let sent = match &self.upstream {
            UpstreamSender::Failed { kind, detail } => return Err((*kind, detail.clone())),
            UpstreamSender::Http1(parked) => {
                return parked
                    .send(req)
                    .await
                    .map_err(|e| (ErrorKind::Io, format!("upstream connection: {e}")));
            }
            UpstreamSender::Http2(sender) => {
                let mut sender = sender.clone();
                match sender.ready().await {
                    Ok(()) => sender.send_request(req).await,
                    Err(e) => Err(e),
                }
            }
        };
        sent.map_err(|e| (ErrorKind::Io, format!("upstream connection: {e}")))
    }
}

/// Relays an upgraded exchange (WebSocket) byte for byte once both sides switched, under the
/// connection's idle timeout and shutdown.
async fn splice(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    idle: Duration,
    shutdown: CancellationToken,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade did not complete");
            return;
        }
    };
    let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
    relay_bytes(&mut client, &mut upstream, idle, shutdown, "upgraded").await;
}

/// A capture for a body with these headers, when `flows.bodies` wants its media type.
fn tap_for(bodies: Option<&BodyCapture>, headers: &http::HeaderMap) -> Option<SharedTap> {
    let content_type = headers.get(header::CONTENT_TYPE).map(|v| v.as_bytes());
    BodyTap::for_type(bodies, content_type)
}

/// Whether a request's Host / `:authority` names another site than the connection's TLS name.
/// One that does not parse as a host names no site we could check, so it counts as different.
fn authority_differs(authority: &str, tls_name: &Host) -> bool {
    match Target::parse_with_default_port(authority, HTTPS_PORT) {
        Ok(target) => names_differ(&target.host, tls_name),
        Err(_) => true,
    }
}

/// A request the policy refuses (`methods`, `paths`): 403 with the rule in Proxy-Status; the
/// connection goes on.
fn refused(err: &ProxyError, done: Box<FlowDone>) -> Response<RelayBody> {
    let status = StatusCode::from_u16(err.kind.http_status()).unwrap_or(StatusCode::FORBIDDEN);
    error_response(err.kind, status, &err.detail, done)
}

/// ward's own answer inside the forged connection: the one reply (see [`reply`]) with the
/// status the place of the failure decides.
fn error_response(
    kind: ErrorKind,
    status: StatusCode,
    detail: &str,
    mut done: Box<FlowDone>,
) -> Response<RelayBody> {
    let err = ProxyError::upstream(kind, detail);
    tracing::debug!(error = %err, "answering inside interception");
    let resp = Reply::from_error(&err).with_status(status).to_response();
    done.record.status = Some(status.as_u16());
    done.record.error = Some(kind.log_name());
    // The body is ours, not relayed: the record is complete now.
    drop(done);
    resp.map(|body| Either::Right(Full::new(body)))
}

#[cfg(test)]
mod tests;
