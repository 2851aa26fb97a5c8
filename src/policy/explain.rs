//! `ward explain`: the decision for a set of facts, and the facts it used, as text.
//! Pure: formats what `decide` says; never resolves names.

use std::fmt::Write as _;

use super::{Action, Decision, Facts, Verdict, is_forbidden_dst};
use crate::config::{Config, Toggle};
use crate::target::Host;

/// First line `ACTION rule "NAME" (FILE:LINE)` or `ACTION default` (or which rule needs a
/// `--dst`), then one fact per line.
pub fn explain(config: &Config, f: &Facts) -> String {
    let policy = &config.policy;
    let file = config.source.display();
    let mut out = String::new();
    let decision = match policy.decide(f) {
        Verdict::Decided(d) => {
            match d.rule.map(|i| policy.rule(i)) {
                Some(rule) => {
                    let _ = writeln!(
                        out,
                        "{} rule {:?} ({file}:{})",
                        d.action, rule.name, rule.line
                    );
                }
                None => {
                    let _ = writeln!(out, "{} default", d.action);
                }
            }
            Some(d)
        }
        Verdict::NeedsDst => {
            let rule = policy.rule_needing_dst(f).map(|i| policy.rule(i));
            let (name, line) = rule.map_or(("?", 0), |r| (r.name.as_str(), r.line));
            let _ = writeln!(
                out,
                "undecided: rule {name:?} ({file}:{line}) matches on the resolved address; \
                 give it with --dst IP"
            );
            None
        }
    };
    write_facts(&mut out, f);
    if let Some(d) = decision {
        write_dst_note(&mut out, config, &d, f);
    }
    write_mismatch_note(&mut out, config, f);
    out.truncate(out.trim_end().len());
    out
}

fn write_facts(out: &mut String, f: &Facts) {
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
    if f.sni.is_some() {
        let _ = writeln!(out, "rules matched hosts against the sni");
    }
}

/// The internal-address refusal applies after the decision; say so when it would.
fn write_dst_note(out: &mut String, config: &Config, d: &Decision, f: &Facts) {
    let Some(ip) = f.dst.filter(|ip| is_forbidden_dst(*ip)) else {
        return;
    };
    if d.action == Action::Deny {
        return;
    }
    if config.policy.permits_dst(d, ip) {
        let _ = writeln!(out, "dst {ip} is internal, permitted by the rule's dst");
    } else {
        let _ = writeln!(
            out,
            "dst {ip} is internal: refused (destination_ip_prohibited) unless an allow or \
             inspect rule's dst names it"
        );
    }
}

fn write_mismatch_note(out: &mut String, config: &Config, f: &Facts) {
    let (Some(Host::Name(host)), Some(Host::Name(sni))) = (f.host, f.sni) else {
        return;
    };
    if host != sni {
        let verdict = match config.sni_mismatch {
            Toggle::Allow => "allowed (sni_mismatch: allow)",
            Toggle::Deny => "refused (sni_mismatch: deny)",
        };
        let _ = writeln!(out, "sni differs from the requested host: {verdict}");
    }
}
