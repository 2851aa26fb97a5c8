//! Micro-benchmarks of ward's pure hot paths: ClientHello parsing, policy decisions at 10 to
//! 100k rules, leaf forging, policy reload and password checks (cached and not). No sockets: it must not measure I/O (that is
//! `benches/e2e.rs`).
//!
//! `cargo bench --bench micro` (about two minutes on two cores); one group:
//! `cargo bench --bench micro -- policy/decide`.
// These time real processes and real sockets, where tokio's pausable clock has no say.
#![allow(clippy::disallowed_types)]

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, BenchmarkGroup, Criterion, Throughput, measurement::WallTime};
use ward::Parsed;
use ward::config;
use ward::mitm::{Ca, HelloKey, LeafCache, UpstreamConfigs};
use ward::policy::{Action, Facts, HelloFact, Policy, RequestFact, Verdict};
use ward::target::Host;
use ward::tls::{Ja4, MAX_HELLO_RECORDS, Transport, mirror, parse_client_hello};

/// Short runs: the whole suite must stay within a few minutes on a shared 2-core machine.
const WARM_UP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(2);
const SAMPLES: usize = 40;
/// Cold forges are ~1000x slower than everything else; fewer samples keep them short too.
const FORGE_SAMPLES: usize = 30;

/// A captured hello by file stem: `(name, bytes)`.
macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!("../tests/fixtures/", $name, ".bin")),
        )
    };
}
/// Real hellos captured from real clients (see tests/fixtures/README.md).
const FIXTURES: [(&str, &[u8]); 6] = [
    fixture!("curl"),
    fixture!("python"),
    fixture!("python_tls12"),
    fixture!("openssl"),
    fixture!("openssl_ip_sni"),
    fixture!("chromium"),
];
const CHROMIUM: &[u8] = include_bytes!("../tests/fixtures/chromium.bin");
/// RFC 8446 §5.1 record header: type (1), version (2), length (2).
const RECORD_HEADER_LEN: usize = 5;
/// Handshake content type (22) and the TLS 1.0 record version clients put on a first hello.
const RECORD_PREFIX: [u8; 3] = [22, 3, 1];
/// How many records the re-framed Chromium hello is split into.
const REFRAMED_RECORDS: usize = 4;
/// RFC 8446 §5.1: a record's payload never exceeds 2^14 bytes.
const MAX_RECORD_PAYLOAD: usize = 1 << 14;
/// Handshake message size of the padded worst case: near `MAX_CLIENT_HELLO` once framed.
const PADDED_MESSAGE_LEN: usize = 60_000;
/// RFC 7685 padding extension type.
const EXT_PADDING: u16 = 21;
/// ClientHello fixed part before the session id: handshake header (4), version (2), random (32).
const HELLO_FIXED_LEN: usize = 4 + 2 + 32;
/// The worst cases take up to tens of ms a run; criterion's minimum sample count keeps it to seconds.
const WORST_CASE_SAMPLES: usize = 10;

/// Policy sizes; the target is `decide` at 100k rules ≤ 1 µs, growing sub-linearly.
const POLICY_SIZES: [usize; 3] = [10, 1_000, 100_000];
/// Size whose YAML parse (the reload cost) is benchmarked.
const PARSE_SIZE: usize = 1_000;
/// Distinct facts in the rotating set: enough that 100k-rule lookups are not all cache-hot.
const ROTATING_FACTS: usize = 1_024;
/// Rules follow a six-kind cycle (see `rule_yaml`).
const RULE_KINDS: usize = 6;
const KIND_WILDCARD: usize = 1;
const KIND_DST: usize = 4;
/// Clients of the catch-all rule; clients elsewhere fall through to `default`.
const LAB_CLIENT: &str = "192.168.7.20";
const OFFICE_CLIENT: &str = "10.1.2.3";
const OUTSIDE_CLIENT: &str = "203.0.113.9";
const MISS_HOST: &str = "unknown.nowhere.example";

/// Leaf cache big enough that no cold-forge run ever evicts.
const FORGE_CAPACITY: usize = 1 << 20;

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(WARM_UP)
        .measurement_time(MEASURE)
        .sample_size(SAMPLES)
        .configure_from_args();
    bench_hello(&mut c);
    bench_ja4(&mut c);
    bench_policy(&mut c);
    bench_big_cidr_lists(&mut c);
    bench_list_files(&mut c);
    bench_config_parse(&mut c);
    bench_leaf(&mut c);
    bench_upstream_config(&mut c);
    bench_auth(&mut c);
    c.final_summary();
}

// ---- ClientHello ---------------------------------------------------------------------------

/// JA4 from a parsed hello (the budget is 2 µs per hello): what ward adds to every parse.
fn bench_ja4(c: &mut Criterion) {
    let mut g = c.benchmark_group("hello/ja4");
    for (name, bytes) in FIXTURES {
        let Ok(Parsed::Done { value: facts, .. }) = parse_client_hello(bytes) else {
            panic!("{name} does not parse");
        };
        g.bench_function(name, |b| {
            b.iter(|| Ja4::of(black_box(&facts.ja4_input), Transport::Tcp))
        });
    }
    g.finish();
}

fn bench_hello(c: &mut Criterion) {
    let reframed = reframe(CHROMIUM, REFRAMED_RECORDS);
    let mut inputs: Vec<(String, &[u8])> = FIXTURES
        .iter()
        .map(|(name, bytes)| (name.to_string(), *bytes))
        .collect();
    inputs.push((format!("chromium_{REFRAMED_RECORDS}_records"), &reframed));

    let mut g = c.benchmark_group("hello/parse");
    for (name, bytes) in &inputs {
        assert_done(bytes);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(name.as_str(), |b| {
            b.iter(|| parse_client_hello(black_box(bytes)))
        });
    }
    g.finish();

    // The 1-byte-at-a-time client: the read loop re-parses the whole buffer after every read,
    // so one hello costs a parse of every prefix. Bounded because the buffer is.
    let mut g = c.benchmark_group("hello/every_prefix");
    for (name, bytes) in [
        ("chromium", CHROMIUM),
        ("chromium_4_records", reframed.as_slice()),
    ] {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(name, |b| b.iter(|| parse_every_prefix(black_box(bytes))));
    }
    // The bound: the largest hello ward buffers, in full-size records, fed one byte at a time.
    let records = PADDED_MESSAGE_LEN.div_ceil(MAX_RECORD_PAYLOAD);
    let worst = frame(&pad_hello(CHROMIUM, PADDED_MESSAGE_LEN), records);
    assert_done(&worst);
    g.sample_size(WORST_CASE_SAMPLES);
    g.throughput(Throughput::Bytes(worst.len() as u64));
    g.bench_function(
        format!("padded_{}k_{records}_records", worst.len() / 1000),
        |b| b.iter(|| parse_every_prefix(black_box(&worst))),
    );
    // The same in as many records as ward accepts: each re-parse walks every header so far.
    let shredded = frame(&pad_hello(CHROMIUM, PADDED_MESSAGE_LEN), MAX_HELLO_RECORDS);
    assert_done(&shredded);
    g.throughput(Throughput::Bytes(shredded.len() as u64));
    g.bench_function(
        format!(
            "padded_{}k_{MAX_HELLO_RECORDS}_records",
            shredded.len() / 1000
        ),
        |b| b.iter(|| parse_every_prefix(black_box(&shredded))),
    );
    g.finish();
}

fn assert_done(bytes: &[u8]) {
    match parse_client_hello(bytes) {
        Ok(Parsed::Done { consumed, .. }) => assert_eq!(consumed, bytes.len()),
        other => panic!("fixture does not parse: {other:?}"),
    }
}

/// Parses `&bytes[..i]` for every `i`, as a client sending one byte per read would cause.
fn parse_every_prefix(bytes: &[u8]) -> usize {
    let mut incomplete = 0;
    for i in 1..=bytes.len() {
        if let Ok(Parsed::Incomplete) = parse_client_hello(&bytes[..i]) {
            incomplete += 1;
        }
    }
    assert_eq!(incomplete, bytes.len() - 1);
    incomplete
}

/// The handshake message carried by `records`, record headers stripped.
fn message(records: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut rest = records;
    while let Some(header) = rest.get(..RECORD_HEADER_LEN) {
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        body.extend_from_slice(&rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + len]);
        rest = &rest[RECORD_HEADER_LEN + len..];
    }
    body
}

/// The same handshake message carried by `parts` records instead of the original ones.
fn reframe(records: &[u8], parts: usize) -> Vec<u8> {
    frame(&message(records), parts)
}

/// `msg` split into `parts` handshake records of (nearly) equal size.
fn frame(msg: &[u8], parts: usize) -> Vec<u8> {
    let chunk = msg.len().div_ceil(parts);
    let mut out = Vec::with_capacity(msg.len() + parts * RECORD_HEADER_LEN);
    for piece in msg.chunks(chunk) {
        let len = u16::try_from(piece.len()).expect("fragment fits a record");
        out.extend_from_slice(&RECORD_PREFIX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(piece);
    }
    out
}

/// The hello in `records` grown to a `len`-byte handshake message by a trailing padding
/// extension; unframed (`frame` splits it into records).
fn pad_hello(records: &[u8], len: usize) -> Vec<u8> {
    let mut msg = message(records);
    let u16_at = |m: &[u8], at: usize| usize::from(u16::from_be_bytes([m[at], m[at + 1]]));
    let mut at = HELLO_FIXED_LEN;
    at += 1 + usize::from(msg[at]); // session id
    at += 2 + u16_at(&msg, at); // cipher suites
    at += 1 + usize::from(msg[at]); // compression methods
    let ext_len_at = at;
    let pad = len - msg.len() - 4;
    msg.extend_from_slice(&EXT_PADDING.to_be_bytes());
    msg.extend_from_slice(&u16::try_from(pad).expect("padding fits").to_be_bytes());
    msg.resize(len, 0);
    let ext_len = u16::try_from(msg.len() - ext_len_at - 2).expect("extensions fit");
    msg[ext_len_at..ext_len_at + 2].copy_from_slice(&ext_len.to_be_bytes());
    let body_len = u32::try_from(msg.len() - 4)
        .expect("hello fits")
        .to_be_bytes();
    msg[1..4].copy_from_slice(&body_len[1..]);
    msg
}

// ---- policy --------------------------------------------------------------------------------

/// One generated rule, cycling through the shapes real policies use. Names are distinct per
/// rule, as in a blocklist or an allowlist of services.
fn rule_yaml(i: usize) -> String {
    let (a, b) = (i / 256 % 256, i % 256);
    match i % RULE_KINDS {
        0 => format!(
            "  - {{ name: r{i}-exact, action: allow, hosts: [\"api{i}.svc.example.com\", \"www{i}.shop.example\"], ports: [443] }}\n"
        ),
        KIND_WILDCARD => format!(
            "  - {{ name: r{i}-cdn, action: inspect, hosts: [\"*.cdn{i}.example.net\"], ports: [443, \"8000-8999\"] }}\n"
        ),
        2 => format!(
            "  - {{ name: r{i}-tracker, action: deny, hosts: [\".tracker{i}.example\"] }}\n"
        ),
        3 => format!(
            "  - {{ name: r{i}-staff, action: allow, hosts: [\"staff{i}.corp.example\"], clients: [\"10.{a}.{b}.0/24\", \"fd00:{a:x}:{b:x}::/48\"] }}\n"
        ),
        KIND_DST => format!(
            "  - {{ name: r{i}-db, action: allow, hosts: [\"db{i}.internal.example\"], ports: [5432], dst: [\"10.200.{a}.{b}/32\"] }}\n"
        ),
        _ => format!(
            "  - {{ name: r{i}-ads, action: deny, hosts: [\"*.ads{i}.example\", \"ads{i}.example.org\"], ports: [\"1-442\", \"444-65535\"] }}\n"
        ),
    }
}

/// A policy of `n` rules: `n - 1` generated ones, then a host-less catch-all for the lab LAN.
fn policy_yaml(n: usize) -> String {
    let mut text = String::from("default: allow\nrules:\n");
    for i in 0..n - 1 {
        text.push_str(&rule_yaml(i));
    }
    text.push_str("  - { name: lab-catch-all, action: inspect, clients: [\"192.168.0.0/16\"] }\n");
    text
}

fn compile(n: usize) -> Policy {
    let text = policy_yaml(n);
    let cfg = config::parse(&text, Path::new("bench/policy.yaml"))
        .unwrap_or_else(|e| panic!("generated policy of {n} rules is invalid: {e}"));
    assert_eq!(cfg.policy.rules_len(), n);
    cfg.policy
}

/// Owned facts (the `Facts` borrow their hosts) and the verdict each must get.
struct Case {
    label: &'static str,
    host: Host,
    port: u16,
    client: IpAddr,
    expect: Expect,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Rule(usize),
    Default,
    NeedsDst,
}

impl Case {
    fn new(label: &'static str, host: &str, port: u16, client: &str, expect: Expect) -> Case {
        Case {
            label,
            host: Host::parse(host).expect("bench host"),
            port,
            client: client.parse().expect("bench client"),
            expect,
        }
    }

    fn facts(&self) -> Facts<'_> {
        Facts {
            host: Some(&self.host),
            port: self.port,
            client: self.client,
            user: None,
            dst: None,
            sni: None,
            hello: HelloFact::Pending,
            request: RequestFact::Pending,
        }
    }

    fn check(&self, policy: &Policy) {
        let got = match policy.decide(&self.facts()) {
            Verdict::NeedsDst => Expect::NeedsDst,
            Verdict::Decided(d) => d.rule.map_or(Expect::Default, Expect::Rule),
        };
        assert_eq!(
            got,
            self.expect,
            "{} in {} rules",
            self.label,
            policy.rules_len()
        );
    }
}

/// The last generated rule of `kind` in a policy of `n` rules (the catch-all is `n - 1`).
fn last_of_kind(n: usize, kind: usize) -> usize {
    (0..n - 1)
        .rev()
        .find(|i| i % RULE_KINDS == kind)
        .expect("kind present")
}

/// One case per path through `decide`.
fn cases(n: usize) -> Vec<Case> {
    let late = last_of_kind(n, KIND_WILDCARD);
    let db = last_of_kind(n, KIND_DST);
    vec![
        Case::new(
            "hit_early",
            "api0.svc.example.com",
            443,
            OFFICE_CLIENT,
            Expect::Rule(0),
        ),
        Case::new(
            "hit_late",
            &format!("img.eu.cdn{late}.example.net"),
            443,
            OFFICE_CLIENT,
            Expect::Rule(late),
        ),
        Case::new(
            "miss_default",
            MISS_HOST,
            443,
            OUTSIDE_CLIENT,
            Expect::Default,
        ),
        Case::new("catch_all", MISS_HOST, 443, LAB_CLIENT, Expect::Rule(n - 1)),
        Case::new(
            "needs_dst",
            &format!("db{db}.internal.example"),
            5432,
            OFFICE_CLIENT,
            Expect::NeedsDst,
        ),
    ]
}

/// `ROTATING_FACTS` facts spread over the whole rule list plus misses, so the 100k policy is
/// probed at many places, not one cache-hot entry. Deterministic: no RNG needed.
fn rotating(n: usize) -> Vec<Case> {
    let generated = n - 1;
    (0..ROTATING_FACTS)
        .map(|k| {
            // A multiplicative stride visits rule indices in a scattered order.
            let i = k.wrapping_mul(7_919) % generated;
            let (a, b) = (i / 256 % 256, i % 256);
            match k % 8 {
                0 => Case::new("miss", MISS_HOST, 443, OUTSIDE_CLIENT, Expect::Default),
                1 => Case::new("lab", MISS_HOST, 80, LAB_CLIENT, Expect::Rule(n - 1)),
                _ => match i % RULE_KINDS {
                    0 => {
                        let host = format!("www{i}.shop.example");
                        Case::new("exact", &host, 443, OFFICE_CLIENT, Expect::Rule(i))
                    }
                    KIND_WILDCARD => {
                        let host = format!("v.cdn{i}.example.net");
                        Case::new("wild", &host, 8443, OFFICE_CLIENT, Expect::Rule(i))
                    }
                    2 => {
                        let host = format!("tracker{i}.example");
                        Case::new("domain", &host, 443, OUTSIDE_CLIENT, Expect::Rule(i))
                    }
                    3 => {
                        let host = format!("staff{i}.corp.example");
                        let client = format!("10.{a}.{b}.9");
                        Case::new("clients", &host, 443, &client, Expect::Rule(i))
                    }
                    KIND_DST => {
                        let host = format!("db{i}.internal.example");
                        Case::new("dst", &host, 5432, OFFICE_CLIENT, Expect::NeedsDst)
                    }
                    _ => {
                        let host = format!("x.ads{i}.example");
                        Case::new("ports", &host, 80, OFFICE_CLIENT, Expect::Rule(i))
                    }
                },
            }
        })
        .collect()
}

fn bench_policy(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy/decide");
    for n in POLICY_SIZES {
        let policy = compile(n);
        let cases = cases(n);
        for case in &cases {
            case.check(&policy);
            let facts = case.facts();
            g.bench_function(format!("{n}/{}", case.label), |b| {
                b.iter(|| policy.decide(black_box(&facts)))
            });
        }
        bench_rotating(&mut g, n, &policy);
    }
    g.finish();
}

fn bench_rotating(g: &mut BenchmarkGroup<'_, WallTime>, n: usize, policy: &Policy) {
    let cases = rotating(n);
    for case in &cases {
        case.check(policy);
    }
    let facts: Vec<Facts<'_>> = cases.iter().map(Case::facts).collect();
    let mut k = 0;
    g.bench_function(format!("{n}/rotating"), |b| {
        b.iter(|| {
            k = (k + 1) % facts.len();
            policy.decide(black_box(&facts[k]))
        })
    });
}

/// CIDR entries in one rule's `dst` / `clients`: blocklists of this size are common.
const BIG_CIDRS: usize = 100_000;

/// The `k`-th /32 of the big lists: 10.x.y.z, distinct for every k below 2^24.
fn nth_v4(k: usize) -> String {
    format!("10.{}.{}.{}", k >> 16 & 255, k >> 8 & 255, k & 255)
}

/// One rule whose `dst` (or `clients`) lists `BIG_CIDRS` /32s, inline.
fn big_cidr_policy(key: &str) -> Policy {
    let list: Vec<String> = (0..BIG_CIDRS)
        .map(|k| format!("\"{}/32\"", nth_v4(k)))
        .collect();
    let text = format!(
        "default: deny\nrules:\n  - {{ name: big, action: allow, {key}: [{}] }}\n",
        list.join(", ")
    );
    let cfg = config::parse(&text, Path::new("bench/policy.yaml")).expect("big CIDR policy");
    cfg.policy
}

/// The case: a match on the last of 100k /32s, once as `dst`, once as `clients`.
fn bench_big_cidr_lists(c: &mut Criterion) {
    let mut g = c.benchmark_group("policy/cidr_100k");
    let host = Host::parse("db.internal.example").expect("bench host");
    let last: IpAddr = nth_v4(BIG_CIDRS - 1).parse().expect("bench ip");
    let facts = Facts {
        host: Some(&host),
        port: 443,
        client: OUTSIDE_CLIENT.parse().expect("bench client"),
        user: None,
        dst: None,
        sni: None,
        hello: HelloFact::Pending,
        request: RequestFact::Pending,
    };
    let dst = big_cidr_policy("dst");
    assert_eq!(dst.judge_address(&facts, last).decision.rule, Some(0));
    g.bench_function("dst_last", |b| {
        b.iter(|| dst.judge_address(black_box(&facts), black_box(last)))
    });
    let clients = big_cidr_policy("clients");
    let from_last = Facts {
        client: last,
        ..facts
    };
    assert!(matches!(clients.decide(&from_last), Verdict::Decided(d) if d.rule == Some(0)));
    g.bench_function("clients_last", |b| {
        b.iter(|| clients.decide(black_box(&from_last)))
    });
    g.finish();
}

/// The scale: names in a `hosts_file` and CIDRs in a `dst_file`.
const LIST_NAMES: usize = 1_000_000;
const LIST_CIDRS: usize = 100_000;
/// Individually timed decisions for the p99 figure.
const TIMED_DECISIONS: usize = 200_000;

/// Name `k` of the big hosts_file, in the three formats the file accepts, by turns.
fn list_line(k: usize) -> String {
    match k % 5 {
        0..=2 => format!("ads{k}.tracker{}.example\n", k % 977),
        3 => format!("0.0.0.0 pixel{k}.metrics{}.example\n", k % 977),
        _ => format!("||cdn{k}.ads{}.example^\n", k % 977),
    }
}

/// A host that line `k` of the big hosts_file matches (a name below it, for `||name^`).
fn listed_host(k: usize) -> String {
    let line = list_line(k);
    let line = line.trim_end();
    match line.strip_prefix("||") {
        Some(rest) => format!("img.{}", rest.trim_end_matches('^')),
        None => line.rsplit(' ').next().unwrap_or(line).to_owned(),
    }
}

/// CIDR `k` of the big dst_file: /32s, /24s and IPv6 /64s, by turns.
fn cidr_line(k: usize) -> String {
    match k % 3 {
        0 => format!("{}/32\n", nth_v4(k)),
        1 => format!("172.{}.{}.0/24\n", 16 + (k >> 8 & 15), k & 255),
        _ => format!("2001:db8:{:x}:{:x}::/64\n", k >> 16, k & 0xffff),
    }
}

/// A policy folder with the big lists, for `config::load`.
fn write_list_policy(dir: &Path) -> std::path::PathBuf {
    let names: String = (0..LIST_NAMES).map(list_line).collect();
    let cidrs: String = (0..LIST_CIDRS).map(cidr_line).collect();
    std::fs::write(dir.join("names.txt"), names).expect("write names");
    std::fs::write(dir.join("cidrs.txt"), cidrs).expect("write cidrs");
    let policy = dir.join("policy.yaml");
    let text = "default: allow\nrules:\n\
      - { name: blocklist, action: deny, hosts_file: names.txt }\n\
      - { name: bad-nets, action: deny, dst_file: cidrs.txt }\n";
    std::fs::write(&policy, text).expect("write policy");
    policy
}

/// A `/proc/self/status` field in KiB (Linux), 0 elsewhere.
fn proc_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Loads the big lists once, printing time and memory: resident growth and the peak above
/// the start (`clear_refs` 5 resets the peak, Linux 4.0+).
fn measure_list_load(policy: &Path) -> config::Config {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (rss0, hwm0) = (proc_kib("VmRSS:"), proc_kib("VmHWM:"));
    let started = std::time::Instant::now();
    let cfg = config::load(policy).unwrap_or_else(|e| panic!("big lists: {e}"));
    let took = started.elapsed();
    let (rss1, hwm1) = (proc_kib("VmRSS:"), proc_kib("VmHWM:"));
    println!(
        "lists/load: {LIST_NAMES} names + {LIST_CIDRS} CIDRs in {took:.2?}; resident +{} MiB \
         (now {} MiB), peak {} MiB (was {} MiB)",
        (rss1.saturating_sub(rss0)) / 1024,
        rss1 / 1024,
        hwm1 / 1024,
        hwm0 / 1024,
    );
    cfg
}

/// Decisions at list scale: hits and misses on the names, subdomains of `||name^` entries,
/// and addresses judged against the 100k CIDRs; each `(facts, dst, expected rule)`.
fn list_cases() -> Vec<(Host, IpAddr, Option<usize>)> {
    (0..ROTATING_FACTS)
        .map(|j| {
            let k = j.wrapping_mul(7_919) % LIST_NAMES;
            let outside: IpAddr = "203.0.113.9".parse().expect("ip");
            let host = |s: String| Host::parse(&s).expect("bench host");
            match j % 6 {
                // One listed name of each format: plain, hosts-file, and below an ||name^.
                f @ 0..=2 => (
                    host(listed_host(k - k % 5 + [0, 3, 4][f])),
                    outside,
                    Some(0),
                ),
                3 => (host(format!("www{k}.unlisted.example")), outside, None),
                4 => {
                    let c = k % LIST_CIDRS - k % LIST_CIDRS % 3;
                    (
                        host(format!("www{k}.unlisted.example")),
                        nth_v4(c).parse().expect("ip"),
                        Some(1),
                    )
                }
                _ => (
                    host(format!("www{k}.unlisted.example")),
                    "2001:db8:0:5::1".parse().expect("ip"),
                    Some(1),
                ),
            }
        })
        .collect()
}

fn bench_list_files(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_list_policy(dir.path());
    let cfg = measure_list_load(&path);
    let policy = &cfg.policy;
    let cases = list_cases();
    let client: IpAddr = OUTSIDE_CLIENT.parse().expect("ip");
    let judge = |(host, dst, _): &(Host, IpAddr, Option<usize>)| {
        let f = Facts {
            host: Some(host),
            port: 443,
            client,
            user: None,
            dst: None,
            sni: None,
            hello: HelloFact::Pending,
            request: RequestFact::Pending,
        };
        policy.judge_address(&f, *dst).decision.rule
    };
    for case in &cases {
        assert_eq!(judge(case), case.2, "{:?}", case.0);
    }
    // p99 of single decisions: criterion reports means of batches, the target is a tail.
    let mut times: Vec<u32> = (0..TIMED_DECISIONS)
        .map(|j| {
            let case = &cases[j % cases.len()];
            let t = std::time::Instant::now();
            black_box(judge(black_box(case)));
            u32::try_from(t.elapsed().as_nanos()).unwrap_or(u32::MAX)
        })
        .collect();
    times.sort_unstable();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "lists/decide: {TIMED_DECISIONS} decisions at {LIST_NAMES} names + {LIST_CIDRS} CIDRs: \
         p50 {} ns, p99 {} ns, p99.9 {} ns, max {} ns",
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0)
    );
    let mut g = c.benchmark_group("lists");
    let mut k = 0;
    g.bench_function("1m_names_100k_cidrs/rotating", |b| {
        b.iter(|| {
            k = (k + 1) % cases.len();
            judge(black_box(&cases[k]))
        })
    });
    g.sample_size(10);
    g.bench_function("1m_names_100k_cidrs/load", |b| {
        b.iter(|| config::load(black_box(&path)).map(|c| c.lists.len()))
    });
    g.finish();
}

// ---- config reload -------------------------------------------------------------------------

fn bench_config_parse(c: &mut Criterion) {
    let text = policy_yaml(PARSE_SIZE);
    let mut g = c.benchmark_group("config/parse");
    g.throughput(Throughput::Bytes(text.len() as u64));
    g.bench_function(format!("{PARSE_SIZE}_rules"), |b| {
        b.iter(|| {
            let cfg = config::parse(black_box(&text), Path::new("bench/policy.yaml"));
            cfg.map(|c| c.policy.default_action() == Action::Allow)
        })
    });
    g.finish();
}

// ---- leaf forging --------------------------------------------------------------------------

fn bench_leaf(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Arc::new(Ca::init(dir.path(), false).expect("CA"));
    let cache = LeafCache::new(ca, FORGE_CAPACITY).expect("leaf cache");
    let now = SystemTime::now();
    let mut g = c.benchmark_group("leaf");
    g.sample_size(FORGE_SAMPLES);

    let mut next = 0u64;
    g.bench_function("forge_cold", |b| {
        b.iter_batched(
            || {
                next += 1;
                Host::parse(&format!("h{next}.forge.example")).expect("bench name")
            },
            |name| cache.get_or_forge(&name, &[], now).expect("forge"),
            BatchSize::SmallInput,
        )
    });

    let name = Host::parse("cached.forge.example").expect("bench name");
    cache.get_or_forge(&name, &[], now).expect("forge");
    let forged = cache.forged();
    g.bench_function("cached", |b| {
        b.iter(|| cache.get_or_forge(black_box(&name), &[], now))
    });
    assert_eq!(cache.forged(), forged, "a cached lookup forged");
    g.finish();
    // Every forge is still cached: the cold runs measured signing, never eviction.
    assert_eq!(cache.len() as u64, cache.forged(), "cold forges evicted");
}

// ---- the upstream hello -------------------------------------------------------------------

/// What following the client's hello costs an inspected connection: the choice (pure), then
/// the rustls config for it, cached (every connection after the first of its kind) or built
/// (the first one, or a client varying its hello past the cache).
fn bench_upstream_config(c: &mut Criterion) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let configs = UpstreamConfigs::new(provider, None).expect("upstream configs");
    let Ok(Parsed::Done { value: hello, .. }) = parse_client_hello(CHROMIUM) else {
        panic!("chromium does not parse");
    };
    let key = |hello: &ward::tls::ClientHelloFacts| HelloKey {
        mirror: Some(mirror::choose(hello, configs.capabilities(), false)),
        alpn: hello.alpn.iter().map(|p| p.as_bytes().to_vec()).collect(),
        sni: true,
    };
    let mut g = c.benchmark_group("upstream/config");
    g.bench_function("choose", |b| {
        b.iter(|| mirror::choose(black_box(&hello), configs.capabilities(), false))
    });
    let chromium = key(&hello);
    configs.get(&chromium);
    g.bench_function("cached", |b| b.iter(|| configs.get(black_box(&chromium))));
    g.bench_function("choose_and_cached", |b| {
        b.iter(|| configs.get(&key(black_box(&hello))))
    });
    g.bench_function("built", |b| b.iter(|| configs.build(black_box(&chromium))));
    g.finish();
}

// ---- proxy passwords -----------------------------------------------------------------------

/// bcrypt's cost as `htpasswd -B -C 10` and `ward passwd --cost 10` write it: OWASP's floor.
const BENCH_BCRYPT_COST: u32 = 10;
/// Each uncached check is tens of milliseconds: criterion's minimum sample count.
const HASH_SAMPLES: usize = 10;

/// One client's credentials checked by the proxy's `Authenticator`: a success it remembers
/// (what a browser's second and later connections cost) against a password it must hash (a
/// wrong one, which is never remembered, so every iteration pays), for a bcrypt and an argon2
/// user.
fn bench_auth(c: &mut Criterion) {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
    use ward::auth::Authenticator;
    use ward::request::Credentials;
    use ward::users::{Secret, User, Users};
    let bcrypt = bcrypt::hash("b-pass", BENCH_BCRYPT_COST).expect("bcrypt");
    // OWASP's first argon2id suggestion: 19 MiB, 2 passes, 1 lane.
    let params = Params::new(19 * 1024, 2, 1, None).expect("params");
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_with_salt(b"a-pass", b"ward-bench-salt!")
        .expect("argon2")
        .to_string();
    let users = Users::new(vec![
        User {
            name: "bob".into(),
            secret: Secret::Bcrypt(bcrypt),
        },
        User {
            name: "ann".into(),
            secret: Secret::Argon2(argon2),
        },
    ]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let auth = Authenticator::default();
    let creds = |user: &str, password: &str| Credentials {
        user: user.into(),
        password: password.into(),
    };
    let mut g = c.benchmark_group("auth");
    for (name, user, good) in [
        ("bcrypt10", "bob", "b-pass"),
        ("argon2id_19m_t2", "ann", "a-pass"),
    ] {
        let ok = creds(user, good);
        rt.block_on(auth.authenticate(&users, Some(&ok)))
            .expect("good password");
        g.sample_size(SAMPLES);
        g.bench_function(format!("{name}/cached"), |b| {
            b.iter(|| rt.block_on(auth.authenticate(&users, Some(black_box(&ok)))))
        });
        let wrong = creds(user, "wrong");
        g.sample_size(HASH_SAMPLES);
        g.bench_function(format!("{name}/uncached"), |b| {
            b.iter(|| rt.block_on(auth.authenticate(&users, Some(black_box(&wrong)))))
        });
    }
    g.finish();
}
