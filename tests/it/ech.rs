//! ECH through ward with a real ECH client: rustls's, offering a test ECHConfigList whose
//! public name is `public.lab.test` while it asks ward for the true site. Tunnelled, the
//! decision is taken on the name asked for and the cleartext SNI is only logged; inspected,
//! ward answers the outer hello as the public name (it holds no ECH key), the client aborts
//! with `ech_required` (RFC 9849 §6.1.6) and its retry without ECH is inspected as usual.
//!
//! Chromium offers real ECH only with an ECHConfigList from a DNS HTTPS record, which an
//! offline loopback lab cannot serve it; its ECH GREASE is covered in the JA4/hello tests.

use std::sync::Arc;

use rustls::client::{EchConfig, EchMode};
use rustls::crypto::aws_lc_rs::hpke::ALL_SUPPORTED_SUITES;
use rustls::pki_types::EchConfigListBytes;
use rustls::{Error, PeerIncompatible};

use crate::inspect::{inspecting_policy, ward_ca};
use crate::support::net::{self, http_connect};
use crate::support::origin::INDEX_BODY;
use crate::support::ward::field;
use crate::support::ward::message;
use crate::support::{Policy, Ward, client_config_trusting, origins};

const PUBLIC_NAME: &str = "public.lab.test";

/// An ECHConfigList (RFC 9849 §4) of one version-0xfe0d config: DHKEM(X25519) with a public
/// key no server holds the secret of, HKDF-SHA256 + AES-128-GCM, `public_name`.
fn ech_config_list(public_name: &str) -> Vec<u8> {
    let mut contents = vec![0x2a]; // config_id
    contents.extend_from_slice(&0x0020u16.to_be_bytes()); // kem_id: DHKEM(X25519, HKDF-SHA256)
    contents.extend_from_slice(&32u16.to_be_bytes());
    contents.extend((0u8..32).map(|i| i.wrapping_mul(37).wrapping_add(9)));
    contents.extend_from_slice(&4u16.to_be_bytes()); // cipher_suites: one
    contents.extend_from_slice(&[0x00, 0x01, 0x00, 0x01]); // HKDF-SHA256, AES-128-GCM
    contents.push(0); // maximum_name_length
    contents.push(u8::try_from(public_name.len()).unwrap());
    contents.extend_from_slice(public_name.as_bytes());
    contents.extend_from_slice(&0u16.to_be_bytes()); // extensions
    let mut config = 0xfe0du16.to_be_bytes().to_vec();
    config.extend_from_slice(&u16::try_from(contents.len()).unwrap().to_be_bytes());
    config.extend(contents);
    let mut list = u16::try_from(config.len()).unwrap().to_be_bytes().to_vec();
    list.extend(config);
    list
}

/// A TLS 1.3 client that offers real ECH with the test config and trusts the CA at `ca_pem`.
fn ech_client(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let ech = EchConfig::new(
        EchConfigListBytes::from(ech_config_list(PUBLIC_NAME)),
        ALL_SUPPORTED_SUITES,
    )
    .expect("the test ECHConfigList is valid");
    let pem = std::fs::read_to_string(ca_pem).expect("CA PEM");
    let mut roots = rustls::RootCertStore::empty();
    for cert in testkit::pki::certs_in_pem(&pem).expect("CA PEM") {
        roots.add(cert).expect("a CA certificate");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_ech(EchMode::Enable(ech))
        .expect("ECH with TLS 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

/// CONNECT `asked`, then the ECH handshake with `cfg` for the true site `inner`.
fn ech_via_connect(
    ward: &Ward,
    asked: &str,
    inner: &str,
    cfg: Arc<rustls::ClientConfig>,
) -> Result<(), Error> {
    let port = origins().tls.port();
    let (s, head) = http_connect(ward.addr, &format!("{asked}:{port}"), &[]);
    assert_eq!(
        head.status, 200,
        "CONNECT {asked} must be allowed: {head:#?}"
    );
    let mut tls = net::tls_over(s, inner, cfg);
    net::handshake(&mut tls)
}

fn rejected(got: &Result<(), Error>) -> bool {
    matches!(
        got,
        Err(Error::PeerIncompatible(
            PeerIncompatible::ServerRejectedEncryptedClientHello(_)
        ))
    )
}

#[test]
fn a_tunnel_is_judged_on_the_name_asked_for_and_the_public_name_is_only_logged() {
    let ward = Ward::start(&Policy::new().set("sni_mismatch", "deny").rule(&format!(
        r#"{{name: no-public, action: deny, hosts: ["{PUBLIC_NAME}"]}}"#
    )));
    let o = origins();
    // The origin knows nothing of ECH: it answers the outer hello with its *.lab.test leaf,
    // which the client checks against the public name, then it gives up on ECH. Getting that
    // far proves ward let the tunnel through to the origin.
    let got = ech_via_connect(&ward, "site.lab.test", "site.lab.test", ech_client(o.ca()));
    assert!(rejected(&got), "the origin's rejection of ECH: {got:?}");
    let rec = ward.expect_access("for the ECH tunnel", |v| {
        field(v, "target").is_some_and(|t| t.starts_with("site.lab.test:"))
    });
    let f = |k| field(&rec, k);
    assert_eq!(f("action").as_deref(), Some("allow"), "{rec}");
    assert_eq!(f("rule").as_deref(), Some("lab"), "{rec}");
    assert_eq!(f("sni").as_deref(), Some("site.lab.test"), "{rec}");
    assert_eq!(f("ech").as_deref(), Some("public_name"), "{rec}");
    assert_eq!(f("ech_outer_sni").as_deref(), Some(PUBLIC_NAME), "{rec}");
    assert_eq!(
        f("ech_unverifiable_destination").as_deref(),
        Some("false"),
        "{rec}"
    );
    assert_eq!(f("error").as_deref(), Some("-"), "{rec}");

    // The same names without ECH: the SNI decides, and it is denied.
    let plain = o.client_config(&[b"http/1.1"]);
    let port = o.tls.port();
    let (s, head) = http_connect(ward.addr, &format!("site.lab.test:{port}"), &[]);
    assert_eq!(head.status, 200);
    let got = net::handshake(&mut net::tls_over(s, PUBLIC_NAME, plain));
    assert_eq!(
        got,
        Err(Error::AlertReceived(rustls::AlertDescription::AccessDenied))
    );
}

#[test]
fn ech_to_an_address_is_unverifiable_and_an_ech_rule_refuses_exactly_that() {
    let ward = Ward::start(
        &Policy::new()
            .rule(r#"{name: web, action: allow, hosts: [".lab.test"], dst: ["127.0.0.0/8"]}"#)
            .rule(r#"{name: no-blind-ech, action: deny, ech: true}"#),
    );
    let o = origins();
    // By address with ECH: the public name (under .lab.test) must not pass for the site.
    let got = ech_via_connect(&ward, "127.0.0.1", "site.lab.test", ech_client(o.ca()));
    assert_eq!(
        got,
        Err(Error::AlertReceived(rustls::AlertDescription::AccessDenied))
    );
    let rec = ward.expect_access("for ECH by address", |v| {
        field(v, "rule").as_deref() == Some("no-blind-ech")
    });
    assert_eq!(field(&rec, "action").as_deref(), Some("deny"), "{rec}");
    assert_eq!(
        field(&rec, "ech_unverifiable_destination").as_deref(),
        Some("true"),
        "{rec}"
    );
    assert_eq!(
        field(&rec, "ech").as_deref(),
        Some("grease_or_real"),
        "{rec}"
    );
    assert_eq!(
        field(&rec, "ech_outer_sni").as_deref(),
        Some(PUBLIC_NAME),
        "{rec}"
    );

    // By name with ECH, and by address without it: the site's rule lets both through.
    let got = ech_via_connect(&ward, "site.lab.test", "site.lab.test", ech_client(o.ca()));
    assert!(rejected(&got), "{got:?}");
    let (s, head) = http_connect(ward.addr, &format!("127.0.0.1:{}", o.tls.port()), &[]);
    assert_eq!(head.status, 200);
    o.assert_index_over(s, "site.lab.test");
    for asked in ["site.lab.test:", "127.0.0.1:"] {
        ward.expect_access(&format!("for {asked} let through"), |v| {
            field(v, "rule").as_deref() == Some("web")
                && field(v, "target").is_some_and(|t| t.starts_with(asked))
        });
    }
}

#[test]
fn an_inspected_ech_hello_is_answered_as_the_public_name_and_the_retry_is_inspected() {
    let ward = Ward::start(&inspecting_policy());
    let ca = ward_ca(&ward);
    let got = ech_via_connect(&ward, "site.lab.test", "site.lab.test", ech_client(&ca));
    // The forged leaf verified for the public name (the client trusts ward's CA), and
    // without ECH acceptance the client gives up on ECH to retry: RFC 9849's recovery.
    assert!(rejected(&got), "{got:?}");
    let rec = ward.expect_access("for the ECH interception", |v| {
        field(v, "outcome").as_deref() == Some("ech_rejected")
    });
    assert_eq!(field(&rec, "action").as_deref(), Some("inspect"), "{rec}");
    assert_eq!(
        field(&rec, "ech_outer_sni").as_deref(),
        Some(PUBLIC_NAME),
        "{rec}"
    );
    assert_eq!(field(&rec, "error").as_deref(), Some("-"), "{rec}");

    // The retry, without ECH: inspected as usual.
    let (s, head) = http_connect(
        ward.addr,
        &format!("site.lab.test:{}", origins().tls.port()),
        &[],
    );
    assert_eq!(head.status, 200);
    let mut tls = net::tls_over(
        s,
        "site.lab.test",
        client_config_trusting(std::path::Path::new(&ca), &[b"http/1.1"]),
    );
    let (status, body) = net::http_get(&mut tls, "site.lab.test", "/");
    assert_eq!((status, net::lossy(&body).as_str()), (200, INDEX_BODY));
    // Declining ECH is not refusing ward's certificate: pinning passthrough must not count it.
    let warned = ward
        .records()
        .iter()
        .any(|v| message(v).is_some_and(|m| m.contains("rejected the forged certificate")));
    assert!(!warned, "{}", ward.log());
}
