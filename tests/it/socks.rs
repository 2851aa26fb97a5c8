//! The SOCKS5 front-end with real curl (`socks5h://` name resolved by ward, `socks5://` address
//! resolved by the client) and raw RFC 1928/1929 exchanges for authentication failures.

use std::io::Write;

use crate::support::net::{self, SocksAddr, socks5_auth, socks5_greet};
use crate::support::origin::INDEX_BODY;
use crate::support::secrets::{PASSWORD, WRONG_PASSWORD, alice_inline};
use crate::support::ward::field;
use crate::support::{Policy, Ward, curl, curl_index_via, have, origins};

#[test]
fn curl_socks5h_tunnels_https() {
    if !have("curl") {
        return;
    }
    let o = origins();
    let ward = Ward::start(&Policy::new());
    let proxy = format!("socks5h://{}", ward.addr);
    let r = curl_index_via(&proxy);
    assert_eq!(r.expect_ok(200).body, INDEX_BODY);
    let rec = ward.expect_access("for the socks5h tunnel", |v| {
        field(v, "via").as_deref() == Some("socks5")
    });
    assert_eq!(
        field(&rec, "target"),
        Some(format!("origin.test:{}", o.tls.port()))
    );
    assert_eq!(field(&rec, "sni").as_deref(), Some("origin.test"));
}

#[test]
fn curl_socks5_with_client_side_resolution() {
    if !have("curl") {
        return;
    }
    let o = origins();
    let ward = Ward::start(&Policy::new());
    let proxy = format!("socks5://{}", ward.addr);
    let resolve = format!("origin.test:{}:127.0.0.1", o.tls.port());
    let r = curl(&[
        "-x",
        &proxy,
        "--resolve",
        &resolve,
        "--cacert",
        o.ca(),
        &o.https("origin.test", "/"),
    ]);
    assert_eq!(r.expect_ok(200).body, INDEX_BODY);
    let rec = ward.expect_access("for the socks5 tunnel", |v| {
        field(v, "via").as_deref() == Some("socks5")
    });
    assert_eq!(
        field(&rec, "target"),
        Some(format!("127.0.0.1:{}", o.tls.port())),
        "the client sent an address"
    );
    assert_eq!(field(&rec, "sni").as_deref(), Some("origin.test"));
}

#[test]
fn socks5_authentication() {
    if !have("curl") {
        return;
    }
    let o = origins();
    let ward = Ward::start(&Policy::new().set("users", &alice_inline()));
    let url = o.https("origin.test", "/");

    let ok = format!("socks5h://alice:{PASSWORD}@{}", ward.addr);
    let r = curl(&["-x", &ok, "--cacert", o.ca(), &url]);
    assert_eq!(r.expect_ok(200).body, INDEX_BODY);

    let bad = format!("socks5h://alice:{WRONG_PASSWORD}@{}", ward.addr);
    let r = curl(&["-x", &bad, "--cacert", o.ca(), &url]);
    assert!(
        !r.out.success() && r.http_code == 0,
        "wrong password must fail: {r:#?}"
    );

    // Offering only "no authentication" when users are configured: no acceptable method.
    let mut s = net::connect(ward.addr);
    assert_eq!(socks5_greet(&mut s, &[0x00]), 0xFF);
    assert!(net::closes_within(
        &mut s,
        std::time::Duration::from_secs(3)
    ));

    let mut s = net::connect(ward.addr);
    assert_eq!(
        socks5_greet(&mut s, &[0x00, 0x02]),
        0x02,
        "user/password chosen"
    );
    assert_eq!(
        socks5_auth(&mut s, "alice", WRONG_PASSWORD),
        0x01,
        "RFC 1929 failure status"
    );
    assert!(net::closes_within(
        &mut s,
        std::time::Duration::from_secs(3)
    ));

    let mut s = net::connect(ward.addr);
    assert_eq!(socks5_greet(&mut s, &[0x02]), 0x02);
    assert_eq!(
        socks5_auth(&mut s, "mallory", PASSWORD),
        0x01,
        "unknown user"
    );

    let target = SocksAddr::Domain("origin.test", o.tls.port());
    let s = net::socks5_open(ward.addr, &target, Some(("alice", PASSWORD)))
        .unwrap_or_else(|code| panic!("socks5 CONNECT with credentials: reply {code:#x}"));
    o.assert_index_over(s, "origin.test");
    assert!(
        !ward.stderr_text().contains(WRONG_PASSWORD),
        "passwords never logged: {}",
        ward.stderr_text()
    );
}

#[test]
fn socks5_carries_plain_bytes_both_ways() {
    let o = origins();
    let ward = Ward::start(&Policy::new());
    let mut s = net::socks5_open(ward.addr, &SocksAddr::Ip(o.echo.addr), None)
        .unwrap_or_else(|code| panic!("socks5 CONNECT to the echo server: {code:#x}"));
    s.write_all(b"ping").expect("write");
    net::shutdown_write(&s);
    assert_eq!(
        net::lossy(&net::read_all(&mut s)),
        "pingEOF after 4 bytes\n"
    );
}

/// A client that sends its greeting, credentials and request in one write (optimistic SOCKS5,
/// as some clients do to save round trips) gets each answer at once: ward parses what it has
/// buffered before it reads again, and never waits for bytes the client will not send before
/// it is answered.
#[test]
fn socks5_pipelined_greeting_auth_and_request_answer_at_once() {
    let o = origins();
    for creds in [false, true] {
        let policy = match creds {
            true => Policy::new().set("users", &alice_inline()),
            false => Policy::new(),
        };
        let ward = Ward::start(&policy);
        let mut s = net::connect(ward.addr);
        let method: u8 = if creds { 0x02 } else { 0x00 };
        let mut all = vec![0x05, 1, method];
        if creds {
            all.extend_from_slice(&[0x01, 5]);
            all.extend_from_slice(b"alice");
            all.push(PASSWORD.len() as u8);
            all.extend_from_slice(PASSWORD.as_bytes());
        }
        all.extend_from_slice(&net::socks5_request(0x01, &SocksAddr::Ip(o.echo.addr)));
        let started = std::time::Instant::now();
        s.write_all(&all).expect("write everything at once");
        let mut choice = [0u8; 2];
        std::io::Read::read_exact(&mut s, &mut choice).expect("method choice");
        assert_eq!(choice, [0x05, method]);
        if creds {
            let mut status = [0u8; 2];
            std::io::Read::read_exact(&mut s, &mut status).expect("auth status");
            assert_eq!(status, [0x01, 0x00]);
        }
        assert_eq!(net::read_socks5_reply(&mut s), 0x00, "CONNECT reply");
        // Answered on the bytes it had: a wait for more would last the handshake timeout.
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(3),
            "answered after {took:?}"
        );
        s.write_all(b"ping").expect("write");
        net::shutdown_write(&s);
        assert_eq!(
            net::lossy(&net::read_all(&mut s)),
            "pingEOF after 4 bytes\n"
        );
    }
}
