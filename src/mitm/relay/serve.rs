//! Serving the client's decrypted connection: hyper's server half driven under the idle
//! timeout and the shutdown drain (an exchange waiting for its response head is timed by
//! itself), and the byte relay for what is not HTTP.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Response;
use hyper::server::conn::{http1 as server_h1, http2 as server_h2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Protocol, Relay};
use crate::mitm::activity::Activity;
use crate::mitm::body::RelayBody;
use crate::mitm::handshake;
use crate::outcome::Outcome;
use crate::tunnel;

/// One request's relay, boxed: hyper keeps a slot of the service future's size for the whole
/// connection (h1: a 3.4 KiB box allocated up front), while a box costs only while a request
/// is in flight.
type Forwarding = Pin<Box<dyn Future<Output = Result<Response<RelayBody>, Infallible>> + Send>>;

/// Serves the client's decrypted connection with `relay` until it closes, idles out, or
/// shutdown drains it; then waits for spliced upgrades under the same rules.
pub(crate) async fn serve_http<IO>(
    io: IO,
    protocol: Protocol,
    relay: Arc<Relay>,
    activity: &Activity,
    idle: Duration,
    shutdown: &CancellationToken,
) -> Outcome
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let upgrades = relay.upgrades.clone();
    let heads = relay.clone();
    let heads = &heads.heads;
    let service = hyper::service::service_fn(move |req| -> Forwarding {
        Box::pin(relay.clone().forward(req))
    });
    let io = TokioIo::new(io);
    // One builder per protocol (the ALPN is known): a connection future then holds only its
    // own protocol's state, not the larger of both as hyper-util's auto connection does.
    // Inside interception nothing is added: no Date header, the client's header case kept.
    let drained = match protocol {
        Protocol::Http2 => {
            let mut builder = server_h2::Builder::new(TokioExecutor::new());
            builder.auto_date_header(false);
            let conn = Box::pin(builder.serve_connection(io, service));
            drive(
                conn,
                |c| c.graceful_shutdown(),
                (activity, heads),
                idle,
                shutdown,
            )
            .await
        }
        Protocol::Http1 | Protocol::Opaque => {
            let mut builder = server_h1::Builder::new();
            builder.preserve_header_case(true).auto_date_header(false);
            let conn = Box::pin(builder.serve_connection(io, service).with_upgrades());
            drive(
                conn,
                |c| c.graceful_shutdown(),
                (activity, heads),
                idle,
                shutdown,
            )
            .await
        }
    };
    let draining = match drained {
        Driven::Idle => return Outcome::IdleTimeout,
        Driven::UpstreamReset => return Outcome::UpstreamReset,
        Driven::EchRequired => return Outcome::EchRejected,
        Driven::Ended { draining } => draining,
    };
    upgrades.close();
    // Biased: a splice ends on the same idle timeout and shutdown, so its end may come in
    // the same turn as theirs; the connection's ending is then theirs, not "closed".
    tokio::select! {
        biased;
        () = shutdown.cancelled() => Outcome::Shutdown,
        () = activity.idle_for(idle) => Outcome::IdleTimeout,
        () = upgrades.wait() => if draining { Outcome::Shutdown } else { Outcome::Closed },
    }
}

/// How a served connection ended.
enum Driven {
    /// No byte moved for the idle timeout.
    Idle,
    /// The client aborted with `ech_required` as the handshake ended (its Finished and the
    /// alert can arrive apart, so the alert may come only once the connection is served).
    EchRequired,
    /// The origin tore down the exchange in flight (a reset under its TLS, an HTTP/2 reset),
    /// and the client's connection died with it (HTTP/1.1 has no other way to say so).
    UpstreamReset,
    /// It closed or failed; `draining` when shutdown had started its graceful end.
    Ended { draining: bool },
}

/// Polls a server connection until it ends, starting its graceful shutdown when `shutdown`
/// fires. While an exchange waits for its response head, the idle timeout is that exchange's
/// to enforce (it answers 504): the connection is not closed under it.
async fn drive<C>(
    mut conn: Pin<Box<C>>,
    drain: impl FnOnce(Pin<&mut C>),
    (activity, heads): (&Activity, &HeadWaits),
    idle: Duration,
    shutdown: &CancellationToken,
) -> Driven
where
    C: Future<Output = hyper::Result<()>>,
{
    let mut drain = Some(drain);
    // Idle, but an exchange awaits its head: wait for that wait to end instead.
    let mut deferred = false;
    loop {
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    if handshake::is_ech_required(&e) {
                        return Driven::EchRequired;
                    }
                    tracing::debug!(error = %e, "intercepted client connection ended");
                    if e.is_user() && crate::mitm::body::upstream_torn_down(&e) {
                        return Driven::UpstreamReset;
                    }
                }
                return Driven::Ended { draining: drain.is_none() };
            }
            () = shutdown.cancelled(), if drain.is_some() => {
                if let Some(drain) = drain.take() {
                    drain(conn.as_mut());
                }
            }
            () = activity.idle_for(idle), if !deferred => {
                if !heads.any() {
                    return Driven::Idle;
                }
                deferred = true;
            }
            () = heads.one_ended(), if deferred => deferred = false,
        }
    }
}

/// The exchanges of a connection waiting for their response head.
#[derive(Debug, Default)]
pub(crate) struct HeadWaits {
    count: AtomicUsize,
    ended: Notify,
}

impl HeadWaits {
    /// Counts one wait until the guard is dropped.
    pub(super) fn start(&self) -> HeadWait<'_> {
        self.count.fetch_add(1, Ordering::AcqRel);
        HeadWait(self)
    }

    fn any(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    /// Resolves after a wait has ended (a permit is kept if none was listening, so an end in
    /// between is not missed; a stale one costs one more look).
    async fn one_ended(&self) {
        self.ended.notified().await;
    }
}

pub(super) struct HeadWait<'a>(&'a HeadWaits);

impl Drop for HeadWait<'_> {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::AcqRel);
        self.0.ended.notify_one();
    }
}

/// Decrypted bytes both ways through the one relay, `tunnel::relay` (idle timeout, shutdown,
/// half-close): a non-HTTP protocol, or an upgraded exchange. Interception logs its ending as
/// closed, idle or shut down; which side closed first is not told apart, and an I/O error on
/// the way is only logged, as for the rest of an intercepted connection.
pub(crate) async fn relay_bytes<A, B>(
    client: &mut A,
    upstream: &mut B,
    idle: Duration,
    shutdown: CancellationToken,
    what: &'static str,
) -> Outcome
where
    A: AsyncRead + AsyncWrite + Unpin + ?Sized,
    B: AsyncRead + AsyncWrite + Unpin + ?Sized,
{
    let done = tunnel::relay(client, upstream, idle, shutdown).await;
    if let Some(err) = &done.error {
        tracing::debug!(error = %err, "{what} relay ended");
    }
    match done.outcome {
        Outcome::IdleTimeout | Outcome::Shutdown => done.outcome,
        _ => Outcome::Closed,
    }
}
