use super::*;
use crate::Parsed;
use crate::tls::parse_client_hello;
use crate::tls::tests::FIXTURES;

const X25519MLKEM768: u16 = 0x11ec;
const SECP256R1MLKEM768: u16 = 0x11eb;
const X25519: u16 = 0x001d;
const SECP256R1: u16 = 0x0017;
const FFDHE2048: u16 = 0x0100;
const TLS11: u16 = 0x0302;
const TLS_RSA_WITH_AES_128_CBC_SHA: u16 = 0x002f;
const TLS13_AES_128_GCM_SHA256: u16 = 0x1301;
const TLS13_AES_256_GCM_SHA384: u16 = 0x1302;
const ECDHE_RSA_AES_128_GCM_SHA256: u16 = 0xc02f;
const ECDHE_RSA_AES_256_GCM_SHA384: u16 = 0xc030;

fn can() -> Capabilities {
    Capabilities::of(
        &rustls::crypto::aws_lc_rs::default_provider(),
        rustls::crypto::aws_lc_rs::ALL_KX_GROUPS,
    )
}

fn facts(name: &str) -> ClientHelloFacts {
    let (_, bytes) = FIXTURES.iter().find(|(n, _)| *n == name).expect("fixture");
    match parse_client_hello(bytes) {
        Ok(Parsed::Done { value, .. }) => value,
        other => panic!("{name}: {other:?}"),
    }
}

/// A hello offering exactly these versions, suites and groups (the rest is curl's).
fn offering(versions: &[u16], suites: &[u16], groups: &[u16]) -> ClientHelloFacts {
    let mut f = facts("curl");
    f.versions = versions.to_vec();
    f.ja4_input.ciphers = suites.to_vec();
    f.groups = groups.to_vec();
    f
}

fn supported_suite(s: u16) -> bool {
    can().suites.iter().any(|&(c, _)| c == s)
}

#[test]
fn every_fixture_is_followed_in_its_own_order_within_what_rustls_has() {
    let can = can();
    for (name, _) in FIXTURES {
        let hello = facts(name);
        let m = choose(&hello, &can, false);
        let want_suites: Vec<u16> = hello
            .ja4_input
            .ciphers
            .iter()
            .copied()
            .filter(|&s| supported_suite(s))
            .collect();
        assert_eq!(
            m.suites, want_suites,
            "{name}: the client's order, filtered"
        );
        let want_groups: Vec<u16> = hello
            .groups
            .iter()
            .copied()
            .filter(|&g| can.groups.iter().any(|&(c, _)| c == g))
            .collect();
        assert_eq!(m.groups, want_groups, "{name}");
        assert_eq!(m.defaulted, Defaulted::default(), "{name}");
        assert!(!m.for_require_pq);
    }
}

#[test]
fn chromium_keeps_its_hybrid_group_first_and_loses_only_grease_and_cbc() {
    let m = choose(&facts("chromium"), &can(), false);
    assert_eq!(m.versions, [TLS13, TLS12]);
    assert_eq!(m.groups[..2], [X25519MLKEM768, X25519]);
    assert_eq!(
        m.suites[0], TLS13_AES_128_GCM_SHA256,
        "Chromium's first suite"
    );
    assert!(!m.suites.contains(&TLS_RSA_WITH_AES_128_CBC_SHA));
    assert!(m.suites.iter().all(|&s| s & 0x0f0f != 0x0a0a), "no GREASE");
}

#[test]
fn a_tls12_only_client_gets_a_tls12_only_hello_with_classical_groups() {
    let m = choose(&facts("python_tls12"), &can(), false);
    assert_eq!(m.versions, [TLS12]);
    assert!(m.suites.iter().all(|&s| s >> 8 == 0xc0 || s >> 8 == 0xcc));
    // A TLS 1.2 hello offering only a KEM would have no group to agree.
    let hybrid_only = offering(&[TLS12], &[ECDHE_RSA_AES_128_GCM_SHA256], &[X25519MLKEM768]);
    let m = choose(&hybrid_only, &can(), false);
    assert!(m.defaulted.groups);
    assert_eq!(m.defaulted.names(), "groups");
}

#[test]
fn a_version_no_chosen_suite_serves_is_not_offered() {
    // TLS 1.2 and 1.3 offered, but only TLS 1.3 suites rustls has (the 1.2 one is CBC).
    let hello = offering(
        &[TLS13, TLS12],
        &[TLS_RSA_WITH_AES_128_CBC_SHA, TLS13_AES_256_GCM_SHA384],
        &[X25519],
    );
    let m = choose(&hello, &can(), false);
    assert_eq!(m.versions, [TLS13]);
    assert_eq!(m.suites, [TLS13_AES_256_GCM_SHA384]);
    // And a TLS 1.3-only client's TLS 1.2 suites are not offered either.
    let hello = offering(
        &[TLS13],
        &[ECDHE_RSA_AES_256_GCM_SHA384, TLS13_AES_128_GCM_SHA256],
        &[X25519],
    );
    assert_eq!(
        choose(&hello, &can(), false).suites,
        [TLS13_AES_128_GCM_SHA256]
    );
}

#[test]
fn nothing_usable_falls_back_to_wards_defaults_in_that_dimension_only() {
    let can = can();
    let hello = offering(&[TLS11], &[TLS_RSA_WITH_AES_128_CBC_SHA], &[FFDHE2048]);
    let m = choose(&hello, &can, false);
    assert_eq!(m.versions, [TLS13, TLS12]);
    let all: Vec<u16> = can.suites.iter().map(|&(s, _)| s).collect();
    assert_eq!(m.suites, all);
    assert_eq!(m.groups, can.default_groups);
    assert_eq!(m.defaulted.names(), "versions,suites,groups");
    // Suites unusable, groups the client's own.
    let hello = offering(
        &[TLS13],
        &[TLS_RSA_WITH_AES_128_CBC_SHA],
        &[SECP256R1, X25519],
    );
    let m = choose(&hello, &can, false);
    assert_eq!(m.defaulted.names(), "suites");
    assert_eq!(m.groups, [SECP256R1, X25519]);
    assert!(m.suites.iter().all(|&s| s >> 8 == 0x13));
}

#[test]
fn a_client_may_pick_a_group_outside_wards_defaults_and_repeats_are_dropped() {
    let hello = offering(
        &[TLS13],
        &[TLS13_AES_128_GCM_SHA256, TLS13_AES_128_GCM_SHA256],
        &[SECP256R1MLKEM768, SECP256R1, SECP256R1],
    );
    let m = choose(&hello, &can(), false);
    assert_eq!(m.groups, [SECP256R1MLKEM768, SECP256R1]);
    assert_eq!(m.suites, [TLS13_AES_128_GCM_SHA256]);
}

#[test]
fn require_pq_adds_a_hybrid_group_and_tls13_to_a_client_without_them() {
    let m = choose(&facts("curl"), &can(), true);
    assert_eq!(m.groups[0], X25519MLKEM768);
    assert!(m.for_require_pq);
    // Chromium's own hybrid is enough: nothing is added.
    let m = choose(&facts("chromium"), &can(), true);
    assert!(!m.for_require_pq);
    // A TLS 1.2-only client: TLS 1.3 and its suites are offered after the client's.
    let m = choose(&facts("python_tls12"), &can(), true);
    assert_eq!(m.versions, [TLS13, TLS12]);
    assert_eq!(m.groups[0], X25519MLKEM768);
    let first_13 = m
        .suites
        .iter()
        .position(|&s| s >> 8 == 0x13)
        .expect("a TLS 1.3 suite");
    assert!(m.suites[..first_13].iter().all(|&s| s >> 8 != 0x13));
    assert!(first_13 > 0, "the client's TLS 1.2 suites stay first");
}
