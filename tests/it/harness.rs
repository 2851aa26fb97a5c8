//! Tests of the harness itself: if these fail, every other failure is suspect.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::support::chromium;
use crate::support::net::{self, IO_TIMEOUT};
use crate::support::origin::{BANNER, INDEX_BODY, PAGE_MARKER};
use crate::support::tinyproxy::Tinyproxy;
use crate::support::{Blackhole, Policy, curl, have, origins, refused_port, wait_until, ws};

#[test]
fn origin_serves_tls_h1_and_h2_to_curl_trusting_the_test_ca() {
    if !have("curl") {
        return;
    }
    let o = origins();
    let ca = o.ca();
    let url = format!("https://origin.test:{}/", o.tls.port());
    let resolve = format!("origin.test:{}:127.0.0.1", o.tls.port());
    let r = curl(&["--cacert", ca, "--resolve", &resolve, &url]);
    r.expect_ok(200);
    assert_eq!(r.body, INDEX_BODY);
    let proto_url = format!("https://x.lab.test:{}/proto", o.tls.port());
    let resolve = format!("x.lab.test:{}:127.0.0.1", o.tls.port());
    let r = curl(&["--http2", "--cacert", ca, "--resolve", &resolve, &proto_url]);
    assert_eq!(r.expect_ok(200).body, "HTTP/2.0");
    let r = curl(&[
        "--http1.1",
        "--cacert",
        ca,
        "--resolve",
        &resolve,
        &proto_url,
    ]);
    assert_eq!(r.expect_ok(200).body, "HTTP/1.1");
}

#[test]
fn untrusted_origin_fails_verification() {
    if !have("curl") {
        return;
    }
    let o = origins();
    let ca = o.ca();
    let url = format!("https://origin.test:{}/", o.untrusted.port());
    let resolve = format!("origin.test:{}:127.0.0.1", o.untrusted.port());
    let r = curl(&["--cacert", ca, "--resolve", &resolve, &url]);
    assert_eq!(
        r.exit(),
        Some(60),
        "curl must reject the self-signed origin: {r:#?}"
    );
}

#[test]
fn plain_origin_routes() {
    let o = origins();
    let mut s = net::connect(o.plain.addr);
    let (status, body) = net::http_get(&mut s, "origin.test", "/bytes/100000");
    assert_eq!(status, 200);
    assert_eq!(body.len(), 100_000);
    assert!(body.iter().all(|b| *b == b'x'));

    let mut s = net::connect(o.plain.addr);
    let req = "GET /headers HTTP/1.1\r\nHost: a\r\nVia: 1.0 other\r\nX-Test: 1\r\nConnection: close\r\n\r\n";
    s.write_all(req.as_bytes()).expect("write");
    let head = net::read_head(&mut s).expect("reply");
    let mut body = head.rest.clone();
    body.extend(net::read_all(&mut s));
    let text = String::from_utf8(body).expect("utf-8");
    assert!(text.starts_with("GET /headers HTTP/1.1\n"), "{text}");
    assert!(text.contains("via: 1.0 other\n"), "{text}");

    let mut s = net::connect(o.plain.addr);
    let req =
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    s.write_all(req.as_bytes()).expect("write");
    let head = net::read_head(&mut s).expect("reply");
    let mut body = head.rest.clone();
    body.extend(net::read_all(&mut s));
    assert_eq!(body, b"hello");
}

#[test]
fn banner_server_speaks_first_and_echo_server_reports_eof() {
    let o = origins();
    let mut s = net::connect(o.banner.addr);
    let mut got = vec![0u8; BANNER.len()];
    std::io::Read::read_exact(&mut s, &mut got).expect("banner");
    assert_eq!(got, BANNER);

    let mut s = net::connect(o.echo.addr);
    s.write_all(b"abc").expect("write");
    net::shutdown_write(&s);
    let all = net::read_all(&mut s);
    assert_eq!(net::lossy(&all), "abcEOF after 3 bytes\n");
}

#[test]
fn refused_port_refuses() {
    let port = refused_port();
    let err = std::net::TcpStream::connect(("127.0.0.1", port)).expect_err("must be refused");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn blackhole_makes_connect_time_out_reliably() {
    let hole = Blackhole::new();
    for _ in 0..3 {
        let started = Instant::now();
        let err = std::net::TcpStream::connect_timeout(&hole.addr, Duration::from_millis(700))
            .expect_err("must not connect");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() >= Duration::from_millis(650));
    }
    assert!(IO_TIMEOUT > Duration::from_secs(1));
}

#[test]
fn policy_builder_renders_overrides_and_rule_order() {
    let yaml = Policy::new()
        .set("default", "allow")
        .rule("{name: first, action: deny, hosts: [a.test]}")
        .render();
    assert!(yaml.contains("default: allow\n"), "{yaml}");
    let first = yaml.find("name: first").expect("first rule");
    let lab = yaml.find("name: lab").expect("lab rule");
    assert!(first < lab, "{yaml}");
    assert_eq!(yaml.matches("default:").count(), 1);
}

#[test]
fn chromium_trusts_the_test_ca_through_its_nss_db() {
    if !chromium::available() {
        return;
    }
    let o = origins();
    let map = "--host-resolver-rules=MAP origin.test 127.0.0.1".to_owned();
    let out = chromium::dump_dom(&[map], &o.https("origin.test", "/"));
    assert!(out.stdout.contains(PAGE_MARKER), "direct load: {out:#?}");
}

#[test]
fn tinyproxy_and_the_python_client_work_without_ward() {
    if !have("tinyproxy") || !crate::clients::have_python_deps() {
        return;
    }
    let o = origins();
    let tp = Tinyproxy::start();
    let (s, head) = net::http_connect(tp.addr, &format!("localhost:{}", o.tls.port()), &[]);
    assert_eq!(head.status, 200, "{head:#?}");
    o.assert_index_over(s, "localhost");
    let got = crate::clients::python_client(
        &format!("http://{}", tp.addr),
        &format!("https://localhost:{}/", o.tls.port()),
    );
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["body"], INDEX_BODY, "{got}");
}
#[test]
fn websocket_helpers_match_rfc_6455() {
    // RFC 6455, 1.3's worked example.
    assert_eq!(
        ws::accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    // RFC 6455, 5.7: a masked "Hello".
    let hello = ws::encode(ws::OP_TEXT, b"Hello", Some([0x37, 0xfa, 0x21, 0x3d]));
    assert_eq!(
        hello,
        [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58
        ]
    );
    for cut in 0..hello.len() {
        assert_eq!(ws::parse(&hello[..cut]), Ok(None));
    }
    let (frame, used) = ws::parse(&hello).unwrap().unwrap();
    assert_eq!(
        (frame.opcode, frame.payload.as_slice(), used),
        (ws::OP_TEXT, &b"Hello"[..], 11)
    );
    let long = ws::encode(ws::OP_TEXT, &[b'a'; 300], None);
    assert_eq!(ws::parse(&long).unwrap().unwrap().0.payload.len(), 300);
}

#[test]
fn wait_until_returns_what_the_condition_found() {
    let mut calls = 0;
    let found = wait_until(Duration::from_secs(5), "the third call", || {
        calls += 1;
        (calls == 3).then_some(calls)
    });
    assert_eq!(found, 3);
}

#[test]
#[should_panic(expected = "waiting for a condition that never holds")]
fn wait_until_panics_naming_what_it_waited_for() {
    wait_until(
        Duration::from_millis(50),
        "a condition that never holds",
        || false,
    );
}
