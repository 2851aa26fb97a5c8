//! In-process interception tests: the test kit's TLS origin on loopback (its own CA, given to
//! ward as `upstream_ca`), ward's `intercept()` over an in-memory duplex, and a rustls client
//! that trusts ward's CA.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};
use testkit::{ALPN_BOTH, Ca, Origin, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::error::{ErrorKind, ProxyError};
use crate::outcome::Outcome;
use crate::target::{Host, Target};

mod legs;

const ORIGIN: &str = "origin.test";
const BIG: u64 = 64 * 1024 * 1024;
/// Bounded test waits: nothing here should take long on loopback.
const WAIT: Duration = Duration::from_secs(30);
/// The flow writer flushes shortly after each record.
const FLOWS_WAIT: Duration = Duration::from_secs(3);

struct TestOrigin {
    addr: std::net::SocketAddr,
    ca_pem: String,
    /// Serves `origin.test` (h2 and http/1.1), counting the bytes of its streamed bodies.
    origin: Origin,
}

/// A TLS origin for `origin.test` speaking h2 and http/1.1, with its own CA.
async fn start_origin(ca_name: &str) -> TestOrigin {
    let ca = Ca::new(ca_name);
    let tls = ca.issue(&[ORIGIN]).server_config(ALPN_BOTH);
    let origin = Origin::start(Service::Http(Some(Arc::new(tls)))).await;
    TestOrigin {
        addr: origin.addr,
        ca_pem: ca.pem(),
        origin,
    }
}

struct Ward {
    interceptor: Arc<Interceptor>,
    dir: tempfile::TempDir,
}

fn ward(origin_ca_pem: &str, pinning: Option<PinningSettings>) -> Ward {
    ward_with(origin_ca_pem, pinning, false)
}

fn ward_with(origin_ca_pem: &str, pinning: Option<PinningSettings>, require_pq: bool) -> Ward {
    let dir = tempfile::tempdir().unwrap();
    let upstream_ca = dir.path().join("origin-ca.pem");
    std::fs::write(&upstream_ca, origin_ca_pem).unwrap();
    let settings = InterceptSettings {
        ca_dir: dir.path().join("certs"),
        upstream_ca: Some(upstream_ca),
        flows: Some(dir.path().join("flows.jsonl")),
        bodies: None,
        handshake_timeout: Duration::from_secs(10),
        idle: Duration::from_secs(30),
        pinning,
        require_pq,
        key_access: Default::default(),
    };
    Ward {
        interceptor: Arc::new(Interceptor::new(&settings, Arc::default(), Arc::default()).unwrap()),
        dir,
    }
}

/// The facts conn.rs hands the interception for a test client.
fn flow_context() -> FlowContext {
    FlowContext {
        conn_id: crate::log::ConnId::next(),
        client: "127.0.0.1:40000".parse().unwrap(),
        user: Some("alice".into()),
        sni: None,
        connect_target: Target::parse_authority("origin.test:443").unwrap(),
        rule: Some("inspect-lab".into()),
        deny_host_mismatch: false,
        judge: None,
        setup: Default::default(),
        hello: None,
    }
}

/// The interception's result, within [`WAIT`].
async fn finished(task: tokio::task::JoinHandle<Result<Intercepted, ProxyError>>) -> Intercepted {
    tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

impl Ward {
    /// Starts `intercept()` for one client connection to `origin`; returns the client's end.
    async fn connect(
        &self,
        origin: std::net::SocketAddr,
    ) -> (
        DuplexStream,
        tokio::task::JoinHandle<Result<Intercepted, ProxyError>>,
    ) {
        self.connect_with(origin, CancellationToken::new()).await
    }

    async fn connect_with(
        &self,
        origin: std::net::SocketAddr,
        shutdown: CancellationToken,
    ) -> (
        DuplexStream,
        tokio::task::JoinHandle<Result<Intercepted, ProxyError>>,
    ) {
        let (client, proxy_side) = tokio::io::duplex(64 * 1024);
        let upstream = TcpStream::connect(origin).await.unwrap();
        let ctx = flow_context();
        let i = self.interceptor.clone();
        let task =
            tokio::spawn(async move { i.intercept(proxy_side, upstream, ctx, shutdown).await });
        (client, task)
    }

    /// A client connection through the interception trusting ward's CA, speaking HTTP/1.1
    /// (upgrades allowed) over it.
    async fn http1_client(
        &self,
        origin: std::net::SocketAddr,
    ) -> (
        hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
        tokio::task::JoinHandle<Result<Intercepted, ProxyError>>,
    ) {
        let (client, task) = self.connect(origin).await;
        let tls = client_tls(
            client,
            Some(self.interceptor.ca().cert_der()),
            &[b"http/1.1"],
        )
        .await
        .unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn.with_upgrades());
        (send, task)
    }

    fn flows(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.path().join("flows.jsonl")).unwrap_or_default();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The writer thread flushes shortly after each record; wait, bounded, for `n` of them.
    async fn wait_flows(&self, n: usize) -> Vec<serde_json::Value> {
        let what = format_args!("{n} flow records");
        testkit::wait_until_async(FLOWS_WAIT, what, || {
            let flows = self.flows();
            (flows.len() >= n).then_some(flows)
        })
        .await
    }
}

async fn client_tls(
    io: DuplexStream,
    trust: Option<&CertificateDer<'static>>,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<DuplexStream>> {
    let roots: Vec<_> = trust.into_iter().cloned().collect();
    let config = testkit::pki::client_config(&roots, alpn);
    let name = ServerName::try_from(ORIGIN).unwrap();
    TlsConnector::from(Arc::new(config)).connect(name, io).await
}

/// Sends one GET over a fresh hyper client connection of the negotiated protocol.
async fn get(tls: tokio_rustls::client::TlsStream<DuplexStream>, path: &str) -> Response<Incoming> {
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let req = Request::get(format!("https://{ORIGIN}{path}"))
        .header("authorization", "Bearer s3cret")
        .body(Empty::<Bytes>::new())
        .unwrap();
    if h2 {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn.with_upgrades());
        let (mut parts, body) = req.into_parts();
        parts.uri = path.parse().unwrap();
        parts.headers.insert("host", ORIGIN.parse().unwrap());
        send.send_request(Request::from_parts(parts, body))
            .await
            .unwrap()
    }
}

async fn body_text(resp: Response<Incoming>) -> String {
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn get_and_check(alpn: &'static [u8], version: &str) {
    let origin = start_origin("origin CA").await;
    let ward = ward(&origin.ca_pem, None);
    let (client, task) = ward.connect(origin.addr).await;
    let tls = client_tls(client, Some(ward.interceptor.ca().cert_der()), &[alpn])
        .await
        .unwrap();
    let resp = get(tls, "/hello?x=1").await;
    assert_eq!(resp.status(), 200);
    assert!(
        !resp.headers().contains_key("date"),
        "ward added a Date header"
    );
    let body = body_text(resp).await;
    assert_eq!(
        body,
        format!("hello {version} auth=Bearer s3cret via=false")
    );
    let done = finished(task).await;
    assert!(matches!(done.outcome, Outcome::Closed), "{done:?}");
    assert_eq!(done.requests, 1);
    assert_eq!(done.alpn.as_deref(), std::str::from_utf8(alpn).ok());
    assert!(done.bytes_up > 0 && done.bytes_down > 0);
    let flows = ward.wait_flows(1).await;
    assert_eq!(flows.len(), 1, "{flows:?}");
    let f = &flows[0];
    assert_eq!(f["method"], "GET");
    assert_eq!(f["path"], "/hello?x=1");
    assert_eq!(f["authority"], ORIGIN);
    assert_eq!(f["sni"], ORIGIN);
    assert_eq!(f["status"], 200);
    assert_eq!(f["user"], "alice");
    assert_eq!(f["rule"], "inspect-lab");
    assert_eq!(f["response_bytes"], body.len());
    assert!(
        !f.to_string().contains("s3cret"),
        "secret in the flow record: {f}"
    );
}

#[tokio::test]
async fn get_over_http1_reaches_origin_and_logs_a_flow() {
    get_and_check(b"http/1.1", "HTTP/1.1").await;
}

#[tokio::test]
async fn get_over_h2_reaches_origin_and_logs_a_flow() {
    get_and_check(b"h2", "HTTP/2.0").await;
}

#[tokio::test]
async fn untrusted_origin_certificate_gives_502_with_proxy_status() {
    let origin = start_origin("origin CA").await;
    // ward trusts a stranger's CA, not `origin`'s.
    let ward = ward(&Ca::new("stranger CA").pem(), None);
    let (client, task) = ward.connect(origin.addr).await;
    let tls = client_tls(
        client,
        Some(ward.interceptor.ca().cert_der()),
        &[b"h2", b"http/1.1"],
    )
    .await
    .unwrap();
    let resp = get(tls, "/").await;
    assert_eq!(resp.status(), 502);
    let status = resp.headers()["proxy-status"].to_str().unwrap().to_string();
    assert!(
        status.starts_with("ward; error=tls_certificate_error; details=\""),
        "{status}"
    );
    assert!(status.contains("unknown issuer"), "{status}");
    drop(body_text(resp).await);
    let done = finished(task).await;
    match (done.outcome, done.error) {
        (Outcome::UpstreamTlsFailed, Some(e)) => assert_eq!(e.kind, ErrorKind::TlsCertificate),
        other => panic!("{other:?}"),
    }
    let flows = ward.wait_flows(1).await;
    assert_eq!(flows[0]["status"], 502);
    assert_eq!(flows[0]["error"], "tls_certificate_error");
}

/// The Proxy-Status details ward answers when the origin serves `leaf` (from `ca`).
async fn certificate_refusal(ca: &Ca, leaf: testkit::Leaf) -> String {
    let tls = leaf.server_config(ALPN_BOTH);
    let origin = Origin::start(Service::Http(Some(Arc::new(tls)))).await;
    let ward = ward(&ca.pem(), None);
    let (client, task) = ward.connect(origin.addr).await;
    let ca_der = ward.interceptor.ca().cert_der();
    let tls = client_tls(client, Some(ca_der), &[b"http/1.1"])
        .await
        .unwrap();
    let resp = get(tls, "/").await;
    assert_eq!(resp.status(), 502);
    let status = resp.headers()["proxy-status"].to_str().unwrap().to_string();
    drop(body_text(resp).await);
    let done = finished(task).await;
    assert_eq!(done.error.map(|e| e.kind), Some(ErrorKind::TlsCertificate));
    assert!(
        status.starts_with("ward; error=tls_certificate_error"),
        "{status}"
    );
    status
}

#[tokio::test]
async fn origin_certificate_refusals_say_why_in_words() {
    let ca = Ca::new("origin CA");
    let as_ca = ca.issue_with(&[ORIGIN], |p| {
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    });
    let status = certificate_refusal(&ca, as_ca).await;
    assert!(
        status.contains("the certificate is a CA certificate used as a server certificate"),
        "{status}"
    );
    let expired = ca.issue_with(&[ORIGIN], |p| {
        // 2025-12-01T00:00Z and 2026-01-02T12:00Z.
        p.not_before = time::OffsetDateTime::from_unix_timestamp(1_764_547_200).unwrap();
        p.not_after = time::OffsetDateTime::from_unix_timestamp(1_767_355_200).unwrap();
    });
    let status = certificate_refusal(&ca, expired).await;
    assert!(status.contains("it expired on 2026-01-02"), "{status}");
    let other = ca.issue(&["other.test"]);
    let status = certificate_refusal(&ca, other).await;
    assert!(status.contains("other.test, not origin.test"), "{status}");
    assert!(
        !status.contains("Other(") && !status.contains("DnsName"),
        "{status}"
    );
}

async fn stream_big(alpn: &'static [u8]) {
    let origin = start_origin("origin CA").await;
    let ward = ward(&origin.ca_pem, None);
    let (client, task) = ward.connect(origin.addr).await;
    let tls = client_tls(client, Some(ward.interceptor.ca().cert_der()), &[alpn])
        .await
        .unwrap();
    let mut body = get(tls, &format!("/bytes/{BIG}")).await.into_body();
    let (mut seen, mut max_ahead) = (0u64, 0u64);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            seen += data.len() as u64;
            max_ahead = max_ahead.max(origin.origin.produced() - seen);
        }
    }
    assert_eq!(seen, BIG);
    // Buffered, the whole 64 MiB would be produced before the first byte arrived.
    assert!(
        max_ahead < 16 * 1024 * 1024,
        "origin ran {max_ahead} bytes ahead"
    );
    drop(body);
    let done = finished(task).await;
    assert!(done.bytes_down > BIG);
    let flows = ward.wait_flows(1).await;
    assert_eq!(flows[0]["response_bytes"], BIG);
}

#[tokio::test]
async fn big_body_streams_over_http1() {
    stream_big(b"http/1.1").await;
}

#[tokio::test]
async fn big_body_streams_over_h2() {
    stream_big(b"h2").await;
}

#[tokio::test]
async fn upgrade_is_spliced_through() {
    let origin = start_origin("origin CA").await;
    let ward = ward(&origin.ca_pem, None);
    let (mut send, task) = ward.http1_client(origin.addr).await;
    let req = Request::get("/echo")
        .header("host", ORIGIN)
        .header("connection", "upgrade")
        .header("upgrade", "echo")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let mut io = TokioIo::new(hyper::upgrade::on(resp).await.unwrap());
    io.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 4];
    tokio::time::timeout(WAIT, io.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping");
    drop(io);
    drop(send);
    let done = finished(task).await;
    assert!(
        matches!(
            done.outcome,
            Outcome::Closed | Outcome::IdleTimeout | Outcome::Shutdown
        ),
        "{done:?}"
    );
}

#[tokio::test]
async fn client_rejecting_forged_certificate_is_reported_and_tracked() {
    let origin = start_origin("origin CA").await;
    let pinning = PinningSettings {
        rejections: 2,
        window: Duration::from_secs(60),
        ttl: Duration::from_secs(600),
    };
    let ward = ward(&origin.ca_pem, Some(pinning));
    let host = Host::parse(ORIGIN).unwrap();
    for round in 0..2 {
        assert_eq!(
            ward.interceptor
                .pinned_passthrough(&host, SystemTime::now()),
            None
        );
        let (client, task) = ward.connect(origin.addr).await;
        // This client trusts nothing: it must refuse ward's leaf with unknown_ca.
        assert!(client_tls(client, None, &[b"http/1.1"]).await.is_err());
        let done = finished(task).await;
        match done.outcome {
            Outcome::ClientRejectedCertificate { alert } => {
                assert_eq!(alert, "unknown_ca")
            }
            other => panic!("round {round}: {other:?}"),
        }
    }
    // Both rejections were alice's: one client does not switch a host off for everyone.
    assert_eq!(
        ward.interceptor
            .pinned_passthrough(&host, SystemTime::now()),
        None
    );
    let bob = crate::mitm::pinning::ClientId::User("bob".into());
    assert!(
        ward.interceptor
            .record_client_rejection(&host, bob, SystemTime::now())
    );
    let pinned = ward
        .interceptor
        .pinned_passthrough(&host, SystemTime::now());
    assert_eq!(pinned.map(|p| p.clients), Some(2));
}

#[tokio::test]
async fn garbage_instead_of_client_hello_is_an_error() {
    let origin = start_origin("origin CA").await;
    let ward = ward(&origin.ca_pem, None);
    let (mut client, task) = ward.connect(origin.addr).await;
    client.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    let err = tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::MalformedRequest);
}

#[tokio::test]
async fn shutdown_drains_an_idle_keep_alive_connection() {
    let origin = start_origin("origin CA").await;
    let ward = ward(&origin.ca_pem, None);
    let token = CancellationToken::new();
    let (client, task) = ward.connect_with(origin.addr, token.clone()).await;
    let tls = client_tls(client, Some(ward.interceptor.ca().cert_der()), &[b"h2"])
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = Request::get(format!("https://{ORIGIN}/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(send.send_request(req).await.unwrap().status(), 200);
    // The client keeps its connection open; only shutdown can end it now.
    token.cancel();
    let done = finished(task).await;
    assert!(matches!(done.outcome, Outcome::Shutdown), "{done:?}");
    drop(send);
}

/// The origin's HTTP/1.1 stream is parked between exchanges: every request of a keep-alive
/// connection still reaches the origin over the one upstream connection ward was given.
#[tokio::test]
async fn http1_keep_alive_requests_share_the_parked_origin_stream() {
    let origin = start_origin("origin CA").await;
    let ward = ward(&origin.ca_pem, None);
    let (mut send, task) = ward.http1_client(origin.addr).await;
    for i in 0..3 {
        let req = Request::get(format!("/hello?x={i}"))
            .header("host", ORIGIN)
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.ready().await.unwrap();
        let resp = tokio::time::timeout(WAIT, send.send_request(req))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(resp.status(), 200, "request {i}");
        assert!(body_text(resp).await.starts_with("hello HTTP/1.1"));
    }
    drop(send);
    let done = finished(task).await;
    assert_eq!(done.requests, 3);
    assert_eq!(ward.wait_flows(3).await.len(), 3);
}

/// What an idle connection keeps is sized by these types: the intercept future lives as long
/// as the connection (12.4 KiB before its handshakes and hyper connection were boxed), and a
/// request sizes each of the 32 slots of hyper's client queue (648 bytes with the flow record
/// inline). Generous bounds: a regression, not the compiler's layout, should trip them.
#[tokio::test]
async fn idle_connection_state_stays_small() {
    let origin = start_origin("origin CA").await;
    let ward = ward(&origin.ca_pem, None);
    let (_client, proxy_side) = tokio::io::duplex(64);
    let upstream = TcpStream::connect(origin.addr).await.unwrap();
    let shutdown = CancellationToken::new();
    let intercept = ward
        .interceptor
        .intercept(proxy_side, upstream, flow_context(), shutdown);
    assert!(std::mem::size_of_val(&intercept) <= 4096);
    assert!(std::mem::size_of::<Request<body::ClientBody>>() <= 320);
}
