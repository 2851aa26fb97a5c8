//! The whole per-connection path, in the order of DESIGN.md's diagram: front-end handshake,
//! route (judge the target, resolve, judge the address, dial), reply, ClientHello, judge the
//! SNI, then tunnel, deny or intercept. Each step lives in its own module; this file only
//! sequences them and fills the access record.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::context::Context;
use crate::error::{ErrorKind, ProxyError};
use crate::front::entry::{Entry, EntryError};
use crate::front::{self, Accepted, ClientStream, TunnelRequest};
use crate::hello::{self, First};
use crate::io::PrefixedStream;
use crate::log::{AccessRecord, Stage};
use crate::mitm::{FlowContext, Interceptor, RequestJudge};
use crate::outcome::Outcome;
use crate::policy::{Action, Facts, HelloFact, RequestFact, Toggle};
use crate::request::Request;
use crate::route::{self, Routed};
use crate::target::Host;
use crate::tls::{self, AlertDescription, ClientHelloFacts};
use crate::{forward, tunnel};

/// Serves one client connection to its end and emits its access record. The listener's
/// `entry` steps (PROXY header, TLS) come first and share the handshake deadline; the client
/// they name is the one every later step, record and metric sees.
pub async fn handle(stream: TcpStream, peer: SocketAddr, entry: Arc<Entry>, ctx: Context) {
    let _ = stream.set_nodelay(true);
    let local = stream.local_addr().ok();
    let deadline = tokio::time::Instant::now() + ctx.config.timeouts.handshake;
    // The set-up steps are boxed (one allocation each, freed when they end): inlined, the
    // largest of them (a listener's TLS handshake, the dial through an upstream proxy) would
    // size the task of every connection for as long as it stays open.
    let (stream, client) = match Box::pin(entry.open(stream, peer, deadline)).await {
        Ok(opened) => opened,
        Err(err) => return entry_refused(&err, peer, &entry, &ctx),
    };
    let limit = ctx.config.max_connections_per_client;
    let Some(_share) = ctx.shares.take(client.ip(), limit) else {
        return Box::pin(over_share(stream, client, peer, &ctx)).await;
    };
    let mut rec = AccessRecord::new(client, ctx.metrics.clone());
    // Everything up to the relay runs in one boxed future that ends before it: an open
    // connection's task then holds the relay's state and the record, not the request, the
    // hello and every set-up step's future (4,336 bytes with them inline, 1,896 without).
    let next = Box::pin(setup(stream, client, local, deadline, &ctx, &mut rec)).await;
    let ended = match next {
        Next::Relay(parts) => relay(parts, &ctx, &mut rec).await,
        Next::Inspect(parts) => match &ctx.interceptor {
            Some(interceptor) => Box::pin(intercept(parts, interceptor, &ctx, &mut rec)).await,
            None => relay(Box::new(parts.relay), &ctx, &mut rec).await,
        },
        Next::Done(ended) => ended,
    };
    if let Err(err) = ended {
        rec.set_error(&err);
    }
}

/// The front-end handshake and, for a tunnel, everything before its bytes move: what comes
/// next. Plain HTTP is served here to its end.
async fn setup(
    stream: ClientStream,
    client: SocketAddr,
    local: Option<SocketAddr>,
    deadline: tokio::time::Instant,
    ctx: &Context,
    rec: &mut AccessRecord,
) -> Next {
    match front::accept(stream, client, (&ctx.config, &ctx.auth), deadline).await {
        Err(err) => Next::Done(Err(err)),
        Ok(Accepted::Tunnel(t)) => {
            rec.set_request(&t.request);
            tunnel_setup(t, ctx, rec)
                .await
                .unwrap_or_else(|err| Next::Done(Err(err)))
        }
        Ok(Accepted::Forward {
            stream,
            buffered,
            user,
            ..
        }) => {
            // Plain HTTP: one record per forwarded request, written by the forwarder.
            rec.discard();
            // Boxed: its per-request state is many KiB, and only plain HTTP needs it.
            let ends = (client, local);
            let conn_id = rec.conn_id;
            Box::pin(forward::serve(
                stream,
                buffered,
                ends,
                user,
                conn_id,
                ctx.clone(),
            ))
            .await;
            Next::Done(Ok(()))
        }
    }
}

/// A client already holding its `max_connections_per_client`: answered 503 (SOCKS5 0x01) at
/// once, while other clients are still served. The log names the peer too: behind a load
/// balancer that is the balancer, and the client came from its PROXY header.
async fn over_share(stream: ClientStream, client: SocketAddr, peer: SocketAddr, ctx: &Context) {
    let limit = ctx.config.max_connections_per_client;
    ctx.metrics
        .over_client_limit
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tracing::warn!(%client, %peer, limit, "per-client connection limit reached");
    let err = ProxyError::local(
        ErrorKind::ConnectionLimit,
        format!(
            "client {} has {limit} connections open (max_connections_per_client)",
            client.ip()
        ),
    );
    front::refuse::refuse(stream, &err).await;
}

/// A connection closed before its front-end handshake: counted, and logged with the reason.
/// No access record: no request was read, and the peer is not (yet) anyone's client.
fn entry_refused(err: &EntryError, peer: SocketAddr, entry: &Entry, ctx: &Context) {
    let listener = entry.addr;
    let reason = err.reason();
    if err.is_proxy_protocol() {
        ctx.metrics.record_proxy_refusal(reason);
        tracing::warn!(%peer, %listener, reason, error = %err, "PROXY header refused: connection closed");
    } else {
        let failures = &ctx.metrics.listener_tls_failures;
        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(%peer, %listener, reason, error = %err, "TLS handshake with the client failed: connection closed");
    }
}

/// What a connection's set-up decided. Boxed payloads: this value is held while the relay
/// runs, so it must be small.
enum Next {
    /// Relay the bytes.
    Relay(Box<RelayParts>),
    /// Terminate the client's TLS (or tunnel, under pinning passthrough).
    Inspect(Box<InspectParts>),
    /// Nothing more to do: how it ended.
    Done(Result<(), ProxyError>),
}

/// Both ends of a tunnel, and what the client sent already (its ClientHello).
struct RelayParts {
    client: ClientStream,
    routed: Routed,
    buffered: BytesMut,
}

/// A tunnel to intercept: its ends, the request, and the hello that asked for it.
struct InspectParts {
    relay: RelayParts,
    request: Request,
    hello: Box<ClientHelloFacts>,
}

/// CONNECT and SOCKS5: route, reply, read the ClientHello and judge the SNI.
async fn tunnel_setup(
    mut t: TunnelRequest,
    ctx: &Context,
    rec: &mut AccessRecord,
) -> Result<Next, ProxyError> {
    let cfg = &*ctx.config;
    let routed = match route::route(&t.request, cfg, rec).await {
        Ok(routed) => routed,
        Err(err) => {
            t.reply_err(&err).await;
            return Err(err);
        }
    };
    t.reply_ok(&routed.stream)
        .await
        .map_err(|e| ProxyError::client(ErrorKind::Io, format!("write reply: {e}")))?;

    rec.stage = Stage::ClientHello;
    let mut buf = std::mem::take(&mut t.leftover);
    let first = if routed.early.is_empty() {
        let wait = cfg.timeouts.client_hello;
        hello::read_first(&mut t.stream, &routed.stream, &mut buf, wait).await
    } else {
        // The destination spoke first, already in the upstream proxy's reply.
        First::NotTls(hello::SERVER_FIRST.into())
    };
    let hello = match first {
        First::Hello(hello) => hello,
        First::NotTls(why) => {
            cfg.policy.judge_non_tls(&t.request.target, &why)?;
            judge_hello(&t, None, &routed, cfg, rec).await?;
            tracing::debug!(target = %t.request.target, why, "tunnel carries no TLS");
            return Ok(Next::Relay(Box::new(RelayParts {
                client: t.stream,
                routed,
                buffered: buf,
            })));
        }
        First::ClientGone => {
            rec.outcome = Some(Outcome::ClientClosed);
            return Ok(Next::Done(Ok(())));
        }
        First::Unreadable(err) => {
            // TLS that cannot be read cannot be checked: refused, whatever `non_tls` says.
            refuse_tls(&mut t.stream, AlertDescription::DecodeError).await;
            return Err(err);
        }
        First::Failed(err) => return Err(err),
    };
    rec.note_hello(&hello, &t.request.target.host);

    rec.stage = Stage::Policy;
    let action = match judge_hello(&t, Some(&hello), &routed, cfg, rec).await {
        Ok(action) => action,
        Err(err) => {
            refuse_tls(&mut t.stream, AlertDescription::AccessDenied).await;
            return Err(err);
        }
    };
    let relay = RelayParts {
        client: t.stream,
        routed,
        buffered: buf,
    };
    Ok(match action {
        Action::Inspect if ctx.interceptor.is_some() => Next::Inspect(Box::new(InspectParts {
            relay,
            request: t.request,
            hello,
        })),
        _ => Next::Relay(Box::new(relay)),
    })
}

/// The ClientHello's SNI and JA4, judged after the target passed (`None`: the tunnel carries
/// no TLS, and only a judgement that waited for a fingerprint is asked again). Through an
/// upstream proxy, a rule for this hello may be the first to need the address: ward resolves
/// it then, for the decision only.
async fn judge_hello(
    t: &TunnelRequest,
    hello: Option<&ClientHelloFacts>,
    routed: &Routed,
    cfg: &crate::config::Config,
    rec: &mut AccessRecord,
) -> Result<Action, ProxyError> {
    let policy = &cfg.policy;
    if hello.is_none() && !policy.provisional(&routed.judgement) {
        return Ok(routed.judgement.action());
    }
    let sni = hello.and_then(|h| h.sni.as_ref());
    let facts = Facts {
        // An IP-literal target is the address dialled, also through an upstream proxy.
        dst: routed.dst.or(match t.request.target.host {
            Host::Ip(ip) => Some(ip),
            Host::Name(_) => None,
        }),
        sni,
        hello: hello.map_or(HelloFact::Absent, |h| HelloFact::Seen {
            ja4: Some(&h.ja4),
            ech: h.ech.offered(),
        }),
        // Bytes that are not TLS are never inspected, so never read as requests.
        request: match hello {
            Some(_) => RequestFact::Pending,
            None => RequestFact::Absent,
        },
        ..route::facts(&t.request)
    };
    let (judgement, facts) = match policy.judge_hello(&facts) {
        Ok(judgement) => (judgement, facts),
        Err(needs) => {
            let addrs = route::resolve_for_decision(&t.request, cfg, Some(needs)).await?;
            let judge = |ip| {
                let f = Facts {
                    dst: Some(ip),
                    ..facts
                };
                policy.judge_hello(&f)
            };
            let (judgement, ip) = route::judge_each(&addrs, judge, policy, &facts)?;
            let facts = Facts {
                dst: Some(ip),
                ..facts
            };
            (judgement, facts)
        }
    };
    rec.note_judgement(policy, &judgement);
    match policy.refusal_error(&judgement, &facts) {
        Some(err) => Err(err),
        None => Ok(judgement.action()),
    }
}

/// Ends a tunnel's TLS before it began: a fatal alert, then our side closed. Best effort: the
/// refusal is logged whether or not the client is still there to read it.
async fn refuse_tls(client: &mut ClientStream, alert: AlertDescription) {
    let _ = client.write_all(&tls::encode_alert(alert)).await;
    let _ = client.shutdown().await;
}

/// Terminates the client's TLS with a forged leaf and relays the HTTP inside — or tunnels, when
/// the host is in pinning passthrough.
async fn intercept(
    parts: Box<InspectParts>,
    interceptor: &Interceptor,
    ctx: &Context,
    rec: &mut AccessRecord,
) -> Result<(), ProxyError> {
    let InspectParts {
        relay: ends,
        request,
        hello,
    } = *parts;
    let host = hello
        .sni
        .clone()
        .unwrap_or_else(|| request.target.host.clone());
    if interceptor
        .pinned_passthrough(&host, std::time::SystemTime::now())
        .is_some()
    {
        // Counted as a tunnel, not an inspection; the rule that said inspect stays named.
        rec.action = Some(crate::policy::Action::Allow);
        rec.outcome = Some(Outcome::PinnedPassthrough);
        return relay(Box::new(ends), ctx, rec).await;
    }
    rec.stage = Stage::Intercept;
    let flow = FlowContext {
        conn_id: rec.conn_id,
        client: request.client,
        user: request.user.clone(),
        sni: hello.sni.clone(),
        connect_target: request.target.clone(),
        rule: rec.rule.clone(),
        deny_host_mismatch: ctx.config.policy.checks().sni_mismatch == Toggle::Deny,
        judge: RequestJudge::new(
            &ctx.config,
            &request,
            ends.routed.dst.or(match request.target.host {
                Host::Ip(ip) => Some(ip),
                Host::Name(_) => None,
            }),
            &hello,
        ),
        setup: rec.setup,
        hello: Some(Arc::from(hello)),
    };
    let client = PrefixedStream::new(ends.buffered.freeze(), ends.client);
    let cancel = ctx.force_close.clone();
    // Boxed: the interception's state machine is many KiB, and inlined it would be the size
    // of every connection's task, tunnels included.
    let done = Box::pin(interceptor.intercept(client, ends.routed.stream, flow, cancel)).await?;
    rec.bytes_up = done.bytes_up;
    rec.bytes_down = done.bytes_down;
    rec.alpn = done.alpn;
    rec.legs = done.legs;
    rec.outcome = Some(done.outcome);
    done.error.map_or(Ok(()), Err)
}

/// Hands each side what the other already sent (the client's buffered bytes upstream, an
/// upstream proxy's early bytes to the client), then relays both ways.
async fn relay(
    parts: Box<RelayParts>,
    ctx: &Context,
    rec: &mut AccessRecord,
) -> Result<(), ProxyError> {
    rec.stage = Stage::Tunnel;
    let RelayParts {
        mut client,
        routed:
            Routed {
                stream: mut upstream,
                early,
                ..
            },
        buffered,
    } = *parts;
    write_early(&mut client, early, rec).await?;
    if !buffered.is_empty() {
        upstream
            .write_all(&buffered)
            .await
            .map_err(|e| ProxyError::upstream(ErrorKind::Io, format!("write to upstream: {e}")))?;
    }
    // The client spoke first (its ClientHello, say): the origin's answer is timed from here.
    let sent = (!buffered.is_empty()).then(tokio::time::Instant::now);
    // Not held through the relay: an idle tunnel should cost no buffer.
    let buffered_len = buffered.len() as u64;
    drop(buffered);
    let idle = ctx.config.timeouts.idle;
    let done = tunnel::relay(&mut client, &mut upstream, idle, ctx.force_close.clone()).await;
    if let (Some(sent), Some(first)) = (sent, done.first_down) {
        rec.metrics()
            .first_byte
            .0
            .observe(first.duration_since(sent));
    }
    // A reset is passed on as one: a FIN would tell the other side it had everything.
    match done.outcome {
        Outcome::UpstreamReset => client.reset_on_close(),
        Outcome::ClientReset => crate::io::reset_on_close(&upstream),
        _ => {}
    }
    rec.bytes_up = done.bytes_up + buffered_len;
    rec.bytes_down += done.bytes_down;
    rec.outcome.get_or_insert(done.outcome);
    done.error.map_or(Ok(()), Err)
}

async fn write_early(
    client: &mut ClientStream,
    early: Bytes,
    rec: &mut AccessRecord,
) -> Result<(), ProxyError> {
    if early.is_empty() {
        return Ok(());
    }
    client
        .write_all(&early)
        .await
        .map_err(|e| ProxyError::client(ErrorKind::Io, format!("write: {e}")))?;
    rec.bytes_down += early.len() as u64;
    Ok(())
}

#[cfg(test)]
mod tests;
