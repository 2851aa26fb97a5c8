use std::path::Path;
use std::time::Duration;

use super::*;
use crate::policy::{Action, Decision, HostPattern, PortRange};
use crate::users::Secret;

fn ok(text: &str) -> Config {
    parse(text, Path::new("/etc/ward/policy.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> Vec<ConfigIssue> {
    match parse(text, Path::new("policy.yaml")) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.errors,
    }
}

/// The one issue for `text`, as (line, column, key).
fn one(text: &str) -> (u32, u32, String, String) {
    let errors = err(text);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = &errors[0];
    (e.line, e.column, e.key.clone(), e.message.clone())
}

#[test]
fn empty_file_takes_every_default() {
    let c = ok("");
    assert_eq!(addrs(&c), vec!["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(c.admin, None);
    assert_eq!(c.ca_dir, Path::new("/etc/ward/certs"));
    assert_eq!(c.upstream_ca, None);
    assert!(c.users.is_empty());
    assert_eq!(c.upstreams, Upstreams::default());
    assert!(c.hosts.is_empty());
    assert_eq!(c.timeouts, Timeouts::default());
    assert_eq!(c.timeouts.connect, Duration::from_secs(10));
    assert_eq!(c.timeouts.client_hello, Duration::from_secs(10));
    assert_eq!(c.timeouts.idle, Duration::from_secs(300));
    assert_eq!(c.timeouts.handshake, Duration::from_secs(10));
    assert_eq!(c.timeouts.dns, Duration::from_secs(5));
    assert_eq!(c.shutdown_grace, Duration::from_secs(30));
    assert_eq!(c.max_connections, 10_000);
    assert_eq!(c.policy.checks().non_tls, Toggle::Allow);
    assert_eq!(c.policy.checks().sni_mismatch, Toggle::Allow);
    assert!(!c.open_proxy);
    assert_eq!(c.flows, crate::config::Flows::default());
    assert_eq!(c.pinning_passthrough, None);
    assert_eq!(c.policy.default_action(), Action::Allow);
    assert_eq!(c.policy.rules_len(), 0);
    assert_eq!(ok("# only a comment\n").policy.rules_len(), 0);
}

#[test]
fn every_key_is_read() {
    let c = ok(r#"
listen: ["127.0.0.1:0", "[::1]:8081"]
admin: 127.0.0.1:9090
ca_dir: ca
upstream_ca: /etc/ssl/extra.pem
users: [{ name: alice, password: "s3:cret" }]
upstream: socks5h://u:p%40ss@127.0.0.1:1080
hosts: { "Origin.Test.": 127.0.0.1, "*.lab.test": "::1", ".corp.test": 10.1.1.1 }
dns: { servers: [] }
timeouts: { connect: 500ms, client_hello: 2s, idle: 5m, handshake: 3s, dns: 1s }
shutdown_grace: 5s
max_connections: 12
non_tls: deny
sni_mismatch: deny
open_proxy: true
flows: logs/flows.jsonl
pinning_passthrough: { failures: 5, window: 1m }
default: inspect
rules:
  - { name: r, action: deny, hosts: [a.test], ports: [443, "8000-8999"], clients: ["10.0.0.0/8"], users: [alice], dst: ["192.168.0.0/16"] }
"#);
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.listen[1].addr, "[::1]:8081".parse().unwrap());
    assert_eq!(c.admin, Some("127.0.0.1:9090".parse().unwrap()));
    assert_eq!(c.ca_dir, Path::new("/etc/ward/ca"));
    assert_eq!(
        c.upstream_ca.as_deref(),
        Some(Path::new("/etc/ssl/extra.pem"))
    );
    let alice = c.users.get("alice").unwrap();
    assert_eq!(alice.secret, Secret::Plain("s3:cret".into()));
    assert_eq!(c.users.len(), 1);
    assert_eq!(c.upstreams.default, [DEFAULT_UPSTREAM]);
    let up = &c.upstreams.named[DEFAULT_UPSTREAM];
    assert_eq!(up.scheme, UpstreamScheme::Socks5);
    assert_eq!(up.credentials.as_ref().unwrap().password, "p@ss");
    assert_eq!(
        c.hosts.lookup("origin.test"),
        Some("127.0.0.1".parse().unwrap())
    );
    assert_eq!(
        c.hosts.lookup("ORIGIN.test."),
        Some("127.0.0.1".parse().unwrap())
    );
    assert_eq!(c.hosts.lookup("a.b.lab.test"), Some("::1".parse().unwrap()));
    assert_eq!(c.hosts.lookup("lab.test"), None);
    assert_eq!(
        c.hosts.lookup("corp.test"),
        Some("10.1.1.1".parse().unwrap())
    );
    assert_eq!(
        c.hosts.lookup("x.corp.test"),
        Some("10.1.1.1".parse().unwrap())
    );
    assert_eq!(c.hosts.lookup("127.0.0.1"), None);
    assert_eq!(c.timeouts.connect, Duration::from_millis(500));
    assert_eq!(c.timeouts.client_hello, Duration::from_secs(2));
    assert_eq!(c.timeouts.idle, Duration::from_secs(300));
    assert_eq!(c.timeouts.handshake, Duration::from_secs(3));
    assert_eq!(c.timeouts.dns, Duration::from_secs(1));
    assert_eq!(c.shutdown_grace, Duration::from_secs(5));
    assert_eq!(c.max_connections, 12);
    let checks = c.policy.checks();
    assert_eq!(
        (checks.non_tls, checks.sni_mismatch),
        (Toggle::Deny, Toggle::Deny)
    );
    assert!(c.open_proxy);
    assert_eq!(
        c.flows.file.as_deref(),
        Some(Path::new("/etc/ward/logs/flows.jsonl"))
    );
    let pin = c.pinning_passthrough.unwrap();
    assert_eq!(
        (pin.failures, pin.window, pin.ttl),
        (5, Duration::from_secs(60), Duration::from_secs(3600))
    );
    assert_eq!(c.policy.default_action(), Action::Inspect);
    let r = c.policy.rule(0);
    assert_eq!((r.name.as_str(), r.action, r.line), ("r", Action::Deny, 20));
    assert_eq!(r.hosts, vec![HostPattern::Exact("a.test".into())]);
    assert_eq!(
        r.ports,
        vec![
            PortRange { lo: 443, hi: 443 },
            PortRange { lo: 8000, hi: 8999 }
        ]
    );
    assert_eq!(r.clients, vec!["10.0.0.0/8".parse().unwrap()]);
    assert_eq!(r.users, vec!["alice".to_owned()]);
    assert_eq!(r.dst, vec!["192.168.0.0/16".parse().unwrap()]);
}

#[test]
fn design_example_parses() {
    let c = ok(r#"
listen: ["127.0.0.1:8080"]   # each port serves HTTP proxy and SOCKS5
admin: 127.0.0.1:9090        # optional
ca_dir: certs                # the interception CA: ca.pem + ca.key (0600)
upstream_ca: null            # optional PEM bundle: extra roots trusted for upstream servers
users:                       # optional; if present every client must authenticate
  - { name: alice, password: "s3cret" }
upstream: null               # or http://u:p@host:port, socks5h://u:p@host:port
hosts: { "origin.test": 127.0.0.1, "*.lab.test": 127.0.0.1 }   # DNS overrides
dns: { servers: [] }         # empty: the system resolver; else these resolvers (ip:port)
timeouts: { connect: 10s, client_hello: 10s, idle: 300s }
shutdown_grace: 30s
max_connections: 10000
non_tls: allow               # CONNECT tunnels whose client bytes are not TLS: allow | deny
sni_mismatch: allow          # CONNECT host and SNI name different sites: allow | deny
default: allow               # allow | deny | inspect, when no rule matches
rules:                       # first match wins; every listed field must match
  - name: block-ads
    action: deny
    hosts: ["ads.example", "*.doubleclick.net"]   # exact, "*.x" subdomains, ".x" x and subdomains
  - name: inspect-lab
    action: inspect
    hosts: [".lab.test"]
    ports: [443, "8000-8999"]
  - name: no-internal
    action: deny
    dst: ["10.0.0.0/8", "169.254.0.0/16"]          # resolved destination address
  - { name: staff-only, action: allow, clients: ["127.0.0.0/8"], users: [alice] }
"#);
    assert_eq!(c.policy.rules_len(), 4);
    let lines: Vec<u32> = c.policy.rules().iter().map(|r| r.line).collect();
    assert_eq!(lines, vec![18, 21, 25, 28]);
    assert_eq!(c.users.len(), 1);
    assert_eq!(c.upstreams, Upstreams::default());
    assert_eq!(c.upstream_ca, None);
    assert_eq!(
        c.summary(),
        "/etc/ward/policy.yaml: ok, 4 rules, default allow, listen 127.0.0.1:8080, 1 user"
    );
}

#[test]
fn repo_policy_is_valid() {
    let c = Config::embedded().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(addrs(&c), vec!["127.0.0.1:8080".parse().unwrap()]);
    assert_eq!(c.policy.default_action(), Action::Allow);
    assert_eq!(c.ca_dir, Path::new("certs"));
    assert_eq!(
        c.summary(),
        "<embedded>: ok, 0 rules, default allow, listen 127.0.0.1:8080, 0 users"
    );
    // The commented examples must stay valid when a user uncomments them.
    let (head, examples) = EMBEDDED_POLICY.split_once("# rules:\n").unwrap();
    let examples: String = examples
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
        .collect();
    let uncommented = format!("{head}rules:\n{examples}");
    let text = format!("{uncommented}users: [{{ name: alice, password: pw }}]\n");
    let c = ok(&text);
    assert_eq!(c.policy.rules_len(), 4, "{text}");
}

#[test]
fn unknown_top_level_key_is_placed() {
    let (line, col, key, msg) = one("listen: [\"127.0.0.1:8080\"]\ndefualt: deny\n");
    assert_eq!((line, col, key.as_str()), (2, 1, "defualt"));
    assert!(msg.contains("unknown key"), "{msg}");
}

#[test]
fn unknown_rule_key_is_placed() {
    let text =
        "rules:\n  - name: a\n    action: deny\n  - name: b\n    action: deny\n    prots: [443]\n";
    let (line, col, key, _) = one(text);
    assert_eq!((line, col, key.as_str()), (6, 5, "rules[1].prots"));
    let (line, col, key, _) = one("timeouts: { conect: 1s }\n");
    assert_eq!((line, col, key.as_str()), (1, 13, "timeouts.conect"));
}

#[test]
fn bad_values_are_placed() {
    let (line, col, key, msg) = one("timeouts:\n  idle: 5 minutes please\n");
    assert_eq!((line, col, key.as_str()), (2, 9, "timeouts.idle"));
    assert!(msg.contains("duration"), "{msg}");
    let (line, col, key, _) = one("shutdown_grace: 10x\n");
    assert_eq!((line, col, key.as_str()), (1, 17, "shutdown_grace"));
    let text =
        "rules:\n  - name: a\n    action: deny\n    dst: [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n";
    let (line, col, key, msg) = one(text);
    assert_eq!((line, col, key.as_str()), (4, 25, "rules[0].dst"));
    assert!(msg.contains("CIDR"), "{msg}");
    let text = "rules:\n  - name: a\n    action: deny\n    ports: [443, \"9000-8000\"]\n";
    let (line, col, key, _) = one(text);
    assert_eq!((line, col, key.as_str()), (4, 18, "rules[0].ports"));
    let (_, _, key, _) = one("rules: [{ name: a, action: deny, ports: [0] }]\n");
    assert_eq!(key, "rules[0].ports");
    let (_, _, key, _) = one("rules: [{ name: a, action: deny, ports: [\"80-\"] }]\n");
    assert_eq!(key, "rules[0].ports");
    let (_, _, key, _) = one("rules: [{ name: a, action: deny, clients: [\"bad\"] }]\n");
    assert_eq!(key, "rules[0].clients");
}

#[test]
fn every_issue_is_collected_in_file_order() {
    let text = "
defualt: deny
timeouts: { idle: never }
rules:
  - { name: a, action: maybe, hosts: [\"*\"] }
  - { name: a, action: deny, hosts: [] }
  - { name: '', action: deny }
  - { action: deny }
  - { name: c, action: allow, users: [bob], hosts: [\"a..b\", \"10.0.0.0/8\", \"x.*.y\"] }
";
    let errors = err(text);
    let got: Vec<(u32, &str)> = errors.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        got,
        vec![
            (2, "defualt"),
            (3, "timeouts.idle"),
            (5, "rules[0].action"),
            (5, "rules[0].hosts"),
            (6, "rules[1].name"),
            (6, "rules[1].hosts"),
            (7, "rules[2].name"),
            (8, "rules[3].name"),
            (9, "rules[4].users"),
            (9, "rules[4].hosts"),
            (9, "rules[4].hosts"),
            (9, "rules[4].hosts"),
        ],
        "{errors:#?}"
    );
    let shown = ConfigError { errors }.to_string();
    assert!(
        shown.starts_with("policy.yaml:2:1: defualt: unknown key"),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 12);
}

#[test]
fn a_rule_with_no_match_field_matches_all() {
    let c = ok("rules: [{ name: all, action: deny }]\n");
    assert!(c.policy.rule(0).hosts.is_empty());
}

#[test]
fn non_loopback_listen_needs_users_or_open_proxy() {
    let (line, col, key, msg) = one("listen: [\"127.0.0.1:8080\", \"0.0.0.0:8080\"]\n");
    assert_eq!((line, col, key.as_str()), (1, 28, "listen"));
    assert!(msg.contains("open_proxy"), "{msg}");
    ok("listen: [\"0.0.0.0:8080\"]\nopen_proxy: true\n");
    ok("listen: [\"[::]:8080\"]\nusers: [{ name: a, password: b }]\n");
    ok("listen: [\"[::1]:0\"]\n");
    one("listen: [\"[::]:8080\"]\n");
}

#[test]
fn named_upstreams_and_rule_ways() {
    let text = "upstreams: { corp: \"http://u:p@10.0.0.1:3128\", tor: \"socks5h://127.0.0.1:9050\" }\n\
                upstream: [corp, tor]\n\
                rules:\n\
                \x20 - { name: a, action: allow, upstream: tor }\n\
                \x20 - { name: b, action: allow, upstream: direct }\n\
                \x20 - { name: c, action: allow, upstream: [tor, corp] }\n\
                \x20 - { name: d, action: allow }\n";
    let c = ok(text);
    assert_eq!(c.upstreams.default, ["corp", "tor"]);
    let names = |i: usize| -> Vec<String> {
        let d = Decision {
            action: Action::Allow,
            rule: Some(i),
        };
        let chain = c.upstreams.chain(&c.policy, &d);
        chain.iter().map(|(n, _)| n.to_string()).collect()
    };
    assert_eq!(names(0), ["tor"]);
    assert!(names(1).is_empty(), "direct");
    assert_eq!(names(2), ["tor", "corp"]);
    assert_eq!(
        names(3),
        ["corp", "tor"],
        "a rule without upstream takes the default"
    );
    assert_eq!(c.upstreams.named["corp"].scheme, UpstreamScheme::Http);

    for (bad, key) in [
        ("upstreams: { corp: \"ftp://x:1\" }\n", "upstreams.corp"),
        ("upstreams: { direct: \"http://x:1\" }\n", "upstreams"),
        ("upstream: corp\n", "upstream"),
        (
            "rules: [{ name: a, action: allow, upstream: corp }]\n",
            "rules[0].upstream",
        ),
        (
            "upstreams: { corp: \"http://x:1\" }\nrules: [{ name: a, action: allow, upstream: [corp, direct] }]\n",
            "rules[0].upstream",
        ),
        (
            "rules: [{ name: a, action: allow, upstream: \"http://x:1\" }]\n",
            "rules[0].upstream",
        ),
        (
            "rules: [{ name: a, action: allow, upstream: [] }]\n",
            "rules[0].upstream",
        ),
    ] {
        let (line, _, k, msg) = one(bad);
        assert_eq!(k, key, "{bad}: {msg}");
        assert!(line > 0, "{bad}: placed");
    }
}

#[test]
fn other_values_are_checked() {
    let cases = [
        ("listen: []\n", "listen"),
        ("listen: [\"localhost:8080\"]\n", "listen"),
        ("admin: 9090\n", "admin"),
        ("ca_dir: ''\n", "ca_dir"),
        ("upstream: ftp://x:1\n", "upstream"),
        ("hosts: { \"a.test\": not-an-ip }\n", "hosts.a.test"),
        ("hosts: { \"10.0.0.1\": 10.0.0.2 }\n", "hosts"),
        ("timeouts: { connect: 0s }\n", "timeouts.connect"),
        ("max_connections: 0\n", "max_connections"),
        ("max_connections: -1\n", "max_connections"),
        (
            "max_connections_per_client: 0\n",
            "max_connections_per_client",
        ),
        (
            "rules: [{ name: m, action: deny, methods: [get] }]\n",
            "rules[0].methods",
        ),
        (
            "rules: [{ name: p, action: deny, paths: [\"api/*\"] }]\n",
            "rules[0].paths",
        ),
        (
            "rules: [{ name: p, action: deny, paths: [\"/a*b\"] }]\n",
            "rules[0].paths",
        ),
        ("non_tls: maybe\n", "non_tls"),
        ("open_proxy: yes\n", "open_proxy"),
        (
            "pinning_passthrough: { failures: 0 }\n",
            "pinning_passthrough.failures",
        ),
        (
            "pinning_passthrough: { ttl: forever }\n",
            "pinning_passthrough.ttl",
        ),
        (
            "upstream_tls: { require_pq: maybe }\n",
            "upstream_tls.require_pq",
        ),
        ("upstream_tls: { pq: true }\n", "upstream_tls.pq"),
        ("default: block\n", "default"),
        ("users: [{ name: 'a:b', password: x }]\n", "users[0].name"),
        ("users: [{ name: a }]\n", "users[0].password"),
        (
            "users: [{ name: a, password: x, role: admin }]\n",
            "users[0].role",
        ),
        (
            "users: [{ name: a, password: x }, { name: a, password: y }]\n",
            "users[1].name",
        ),
    ];
    for (text, want) in cases {
        let (_, _, key, _) = one(text);
        assert_eq!(key, want, "{text}");
    }
    assert!(ok("upstream_tls: { require_pq: true }\n").require_pq);
    assert!(!ok("upstream_tls: {}\n").require_pq);
    assert!(
        ok("pinning_passthrough: {}\n")
            .pinning_passthrough
            .is_some()
    );
}

#[test]
fn yaml_errors_are_placed() {
    let (line, col, key, msg) = one("listen: [\"127.0.0.1:8080\"\nrules: {\n");
    assert!(line >= 1 && col >= 1, "{line}:{col} {msg}");
    assert_eq!(key, "");
    let (line, col, _, msg) = one("default: allow\nrules: { name: a }\n");
    assert_eq!(
        (line, col, msg.as_str()),
        (2, 8, "expected a list, like [a, b]")
    );
    let (_, _, _, msg) = one("default: allow\ndefault: deny\n");
    assert!(msg.contains("duplicate"), "{msg}");
}

#[test]
fn hostile_yaml_is_bounded() {
    let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n\
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n\
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
g: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
    assert!(!err(bomb).is_empty());
    let deep = format!("rules: {}{}\n", "[".repeat(200), "]".repeat(200));
    assert!(!err(&deep).is_empty());
    let huge = " ".repeat(MAX_POLICY_BYTES + 1);
    assert!(parse(&huge, Path::new("p")).is_err());
}

#[test]
fn load_reads_files_and_resolves_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, "ca_dir: my-ca\nrules: [{ name: x, action: deny }]\n").unwrap();
    let c = load(&path).unwrap();
    assert_eq!(c.source, path);
    assert_eq!(c.ca_dir, dir.path().join("my-ca"));
    let missing = load(&dir.path().join("nope.yaml")).unwrap_err();
    assert_eq!(missing.errors.len(), 1);
    assert!(
        missing.to_string().contains("nope.yaml: cannot read"),
        "{missing}"
    );
}

#[test]
fn passwords_stay_out_of_debug() {
    let c = ok(
        "users: [{ name: alice, password: hunter2 }]\nupstream: http://u:swordfish@127.0.0.1:3128\n",
    );
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("swordfish"),
        "{shown}"
    );
}

/// Custom resolvers are not implemented: a configured list must not be silently ignored.
#[test]
fn custom_dns_servers_are_refused_not_ignored() {
    let err = parse(
        "dns: { servers: [\"127.0.0.1:5353\"] }\n",
        Path::new("p.yaml"),
    )
    .unwrap_err();
    assert_eq!(err.errors.len(), 1, "{err}");
    assert_eq!(err.errors[0].key, "dns.servers");
    assert_eq!((err.errors[0].line, err.errors[0].column), (1, 18));
}

/// The listeners' addresses.
fn addrs(c: &Config) -> Vec<SocketAddr> {
    c.listen.iter().map(|l| l.addr).collect()
}

#[test]
fn flows_object_with_bodies_and_keep() {
    let c =
        ok("flows: { file: f.jsonl, keep: 50, bodies: { max: 64KiB, types: [\"image/*\"] } }\n");
    assert_eq!(
        c.flows.file.as_deref(),
        Some(Path::new("/etc/ward/f.jsonl"))
    );
    assert_eq!(c.flows.keep, 50);
    let bodies = c.flows.bodies.expect("bodies");
    assert_eq!(bodies.max, 64 * 1024);
    assert!(bodies.wants(Some(b"image/png")) && !bodies.wants(Some(b"text/plain")));
    let d = ok("flows: { bodies: {} }\n").flows;
    assert_eq!((d.file, d.keep), (None, DEFAULT_KEEP));
    let b = d.bodies.expect("bodies");
    assert_eq!(b.max, 1 << 20);
    assert!(b.wants(Some(b"text/html")) && b.wants(Some(b"application/json")));
    assert_eq!(ok("flows: x.jsonl\n").flows.bodies, None);
}

#[test]
fn flows_bad_values_are_placed() {
    let (line, _, key, msg) = one("listen: [\"127.0.0.1:0\"]\nflows:\n  bodies: { max: 0 }\n");
    assert_eq!((line, key.as_str()), (3, "flows.bodies.max"), "{msg}");
    let (line, _, key, msg) = one("flows:\n  bodies:\n    max: 65MiB\n");
    assert_eq!((line, key.as_str()), (3, "flows.bodies.max"));
    assert!(msg.contains("64 MiB"), "{msg}");
    let (line, _, key, msg) = one("flows:\n  bodies:\n    types: [text/*, json]\n");
    assert_eq!((line, key.as_str()), (3, "flows.bodies.types"));
    assert!(msg.contains("type/subtype"), "{msg}");
    let (line, _, key, _) = one("flows: { keep: 100001 }\n");
    assert_eq!((line, key.as_str()), (1, "flows.keep"));
    let (_, _, key, _) = one("flows: { keep: 0 }\n");
    assert_eq!(key, "flows.keep");
    let (_, _, key, _) = one("flows: { bodys: {} }\n");
    assert_eq!(key, "flows.bodys");
}
