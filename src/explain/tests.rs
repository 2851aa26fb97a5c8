//! `ward explain` against policies written for each case: the headline, the facts, the notes.

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
    assert!(
        out.starts_with(
            "deny destination_prohibited: other.test:443 resolves to 127.0.0.1, a prohibited \
             address (allow it with a rule's dst) (the default says allow)\n"
        ),
        "{out}"
    );
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
    f.hello = HelloFact::with_ja4(&seen);
    let out = explain(&c, &f);
    assert!(out.starts_with("allow rule \"only-this\""), "{out}");
    assert!(out.contains(&format!("\nja4: {fp}")), "{out}");
    assert!(!out.contains("judged again"), "{out}");
    f.hello = HelloFact::with_ja4(&other);
    let out = explain(&c, &f);
    assert!(
        out.starts_with("deny rule \"rest\" (policy.yaml:3)"),
        "{out}"
    );
}

/// `explain origin.test --sni other.test` used to judge other.test as the host and print
/// `allow` while the proxy refused the connection with `sni_mismatch`.
#[test]
fn explain_keeps_the_host_and_shows_the_mismatch_refusal() {
    let c = config(
        "sni_mismatch: deny\nrules:\n  - { name: lan, action: allow, dst: [\"10.0.0.0/8\"] }\n",
    );
    let (asked, named) = (host("origin.test"), host("other.test"));
    let mut f = facts(&asked);
    f.sni = Some(&named);
    f.dst = Some("10.1.1.1".parse().unwrap());
    let out = explain(&c, &f);
    assert!(
        out.starts_with(
            "deny sni_mismatch: CONNECT origin.test:443 but SNI other.test; sni_mismatch: deny \
             (rule \"lan\" (policy.yaml:3) says allow)\nhost: origin.test\nsni: other.test\n"
        ),
        "{out}"
    );
    assert!(
        !out.contains("upstream:"),
        "a refusal is dialled nowhere: {out}"
    );
}

#[test]
fn explain_with_ech_judges_the_asked_host_and_says_why() {
    let c = config(
        "sni_mismatch: deny\nrules:\n  - { name: no-front, action: deny, hosts: [public.test] }\n  \
         - { name: lan, action: allow, dst: [\"10.0.0.0/8\"] }\n",
    );
    let (asked, public) = (host("origin.test"), host("public.test"));
    let mut f = facts(&asked);
    f.sni = Some(&public);
    f.dst = Some("10.1.1.1".parse().unwrap());
    f.hello = HelloFact::Seen {
        ja4: None,
        ech: true,
    };
    let out = explain(&c, &f);
    assert!(
        out.starts_with("allow rule \"lan\" (policy.yaml:4)"),
        "{out}"
    );
    assert!(out.contains("\nech: offered\n"), "{out}");
    assert!(
        out.contains(
            "the sni is ECH's public name: rules matched hosts against the requested host"
        ),
        "{out}"
    );
    assert!(!out.contains("sni differs"), "{out}");
    // Without ECH the same names are a refused mismatch (and the SNI's deny rule).
    f.hello = HelloFact::Seen {
        ja4: None,
        ech: false,
    };
    let out = explain(&c, &f);
    assert!(out.starts_with("deny rule \"no-front\""), "{out}");
}

#[test]
fn explain_names_the_upstreams_in_order_without_credentials() {
    let c = config(
        "upstreams: { corp: \"http://u:secret@10.0.0.1:3128\", backup: \"socks5h://10.0.0.2:1080\" }\n\
         upstream: backup\n\
         rules:\n  - { name: corp, action: allow, hosts: [\".corp.test\"], upstream: [corp, backup] }\n\
         \x20 - { name: near, action: allow, hosts: [\"near.test\"], upstream: direct }\n",
    );
    let (corp, near, other) = (host("x.corp.test"), host("near.test"), host("other.test"));
    let out = explain(&c, &facts(&corp));
    assert!(
        out.contains("\nupstream: corp (10.0.0.1:3128), then backup (10.0.0.2:1080)"),
        "{out}"
    );
    assert!(!out.contains("secret"), "{out}");
    assert!(explain(&c, &facts(&near)).contains("\nupstream: direct"));
    let out = explain(&c, &facts(&other));
    assert!(out.starts_with("allow default\n"), "{out}");
    assert!(out.contains("\nupstream: backup (10.0.0.2:1080)"), "{out}");
}

/// The proxy dials a name in `hosts` at its override: explain judges that address, unless
/// the name goes to an upstream proxy, which resolves it.
#[test]
fn explain_judges_a_hosts_override_as_the_proxy_dials_it() {
    let rules = "rules:\n  - { name: lan, action: allow, dst: [\"10.0.0.0/8\"] }\n";
    let c = config(&format!("hosts: {{ \"app.test\": 10.1.1.1 }}\n{rules}"));
    let app = host("app.test");
    let out = explain(&c, &facts(&app));
    assert!(out.starts_with("allow rule \"lan\""), "{out}");
    assert!(out.contains("\ndst: 10.1.1.1\n"), "{out}");
    let c = config(
        "hosts: { \"app.test\": 127.0.0.1 }\nupstream: \"http://10.0.0.9:3128\"\n\
         rules:\n  - { name: app, action: allow, hosts: [app.test] }\n",
    );
    let out = explain(&c, &facts(&app));
    assert!(out.starts_with("allow rule \"app\""), "{out}");
    assert!(out.contains("\ndst: -\n"), "the upstream resolves: {out}");
    assert!(out.contains("\nupstream: default (10.0.0.9:3128)"), "{out}");
}
