//! Interception (`action: inspect`): ward terminates TLS with a certificate forged by its own
//! CA, verifies the origin against `upstream_ca`, relays h1 and h2 without adding anything, and
//! reports an origin certificate that fails verification as a 502 inside the forged TLS.

use crate::support::client_config_trusting;
use crate::support::net::{self, http_connect};
use crate::support::origin::INDEX_BODY;
use crate::support::ward::field;
use crate::support::{Policy, Ward, curl, curl_index_via, have, origins};

/// Inspects everything under .lab.test (on loopback), trusting the test CA upstream.
pub fn inspecting_ward() -> Ward {
    Ward::start(&inspecting_policy())
}

/// The policy of `inspecting_ward`, for tests that add keys to it. The rule is named `look`.
pub fn inspecting_policy() -> Policy {
    Policy::new()
        .set("upstream_ca", &format!("\"{}\"", origins().ca()))
        .rule(r#"{name: look, action: inspect, hosts: [".lab.test"], dst: ["127.0.0.0/8"]}"#)
}

/// The path of ward's interception CA (created at start because the policy inspects).
pub fn ward_ca(ward: &Ward) -> String {
    let p = ward.dir().join("certs/ca.pem");
    assert!(
        p.exists(),
        "ward creates its CA at start when the policy inspects"
    );
    p.to_str().expect("utf-8").to_owned()
}

#[test]
fn inspect_relays_h1_and_h2_under_a_forged_certificate() {
    if !have("curl") {
        return;
    }
    let o = origins();
    let ward = inspecting_ward();
    let ca = ward_ca(&ward);
    let proxy = ward.http_url();
    // Trusting only ward's CA proves the certificate the client sees is forged by ward.
    let r = curl(&[
        "-x",
        &proxy,
        "--cacert",
        &ca,
        &o.https("site.lab.test", "/"),
    ]);
    assert_eq!(r.expect_ok(200).body, INDEX_BODY);
    for (flag, version) in [("--http2", "HTTP/2.0"), ("--http1.1", "HTTP/1.1")] {
        let url = o.https("site.lab.test", "/proto");
        let r = curl(&[flag, "-x", &proxy, "--cacert", &ca, &url]);
        assert_eq!(r.expect_ok(200).body, version, "{version} end to end");
    }
    let r = curl(&[
        "--http1.1",
        "-x",
        &proxy,
        "--cacert",
        &ca,
        "-H",
        "X-Probe: 1",
        &o.https("site.lab.test", "/headers"),
    ]);
    r.expect_ok(200);
    assert!(r.body.contains("x-probe: 1\n"), "{}", r.body);
    assert!(
        !r.body.contains("via:"),
        "nothing added inside interception: {}",
        r.body
    );
    let r = curl(&[
        "-x",
        &proxy,
        "--cacert",
        &ca,
        "--data-binary",
        "posted body",
        &o.https("site.lab.test", "/echo"),
    ]);
    assert_eq!(r.expect_ok(200).body, "posted body");
    ward.expect_access("for an inspected connection", |v| {
        field(v, "action").as_deref() == Some("inspect")
            && field(v, "sni").as_deref() == Some("site.lab.test")
    });
    // Outside the inspect rule, the test CA (the origin's own) is what the client sees.
    let r = curl_index_via(&proxy);
    assert_eq!(
        r.expect_ok(200).body,
        INDEX_BODY,
        "origin.test is tunnelled, not inspected"
    );
}

#[test]
fn inspect_reports_an_untrusted_origin_as_502_inside_the_forged_tls() {
    let o = origins();
    let ward = inspecting_ward();
    let ca = ward_ca(&ward);
    let (s, head) = http_connect(
        ward.addr,
        &format!("bad.lab.test:{}", o.untrusted.port()),
        &[],
    );
    assert_eq!(head.status, 200, "{head:#?}");
    let cfg = client_config_trusting(std::path::Path::new(&ca), &[b"http/1.1"]);
    let mut tls = net::tls_over(s, "bad.lab.test", cfg);
    net::handshake(&mut tls).expect("the forged handshake succeeds");
    std::io::Write::write_all(
        &mut tls,
        b"GET / HTTP/1.1\r\nHost: bad.lab.test\r\nConnection: close\r\n\r\n",
    )
    .expect("write");
    let head = net::read_head(&mut tls).expect("a reply inside the forged TLS");
    assert_eq!(head.status, 502, "{head:#?}");
    assert_eq!(
        head.proxy_error().as_deref(),
        Some("tls_certificate_error"),
        "{head:#?}"
    );
}

/// Waits (bounded) for a flow record matching `pred`, panicking with the log if none comes.
pub fn expect_flow(
    ward: &Ward,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    ward.wait_log(std::time::Duration::from_secs(5), |v| {
        v["target"] == "ward::flow" && pred(v)
    })
    .unwrap_or_else(|| {
        panic!(
            "no flow record {what} within 5 s; stderr:\n{}",
            ward.stderr_text()
        )
    })
}

/// CONNECT `connect` through ward, then TLS with `sni`, trusting only ward's CA.
pub fn inspected_tls(
    ward: &Ward,
    connect: &str,
    sni: &str,
    alpn: &[&[u8]],
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    let (s, head) = http_connect(ward.addr, connect, &[]);
    assert_eq!(head.status, 200, "CONNECT {connect}: {head:#?}");
    let cfg = client_config_trusting(std::path::Path::new(&ward_ca(ward)), alpn);
    let mut tls = net::tls_over(s, sni, cfg);
    net::handshake(&mut tls).expect("the forged handshake succeeds");
    tls
}
