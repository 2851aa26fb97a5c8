//! The admin endpoint (`admin:` in policy.yaml): `/` (the onboarding page: proxy address, PAC
//! URL, CA fingerprint and per-platform trust steps), the CA downloads `/ca.pem`, `/ca.crt`,
//! `/ca.cer`, `/ca.der`, `/ca.mobileconfig`, `/proxy.pac` (from `pac:`), `/healthz`, `/readyz`,
//! `/metrics` (Prometheus text), `/pinning` (pinning passthrough: list, and the one change the
//! admin can make, `DELETE /pinning/<host>`), `/flows…` (the live flow view, in `flows`). It
//! never shows a secret. With `admin_token`, what is not public asks for it first (`auth`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod auth;
pub mod flows;
pub mod pinning;

use crate::config::Pac;
use crate::metrics::Metrics;
use crate::mitm::{FlowHub, PinningTracker};
use crate::onboarding::{self, CaCert, Site};
use crate::target::{Host, Target};

mod ready;

/// What the admin pages read: fixed at start (a reload does not move the admin endpoint).
pub struct AdminState {
    /// The counters `/metrics` renders.
    pub metrics: Arc<Metrics>,
    /// The first listener as bound: what the PAC file names unless `pac.proxy` does.
    pub proxy_addr: SocketAddr,
    /// The CA certificate `/ca.pem` serves (read on each request: it may be made after start).
    pub ca_pem: std::path::PathBuf,
    /// `pac:`: the advertised address, the bypass list, SOCKS5 or not.
    pub pac: Pac,
    /// The reserved onboarding name (`setup_host`), which the PAC always sends to ward.
    pub setup_host: Host,
    /// Cancelled when the listeners stop accepting: `/readyz` turns 503.
    pub draining: CancellationToken,
    /// Pinning passthrough state, for `/pinning` and the `/metrics` gauge.
    pub pinning: Arc<PinningTracker>,
    /// The token and which paths answer without it.
    pub access: auth::Access,
    /// The live flow view's ring (`/flows`).
    pub flows: Arc<FlowHub>,
}

impl AdminState {
    /// `host:port` devices should use: `pac.proxy`, else the first listener.
    fn advertised(&self) -> String {
        match &self.pac.proxy {
            Some(t) => t.to_string(),
            None => self.proxy_addr.to_string(),
        }
    }
}

/// Serves the admin endpoints on `listener` until `stop` fires (after the drain, so `/readyz`
/// can say "draining" meanwhile).
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(ok) => ok,
                Err(_) => continue,
            },
        };
        let Ok(local) = stream.local_addr() else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move {
                    // The token guards every path, the streamed flow view's included.
                    let resp = if let Some(refused) = refused(&req, &state, peer) {
                        refused.map(Either::Left)
                    } else if req.uri().path().starts_with(flows::PREFIX) {
                        // The live flow view streams (`/flows/events`); the rest is whole.
                        flows::respond(&req, &state.flows.ring)
                    } else {
                        route(&req, &state, local, peer).await.map(Either::Left)
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The 401 for a request that needs the token and lacks it; `None` when it may go on.
fn refused(
    req: &Request<Incoming>,
    state: &AdminState,
    peer: SocketAddr,
) -> Option<Response<Full<Bytes>>> {
    let why = state.access.check(req.uri().path(), req.headers()).err()?;
    let path = req.uri().path();
    match why {
        auth::Refusal::Wrong => {
            tracing::info!(%peer, path, "admin request refused: wrong token")
        }
        auth::Refusal::Missing => {
            tracing::debug!(%peer, path, "admin request refused: no token")
        }
    }
    Some(auth::unauthorized(why))
}

async fn route(
    req: &Request<Incoming>,
    state: &AdminState,
    local: SocketAddr,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    if req.uri().path().starts_with(pinning::PATH) {
        let may_change = state.access.may_change(peer.ip());
        return pinning::respond(req, &state.pinning, peer, may_change);
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/readyz" => {
            let (status, body) = ready::readyz(&state.draining);
            text(status, "text/plain", body.into())
        }
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.metrics.render()
                + &pinning::gauge(&state.pinning)
                + &flows::metrics(&state.flows),
        ),
        "/proxy.pac" => text(
            StatusCode::OK,
            onboarding::pac::CONTENT_TYPE,
            onboarding::pac::pac_js(&state.advertised(), &state.pac, &state.setup_host),
        ),
        path => {
            let site = Site {
                ca: read_ca(&state.ca_pem).await,
                proxy: state.advertised(),
                pac_url: Some(format!("http://{}/proxy.pac", reached_as(req, local))),
                setup_url: Site::setup_url(&state.setup_host),
            };
            match onboarding::respond(path, &site) {
                Some(served) => served.into_response().map(Full::new),
                None => text(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    format!(
                        "{} /proxy.pac /healthz /readyz /metrics /flows\n",
                        onboarding::PATHS.join(" ")
                    ),
                ),
            }
        }
    }
}

/// The CA `path` holds, if any: absent means interception is off.
async fn read_ca(path: &std::path::Path) -> Option<CaCert> {
    let pem = tokio::fs::read_to_string(path).await.ok()?;
    CaCert::from_pem(&pem).ok()
}

/// The admin's address as the browser wrote it (its `Host`), so the PAC URL on the page is one
/// that device can reach; the socket's address when the header is missing or not an authority.
fn reached_as(req: &Request<Incoming>, local: SocketAddr) -> String {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| Target::parse_authority(h).ok())
        .map_or_else(|| local.to_string(), |t| t.to_string())
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pac_names_pac_proxy_over_the_listener() {
        let mut state = AdminState {
            metrics: Arc::default(),
            proxy_addr: "127.0.0.1:8080".parse().unwrap(),
            ca_pem: "ca.pem".into(),
            pac: Pac::default(),
            setup_host: Host::Name("ward.setup".into()),
            draining: CancellationToken::new(),
            pinning: Arc::default(),
            access: auth::Access::default(),
            flows: Arc::default(),
        };
        assert_eq!(state.advertised(), "127.0.0.1:8080");
        state.pac.proxy = Some(Target::parse_authority("ward.lan:3128").unwrap());
        assert_eq!(state.advertised(), "ward.lan:3128");
    }
}
