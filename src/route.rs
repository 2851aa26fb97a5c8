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
    }
}

/// Judges, resolves and connects `req`, noting the judgement and the dialled address in `rec`.
pub async fn route(
    req: &Request,
    cfg: &Config,
    rec: &mut AccessRecord,
) -> Result<Routed, ProxyError> {
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

/// The upstream proxy resolves the name and is handed the name. When a rule needs the address
/// (or the target is an IP literal), ward resolves it too, for the decision only, and judges
/// it as a direct dial would be judged: the prohibited ranges included.
async fn through_upstream(
    up: &Upstream,
    req: &Request,
    early: Result<Judgement, NeedsDst>,
    cfg: &Config,
    rec: &mut AccessRecord,
) -> Result<Routed, ProxyError> {
    let policy = &cfg.policy;
    let facts = facts(req);
    let (judgement, dst) = match (early, &req.target.host) {
        (Ok(judgement), Host::Name(_)) => (judgement, None),
        (early, _) => {
            let needs = early.err();
            let addrs = resolve_for_decision(req, cfg, needs).await?;
            let (judgement, ip) = judge_each(
                &addrs,
                |ip| Ok(policy.judge_address(&facts, ip)),
                policy,
                &facts,
            )?;
            let facts = Facts {
                dst: Some(ip),
                ..facts
            };
            admit(policy, &judgement, &facts, rec)?;
            (judgement, Some(ip))
        }
    };
    let (stream, early) = chain::connect(up, &req.target, cfg).await?;
    rec.upstream = stream.peer_addr().ok();
    Ok(Routed {
        stream,
        judgement,
        dst,
        early,
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
            if let Some(needs) = needs {
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
