//! DESIGN.md's table "What a client sees", row by row, from the client's side: the HTTP status,
//! the Proxy-Status token and details, the SOCKS5 reply code, and the access record's error.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::support::net::{self, Head, SocksAddr, http_connect, socks_reply as rep};
use crate::support::ward::field;
use crate::support::{Blackhole, Policy, Ward, origins, refused_port};

/// A proxy for the error rows: a deny rule, an allow rule without `dst` (so loopback stays
/// forbidden for it), a short connect timeout.
fn error_ward() -> Ward {
    Ward::start(
        &Policy::new()
            .set(
                "timeouts",
                "{connect: 1s, client_hello: 3s, idle: 30s, handshake: 3s, dns: 3s}",
            )
            .rule(r#"{name: no-blocked, action: deny, hosts: ["blocked.lab.test"]}"#)
            .rule(r#"{name: nodst, action: allow, hosts: ["nodst.lab.test"]}"#),
    )
}

/// Asserts status, Proxy-Status error token and that `details` contains `detail_has`.
fn assert_reply(head: &Head, status: u16, token: &str, detail_has: &str) {
    assert_eq!(head.status, status, "{head:#?}");
    assert_eq!(
        head.proxy_error().as_deref(),
        Some(token),
        "Proxy-Status of {head:#?}"
    );
    if !detail_has.is_empty() {
        let details = head.proxy_details().unwrap_or_default();
        assert!(
            details.contains(detail_has),
            "details {details:?} must name {detail_has:?}: {head:#?}"
        );
    }
}

fn assert_logged(ward: &Ward, target: &str, error: &str) {
    let rec = ward.expect_access(&format!("for {target}"), |v| {
        field(v, "target").as_deref() == Some(target) && field(v, "error").as_deref() == Some(error)
    });
    assert_ne!(
        field(&rec, "detail").as_deref(),
        Some("-"),
        "a detail: {rec}"
    );
}

#[test]
fn http_policy_deny_names_the_rule() {
    let ward = error_ward();
    let (_, head) = http_connect(ward.addr, "blocked.lab.test:443", &[]);
    assert_reply(&head, 403, "http_request_denied", "no-blocked");
    assert_logged(&ward, "blocked.lab.test:443", "policy_denied");
    let o = origins();
    let (_, head) = net::http_exchange(
        ward.addr,
        &format!(
            "GET http://blocked.lab.test:{}/ HTTP/1.1\r\nHost: blocked.lab.test\r\n\r\n",
            o.plain.port()
        ),
    );
    let head = head.expect("a reply to a denied plain request");
    assert_reply(&head, 403, "http_request_denied", "no-blocked");
}

#[test]
fn http_dns_failure() {
    let ward = error_ward();
    let (_, head) = http_connect(ward.addr, "no-such-host.invalid:443", &[]);
    assert_reply(&head, 502, "dns_error", "no-such-host.invalid");
    assert_logged(&ward, "no-such-host.invalid:443", "dns_error");
}

#[test]
fn http_connection_refused() {
    let ward = error_ward();
    let port = refused_port();
    let target = format!("origin.test:{port}");
    let (_, head) = http_connect(ward.addr, &target, &[]);
    assert_reply(&head, 502, "connection_refused", &port.to_string());
    assert_logged(&ward, &target, "connection_refused");

    let (_, head) = net::http_exchange(
        ward.addr,
        &format!("GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n"),
    );
    let head = head.expect("a reply to a plain request to a closed port");
    assert_reply(&head, 502, "connection_refused", &port.to_string());
}

#[test]
fn http_connect_timeout() {
    let ward = error_ward();
    let hole = Blackhole::new();
    let target = format!("slow.lab.test:{}", hole.addr.port());
    let started = Instant::now();
    let (_, head) = http_connect(ward.addr, &target, &[]);
    let took = started.elapsed();
    assert_reply(
        &head,
        504,
        "connection_timeout",
        &hole.addr.port().to_string(),
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "timeouts.connect is 1s, took {took:?}"
    );
    assert_logged(&ward, &target, "connection_timeout");
}

#[test]
fn http_forbidden_destination() {
    let ward = error_ward();
    let o = origins();
    let target = format!("nodst.lab.test:{}", o.tls.port());
    let (_, head) = http_connect(ward.addr, &target, &[]);
    assert_reply(&head, 403, "destination_ip_prohibited", "127.0.0.1");
    assert_logged(&ward, &target, "destination_prohibited");
}

#[test]
fn loopback_is_prohibited_without_a_dst_rule() {
    let o = origins();
    let ward = Ward::start(&Policy::new().set("default", "allow").without_lab_rule());
    for target in [
        format!("origin.test:{}", o.tls.port()),
        format!("127.0.0.1:{}", o.tls.port()),
        format!("[::1]:{}", o.tls.port()),
        format!("localhost:{}", o.tls.port()),
    ] {
        let (_, head) = http_connect(ward.addr, &target, &[]);
        assert_reply(&head, 403, "destination_ip_prohibited", "");
    }
    let got = net::socks5_open(ward.addr, &SocksAddr::Ip(o.tls.addr), None).map(drop);
    assert_eq!(got, Err(rep::NOT_ALLOWED), "SOCKS5 to 127.0.0.1");
}

#[test]
fn http_malformed_requests_get_400() {
    let ward = error_ward();
    for bad in [
        "HELLO THERE\r\n\r\n",
        "CONNECT origin.test HTTP/1.1\r\nHost: origin.test\r\n\r\n",
        "CONNECT origin.test:99999 HTTP/1.1\r\n\r\n",
        "GET /relative HTTP/1.1\r\nHost: origin.test\r\n\r\n",
        "CONNECT origin.test:443 HTTP/1.1\r\nBad Header Line\r\n\r\n",
    ] {
        let (mut s, head) = net::http_exchange(ward.addr, bad);
        let head = head.unwrap_or_else(|| panic!("no reply to {bad:?}"));
        assert_eq!(head.status, 400, "reply to {bad:?}: {head:#?}");
        assert_eq!(
            head.proxy_error().as_deref(),
            Some("http_request_error"),
            "{bad:?}"
        );
        assert!(
            net::closes_within(&mut s, Duration::from_secs(3)),
            "closes after {bad:?}"
        );
    }
}

#[test]
fn http_head_over_64k_gets_431() {
    let ward = error_ward();
    let mut s = net::connect(ward.addr);
    let mut req = String::from("CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test\r\n");
    while req.len() <= 64 * 1024 {
        req.push_str(&format!("X-Filler-{}: {}\r\n", req.len(), "a".repeat(200)));
    }
    // Whatever ward has not read when it answers may reset the connection: stop writing at
    // the first error and read what came back.
    let _ = s.write_all(req.as_bytes());
    let head = net::read_head(&mut s).expect("a 431 reply, not a silent close");
    assert_eq!(head.status, 431, "{head:#?}");
    assert_eq!(head.proxy_error().as_deref(), Some("http_request_error"));
    ward.expect_access("naming the oversized head", |v| {
        field(v, "error").as_deref() == Some("head_too_large")
    });
}

#[test]
fn socks5_error_rows() {
    let ward = error_ward();
    let o = origins();
    let hole = Blackhole::new();
    let refused = refused_port();
    let rows: [(SocksAddr, u8, &str); 5] = [
        (
            SocksAddr::Domain("blocked.lab.test", 443),
            rep::NOT_ALLOWED,
            "policy_denied",
        ),
        (
            SocksAddr::Domain("no-such-host.invalid", 443),
            rep::HOST_UNREACHABLE,
            "dns_error",
        ),
        (
            SocksAddr::Domain("origin.test", refused),
            rep::CONNECTION_REFUSED,
            "connection_refused",
        ),
        (
            SocksAddr::Domain("slow.lab.test", hole.addr.port()),
            rep::TTL_EXPIRED,
            "connection_timeout",
        ),
        (
            SocksAddr::Domain("nodst.lab.test", o.tls.port()),
            rep::NOT_ALLOWED,
            "destination_prohibited",
        ),
    ];
    for (to, code, error) in rows {
        let SocksAddr::Domain(name, port) = to else {
            unreachable!()
        };
        let got = net::socks5_open(ward.addr, &to, None).map(drop);
        assert_eq!(got, Err(code), "SOCKS5 reply for {name}:{port}");
        assert_logged(&ward, &format!("{name}:{port}"), error);
    }
}

#[test]
fn socks5_malformed_requests() {
    let ward = error_ward();
    // BIND (0x02) is not supported.
    let mut s = net::connect(ward.addr);
    assert_eq!(net::socks5_greet(&mut s, &[0x00]), 0x00);
    let bind = net::socks5_request(0x02, &SocksAddr::Domain("origin.test", 443));
    assert_eq!(net::socks5_send(&mut s, &bind), rep::COMMAND_NOT_SUPPORTED);
    // UDP ASSOCIATE (0x03) neither.
    let mut s = net::connect(ward.addr);
    assert_eq!(net::socks5_greet(&mut s, &[0x00]), 0x00);
    let udp = net::socks5_request(0x03, &SocksAddr::Domain("origin.test", 443));
    assert_eq!(net::socks5_send(&mut s, &udp), rep::COMMAND_NOT_SUPPORTED);
    // Address type 0x05 does not exist.
    let mut s = net::connect(ward.addr);
    assert_eq!(net::socks5_greet(&mut s, &[0x00]), 0x00);
    let bad_atyp = [0x05, 0x01, 0x00, 0x05, 1, 2, 3, 4, 0, 80];
    assert_eq!(
        net::socks5_send(&mut s, &bad_atyp),
        rep::ADDRESS_TYPE_NOT_SUPPORTED
    );
    // A request with the wrong version byte is a general failure (or a close).
    let mut s = net::connect(ward.addr);
    assert_eq!(net::socks5_greet(&mut s, &[0x00]), 0x00);
    s.write_all(&[0x04, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0, 80])
        .expect("write");
    let mut reply = [0u8; 2];
    match std::io::Read::read(&mut s, &mut reply) {
        Ok(0) => {}
        Ok(_) => assert_eq!(reply, [0x05, rep::GENERAL_FAILURE], "bad version"),
        Err(e) => assert!(net::is_reset(&e), "{e}"),
    }
}
