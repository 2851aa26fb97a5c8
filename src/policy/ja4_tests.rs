//! `ja4` rules: parsed from policy.yaml (a malformed fingerprint is an error at its line),
//! judged only once the ClientHello is seen, never decided on a fingerprint not yet known.

use super::tests::{config, facts, host};
use super::*;
use crate::tls::Ja4;

const CURL: &str = "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6";
const CHROMIUM: &str = "t13d1517h2_8daaf6152771_cb7bf5808d99";

fn ja4(s: &str) -> Ja4 {
    Ja4::parse(s).unwrap()
}

/// The action a whole tunnel gets: the target before the hello, then the hello with `seen`.
fn tunnel(policy: &Policy, seen: HelloFact) -> (Action, Action) {
    let h = host("origin.test");
    let f = facts(&h);
    let target = policy.judge_target(&f).unwrap();
    let hello = policy.judge_hello(&Facts { hello: seen, ..f }).unwrap();
    (target.action(), hello.action())
}

#[test]
fn a_ja4_rule_is_parsed_and_a_malformed_one_is_an_error_at_its_line() {
    let c = config(&format!(
        "rules:\n  - name: no-curl\n    action: deny\n    ja4: [\"{CURL}\", {CHROMIUM}]\n"
    ));
    // Sorted when compiled (Chromium's sorts first), for bisection.
    assert_eq!(c.policy.rule(0).ja4, vec![ja4(CHROMIUM), ja4(CURL)]);
    let text = "rules:\n  - name: bad\n    action: deny\n    ja4: [t13d1516h2_8daaf6152771]\n";
    let err = crate::config::parse(text, std::path::Path::new("policy.yaml")).unwrap_err();
    let issue = &err.errors[0];
    assert_eq!((issue.line, issue.key.as_str()), (4, "rules[0].ja4"));
    assert!(issue.message.contains("not a JA4 fingerprint"), "{err}");
    assert!(err.to_string().contains("policy.yaml:4"), "{err}");
}

#[test]
fn deny_one_fingerprint_let_the_rest_through() {
    let c = config(&format!(
        "rules:\n  - {{ name: no-curl, action: deny, ja4: [\"{CURL}\"] }}\n"
    ));
    let p = &c.policy;
    // Before the hello the deny rule cannot refuse; at the hello it refuses curl only.
    let (curl, chromium) = (ja4(CURL), ja4(CHROMIUM));
    for (seen, at_hello) in [
        (HelloFact::with_ja4(&curl), Action::Deny),
        (HelloFact::with_ja4(&chromium), Action::Allow),
        (HelloFact::Absent, Action::Allow),
    ] {
        assert_eq!(tunnel(p, seen), (Action::Allow, at_hello), "{seen:?}");
    }
}

#[test]
fn allow_one_fingerprint_deny_the_rest() {
    let c = config(&format!(
        "rules:\n  - {{ name: chromium, action: allow, ja4: [\"{CHROMIUM}\"] }}\n  \
         - {{ name: rest, action: deny }}\n"
    ));
    let p = &c.policy;
    let (curl, chromium) = (ja4(CURL), ja4(CHROMIUM));
    // Before the hello the allow rule lets the tunnel open, provisionally.
    let h = host("origin.test");
    let early = p.judge_target(&facts(&h)).unwrap();
    assert_eq!(early.decision.rule, Some(0));
    assert!(p.provisional(&early));
    // No ClientHello (not TLS, plain HTTP): the fingerprint rule never matches.
    let want = [(chromium, Action::Allow), (curl, Action::Deny)];
    for (fp, at_hello) in &want {
        assert_eq!(
            tunnel(p, HelloFact::with_ja4(fp)),
            (Action::Allow, *at_hello),
            "{fp}"
        );
    }
    assert_eq!(tunnel(p, HelloFact::Absent).1, Action::Deny);
    let absent = Facts {
        hello: HelloFact::Absent,
        ..facts(&h)
    };
    assert_eq!(p.judge_target(&absent).unwrap().action(), Action::Deny);
}

#[test]
fn a_ja4_rule_without_sni_still_applies() {
    let c = config(&format!(
        "rules:\n  - {{ name: no-curl, action: deny, hosts: [127.0.0.1], ja4: [\"{CURL}\"] }}\n"
    ));
    let ip = host("127.0.0.1");
    let curl = ja4(CURL);
    let f = Facts {
        hello: HelloFact::with_ja4(&curl),
        ..facts(&ip)
    };
    let j = c.policy.judge_hello(&f).unwrap();
    assert_eq!(j.refusal, Some(Refusal::Rule));
    assert!(!j.sni_mismatch);
}
