//! The whole per-connection path, in the order of DESIGN.md's diagram: front-end handshake,
//! policy on the target, dial, reply, ClientHello, policy on the SNI, then tunnel, deny or
//! intercept. Each step lives in its own module; this file only sequences them and fills the
//! access record.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Toggle};
use crate::error::{ErrorKind, ProxyError};
use crate::front::{self, Accepted, TunnelRequest};
use crate::io::{PrefixedStream, ReadError, read_until};
use crate::log::{AccessRecord, Stage};
use crate::metrics::Metrics;
use crate::mitm::{FlowContext, Interceptor};
use crate::outcome::Outcome;
use crate::policy::{Action, Decision, Facts, Verdict};
use crate::request::Request;
use crate::target::Host;
use crate::tls::{self, AlertDescription, ClientHelloFacts, HelloError};
use crate::{Parsed, chain, dial, forward, tunnel};

/// What every connection task shares: a snapshot of the configuration taken at accept (a
/// reload affects only new connections) and the process-wide services.
#[derive(Clone)]
pub struct Context {
    pub config: Arc<Config>,
    pub interceptor: Option<Arc<Interceptor>>,
    /// Fired when the shutdown grace period is over: open tunnels end then.
    pub force_close: CancellationToken,
    pub metrics: Arc<Metrics>,
}

/// Serves one client connection to its end and emits its access record.
pub async fn handle(stream: TcpStream, client: SocketAddr, ctx: Context) {
    let _ = stream.set_nodelay(true);
    let mut rec = AccessRecord::new(client, ctx.metrics.clone());
    let accepted = match front::accept(stream, client, &ctx.config).await {
        Ok(a) => a,
        Err(err) => {
            rec.set_error(&err);
            return;
        }
    };
    match accepted {
        Accepted::Tunnel(t) => {
            rec.set_request(&t.request);
            if let Err(err) = tunnel_path(t, &ctx, &mut rec).await {
                rec.set_error(&err);
            }
        }
        Accepted::Forward {
            stream,
            buffered,
            user,
            ..
        } => {
            // Plain HTTP: one record per forwarded request, written by the forwarder.
            rec.discard();
            // Boxed for the same reason as the interception: tunnels need not carry its size.
            Box::pin(forward::serve(stream, buffered, client, user, ctx)).await;
        }
    }
}

/// CONNECT and SOCKS5: decide, dial, reply, read the ClientHello, decide again, then relay.
async fn tunnel_path(
    mut t: TunnelRequest,
    ctx: &Context,
    rec: &mut AccessRecord,
) -> Result<(), ProxyError> {
    let cfg = &*ctx.config;
    rec.stage = Stage::Policy;
    let (upstream, decision, early) = match dial_allowed(&t.request, cfg, rec).await {
        Ok(ok) => ok,
        Err(err) => {
            t.reply_err(&err).await;
            return Err(err);
        }
    };
    t.reply_ok(&upstream)
        .await
        .map_err(|e| ProxyError::client(ErrorKind::Io, format!("write reply: {e}")))?;

    let mut buf = std::mem::take(&mut t.leftover);
    if !early.is_empty() {
        // The destination spoke first, already in the upstream proxy's reply.
        if cfg.non_tls == Toggle::Deny {
            return Err(non_tls_denied(&t, "the server spoke first"));
        }
        t.stream
            .write_all(&early)
            .await
            .map_err(|e| ProxyError::client(ErrorKind::Io, format!("write: {e}")))?;
        rec.bytes_down += early.len() as u64;
        return relay(t.stream, upstream, buf, ctx, rec).await;
    }

    rec.stage = Stage::ClientHello;
    let first = read_first_bytes(&mut t.stream, &upstream, &mut buf, cfg).await;
    let hello = match first {
        First::Hello(hello) => hello,
        First::NotTls(reason) => {
            if cfg.non_tls == Toggle::Deny {
                return Err(non_tls_denied(&t, &reason));
            }
            tracing::debug!(target = %t.request.target, reason, "tunnel carries no TLS");
            return relay(t.stream, upstream, buf, ctx, rec).await;
        }
        First::ClientGone => {
            rec.outcome = Some(Outcome::ClientClosed);
            return Ok(());
        }
        First::Unreadable(err) => {
            // TLS that cannot be read cannot be checked: refused, whatever `non_tls` says.
            refuse_tls(&mut t.stream, AlertDescription::DecodeError).await;
            return Err(err);
        }
        First::Failed(err) => return Err(err),
    };
    rec.sni = hello.sni.clone();
    rec.alpn = hello.alpn.first().cloned();
    rec.ech = hello.ech_offered;

    rec.stage = Stage::Policy;
    // The dialled address, known since the dial: no need to ask the kernel again.
    let dst = rec.upstream;
    let action = match decide_on_hello(&t, &hello, &decision, dst, cfg, rec) {
        Ok(action) => action,
        Err(err) => {
            refuse_tls(&mut t.stream, AlertDescription::AccessDenied).await;
            return Err(err);
        }
    };
    rec.action = Some(action);
    match (action, &ctx.interceptor) {
        (Action::Inspect, Some(interceptor)) => {
            let host = hello
                .sni
                .clone()
                .unwrap_or_else(|| t.request.target.host.clone());
            if interceptor.pinned_passthrough(&host, Instant::now()) {
                rec.outcome = Some(Outcome::PinnedPassthrough);
                return relay(t.stream, upstream, buf, ctx, rec).await;
            }
            rec.stage = Stage::Intercept;
            let flow = FlowContext {
                client: t.request.client,
                user: t.request.user.clone(),
                sni: hello.sni.clone(),
                connect_target: t.request.target.clone(),
                rule: rec.rule.clone(),
                deny_host_mismatch: cfg.sni_mismatch == Toggle::Deny,
            };
            let client = PrefixedStream::new(buf.freeze(), t.stream);
            // Boxed: the interception's state machine is many KiB, and inlined it would be
            // the size of every connection's task, tunnels included.
            let done =
                Box::pin(interceptor.intercept(client, upstream, flow, ctx.force_close.clone()))
                    .await?;
            rec.bytes_up = done.bytes_up;
            rec.bytes_down = done.bytes_down;
            rec.alpn = done.alpn;
            rec.outcome = Some(done.outcome);
            done.error.map_or(Ok(()), Err)
        }
        _ => relay(t.stream, upstream, buf, ctx, rec).await,
    }
}

/// Ends a tunnel's TLS before it began: a fatal alert, then our side closed. Best effort: the
/// refusal is logged whether or not the client is still there to read it.
async fn refuse_tls(client: &mut TcpStream, alert: AlertDescription) {
    let _ = client.write_all(&tls::encode_alert(alert)).await;
    let _ = client.shutdown().await;
}

fn non_tls_denied(t: &TunnelRequest, reason: &str) -> ProxyError {
    ProxyError::client(
        ErrorKind::NonTlsDenied,
        format!(
            "tunnel to {} carries no TLS ({reason}); non_tls: deny",
            t.request.target
        ),
    )
}

/// Decides on the requested target, resolves, checks every address against the policy and the
/// forbidden ranges, and connects to the first permitted one. Also returns any bytes the
/// destination sent before being asked (only possible through an upstream proxy).
pub(crate) async fn dial_allowed(
    req: &Request,
    cfg: &Config,
    rec: &mut AccessRecord,
) -> Result<(TcpStream, Decision, Bytes), ProxyError> {
    let facts = Facts {
        host: Some(&req.target.host),
        port: req.target.port,
        client: req.client.ip(),
        user: req.user.as_deref(),
        dst: None,
        sni: None,
    };
    let early = match cfg.policy.decide(&facts) {
        Verdict::Decided(d) => {
            note_decision(rec, cfg, &d);
            if d.action == Action::Deny {
                return Err(denied(cfg, &d, &req.target.to_string()));
            }
            Some(d)
        }
        Verdict::NeedsDst => None,
    };

    rec.stage = Stage::Dial;
    if let Some(up) = &cfg.upstream {
        // Through an upstream proxy the upstream resolves: ward never learns the address.
        let decision = early.ok_or_else(|| needs_dst_via_upstream(&req.target.to_string()))?;
        if let Host::Ip(ip) = req.target.host {
            check_dst(cfg, &decision, ip, &req.target.to_string())?;
        }
        let (stream, early) = chain::connect(up, &req.target, cfg).await?;
        rec.upstream = stream.peer_addr().ok();
        return Ok((stream, decision, early));
    }

    let override_ip = req.target.host.name().and_then(|n| cfg.hosts.lookup(n));
    let addrs = dial::resolve(&req.target, override_ip, cfg.timeouts.dns).await?;
    let mut permitted = Vec::with_capacity(addrs.len());
    let mut first_refusal = None;
    for addr in addrs {
        let decision = match &early {
            Some(d) => *d,
            None => match cfg.policy.decide(&Facts {
                dst: Some(addr.ip()),
                ..facts
            }) {
                Verdict::Decided(d) => d,
                // Unreachable: `decide` asks for a destination only when it has none.
                Verdict::NeedsDst => deny_default(),
            },
        };
        let verdict = if decision.action == Action::Deny {
            Err(denied(
                cfg,
                &decision,
                &format!("{} ({})", req.target, addr.ip()),
            ))
        } else {
            check_dst(cfg, &decision, addr.ip(), &req.target.to_string())
        };
        match verdict {
            Ok(()) => permitted.push((addr, decision)),
            Err(e) => {
                first_refusal.get_or_insert((e, decision));
            }
        }
    }
    if permitted.is_empty() {
        let (err, decision) = first_refusal.unwrap_or_else(|| {
            (
                ProxyError::upstream(ErrorKind::DnsError, "no addresses"),
                deny_default(),
            )
        });
        note_decision(rec, cfg, &decision);
        // Refused for its address: the record must not read "allow".
        rec.action = Some(Action::Deny);
        return Err(err);
    }
    let addrs: Vec<SocketAddr> = permitted.iter().map(|(a, _)| *a).collect();
    let (stream, addr) = dial::connect(&addrs, cfg.timeouts.connect).await?;
    rec.upstream = Some(addr);
    let decision = permitted
        .into_iter()
        .find(|(a, _)| *a == addr)
        .map(|(_, d)| d)
        .unwrap_or_else(deny_default);
    note_decision(rec, cfg, &decision);
    Ok((stream, decision, Bytes::new()))
}

fn deny_default() -> Decision {
    Decision {
        action: Action::Deny,
        rule: None,
    }
}

fn needs_dst_via_upstream(target: &str) -> ProxyError {
    ProxyError::local(
        ErrorKind::PolicyDenied,
        format!("{target}: a rule needs the destination address, which an upstream proxy hides"),
    )
}

/// Refuses loopback/private/link-local destinations unless the deciding rule's `dst` names them.
fn check_dst(cfg: &Config, d: &Decision, ip: IpAddr, target: &str) -> Result<(), ProxyError> {
    if crate::policy::is_forbidden_dst(ip) && !cfg.policy.permits_dst(d, ip) {
        return Err(ProxyError::local(
            ErrorKind::DestinationProhibited,
            format!("{target} resolves to {ip}, a prohibited address (allow it with a rule's dst)"),
        ));
    }
    Ok(())
}

fn denied(cfg: &Config, d: &Decision, what: &str) -> ProxyError {
    let by = match d.rule {
        Some(i) => format!("rule \"{}\"", cfg.policy.rule(i).name),
        None => "the default action".to_owned(),
    };
    ProxyError::local(ErrorKind::PolicyDenied, format!("{what} denied by {by}"))
}

fn note_decision(rec: &mut AccessRecord, cfg: &Config, d: &Decision) {
    rec.action = Some(d.action);
    rec.rule = d.rule.map(|i| cfg.policy.rule(i).name.clone());
}

/// Applies the policy to the SNI, then `sni_mismatch`. Returns the action to take.
fn decide_on_hello(
    t: &TunnelRequest,
    hello: &ClientHelloFacts,
    before: &Decision,
    dst: Option<SocketAddr>,
    cfg: &Config,
    rec: &mut AccessRecord,
) -> Result<Action, ProxyError> {
    let req = &t.request;
    let Some(sni) = &hello.sni else {
        return Ok(before.action);
    };
    let facts = Facts {
        host: Some(sni),
        port: req.target.port,
        client: req.client.ip(),
        user: req.user.as_deref(),
        dst: if cfg.upstream.is_some() {
            None
        } else {
            dst.map(|a| a.ip())
        },
        sni: Some(sni),
    };
    let decision = match cfg.policy.decide(&facts) {
        Verdict::Decided(d) => d,
        Verdict::NeedsDst => return Err(needs_dst_via_upstream(&sni.to_string())),
    };
    note_decision(rec, cfg, &decision);
    if decision.action == Action::Deny {
        let mut err = denied(cfg, &decision, &format!("SNI {sni}"));
        err.kind = ErrorKind::SniDenied;
        return Err(err);
    }
    let mismatch = match (&req.target.host, sni) {
        (Host::Name(asked), Host::Name(named)) => asked != named,
        _ => false,
    };
    if mismatch && cfg.sni_mismatch == Toggle::Deny {
        return Err(ProxyError::client(
            ErrorKind::SniMismatch,
            format!("CONNECT {} but SNI {sni}; sni_mismatch: deny", req.target),
        ));
    }
    Ok(decision.action)
}

enum First {
    Hello(ClientHelloFacts),
    NotTls(String),
    /// A TLS handshake record, but no ClientHello ward can read in it.
    Unreadable(ProxyError),
    ClientGone,
    Failed(ProxyError),
}

/// Bytes that are not TLS are `non_tls`'s to judge; TLS that cannot be read is refused, or a
/// client could slip any name past the SNI policy by shaping its hello past ward's caps.
fn hello_error(e: HelloError) -> First {
    match e {
        HelloError::NotTls(why) => First::NotTls(why.to_string()),
        e => First::Unreadable(ProxyError::client(
            ErrorKind::ClientHelloUnreadable,
            e.to_string(),
        )),
    }
}

/// Waits for a complete ClientHello, or for the server to speak first, within
/// `timeouts.client_hello`. Whatever was read stays in `buf`, to be replayed upstream.
async fn read_first_bytes(
    client: &mut TcpStream,
    upstream: &TcpStream,
    buf: &mut BytesMut,
    cfg: &Config,
) -> First {
    let classify = |r: Result<Parsed<ClientHelloFacts>, HelloError>| match r {
        Ok(Parsed::Done { value, .. }) => Some(First::Hello(value)),
        Ok(Parsed::Incomplete) => None,
        Err(e) => Some(hello_error(e)),
    };
    if !buf.is_empty()
        && let Some(first) = classify(tls::parse_client_hello(buf))
    {
        return first;
    }
    let deadline = Instant::now() + cfg.timeouts.client_hello;
    let read = read_until(
        client,
        buf,
        tls::MAX_CLIENT_HELLO,
        deadline,
        tls::parse_client_hello,
    );
    tokio::select! {
        r = read => match r {
            Ok((hello, _)) => First::Hello(hello),
            Err(ReadError::Parse(e)) => hello_error(e),
            Err(ReadError::TooLarge) => hello_error(HelloError::TooLarge),
            Err(ReadError::Closed) if buf.is_empty() => First::ClientGone,
            Err(ReadError::Closed) => First::NotTls("client closed mid-ClientHello".into()),
            Err(ReadError::Timeout) if buf.is_empty() => First::Failed(ProxyError::client(
                ErrorKind::ClientHelloTimeout,
                format!("no bytes within {}", humantime::format_duration(cfg.timeouts.client_hello)),
            )),
            Err(ReadError::Timeout) => First::Failed(ProxyError::client(
                ErrorKind::ClientHelloTimeout,
                format!("ClientHello incomplete after {} ({} bytes)", humantime::format_duration(cfg.timeouts.client_hello), buf.len()),
            )),
            Err(ReadError::Io(e)) => First::Failed(ProxyError::client(ErrorKind::Io, format!("read: {e}"))),
        },
        // A server that speaks first (SSH, SMTP) gets the client's attention at once.
        _ = upstream.readable() => First::NotTls("the server spoke first".into()),
    }
}

/// Writes the bytes already read from the client upstream, then relays both ways.
async fn relay(
    mut client: TcpStream,
    mut upstream: TcpStream,
    buffered: BytesMut,
    ctx: &Context,
    rec: &mut AccessRecord,
) -> Result<(), ProxyError> {
    rec.stage = Stage::Tunnel;
    if !buffered.is_empty() {
        upstream
            .write_all(&buffered)
            .await
            .map_err(|e| ProxyError::upstream(ErrorKind::Io, format!("write to upstream: {e}")))?;
    }
    // Not held through the relay: an idle tunnel should cost no buffer.
    let buffered_len = buffered.len() as u64;
    drop(buffered);
    let done = tunnel::relay(
        &mut client,
        &mut upstream,
        ctx.config.timeouts.idle,
        ctx.force_close.clone(),
    )
    .await;
    rec.bytes_up = done.bytes_up + buffered_len;
    rec.bytes_down = done.bytes_down;
    rec.outcome.get_or_insert(done.outcome);
    done.error.map_or(Ok(()), Err)
}
