//! Routing, the stage between the front-end handshake and the reply: judge the target, resolve
//! it, judge each address, connect — directly or through the upstream proxy. Returns the open
//! stream with the judgement that let it through; a refusal or a dial error is the client's
//! reply. Policy is the judge's; this file only asks it in order and dials.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::config::{Config, Upstream};
use crate::error::{ErrorKind, ProxyError};
use crate::log::{AccessRecord, Stage};
use crate::policy::{Facts, Judgement, NeedsDst, Policy};
use crate::request::Request;
use crate::target::Host;
use crate::{chain, dial};

/// A request connected to its destination.
pub struct Routed {
    /// The connection to the destination, or to the upstream proxy that reached it.
    pub stream: TcpStream,
    /// How the target (and its address) was judged.
    pub judgement: Judgement,
    /// The address ward dialled, when it dialled the destination itself: the later judging of
    /// the SNI matches rules' `dst` against it. `None` through an upstream proxy.
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
    }
}

/// Judges, resolves and connects `req`, noting the judgement and the dialled address in `rec`.
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
    let facts = facts(req);
    rec.stage = Stage::Policy;
    let early = cfg.policy.judge_target(&facts);
    if let Ok(judgement) = &early {
        admit(&cfg.policy, judgement, &facts, rec)?;
    }
    rec.stage = Stage::Dial;
    match &cfg.upstream {
        Some(up) => through_upstream(up, req, early, cfg, rec).await,
        None => direct(req, &facts, cfg, rec).await,
    }
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

/// The upstream proxy resolves the name: ward never learns the address it reaches, so a rule
/// that needs it cannot be judged.
async fn through_upstream(
    up: &Upstream,
    req: &Request,
    early: Result<Judgement, NeedsDst>,
    cfg: &Config,
    rec: &mut AccessRecord,
) -> Result<Routed, ProxyError> {
    let policy = &cfg.policy;
    let mut judgement =
        early.map_err(|needs| policy.needs_dst_error(needs, &req.target.to_string()))?;
    if let Host::Ip(ip) = req.target.host {
        let facts = facts(req);
        judgement = policy.judge_address(&facts, ip);
        admit(policy, &judgement, &facts, rec)?;
    }
    let (stream, early) = chain::connect(up, &req.target, cfg).await?;
    rec.upstream = stream.peer_addr().ok();
    Ok(Routed {
        stream,
        judgement,
        dst: None,
        early,
    })
}

/// Resolves (hosts overrides first), judges every address, connects to the first permitted.
async fn direct(
    req: &Request,
    facts: &Facts<'_>,
    cfg: &Config,
    rec: &mut AccessRecord,
) -> Result<Routed, ProxyError> {
    let policy = &cfg.policy;
    let override_ip = req.target.host.name().and_then(|n| cfg.hosts.lookup(n));
    let addrs = dial::resolve(&req.target, override_ip, cfg.timeouts.dns).await?;
    let mut permitted: Vec<(SocketAddr, Judgement)> = Vec::with_capacity(addrs.len());
    let mut first_refusal = None;
    for addr in addrs {
        let judgement = policy.judge_address(facts, addr.ip());
        if judgement.refusal.is_none() {
            permitted.push((addr, judgement));
        } else {
            first_refusal.get_or_insert((addr.ip(), judgement));
        }
    }
    if permitted.is_empty() {
        let Some((ip, judgement)) = first_refusal else {
            return Err(ProxyError::upstream(ErrorKind::DnsError, "no addresses"));
        };
        let facts = Facts {
            dst: Some(ip),
            ..*facts
        };
        rec.note_judgement(policy, &judgement);
        let refused = policy.refusal_error(&judgement, &facts);
        return Err(
            refused.unwrap_or_else(|| ProxyError::local(ErrorKind::Internal, "no addresses"))
        );
    }
    let addrs: Vec<SocketAddr> = permitted.iter().map(|(a, _)| *a).collect();
    let (stream, addr) = dial::connect(&addrs, cfg.timeouts.connect).await?;
    rec.upstream = Some(addr);
    let judgement = permitted
        .into_iter()
        .find_map(|(a, j)| (a == addr).then_some(j))
        .ok_or_else(|| ProxyError::local(ErrorKind::Internal, "dialled an unjudged address"))?;
    rec.note_judgement(policy, &judgement);
    Ok(Routed {
        stream,
        judgement,
        dst: Some(addr.ip()),
        early: Bytes::new(),
    })
}
