//! Decisions taken on the ClientHello inside an open tunnel: SNI deny (TLS alert
//! access_denied), sni_mismatch, non_tls, server-speaks-first protocols, half-close, and the
//! ClientHello timeout.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use rustls::AlertDescription;

use crate::support::net::{self, SocksAddr, http_connect};
use crate::support::origin::{BANNER, INDEX_BODY};
use crate::support::tools::run;
use crate::support::ward::field;
use crate::support::{Policy, Ward, have, origins};

fn sni_ward(extra: fn(Policy) -> Policy) -> Ward {
    Ward::start(&extra(Policy::new().rule(
        r#"{name: no-blocked, action: deny, hosts: ["blocked.lab.test"]}"#,
    )))
}

/// CONNECT origin.test:PORT, then a TLS handshake naming `sni`.
fn handshake_via_connect(ward: &Ward, sni: &str) -> Result<(), rustls::Error> {
    let o = origins();
    let (s, head) = http_connect(ward.addr, &format!("origin.test:{}", o.tls.port()), &[]);
    assert_eq!(head.status, 200, "CONNECT must be allowed: {head:#?}");
    let mut tls = net::tls_over(s, sni, o.client_config(&[b"http/1.1"]));
    net::handshake(&mut tls)
}

#[test]
fn sni_deny_sends_access_denied_alert() {
    let ward = sni_ward(|p| p);
    let got = handshake_via_connect(&ward, "blocked.lab.test");
    assert_eq!(
        got,
        Err(rustls::Error::AlertReceived(AlertDescription::AccessDenied))
    );
    let rec = ward.expect_access("for the SNI deny", |v| {
        field(v, "error").as_deref() == Some("sni_denied")
    });
    assert_eq!(field(&rec, "sni").as_deref(), Some("blocked.lab.test"));
    assert_eq!(field(&rec, "rule").as_deref(), Some("no-blocked"));
    assert_eq!(field(&rec, "action").as_deref(), Some("deny"));
    // The same tunnel with an allowed name works.
    assert_eq!(handshake_via_connect(&ward, "origin.test"), Ok(()));
}

#[test]
fn sni_deny_seen_by_openssl_s_client() {
    if !have("openssl") {
        return;
    }
    let o = origins();
    let ward = sni_ward(|p| p);
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(["s_client", "-proxy", &ward.addr.to_string()])
        .args(["-connect", &format!("origin.test:{}", o.tls.port())])
        .args(["-servername", "blocked.lab.test", "-CAfile", o.ca()]);
    let out = run(cmd, Duration::from_secs(20));
    assert!(!out.success(), "handshake must fail: {out:#?}");
    let all = format!("{}{}", out.stdout, out.stderr).to_lowercase();
    assert!(
        all.contains("access denied"),
        "openssl reports the alert: {out:#?}"
    );
}

#[test]
fn sni_mismatch_deny_and_allow() {
    let ward = sni_ward(|p| p.set("sni_mismatch", "deny"));
    let got = handshake_via_connect(&ward, "other.lab.test");
    assert_eq!(
        got,
        Err(rustls::Error::AlertReceived(AlertDescription::AccessDenied))
    );
    let rec = ward.expect_access("for the mismatch", |v| {
        field(v, "error").as_deref() == Some("sni_mismatch")
    });
    // The record says what happened to the connection, and which rule had let it through.
    assert_eq!(field(&rec, "action").as_deref(), Some("deny"), "{rec}");
    assert_eq!(field(&rec, "rule").as_deref(), Some("lab"), "{rec}");
    assert_eq!(
        handshake_via_connect(&ward, "origin.test"),
        Ok(()),
        "same name passes"
    );
    assert_eq!(
        handshake_via_connect(&ward, "ORIGIN.test."),
        Ok(()),
        "names compare after normalisation"
    );

    let lenient = sni_ward(|p| p.set("sni_mismatch", "allow"));
    assert_eq!(handshake_via_connect(&lenient, "other.lab.test"), Ok(()));
}

#[test]
fn sni_deny_applies_to_socks5_too() {
    let o = origins();
    let ward = sni_ward(|p| p);
    let s = net::socks5_open(
        ward.addr,
        &SocksAddr::Domain("origin.test", o.tls.port()),
        None,
    )
    .unwrap_or_else(|c| panic!("SOCKS5 CONNECT: {c:#x}"));
    let mut tls = net::tls_over(s, "blocked.lab.test", o.client_config(&[]));
    assert_eq!(
        net::handshake(&mut tls),
        Err(rustls::Error::AlertReceived(AlertDescription::AccessDenied))
    );
}

#[test]
fn non_tls_allowed_by_default_and_denied_when_configured() {
    let o = origins();
    let target = format!("origin.test:{}", o.plain.port());
    let ward = Ward::start(&Policy::new());
    let (mut s, head) = http_connect(ward.addr, &target, &[]);
    assert_eq!(head.status, 200);
    let (status, body) = net::http_get(&mut s, "origin.test", "/");
    assert_eq!((status, net::lossy(&body).as_str()), (200, INDEX_BODY));

    let strict = Ward::start(&Policy::new().set("non_tls", "deny"));
    let (mut s, head) = http_connect(strict.addr, &target, &[]);
    assert_eq!(head.status, 200);
    s.write_all(b"GET / HTTP/1.1\r\nHost: origin.test\r\n\r\n")
        .expect("write");
    let got = net::read_all(&mut s);
    assert!(
        !net::lossy(&got).contains("HTTP/1.1 200"),
        "plain HTTP must not be relayed: {:?}",
        net::lossy(&got)
    );
    strict.expect_access("naming non_tls", |v| {
        field(v, "error").as_deref() == Some("non_tls_denied")
    });
}

/// A real ClientHello split over more TLS records than ward reads is TLS all the same: it must
/// be refused (its SNI cannot be checked), not relayed as `non_tls`, even where that is allowed.
#[test]
fn unreadable_client_hello_is_refused_not_relayed() {
    let o = origins();
    let ward = Ward::start(&Policy::new());
    let hello = include_bytes!("../fixtures/curl.bin");
    let message = &hello[5..];
    let mut shredded = Vec::new();
    for byte in message {
        shredded.extend_from_slice(&[22, 3, 1, 0, 1, *byte]);
    }
    let target = format!("origin.test:{}", o.tls.port());
    let (mut s, head) = http_connect(ward.addr, &target, &[]);
    assert_eq!(head.status, 200);
    s.write_all(&shredded).expect("write");
    let got = net::read_all(&mut s);
    // A fatal decode_error alert (RFC 8446 §6: content type 21, level 2, description 50).
    assert_eq!(
        (got.first(), got.get(5..7)),
        (Some(&21), Some(&[2u8, 50][..])),
        "expected a decode_error alert, got {got:?}"
    );
    ward.expect_access("naming the unreadable hello", |v| {
        field(v, "error").as_deref() == Some("client_hello_unreadable")
            && field(v, "detail").is_some_and(|d| d.contains("more than 256 records"))
    });
}

#[test]
fn server_speaks_first_is_relayed_at_once() {
    let o = origins();
    let ward = Ward::start(&Policy::new());
    let (mut s, head) = http_connect(ward.addr, &format!("origin.test:{}", o.banner.port()), &[]);
    assert_eq!(head.status, 200);
    let started = Instant::now();
    let mut got = head.rest.clone();
    while got.len() < BANNER.len() {
        let mut chunk = [0u8; 256];
        let n = s.read(&mut chunk).expect("banner through the tunnel");
        assert!(n > 0, "closed before the banner");
        got.extend_from_slice(&chunk[..n]);
    }
    assert_eq!(got, BANNER);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the banner must not wait for timeouts.client_hello: {:?}",
        started.elapsed()
    );
    s.write_all(b"SSH-2.0-client\r\n").expect("write");
    let mut echo = [0u8; 16];
    s.read_exact(&mut echo).expect("echo");
    assert_eq!(&echo, b"SSH-2.0-client\r\n");

    let strict = Ward::start(&Policy::new().set("non_tls", "deny"));
    let (mut s, head) = http_connect(
        strict.addr,
        &format!("origin.test:{}", o.banner.port()),
        &[],
    );
    assert_eq!(head.status, 200);
    let got = net::read_all(&mut s);
    assert!(
        !got.starts_with(BANNER),
        "non_tls: deny must not relay the banner"
    );
}

#[test]
fn half_close_through_tunnels() {
    let o = origins();
    let ward = Ward::start(&Policy::new());
    let (mut s, head) = http_connect(ward.addr, &format!("origin.test:{}", o.echo.port()), &[]);
    assert_eq!(head.status, 200);
    s.write_all(b"half").expect("write");
    net::shutdown_write(&s);
    assert_eq!(
        net::lossy(&net::read_all(&mut s)),
        "halfEOF after 4 bytes\n"
    );

    let mut s = net::socks5_open(
        ward.addr,
        &SocksAddr::Domain("origin.test", o.echo.port()),
        None,
    )
    .unwrap_or_else(|c| panic!("SOCKS5: {c:#x}"));
    s.write_all(b"close").expect("write");
    net::shutdown_write(&s);
    assert_eq!(
        net::lossy(&net::read_all(&mut s)),
        "closeEOF after 5 bytes\n"
    );
}

#[test]
fn client_hello_timeout_closes_a_silent_tunnel() {
    let o = origins();
    let ward = Ward::start(&Policy::new().set(
        "timeouts",
        "{connect: 3s, client_hello: 1s, idle: 60s, handshake: 3s, dns: 3s}",
    ));
    let (mut s, head) = http_connect(ward.addr, &format!("origin.test:{}", o.tls.port()), &[]);
    assert_eq!(head.status, 200);
    let started = Instant::now();
    assert!(net::closes_within(&mut s, Duration::from_secs(5)));
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    ward.expect_access("for the silent tunnel", |v| {
        field(v, "error").as_deref() == Some("client_hello_timeout")
    });
}
