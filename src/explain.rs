//! `ward explain`: what the running proxy would do with a set of facts, as text. It walks the
//! same judge in the same order as a connection does (target, address, SNI), so the two cannot
//! disagree; it only formats. Never resolves names: the address is given with `--dst`.

use std::fmt::Write as _;

use crate::config::{Config, Toggle};
use crate::mitm::pinning::Pinned;
use crate::policy::{Action, Facts, HelloJa4, Judgement, NeedsDst, Refusal, is_forbidden_dst};
use crate::target::Host;

/// Where the judging stopped.
enum Reached {
    /// The target (and its address) decided, and nothing after it was asked.
    Target(Judgement),
    /// The target passed; the ClientHello (SNI, JA4) decided.
    Hello(Judgement),
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
    // A target given as an IP literal is its own address, as when the proxy dials it.
    let dst = f.dst.or(match f.host {
        Some(Host::Ip(ip)) => Some(*ip),
        _ => None,
    });
    // As in the proxy, the fingerprint is not known before the ClientHello.
    let before_hello = Facts {
        ja4: HelloJa4::Pending,
        ..*f
    };
    let target = match dst {
        Some(ip) => Ok(policy.judge_address(&before_hello, ip)),
        None => policy.judge_target(&before_hello),
    };
    let has_hello = f.sni.is_some() || matches!(f.ja4, HelloJa4::Seen(_));
    let reached = match target {
        Err(needs) => Reached::Undecided(needs),
        Ok(j) if has_hello && j.refusal.is_none() => match policy.judge_hello(f) {
            Ok(j) => Reached::Hello(j),
            Err(needs) => Reached::Undecided(needs),
        },
        Ok(j) => Reached::Target(j),
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
        Reached::Target(j) | Reached::Hello(j) => {
            let action = match pinned.filter(|_| config.pinning_passthrough.is_some()) {
                Some(p) if j.decision.action == Action::Inspect && j.refusal.is_none() => format!(
                    "tunnel (pinning passthrough until {}, after {} clients)",
                    humantime::format_rfc3339_seconds(p.until),
                    p.clients
                ),
                _ => j.decision.action.to_string(),
            };
            match j.decision.rule.map(|i| policy.rule(i)) {
                Some(rule) => {
                    let _ = writeln!(out, "{action} rule {:?} ({file}:{})", rule.name, rule.line);
                }
                None => {
                    let _ = writeln!(out, "{action} default");
                }
            }
            Some(j)
        }
    };
    write_facts(&mut out, f, matches!(reached, Reached::Hello(_)));
    if let Some(j) = judgement {
        write_notes(&mut out, config, j, dst, &reached, f);
    }
    out.truncate(out.trim_end().len());
    out
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
    if let HelloJa4::Seen(ja4) = f.ja4 {
        let _ = writeln!(out, "ja4: {ja4}");
    }
    if by_sni && f.sni.is_some() {
        let _ = writeln!(out, "rules matched hosts against the sni");
    }
}

/// What the judge did after the rule: the internal-address check at the target, the
/// `sni_mismatch` check at the SNI, and an SNI never reached.
fn write_notes(
    out: &mut String,
    config: &Config,
    j: &Judgement,
    dst: Option<std::net::IpAddr>,
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
    let unjudged = match (f.sni.is_some(), matches!(f.ja4, HelloJa4::Seen(_))) {
        (true, true) => Some("sni and ja4 are"),
        (true, false) => Some("sni is"),
        (false, true) => Some("ja4 is"),
        (false, false) => None,
    };
    if let (Reached::Target(_), Some(what), Some(_)) = (reached, unjudged, j.refusal) {
        let _ = writeln!(
            out,
            "refused before the ClientHello is read: the {what} never judged"
        );
    }
    if matches!(reached, Reached::Target(_)) && config.policy.provisional(j) {
        let _ = writeln!(
            out,
            "the rule names JA4 fingerprints: the ClientHello is judged again (give it with --ja4)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::tests::{config, facts, host};

    #[test]
    fn explain_names_the_rule_and_the_facts() {
        let text = "sni_mismatch: deny\nrules:\n  - name: block-ads\n    action: deny\n    \
                    hosts: [\"*.ads.test\"]\n  - { name: lan, action: allow, dst: [\"10.0.0.0/8\"] }\n";
        let c = config(text);
        let (ad, other) = (host("x.ads.test"), host("other.test"));
        let out = explain(&c, &facts(&ad));
        assert_eq!(
            out,
            "deny rule \"block-ads\" (policy.yaml:3)\nhost: x.ads.test\nsni: -\nport: 443\n\
             client: 127.0.0.1\nuser: -\ndst: -"
        );
        let out = explain(&c, &facts(&other));
        assert!(
            out.starts_with("undecided: rule \"lan\" (policy.yaml:6)"),
            "{out}"
        );
        assert!(out.contains("--dst"), "{out}");
        let mut f = facts(&other);
        f.dst = Some("10.1.1.1".parse().unwrap());
        f.sni = Some(&ad);
        let out = explain(&c, &f);
        assert!(out.starts_with("deny rule \"block-ads\""), "{out}");
        assert!(
            out.contains("sni differs from the requested host: refused"),
            "{out}"
        );
        f.sni = None;
        f.dst = Some("127.0.0.1".parse().unwrap());
        let out = explain(&c, &f);
        assert!(out.starts_with("allow default\n"), "{out}");
        assert!(
            out.contains("dst 127.0.0.1 is internal: refused (destination_ip_prohibited)"),
            "{out}"
        );
        f.dst = Some("10.1.1.1".parse().unwrap());
        let out = explain(&c, &f);
        assert!(
            out.starts_with("allow rule \"lan\" (policy.yaml:6)"),
            "{out}"
        );
        assert!(out.contains("permitted by the rule's dst"), "{out}");
    }

    /// The running proxy refuses an internal address before it reads the ClientHello;
    /// `explain --sni` used to judge the SNI alone and print `allow`.
    #[test]
    fn explain_with_sni_stops_where_the_proxy_refuses_the_address() {
        let c = config("rules:\n  - { name: lan, action: allow, dst: [\"10.0.0.0/8\"] }\n");
        let (asked, named) = (host("origin.test"), host("other.test"));
        let mut f = facts(&asked);
        f.sni = Some(&named);
        f.dst = Some("127.0.0.1".parse().unwrap());
        let out = explain(&c, &f);
        assert!(out.contains("refused (destination_ip_prohibited)"), "{out}");
        assert!(out.contains("the sni is never judged"), "{out}");
    }

    #[test]
    fn explain_shows_a_pinning_passthrough_instead_of_inspect() {
        let c = config(
            "pinning_passthrough: {}\nrules:\n  - { name: look, action: inspect, hosts: [\"*.test\"] }\n",
        );
        let h = host("app.test");
        let until = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_796_000_000);
        let p = Pinned { until, clients: 3 };
        let out = explain_with_pinning(&c, &facts(&h), Some(p));
        assert!(
            out.starts_with(
                "tunnel (pinning passthrough until 2026-11-30T00:53:20Z, after 3 clients) rule \"look\""
            ),
            "{out}"
        );
        assert!(explain(&c, &facts(&h)).starts_with("inspect rule \"look\""));
    }

    #[test]
    fn explain_with_ja4_judges_the_hello_and_without_it_says_it_would() {
        let fp = "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6";
        let c = config(&format!(
            "rules:\n  - {{ name: only-this, action: allow, ja4: [\"{fp}\"] }}\n  \
             - {{ name: rest, action: deny }}\n"
        ));
        let h = host("origin.test");
        let out = explain(&c, &facts(&h));
        assert!(out.starts_with("allow rule \"only-this\""), "{out}");
        assert!(out.contains("judged again (give it with --ja4)"), "{out}");
        let (seen, other) = (
            crate::tls::Ja4::parse(fp).unwrap(),
            crate::tls::Ja4::parse("t13d1517h2_8daaf6152771_cb7bf5808d99").unwrap(),
        );
        let mut f = facts(&h);
        f.ja4 = HelloJa4::Seen(&seen);
        let out = explain(&c, &f);
        assert!(out.starts_with("allow rule \"only-this\""), "{out}");
        assert!(out.contains(&format!("\nja4: {fp}")), "{out}");
        assert!(!out.contains("judged again"), "{out}");
        f.ja4 = HelloJa4::Seen(&other);
        let out = explain(&c, &f);
        assert!(
            out.starts_with("deny rule \"rest\" (policy.yaml:3)"),
            "{out}"
        );
    }
}
