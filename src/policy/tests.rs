use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use std::net::IpAddr;

use super::*;
use crate::config::{self, Config};
use crate::target::Host;

pub(crate) fn host(s: &str) -> Host {
    Host::parse(s).unwrap()
}

pub(crate) fn facts(h: &Host) -> Facts<'_> {
    Facts {
        host: Some(h),
        port: 443,
        client: "127.0.0.1".parse().unwrap(),
        user: None,
        dst: None,
        sni: None,
        hello: HelloFact::Pending,
        request: RequestFact::Pending,
    }
}

pub(crate) fn config(text: &str) -> Config {
    config::parse(text, Path::new("policy.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

fn decided(v: Verdict) -> Decision {
    match v {
        Verdict::Decided(d) => d,
        Verdict::NeedsDst => panic!("needs dst"),
    }
}

/// The rule name that decides, or "default".
fn who(c: &Config, f: &Facts) -> String {
    decided(c.policy.decide(f))
        .rule
        .map_or("default".into(), |i| c.policy.rule(i).name.clone())
}

#[test]
fn names_are_normalised_on_both_sides() {
    let c = config("rules: [{ name: evil, action: deny, hosts: [EVIL.Test.] }]\n");
    for name in ["evil.test", "evil.test.", "EVIL.test", "Evil.Test."] {
        let h = host(name);
        assert_eq!(who(&c, &facts(&h)), "evil", "{name}");
    }
    let h = host("bücher.example");
    let c = config("rules: [{ name: idn, action: deny, hosts: [XN--BCHER-KVA.example] }]\n");
    assert_eq!(who(&c, &facts(&h)), "idn");
    assert_eq!(who(&c, &facts(&host("notevil.test"))), "default");
}

#[test]
fn star_dot_and_leading_dot_differ() {
    let c = config(
        "rules:\n  - { name: star, action: deny, hosts: [\"*.x.test\"] }\n  \
         - { name: dot, action: inspect, hosts: [.y.test] }\n  \
         - { name: bare, action: deny, hosts: [z.test] }\n",
    );
    let cases = [
        ("x.test", "default"),
        ("a.x.test", "star"),
        ("a.b.c.x.test", "star"),
        ("ax.test", "default"),
        ("y.test", "dot"),
        ("a.y.test", "dot"),
        ("a.b.y.test", "dot"),
        ("xy.test", "default"),
        ("z.test", "bare"),
        ("a.z.test", "default"),
    ];
    for (name, want) in cases {
        assert_eq!(who(&c, &facts(&host(name))), want, "{name}");
    }
}

#[test]
fn ip_patterns_match_ip_targets() {
    let c =
        config("rules: [{ name: ip, action: deny, hosts: [\"10.1.2.3\", \"[2001:db8::1]\"] }]\n");
    assert_eq!(who(&c, &facts(&host("10.1.2.3"))), "ip");
    assert_eq!(who(&c, &facts(&host("[2001:db8::1]"))), "ip");
    assert_eq!(
        who(&c, &facts(&Host::Ip("::ffff:10.1.2.3".parse().unwrap()))),
        "ip"
    );
    assert_eq!(who(&c, &facts(&host("10.1.2.4"))), "default");
}

#[test]
fn first_match_wins_and_every_field_must_match() {
    let c = config(
        "users: [{ name: alice, password: a }, { name: bob, password: b }]\nrules:\n  \
         - { name: alice-lab, action: inspect, hosts: [.lab.test], users: [alice], ports: [443, \"8000-8999\"] }\n  \
         - { name: office, action: allow, hosts: [.lab.test], clients: [\"10.0.0.0/8\"] }\n  \
         - { name: lab, action: deny, hosts: [.lab.test] }\n  \
         - { name: catch-all, action: allow }\n",
    );
    let h = host("api.lab.test");
    let mut f = facts(&h);
    assert_eq!(who(&c, &f), "lab");
    f.user = Some("alice");
    assert_eq!(who(&c, &f), "alice-lab");
    f.port = 8500;
    assert_eq!(who(&c, &f), "alice-lab");
    f.port = 9000;
    assert_eq!(who(&c, &f), "lab");
    f.user = Some("bob");
    f.client = "10.9.9.9".parse().unwrap();
    assert_eq!(who(&c, &f), "office");
    f.client = "::ffff:10.9.9.9".parse().unwrap();
    assert_eq!(who(&c, &f), "office");
    let other = host("example.com");
    assert_eq!(who(&c, &facts(&other)), "catch-all");
    assert_eq!(
        decided(c.policy.decide(&facts(&other))).action,
        Action::Allow
    );
}

#[test]
fn sni_replaces_the_requested_host_once_known() {
    let c = config("rules: [{ name: evil, action: deny, hosts: [evil.test] }]\n");
    let (evil, fine) = (host("evil.test"), host("fine.test"));
    let mut f = facts(&fine);
    f.sni = Some(&evil);
    assert_eq!(who(&c, &f), "evil");
    let mut f = facts(&evil);
    f.sni = Some(&fine);
    assert_eq!(who(&c, &f), "default");
}

#[test]
fn dst_rules_wait_for_the_address() {
    let c = config(
        "rules:\n  - { name: early, action: deny, hosts: [early.test] }\n  \
         - { name: lan, action: allow, dst: [\"192.168.0.0/16\"] }\n  \
         - { name: late, action: deny, hosts: [late.test] }\n",
    );
    // A deny that needs no dst acts before resolution.
    assert_eq!(who(&c, &facts(&host("early.test"))), "early");
    let h = host("late.test");
    let mut f = facts(&h);
    assert_eq!(c.policy.decide(&f), Verdict::NeedsDst);
    assert_eq!(c.policy.rule_needing_dst(&f), Some(1));
    f.dst = Some("192.168.1.10".parse().unwrap());
    assert_eq!(who(&c, &f), "lan");
    f.dst = Some("203.0.113.9".parse().unwrap());
    assert_eq!(who(&c, &f), "late");
}

#[test]
fn permits_dst_needs_an_allowing_rule_naming_the_address() {
    let c = config(
        "rules:\n  - { name: lan, action: allow, hosts: [nas.test], dst: [\"192.168.0.0/16\"] }\n  \
         - { name: block, action: deny, hosts: [bad.test], dst: [\"10.0.0.0/8\"] }\n  \
         - { name: any, action: inspect, hosts: [all.test] }\n",
    );
    let lan: IpAddr = "192.168.1.2".parse().unwrap();
    let ten: IpAddr = "10.0.0.1".parse().unwrap();
    let d = |name: &str, dst: IpAddr| {
        let h = host(name);
        let mut f = facts(&h);
        f.dst = Some(dst);
        decided(c.policy.decide(&f))
    };
    assert!(c.policy.permits_dst(&d("nas.test", lan), lan));
    assert!(
        c.policy
            .permits_dst(&d("nas.test", lan), "::ffff:192.168.1.2".parse().unwrap())
    );
    assert!(!c.policy.permits_dst(&d("nas.test", lan), ten));
    assert!(!c.policy.permits_dst(&d("bad.test", ten), ten));
    assert!(!c.policy.permits_dst(&d("all.test", ten), ten));
    assert!(!c.policy.permits_dst(&d("other.test", ten), ten));
}

#[test]
fn patterns_and_ports_parse() {
    assert!(HostPattern::parse("*").is_err());
    assert!(HostPattern::parse("*.").is_err());
    assert!(HostPattern::parse("**.x").is_err());
    assert!(HostPattern::parse("a.*.x").is_err());
    assert!(HostPattern::parse("10.0.0.0/8").is_err());
    assert!(HostPattern::parse("a..b").is_err());
    assert_eq!(
        HostPattern::parse(".X.Test.").unwrap(),
        HostPattern::Domain("x.test".into())
    );
    assert_eq!(
        PortRange::parse("8000-8999").unwrap(),
        PortRange { lo: 8000, hi: 8999 }
    );
    for bad in ["0", "65536", "-1", "1-", "-", "9-1", "+80", "a", ""] {
        assert!(PortRange::parse(bad).is_err(), "{bad}");
    }
}

// ---- the index against a linear scan ----

const LABELS: [&str; 6] = ["a", "b", "evil", "lab", "test", "x"];
/// Facts also use a label no rule mentions, so that some fall through to the default.
const FACT_LABELS: [&str; 7] = ["a", "b", "evil", "lab", "test", "x", "other"];
const NETS: [&str; 4] = [
    "10.0.0.0/8",
    "127.0.0.0/8",
    "192.168.1.0/24",
    "2001:db8::/32",
];
const IPS: [&str; 6] = [
    "10.1.2.3",
    "127.0.0.1",
    "192.168.1.7",
    "2001:db8::5",
    "8.8.8.8",
    "::1",
];
const USERS: [&str; 3] = ["alice", "bob", "carol"];
const BIG: usize = 100_000;

fn random_name(rng: &mut StdRng) -> String {
    let depth = rng.random_range(1..=4);
    let labels: Vec<&str> = (0..depth)
        .map(|_| LABELS[rng.random_range(0..LABELS.len())])
        .collect();
    labels.join(".")
}

fn random_rule(rng: &mut StdRng, i: usize) -> RuleInfo {
    let action = [Action::Allow, Action::Deny, Action::Inspect][rng.random_range(0..3)];
    let mut r = RuleInfo::new(format!("r{i}"), action);
    let pick =
        |rng: &mut StdRng, items: &[&str]| items[rng.random_range(0..items.len())].to_owned();
    if rng.random_bool(0.01) {
        // Rules without hosts are candidates for every host: keep them narrow.
        r.users.push("carol".into());
        r.ports.push(PortRange { lo: 8000, hi: 8999 });
        return r;
    }
    for _ in 0..rng.random_range(1..=3) {
        let p = match rng.random_range(0..8) {
            0 => format!("*.{}", random_name(rng)),
            1 => format!(".{}", random_name(rng)),
            2 => pick(rng, &IPS),
            _ => random_name(rng),
        };
        r.hosts.push(HostPattern::parse(&p).unwrap());
    }
    if rng.random_bool(0.02) {
        // Some names come from a list file instead: the index must treat them alike.
        let mut list = lists::NameList::default();
        for _ in 0..rng.random_range(0..=3) {
            let name = random_name(rng);
            let p = match rng.random_range(0..3) {
                0 => HostPattern::Subdomains(name),
                1 => HostPattern::Domain(name),
                _ => HostPattern::Exact(name),
            };
            list.push(&p);
        }
        r.host_lists.push(std::sync::Arc::new(list));
    }
    if rng.random_bool(0.5) {
        let lo = [80, 443, 8000][rng.random_range(0..3)];
        r.ports.push(PortRange {
            lo,
            hi: lo + rng.random_range(0..1000),
        });
    }
    if rng.random_bool(0.3) {
        r.clients.push(pick(rng, &NETS).parse().unwrap());
    }
    if rng.random_bool(0.3) {
        r.users.push(pick(rng, &USERS));
    }
    if rng.random_bool(0.05) {
        r.dst.push(pick(rng, &NETS).parse().unwrap());
    }
    r
}

fn big_policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let mut rng = StdRng::seed_from_u64(7);
        let rules = (0..BIG).map(|i| random_rule(&mut rng, i)).collect();
        Policy::new(rules, Action::Allow)
    })
}

fn linear_decide(p: &Policy, f: &Facts) -> Verdict {
    for (i, rule) in p.rules().iter().enumerate() {
        match rule.check(f) {
            RuleMatch::No => {}
            RuleMatch::Yes => {
                return Verdict::Decided(Decision {
                    action: rule.action,
                    rule: Some(i),
                });
            }
            RuleMatch::NeedsDst => return Verdict::NeedsDst,
        }
    }
    Verdict::Decided(Decision {
        action: p.default_action(),
        rule: None,
    })
}

fn host_strategy() -> impl Strategy<Value = Option<Host>> {
    let name = prop::collection::vec(prop::sample::select(FACT_LABELS.to_vec()), 1..=5)
        .prop_map(|labels| Host::parse(&labels.join(".")).unwrap());
    let ip = prop::sample::select(IPS.to_vec()).prop_map(|s| Host::Ip(s.parse().unwrap()));
    prop_oneof![6 => name.prop_map(Some), 2 => ip.prop_map(Some), 1 => Just(None)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn indexed_decide_equals_linear_scan_over_100k_rules(
        requested in host_strategy(),
        sni in host_strategy(),
        use_sni in any::<bool>(),
        port in prop_oneof![Just(443u16), Just(80), Just(8500), any::<u16>()],
        client in prop::sample::select(IPS.to_vec()),
        user in prop::option::of(prop::sample::select(USERS.to_vec())),
        dst in prop::option::of(prop::sample::select(IPS.to_vec())),
    ) {
        let policy = big_policy();
        let f = Facts {
            host: requested.as_ref(),
            port,
            client: client.parse().unwrap(),
            user,
            dst: dst.map(|d| d.parse().unwrap()),
            sni: sni.as_ref().filter(|_| use_sni),
            hello: HelloFact::Pending,
            request: RequestFact::Pending,
        };
        prop_assert_eq!(policy.decide(&f), linear_decide(policy, &f));
    }
}

#[test]
fn big_policy_exercises_every_outcome() {
    // The equivalence test means little if random facts always fall through to the default.
    let policy = big_policy();
    let mut rng = StdRng::seed_from_u64(3);
    let (mut by_rule, mut by_default, mut needs_dst) = (0, 0, 0);
    for _ in 0..500 {
        let name = match rng.random_bool(0.5) {
            true => random_name(&mut rng),
            false => format!("{}.other", random_name(&mut rng)),
        };
        let h = Host::parse(&name).unwrap();
        let mut f = facts(&h);
        f.user = Some(USERS[rng.random_range(0..USERS.len())]);
        match policy.decide(&f) {
            Verdict::Decided(Decision { rule: Some(_), .. }) => by_rule += 1,
            Verdict::Decided(Decision { rule: None, .. }) => by_default += 1,
            Verdict::NeedsDst => needs_dst += 1,
        }
    }
    assert!(
        by_rule > 50 && by_default > 0 && needs_dst > 0,
        "{by_rule} {by_default} {needs_dst}"
    );
}

#[test]
fn a_deep_name_hitting_more_lists_than_fit_inline() {
    // Nine suffix rules on one name: the candidate merge spills past its inline lists.
    let labels = ["a", "b", "c", "d", "e", "f", "g", "h", "test"];
    let mut text = String::from("rules:\n");
    for i in 0..labels.len() {
        let suffix = labels[i..].join(".");
        text.push_str(&format!(
            "  - {{ name: r{i}, action: deny, hosts: [\".{suffix}\"], ports: [{}] }}\n",
            1000 + i
        ));
    }
    let c = config(&text);
    let h = host(&labels.join("."));
    for i in 0..labels.len() {
        let mut f = facts(&h);
        f.port = u16::try_from(1000 + i).unwrap();
        assert_eq!(who(&c, &f), format!("r{i}"));
        assert_eq!(c.policy.decide(&f), linear_decide(&c.policy, &f));
    }
}

/// The address stage let 10.0.0.5 through by `inner`'s dst; an SNI that picks a rule without
/// that dst must not carry the connection to the internal address on its own say-so.
#[test]
fn a_hello_picking_another_rule_is_held_to_the_prohibited_ranges() {
    use crate::error::ErrorKind;
    let c = config(
        "rules:\n\
         \x20 - { name: by-sni, action: allow, hosts: [\"public.test\"] }\n\
         \x20 - { name: inner, action: allow, dst: [\"10.0.0.0/8\"] }\n",
    );
    let asked = host("intranet.test");
    let sni = host("public.test");
    let ip = "10.0.0.5".parse().unwrap();
    let at_address = c.policy.judge_address(&facts(&asked), ip);
    assert_eq!(
        (at_address.refusal, at_address.decision.rule),
        (None, Some(1))
    );
    let f = Facts {
        dst: Some(ip),
        sni: Some(&sni),
        hello: HelloFact::Absent,
        request: RequestFact::Pending,
        ..facts(&asked)
    };
    let j = c.policy.judge_hello(&f).unwrap();
    assert_eq!(j.decision.rule, Some(0));
    assert_eq!(j.refusal, Some(Refusal::ProhibitedDst(ip)));
    let err = c.policy.refusal_error(&j, &f).expect("refused");
    assert_eq!(err.kind, ErrorKind::DestinationProhibited);
}
