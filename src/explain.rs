//! `ward explain`: what the running proxy would do with a set of facts, as text. It walks the
//! same judge in the same order as a connection does (target, address, SNI), so the two cannot
//! disagree; it only formats. Never resolves names: the address is given with `--dst`.

use std::fmt::Write as _;
use std::net::IpAddr;

use crate::config::{Config, Toggle};
use crate::mitm::pinning::Pinned;
use crate::policy::{
    Action, Facts, HelloFact, Judgement, NeedsDst, Refusal, RequestFact, is_forbidden_dst,
};
use crate::target::Host;

/// Where the judging stopped.
enum Reached {
    /// The target (and its address) decided, and nothing after it was asked.
    Target(Judgement),
    /// The target passed; the ClientHello (SNI, JA4) decided.
    Hello(Judgement),
    /// The connection is inspected; the request inside (method, path) decided.
    Request(Judgement),
    /// A rule needs the address and none was given.
    Undecided(NeedsDst),
}

/// First line `ACTION rule "NAME" (FILE:LINE)` or `ACTION default` (or which rule needs a
/// `--dst`), then one fact per line, then what refuses or permits the connection after its rule.
pub fn explain(config: &Config, f: &Facts) -> String {
    explain_with_pinning(config, f, None)
}

/// [`explain`], knowing that the host is in pinning passthrough (from the state file beside
/// the CA): an `inspect` then reads `tunnel (pinning passthrough until T, after N clients)`.
pub fn explain_with_pinning(config: &Config, f: &Facts, pinned: Option<Pinned>) -> String {
    let policy = &config.policy;
    let file = config.source.display();
    // A plain-HTTP request (no ClientHello to come) is judged whole at the target; a tunnel's
    // fingerprint and requests are not known before the ClientHello and interception.
    let plain = f.hello == HelloFact::Absent;
    let before_hello = match plain {
        true => *f,
        false => Facts {
            hello: HelloFact::Pending,
            request: RequestFact::Pending,
            ..*f
        },
    };
    let (target, dst) = judge_target(config, &before_hello);
    let f = &Facts { dst, ..*f };
    let has_hello = !plain && (f.sni.is_some() || matches!(f.hello, HelloFact::Seen { .. }));
    let in_tunnel = Facts {
        request: RequestFact::Pending,
        ..*f
    };
    let reached = match target {
        Err(needs) => Reached::Undecided(needs),
        Ok(j) if has_hello && j.refusal.is_none() => match policy.judge_hello(&in_tunnel) {
            Ok(j) => Reached::Hello(j),
            Err(needs) => Reached::Undecided(needs),
        },
        Ok(j) => Reached::Target(j),
    };
    // Inside interception each request is judged again, with its method and path.
    let inspected =
        matches!(&reached, Reached::Target(j) | Reached::Hello(j) if j.action() == Action::Inspect);
    let reached = match reached {
        _ if !inspected || plain || !matches!(f.request, RequestFact::Seen { .. }) => reached,
        _ => match policy.judge_hello(f) {
            Ok(j) => Reached::Request(j),
            Err(needs) => Reached::Undecided(needs),
        },
    };
    let mut out = String::new();
    let judgement = match &reached {
        Reached::Undecided(needs) => {
            let rule = policy.rule(needs.rule);
            let _ = writeln!(
                out,
                "undecided: rule {:?} ({file}:{}) matches on the resolved address; \
                 give it with --dst IP",
                rule.name, rule.line
            );
            None
        }
        Reached::Target(j) | Reached::Hello(j) | Reached::Request(j) => {
            let _ = writeln!(out, "{}", headline(config, j, f, dst, &reached, pinned));
            Some(j)
        }
    };
    write_facts(&mut out, f, matches!(reached, Reached::Hello(_)));
    if let Some(j) = judgement {
        write_upstream(&mut out, config, j);
        write_notes(&mut out, config, j, dst, &reached, f);
    }
    out.truncate(out.trim_end().len());
    out
}

/// The target stage as the proxy walks it, and the address it judged (if any). An IP literal
/// is its own address. A name decided before DNS and sent to an upstream proxy is judged
/// without one (the upstream resolves it); otherwise a name in `hosts` is judged with its
/// override, as the proxy dials it. Other names are never resolved here: `--dst` gives one.
fn judge_target(config: &Config, f: &Facts) -> (Result<Judgement, NeedsDst>, Option<IpAddr>) {
    let policy = &config.policy;
    let given = f.dst.or(match f.host {
        Some(Host::Ip(ip)) => Some(*ip),
        _ => None,
    });
    if let Some(ip) = given {
        return (Ok(policy.judge_address(f, ip)), Some(ip));
    }
    let early = policy.judge_target(f);
    if let Ok(j) = &early
        && !config.upstreams.chain(policy, &j.decision).is_empty()
    {
        return (early, None);
    }
    match f
        .host
        .and_then(Host::name)
        .and_then(|n| config.hosts.lookup(n))
    {
        Some(ip) => (Ok(policy.judge_address(f, ip)), Some(ip)),
        None => (early, None),
    }
}

/// `ACTION rule "NAME" (FILE:LINE)` or `ACTION default`, as the access record's `action` and
/// `rule` say; a connection refused after its rule allowed it (an internal address, an SNI
/// that names another site) reads `deny REASON: DETAILS (rule "NAME" (FILE:LINE) says ACTION)`
/// with REASON the record's `error`.
fn headline(
    config: &Config,
    j: &Judgement,
    f: &Facts,
    dst: Option<IpAddr>,
    reached: &Reached,
    pinned: Option<Pinned>,
) -> String {
    let policy = &config.policy;
    let file = config.source.display();
    let (by, says) = match j.decision.rule.map(|i| policy.rule(i)) {
        Some(rule) => {
            let by = format!("rule {:?} ({file}:{})", rule.name, rule.line);
            (by.clone(), by)
        }
        None => ("default".to_owned(), "the default".to_owned()),
    };
    let action = j.decision.action;
    if j.refusal.is_none()
        && action == Action::Inspect
        && let Some(p) = pinned.filter(|_| config.pinning_passthrough.is_some())
    {
        let until = humantime::format_rfc3339_seconds(p.until);
        let clients = p.clients;
        return format!("tunnel (pinning passthrough until {until}, after {clients} clients) {by}");
    }
    if matches!(j.refusal, None | Some(Refusal::Rule)) {
        return format!("{action} {by}");
    }
    // Judged as the proxy judges: the target with its address, the hello with the SNI.
    let unread = match f.hello {
        HelloFact::Absent => f.request,
        _ => RequestFact::Pending,
    };
    let facts = match reached {
        Reached::Target(_) => Facts {
            sni: None,
            dst,
            request: unread,
            ..*f
        },
        Reached::Hello(_) => Facts {
            dst,
            request: unread,
            ..*f
        },
        _ => Facts { dst, ..*f },
    };
    match policy.refusal_error(j, &facts) {
        Some(err) => format!(
            "deny {}: {} ({says} says {action})",
            err.kind.log_name(),
            err.detail
        ),
        None => format!("{action} {by}"),
    }
}

/// Where a connection that is let through is dialled: the upstream proxies in the order they
/// are tried (by name and address, never their credentials), or direct.
fn write_upstream(out: &mut String, config: &Config, j: &Judgement) {
    if j.action() == Action::Deny {
        return;
    }
    let chain = config.upstreams.chain(&config.policy, &j.decision);
    if chain.is_empty() {
        let _ = writeln!(out, "upstream: direct");
        return;
    }
    let names: Vec<String> = chain
        .iter()
        .map(|(name, up)| format!("{name} ({})", up.target))
        .collect();
    let _ = writeln!(out, "upstream: {}", names.join(", then "));
}

fn write_facts(out: &mut String, f: &Facts, by_sni: bool) {
    let show = |h: Option<&Host>| h.map_or("-".to_owned(), Host::to_string);
    let _ = writeln!(out, "host: {}", show(f.host));
    let _ = writeln!(out, "sni: {}", show(f.sni));
    let _ = writeln!(out, "port: {}", f.port);
    let _ = writeln!(out, "client: {}", f.client);
    let _ = writeln!(out, "user: {}", f.user.unwrap_or("-"));
    let _ = writeln!(
        out,
        "dst: {}",
        f.dst.map_or("-".to_owned(), |ip| ip.to_string())
    );
    if let HelloFact::Seen { ja4, ech } = f.hello {
        if let Some(ja4) = ja4 {
            let _ = writeln!(out, "ja4: {ja4}");
        }
        let _ = writeln!(out, "ech: {}", if ech { "offered" } else { "none" });
    }
    if let RequestFact::Seen { method, path } = f.request {
        let how = match f.hello {
            HelloFact::Absent => "plain HTTP",
            _ => "inside interception",
        };
        let _ = writeln!(out, "request: {method} {path} ({how})");
    }
    if by_sni && f.hello_sni().is_some() {
        let _ = writeln!(out, "rules matched hosts against the sni");
    } else if by_sni && f.sni.is_some() {
        let _ = writeln!(
            out,
            "the sni is ECH's public name: rules matched hosts against the requested host"
        );
    }
}

/// What the judge did after the rule: the internal-address check at the target, the
/// `sni_mismatch` check at the SNI, and an SNI never reached.
fn write_notes(
    out: &mut String,
    config: &Config,
    j: &Judgement,
    dst: Option<IpAddr>,
    reached: &Reached,
    f: &Facts,
) {
    if let (Reached::Target(_), Some(ip)) = (reached, dst)
        && is_forbidden_dst(ip)
        && j.refusal != Some(Refusal::Rule)
    {
        if j.refusal.is_none() {
            let _ = writeln!(out, "dst {ip} is internal, permitted by the rule's dst");
        } else {
            let _ = writeln!(
                out,
                "dst {ip} is internal: refused (destination_ip_prohibited) unless an allow or \
                 inspect rule's dst names it"
            );
        }
    }
    if j.sni_mismatch {
        let verdict = match config.policy.checks().sni_mismatch {
            Toggle::Allow => "allowed (sni_mismatch: allow)",
            Toggle::Deny => "refused (sni_mismatch: deny)",
        };
        let _ = writeln!(out, "sni differs from the requested host: {verdict}");
    }
    let seen = matches!(f.hello, HelloFact::Seen { .. });
    let unjudged = match (f.sni.is_some(), seen) {
        (true, true) => Some("sni and hello are"),
        (true, false) => Some("sni is"),
        (false, true) => Some("hello is"),
        (false, false) => None,
    };
    if let (Reached::Target(_), Some(what), Some(_)) = (reached, unjudged, j.refusal) {
        let _ = writeln!(
            out,
            "refused before the ClientHello is read: the {what} never judged"
        );
    }
    let tunnelled = matches!(reached, Reached::Target(_) | Reached::Hello(_));
    if tunnelled && f.hello != HelloFact::Absent && matches!(f.request, RequestFact::Seen { .. }) {
        let _ = writeln!(
            out,
            "the request is never read: only plain HTTP (--http) and inspected requests are"
        );
    }
    let rule = j.decision.rule.map(|i| config.policy.rule(i));
    if matches!(reached, Reached::Target(_)) && rule.is_some_and(|r| !r.ja4.is_empty()) {
        let _ = writeln!(
            out,
            "the rule names JA4 fingerprints: the ClientHello is judged again (give it with --ja4)"
        );
    }
    if matches!(reached, Reached::Target(_)) && rule.is_some_and(|r| r.ech.is_some()) {
        let _ = writeln!(
            out,
            "the rule names ech: the ClientHello is judged again (give --sni, and --ech if it offers ECH)"
        );
    }
    if !matches!(reached, Reached::Request(_)) && rule.is_some_and(|r| r.names_requests()) {
        let _ = writeln!(
            out,
            "the rule names methods or paths: each request inside interception is judged again \
             (give --method and --path)"
        );
    }
}

#[cfg(test)]
mod tests;
