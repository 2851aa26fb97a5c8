//! The admin endpoint (`admin:` in policy.yaml): `/healthz`, `/metrics` (Prometheus text),
//! `/proxy.pac` (a PAC file pointing browsers at the first listener) and `/ca.pem` (the
//! interception CA, for clients to trust). Read-only: nothing here changes the proxy.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// What the admin pages read: fixed at start (a reload does not move the admin endpoint).
pub struct AdminState {
    /// The counters `/metrics` renders.
    pub metrics: Arc<Metrics>,
    /// The address browsers should use, as the PAC file names it.
    pub proxy_addr: SocketAddr,
    /// The CA certificate `/ca.pem` serves (read on each request: it may be made after start).
    pub ca_pem: std::path::PathBuf,
}

/// Serves the admin endpoints on `listener` until `stop` fires.
pub async fn serve(listener: TcpListener, state: Arc<AdminState>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(ok) => ok,
                Err(_) => continue,
            },
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&req, &state).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn route(req: &Request<Incoming>, state: &AdminState) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n".into()),
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            state.metrics.render(),
        ),
        "/proxy.pac" => text(
            StatusCode::OK,
            "application/x-ns-proxy-autoconfig",
            pac(state.proxy_addr),
        ),
        "/ca.pem" => match tokio::fs::read_to_string(&state.ca_pem).await {
            Ok(pem) => text(StatusCode::OK, "application/x-pem-file", pem),
            Err(_) => text(
                StatusCode::NOT_FOUND,
                "text/plain",
                "no CA yet: run `ward ca init`\n".into(),
            ),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain",
            "/healthz /metrics /proxy.pac /ca.pem\n".into(),
        ),
    }
}

/// Loopback and plain host names stay direct; everything else goes through ward, over HTTP
/// first and SOCKS5 as the fallback.
fn pac(addr: SocketAddr) -> String {
    format!(
        "function FindProxyForURL(url, host) {{\n  \
         if (isPlainHostName(host) || host === \"localhost\" || shExpMatch(host, \"127.*\")) return \"DIRECT\";\n  \
         return \"PROXY {addr}; SOCKS5 {addr}\";\n}}\n"
    )
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
    fn pac_names_the_proxy() {
        let p = pac("127.0.0.1:8080".parse().unwrap());
        assert!(p.contains("PROXY 127.0.0.1:8080; SOCKS5 127.0.0.1:8080"));
        assert!(p.starts_with("function FindProxyForURL"));
    }
}
