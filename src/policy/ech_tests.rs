//! `ech` rules and ECH-aware judging: under ECH the cleartext SNI is a public name, never the
//! destination, so the host asked for decides and no mismatch is seen; asked by address, only
//! the address is known, and an `ech: true` rule can refuse exactly that.

use super::tests::{config, facts, host};
use super::*;
use crate::target::Host;

/// A ClientHello with this SNI, offering ECH or not (no fingerprint known).
fn hello<'a>(f: Facts<'a>, sni: &'a Host, ech: bool) -> Facts<'a> {
    Facts {
        sni: Some(sni),
        hello: HelloFact::Seen { ja4: None, ech },
        ..f
    }
}

#[test]
fn an_ech_rule_is_parsed_and_anything_but_a_bool_is_an_error_at_its_line() {
    let c = config(
        "rules:\n  - { name: e, action: deny, ech: true }\n  - { name: n, action: allow, ech: false }\n",
    );
    assert_eq!(
        (c.policy.rule(0).ech, c.policy.rule(1).ech),
        (Some(true), Some(false))
    );
    let err = crate::config::parse(
        "rules:\n  - name: bad\n    action: deny\n    ech: yes\n",
        std::path::Path::new("policy.yaml"),
    )
    .unwrap_err();
    let issue = &err.errors[0];
    assert_eq!(
        (issue.line, issue.key.as_str()),
        (4, "rules[0].ech"),
        "{err}"
    );
    assert!(issue.message.contains("expected true or false"), "{err}");
}

#[test]
fn under_ech_the_asked_name_decides_and_the_public_name_is_no_mismatch() {
    let c = config(
        "sni_mismatch: deny\nrules:\n  - { name: no-front, action: deny, hosts: [public.test] }\n",
    );
    let p = &c.policy;
    let (asked, public) = (host("origin.test"), host("public.test"));
    let j = p.judge_hello(&hello(facts(&asked), &public, true)).unwrap();
    assert_eq!(
        (j.action(), j.refusal, j.sni_mismatch),
        (Action::Allow, None, false)
    );
    // The same names without ECH: the SNI decides (denied) and mismatches.
    let f = hello(facts(&asked), &public, false);
    let j = p.judge_hello(&f).unwrap();
    assert_eq!((j.refusal, j.sni_mismatch), (Some(Refusal::Rule), true));
    let err = p.refusal_error(&j, &f).unwrap();
    assert_eq!(err.kind, crate::error::ErrorKind::SniDenied);
    // And a deny rule for the asked name still refuses under ECH, named as a policy denial.
    let c = config("rules:\n  - { name: no-origin, action: deny, hosts: [origin.test] }\n");
    let f = hello(facts(&asked), &public, true);
    let j = c.policy.judge_hello(&f).unwrap();
    assert_eq!(j.refusal, Some(Refusal::Rule));
    let err = c.policy.refusal_error(&j, &f).unwrap();
    assert!(
        err.detail
            .contains("origin.test:443 denied by rule \"no-origin\""),
        "{}",
        err.detail
    );
}

#[test]
fn ech_to_an_address_meets_no_hosts_rule_and_an_ech_rule_refuses_it() {
    let c = config(
        "default: allow\nrules:\n  - { name: web, action: allow, hosts: [.lab.test] }\n  \
         - { name: no-blind-ech, action: deny, ech: true }\n",
    );
    let p = &c.policy;
    let (ip, name, public) = (
        host("127.0.0.1"),
        host("site.lab.test"),
        host("public.lab.test"),
    );
    let rule = |f: &Facts| {
        let j = p.judge_hello(f).unwrap();
        (j.action(), p.rule_name(&j.decision).map(str::to_owned))
    };
    let deny = (Action::Deny, Some("no-blind-ech".to_owned()));
    let web = (Action::Allow, Some("web".to_owned()));
    assert_eq!(rule(&hello(facts(&ip), &public, true)), deny);
    assert_eq!(rule(&hello(facts(&name), &public, true)), web);
    assert_eq!(rule(&hello(facts(&ip), &name, false)), web);
    // Before the hello the deny rule cannot refuse yet; with no hello it never matches.
    let early = p.judge_target(&facts(&ip)).unwrap();
    assert_eq!(early.action(), Action::Allow);
    let absent = Facts {
        hello: HelloFact::Absent,
        ..facts(&ip)
    };
    assert_eq!(p.judge_hello(&absent).unwrap().action(), Action::Allow);
}

#[test]
fn an_allow_rule_on_ech_opens_the_tunnel_provisionally() {
    let c = config(
        "rules:\n  - { name: plain-only, action: allow, ech: false }\n  - { name: rest, action: deny }\n",
    );
    let p = &c.policy;
    let (asked, sni) = (host("origin.test"), host("origin.test"));
    let early = p.judge_target(&facts(&asked)).unwrap();
    assert_eq!(early.decision.rule, Some(0));
    assert!(p.provisional(&early));
    assert_eq!(
        p.judge_hello(&hello(facts(&asked), &sni, false))
            .unwrap()
            .action(),
        Action::Allow
    );
    assert_eq!(
        p.judge_hello(&hello(facts(&asked), &sni, true))
            .unwrap()
            .action(),
        Action::Deny
    );
}
