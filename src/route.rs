//! Routing, the stage between the front-end handshake and the reply: judge the target, resolve
//! it, judge each address, connect — directly or through the upstream proxy. Returns the open
//! stream with the judgement that let it through; a refusal or a dial error is the client's
//! reply. Policy is the judge's; this file only asks it in order and dials.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::config::{Config, Upstream};
use crate::error::{ErrorKind, ProxyError};
use crate::log::{AccessRecord, Stage};
use crate::policy::{Facts, HelloFact, Judgement, NeedsDst, Policy, RequestFact};
use crate::request::{Request, Via};
use crate::target::Host;
use crate::{chain, dial};

/// A request connected to its destination.
pub struct Routed {
    /// The connection to the destination, or to the upstream proxy that reached it.
    pub stream: TcpStream,
    /// How the target (and its address) was judged.
    pub judgement: Judgement,
    /// The destination address the judgement used: the one ward dialled, or, through an
    /// upstream proxy, the one ward resolved for the decision only (when a rule needed it). The
    /// later judging of the SNI matches rules' `dst` against it.
    pub dst: Option<IpAddr>,
    /// Bytes the destination sent before being asked (only through an upstream proxy).
    pub early: Bytes,
}

/// The facts a request gives the judge before anything else is known.
pub fn facts(req: &Request) -> Facts<'_> {
    Facts {
        host: Some(&req.target.host),
        port: req.target.port,
        client: req.client.ip(),
        user: req.user.as_deref(),
        dst: None,
        sni: None,
        // Only a tunnel can still show a ClientHello.
        hello: match req.via {
            Via::HttpForward => HelloFact::Absent,
            _ => HelloFact::Pending,
        },
        request: match &req.http {
            Some(line) => RequestFact::Seen {
                method: &line.method,
                path: &line.path,
            },
            None => RequestFact::Pending,
        },
    }
}

/// Judges, resolves and connects `req`, noting the judgement, the dialled address and the
/// upstream taken in `rec`.
pub async fn route(
    req: &Request,
    cfg: &Config,
    rec: &mut AccessRecord,
) -> Result<Routed, ProxyError> {
    if req.target.host == cfg.setup_host {
        // The onboarding page is ward itself, over plain HTTP: a tunnel to it could only fail
        // later with a DNS error, or, inspected, with the very certificate error it is for.
        let name = &cfg.setup_host;
        return Err(ProxyError::local(
            ErrorKind::PolicyDenied,
            format!("{name} is ward's own setup page, never tunnelled: open http://{name}/"),
        ));
    }
    let policy = &cfg.policy;
    let facts = facts(req);
    rec.stage = Stage::Policy;
    let early = policy.judge_target(&facts);
    if let Ok(judgement) = &early {
        admit(policy, judgement, &facts, rec)?;
    }
    rec.stage = Stage::Dial;
    // Decided before DNS and sent to an upstream by name: the upstream resolves, ward need not.
    if let (Ok(judgement), Host::Name(_)) = (&early, &req.target.host) {
        let chain = cfg.upstreams.chain(policy, &judgement.decision);
        if !chain.is_empty() {
            return through(&chain, req, *judgement, None, cfg, rec).await;
        }
    }
    let needs = early.err();
    let looked_up = Instant::now();
    let addrs = resolve_for_decision(req, cfg, needs).await?;
    if matches!(req.target.host, Host::Name(_)) {
        rec.setup.dns_us = Some(micros(looked_up.elapsed()));
    }
    let judged: Vec<(IpAddr, Judgement)> = addrs
        .iter()
        .map(|&ip| (ip, policy.judge_address(&facts, ip)))
        .collect();
    let refused = judged.iter().find(|(_, j)| j.refusal.is_some()).copied();
    let permitted: Vec<(IpAddr, Judgement)> = judged
        .into_iter()
        .filter(|(_, j)| j.refusal.is_none())
        .collect();
    let chain = match (permitted.first(), refused) {
        (Some((_, first)), _) => cfg.upstreams.chain(policy, &first.decision),
        (None, Some((ip, judgement))) => return Err(refusal(policy, &judgement, &facts, ip, rec)),
        (None, None) => return Err(ProxyError::upstream(ErrorKind::DnsError, "no addresses")),
    };
    if chain.is_empty() {
        return direct(req, &permitted, cfg, rec).await;
    }
    // The upstream chooses among the addresses: the first refusal stands for all of them.
    if let Some((ip, judgement)) = refused {
        return Err(refusal(policy, &judgement, &facts, ip, rec));
    }
    let (ip, judgement) = permitted[0];
    rec.note_judgement(policy, &judgement);
    through(&chain, req, judgement, Some(ip), cfg, rec).await
}

/// Notes the judgement in the record; a refusal becomes the error the client is answered with.
fn admit(
    policy: &Policy,
    judgement: &Judgement,
    facts: &Facts,
    rec: &mut AccessRecord,
) -> Result<(), ProxyError> {
    rec.note_judgement(policy, judgement);
    match policy.refusal_error(judgement, facts) {
        Some(err) => Err(err),
        None => Ok(()),
    }
}

/// The error for a refused address, noted in the record.
fn refusal(
    policy: &Policy,
    judgement: &Judgement,
    facts: &Facts,
    ip: IpAddr,
    rec: &mut AccessRecord,
) -> ProxyError {
    let facts = Facts {
        dst: Some(ip),
        ..*facts
    };
    match admit(policy, judgement, &facts, rec) {
        Err(err) => err,
        Ok(()) => ProxyError::local(ErrorKind::Internal, "a refusal without a reason"),
    }
}

/// Through the first upstream proxy of `chain` that ward can reach, asked for the target by
/// name. An unreachable proxy (refused, timed out) passes the turn to the next, logged; an
/// answer from a reached proxy, refusal included, is final.
async fn through(
    chain: &[(&str, &Upstream)],
    req: &Request,
    judgement: Judgement,
    dst: Option<IpAddr>,
    cfg: &Config,
    rec: &mut AccessRecord,
) -> Result<Routed, ProxyError> {
    let mut last = None;
    for (i, (name, up)) in chain.iter().enumerate() {
        let started = Instant::now();
        let stream = match chain::reach(up, cfg).await {
            Ok(stream) => {
                rec.metrics().connect_upstream.0.observe(started.elapsed());
                stream
            }
            Err(err) => {
                rec.metrics().record_upstream_error(name);
                if let Some((next, _)) = chain.get(i + 1) {
                    tracing::warn!(
                        upstream = name,
                        next = next,
                        target = %req.target,
                        error = %err.detail,
                        "upstream proxy unreachable: trying the next"
                    );
                }
                last = Some(err);
                continue;
            }
        };
        rec.upstream = stream.peer_addr().ok();
        rec.upstream_name = Some((*name).to_owned());
        let (stream, early) = chain::open(stream, up, &req.target, cfg)
            .await
            .inspect_err(|_| rec.metrics().record_upstream_error(name))?;
        rec.setup.connect_us = Some(micros(started.elapsed()));
        return Ok(Routed {
            stream,
            judgement,
            dst,
            early,
        });
    }
    Err(last.unwrap_or_else(|| ProxyError::local(ErrorKind::Internal, "no upstream to try")))
}

/// Connects to the first of the permitted addresses that answers.
async fn direct(
    req: &Request,
    permitted: &[(IpAddr, Judgement)],
    cfg: &Config,
    rec: &mut AccessRecord,
) -> Result<Routed, ProxyError> {
    let port = req.target.port;
    let addrs: Vec<SocketAddr> = permitted
        .iter()
        .map(|(ip, _)| SocketAddr::new(*ip, port))
        .collect();
    let started = Instant::now();
    let (stream, addr) = dial::connect(&addrs, cfg.timeouts.connect).await?;
    rec.metrics().connect_origin.0.observe(started.elapsed());
    rec.setup.connect_us = Some(micros(started.elapsed()));
    rec.upstream = Some(addr);
    let judgement = permitted
        .iter()
        .find_map(|(ip, j)| (*ip == addr.ip()).then_some(*j))
        .ok_or_else(|| ProxyError::local(ErrorKind::Internal, "dialled an unjudged address"))?;
    rec.note_judgement(&cfg.policy, &judgement);
    Ok(Routed {
        stream,
        judgement,
        dst: Some(addr.ip()),
        early: Bytes::new(),
    })
}

/// The target's addresses, looked up by ward for a decision only (hosts overrides first, then
/// DNS): through an upstream proxy the dial itself goes by name. A failed lookup names the rule
/// that needed it, so the admin sees why ward resolved at all.
pub async fn resolve_for_decision(
    req: &Request,
    cfg: &Config,
    needs: Option<NeedsDst>,
) -> Result<Vec<IpAddr>, ProxyError> {
    let override_ip = req.target.host.name().and_then(|n| cfg.hosts.lookup(n));
    match dial::resolve(&req.target, override_ip, cfg.timeouts.dns).await {
        Ok(addrs) => Ok(addrs.into_iter().map(|a| a.ip()).collect()),
        Err(mut err) => {
            // Worth saying only where the dial itself goes by name, through an upstream.
            if let Some(needs) = needs.filter(|_| !cfg.upstreams.named.is_empty()) {
                let rule = &cfg.policy.rule(needs.rule).name;
                err.detail = format!(
                    "{} (resolved for the decision only: rule \"{rule}\" matches on dst)",
                    err.detail
                );
            }
            Err(err)
        }
    }
}

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Judges the target with each address it may reach. The upstream chooses among them, so the
/// first refusal stands for all; otherwise the first address's judgement does.
pub fn judge_each(
    addrs: &[IpAddr],
    judge: impl Fn(IpAddr) -> Result<Judgement, NeedsDst>,
    policy: &Policy,
    facts: &Facts,
) -> Result<(Judgement, IpAddr), ProxyError> {
    let what = facts.host.map_or_else(String::new, Host::to_string);
    let mut first = None;
    for &ip in addrs {
        let judgement = judge(ip).map_err(|needs| policy.needs_dst_error(needs, &what))?;
        if judgement.refusal.is_some() {
            return Ok((judgement, ip));
        }
        first.get_or_insert((judgement, ip));
    }
    first.ok_or_else(|| ProxyError::upstream(ErrorKind::DnsError, format!("{what}: no addresses")))
}
