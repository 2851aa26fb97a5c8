//! The interception driver: both handshakes, then the relay that fits what the two sides
//! agreed (HTTP/1.1 or HTTP/2 through hyper, any other ALPN as bytes, ward's 502 when the
//! origin failed), and what the pipeline logs of it. Must not decide policy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::activity::Activity;
use super::handshake::{Accepted, Handshaken};
use super::interceptor::{FlowContext, Interceptor};
use super::relay::{self, FlowMeta, Protocol, Relay, UpstreamSender};
use super::upstream::Origin;
use crate::error::{ErrorKind, ProxyError};
use crate::outcome::Outcome;
use crate::policy::names_differ;
use crate::target::Host;
use crate::tls::{Legs, TlsLeg};

/// What an interception did, for the access record.
#[derive(Debug)]
pub struct Intercepted {
    /// HTTP requests relayed (0 for a byte relay).
    pub requests: u64,
    /// Bytes read from / written to the client's stream (TLS records, as for a tunnel).
    pub bytes_up: u64,
    /// Bytes written to the client's stream.
    pub bytes_down: u64,
    /// The ALPN protocol negotiated with both sides.
    pub alpn: Option<String>,
    /// What each TLS leg negotiated (version, cipher, key-exchange group).
    pub legs: Legs,
    /// How it ended: `Closed`, `IdleTimeout`, `Shutdown`, or one of the two below with its
    /// error.
    pub outcome: Outcome,
    /// The error it ended with: with `UpstreamTlsFailed`, the origin's failure; with
    /// `ClientRejectedCertificate`, the client's refusal.
    pub error: Option<ProxyError>,
}

/// How a relay ended, and the error it ended with, if any.
type Ended = (Outcome, Option<ProxyError>);

/// What one connection's relay needs to know, gathered during the handshakes.
struct Session<'a> {
    activity: &'a Arc<Activity>,
    protocol: Protocol,
    name: &'a Host,
    shutdown: &'a CancellationToken,
    legs: Legs,
}

impl Interceptor {
    /// Intercepts one connection. `client` is positioned at the very start of its ClientHello;
    /// `upstream` is connected to the origin.
    pub async fn intercept<S>(
        &self,
        client: S,
        upstream: TcpStream,
        mut ctx: FlowContext,
        shutdown: CancellationToken,
    ) -> Result<Intercepted, ProxyError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        // Boxed: the handshakes' state (two TLS handshakes, the ClientHello) is several KiB
        // that only the first milliseconds need; inline it would size this future, which
        // lives as long as the connection.
        let shaken = Box::pin(self.handshakes(client, upstream, &ctx, &activity)).await?;
        let Handshaken {
            accepted,
            origin,
            name,
            alpn,
            ssl_us,
            ja4_upstream,
        } = shaken;
        ctx.setup.ssl_us = ssl_us;
        let legs = |client| Legs {
            client,
            upstream: origin.as_ref().ok().and_then(|o| TlsLeg::of(o.get_ref().1)),
            ja4_upstream,
        };
        let tls = match accepted {
            Accepted::Stream(tls) => tls,
            Accepted::EchRetry => {
                return Ok(finish(
                    &activity,
                    0,
                    (alpn, legs(None)),
                    (Outcome::EchRejected, None),
                ));
            }
            Accepted::Rejected(alert) => {
                let outcome = Outcome::ClientRejectedCertificate { alert };
                let err = ProxyError::client(
                    ErrorKind::TlsHandshake,
                    format!(
                        "client rejected the forged certificate for {name} (alert {alert}): it does not trust ward's CA, or pins"
                    ),
                );
                return Ok(finish(
                    &activity,
                    0,
                    (alpn, legs(None)),
                    (outcome, Some(err)),
                ));
            }
        };
        let protocol = Protocol::from_alpn(alpn.as_deref());
        let legs = legs(TlsLeg::of(tls.get_ref().1));
        let session = Session {
            activity: &activity,
            protocol,
            name: &name,
            shutdown: &shutdown,
            legs: legs.clone(),
        };
        let (requests, ended) = self.relay(session, tls, origin, ctx).await;
        Ok(finish(&activity, requests, (alpn, legs), ended))
    }

    /// Relays the established pair: bytes for a non-HTTP protocol, else hyper on both sides;
    /// with no usable origin every request gets ward's 502. Returns (requests, how it ended).
    async fn relay<IO>(
        &self,
        session: Session<'_>,
        mut tls: IO,
        origin: Result<Origin, ProxyError>,
        ctx: FlowContext,
    ) -> (u64, Ended)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Session {
            activity,
            protocol,
            name,
            shutdown,
            legs,
        } = session;
        let idle = self.idle;
        let origin = match origin {
            Ok(mut origin) if protocol == Protocol::Opaque => {
                let token = shutdown.clone();
                let outcome = relay::relay_bytes(&mut tls, &mut origin, idle, token, "opaque");
                return (0, (outcome.await, None));
            }
            origin => origin,
        };
        let (sender, failure) = upstream_sender(origin, protocol, name, ctx.client).await;
        let relay = Arc::new(self.http_relay(sender, name, ctx, (shutdown, activity), legs));
        let outcome =
            relay::serve_http(tls, protocol, relay.clone(), activity, idle, shutdown).await;
        if let UpstreamSender::Http1(parked) = &relay.upstream {
            parked.close().await;
        }
        let requests = relay.requests.load(Ordering::Relaxed);
        let ended = match failure {
            Some(err) => (Outcome::UpstreamTlsFailed, Some(err)),
            None => (outcome, None),
        };
        (requests, ended)
    }

    /// The hyper service's shared state for one connection.
    fn http_relay(
        &self,
        upstream: UpstreamSender,
        name: &Host,
        ctx: FlowContext,
        (shutdown, activity): (&CancellationToken, &Arc<Activity>),
        legs: Legs,
    ) -> Relay {
        Relay {
            upstream,
            meta: FlowMeta {
                conn_id: ctx.conn_id.to_string(),
                client: ctx.client,
                user: ctx.user,
                sni: Some(name.to_string()),
                rule: ctx.rule,
                connect: ctx.connect_target.to_string(),
                connect_mismatch: names_differ(&ctx.connect_target.host, name),
                tls_name: name.clone(),
                deny_host_mismatch: ctx.deny_host_mismatch,
                legs,
                setup: ctx.setup,
                ja4: ctx.hello.as_ref().map(|h| h.ja4),
            },
            sink: self.flows.clone(),
            bodies: self.bodies.clone(),
            judge: ctx.judge,
            requests: AtomicU64::new(0),
            upgrades: TaskTracker::new(),
            idle: self.idle,
            shutdown: shutdown.clone(),
            activity: activity.clone(),
            heads: relay::HeadWaits::default(),
        }
    }
}

/// The HTTP client half over the origin; without a usable origin, the failure that every
/// request is answered with, and that the interception ends with.
async fn upstream_sender(
    origin: Result<Origin, ProxyError>,
    protocol: Protocol,
    name: &Host,
    client: SocketAddr,
) -> (UpstreamSender, Option<ProxyError>) {
    match origin {
        // Boxed: an HTTP/2 handshake future is large and needed only once.
        Ok(origin) => match Box::pin(relay::connect_upstream(origin, protocol)).await {
            Ok(sender) => (sender, None),
            Err(e) => {
                let err =
                    ProxyError::upstream(ErrorKind::Io, format!("HTTP handshake with {name}: {e}"));
                (failed(&err), Some(err))
            }
        },
        Err(err) => {
            tracing::warn!(sni = %name, client = %client, error = %err, "origin TLS failed; answering the client with 502");
            (failed(&err), Some(err))
        }
    }
}

fn failed(err: &ProxyError) -> UpstreamSender {
    UpstreamSender::Failed {
        kind: err.kind,
        detail: err.detail.clone(),
    }
}

fn finish(
    activity: &Activity,
    requests: u64,
    (alpn, legs): (Option<Vec<u8>>, Legs),
    ended: Ended,
) -> Intercepted {
    let (outcome, error) = ended;
    Intercepted {
        requests,
        bytes_up: activity.read.load(Ordering::Relaxed),
        bytes_down: activity.written.load(Ordering::Relaxed),
        alpn: alpn.map(|a| String::from_utf8_lossy(&a).into_owned()),
        legs,
        outcome,
        error,
    }
}
