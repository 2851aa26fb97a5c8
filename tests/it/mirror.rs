//! The upstream hello follows the client's (issue 14, point 6): real curl through an `inspect`
//! rule with its suites, groups and versions narrowed, and what the origin then agreed with
//! ward (which only the hello ward sent can explain), with both JA4s in the access record.

use crate::inspect::{inspecting_ward, ward_ca};
use crate::support::ward::field;
use crate::support::{Ward, curl, have, origins};

/// curl through `ward` to an inspected name with `args`; the access record of it.
fn inspected_with(ward: &Ward, args: &[&str]) -> serde_json::Value {
    let ca = ward_ca(ward);
    let proxy = ward.http_url();
    let url = origins().https("site.lab.test", "/");
    let mut all = vec!["-x", &proxy, "--cacert", &ca];
    all.extend_from_slice(args);
    all.push(&url);
    curl(&all).expect_ok(200);
    ward.expect_access("for the inspected connection", |v| {
        field(v, "action").as_deref() == Some("inspect")
            && field(v, "ja4_upstream").is_some_and(|j| j != "-")
    })
}

/// A JA4's three `_`-separated parts.
fn parts(ja4: &str) -> Vec<String> {
    ja4.split('_').map(str::to_owned).collect()
}

#[test]
fn a_tls12_client_with_two_suites_gets_an_upstream_hello_with_those_in_its_order() {
    if !have("curl") {
        return;
    }
    let ward = inspecting_ward();
    // ChaCha20 first: the test origin (rustls) takes the client's order, so the suite it
    // agrees with ward says whose order ward's hello carried. Ward's own puts AES first.
    let rec = inspected_with(
        &ward,
        &[
            "--tls-max",
            "1.2",
            "--ciphers",
            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256",
        ],
    );
    let client = field(&rec, "ja4").expect("ja4");
    let upstream = field(&rec, "ja4_upstream").expect("ja4_upstream");
    let (c, u) = (parts(&client), parts(&upstream));
    assert!(
        c[0].starts_with("t12d03"),
        "curl's: two suites and the SCSV: {client}"
    );
    // The same versions, SNI, suite set (part b) and ALPN; only the extensions differ.
    assert!(u[0].starts_with("t12d03"), "{upstream}");
    assert_eq!(c[0][8..], u[0][8..], "ALPN");
    assert_eq!(c[1], u[1], "the same suites: {client} / {upstream}");
    assert_eq!(field(&rec, "tls_upstream").as_deref(), Some("TLSv1_2"));
    assert_eq!(
        field(&rec, "cipher_upstream").as_deref(),
        Some("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
        "the origin took the client's first suite: {rec}"
    );
}

#[test]
fn a_tls13_client_narrowed_to_one_suite_and_p256_gets_them_from_the_origin() {
    if !have("curl") {
        return;
    }
    let ward = inspecting_ward();
    // Ward's own hello would agree AES-256-GCM over X25519MLKEM768 with this origin.
    let rec = inspected_with(
        &ward,
        &[
            "--tlsv1.3",
            "--tls13-ciphers",
            "TLS_CHACHA20_POLY1305_SHA256",
            "--curves",
            "P-256",
        ],
    );
    assert_eq!(field(&rec, "tls_upstream").as_deref(), Some("TLSv1_3"));
    assert_eq!(
        field(&rec, "cipher_upstream").as_deref(),
        Some("TLS13_CHACHA20_POLY1305_SHA256"),
        "{rec}"
    );
    assert_eq!(
        field(&rec, "kx_upstream").as_deref(),
        Some("secp256r1"),
        "{rec}"
    );
    let upstream = field(&rec, "ja4_upstream").expect("ja4_upstream");
    assert!(upstream.starts_with("t13d"), "{upstream}");
    // A client's and ward's leg agree the same things here: ward offered what curl offered.
    assert_eq!(field(&rec, "cipher_client"), field(&rec, "cipher_upstream"));
    assert_eq!(field(&rec, "kx_client"), field(&rec, "kx_upstream"));
}
