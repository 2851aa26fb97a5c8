//! Hostile and broken clients: garbage, truncated and 1-byte-at-a-time handshakes, resets, a
//! crowd of idle connections, and the connection limit. After each, ward must still serve.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::net::{self, SocksAddr, Trickle, http_connect};
use crate::support::origin::INDEX_BODY;
use crate::support::ward::field;
use crate::support::{Policy, Ward, curl_index_via, have, origins, wait_until};

/// Idle connections opened in `idle_crowd_does_not_starve_real_clients`.
const CROWD: usize = 1000;

/// A normal tunnelled request through `ward` succeeds (raw client: no external tool needed).
fn assert_serves(ward: &Ward) {
    let o = origins();
    let (s, head) = http_connect(ward.addr, &format!("origin.test:{}", o.tls.port()), &[]);
    assert_eq!(head.status, 200, "{head:#?}");
    o.assert_index_over(s, "origin.test");
}

#[test]
fn garbage_gets_400_and_ward_survives() {
    let o = origins();
    let ward = Ward::start(&Policy::new());
    // A TLS ClientHello sent to the proxy port itself (a client that forgot CONNECT).
    let hello = net::client_hello_bytes("origin.test", o.client_config(&[]));
    let mut s = net::connect(ward.addr);
    let _ = s.write_all(&hello);
    let head = net::read_head(&mut s).expect("a 400 reply to a TLS hello");
    assert_eq!(head.status, 400, "{head:#?}");
    // Binary noise, NULs and a lone CR.
    let mut noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    noise[0] = b'G';
    noise.extend_from_slice(b"\r\n\r\n");
    let mut s = net::connect(ward.addr);
    let _ = s.write_all(&noise);
    assert!(
        net::closes_within(&mut s, Duration::from_secs(5)),
        "noise: ward must close"
    );
    // SOCKS5 greeting claiming 255 methods, then closing mid-greeting.
    let mut s = net::connect(ward.addr);
    s.write_all(&[0x05, 0xFF, 0x00]).expect("write");
    net::shutdown_write(&s);
    assert!(net::closes_within(&mut s, Duration::from_secs(5)));
    assert_serves(&ward);
}

#[test]
fn truncated_client_hello_then_close() {
    let o = origins();
    let ward = Ward::start(&Policy::new());
    let hello = net::client_hello_bytes("origin.test", o.client_config(&[]));
    let target = format!("origin.test:{}", o.tls.port());
    let (mut s, head) = http_connect(ward.addr, &target, &[]);
    assert_eq!(head.status, 200);
    s.write_all(&hello[..hello.len() / 2])
        .expect("write half a hello");
    net::shutdown_write(&s);
    assert!(
        net::closes_within(&mut s, Duration::from_secs(5)),
        "tunnel must end"
    );
    ward.expect_access("for the truncated hello", |v| {
        field(v, "target").as_deref() == Some(target.as_str())
    });
    assert_serves(&ward);
}

#[test]
fn client_hello_one_byte_at_a_time() {
    let o = origins();
    let ward = Ward::start(&Policy::new().set(
        "timeouts",
        "{connect: 3s, client_hello: 20s, idle: 60s, handshake: 3s, dns: 3s}",
    ));
    let (s, head) = http_connect(ward.addr, &format!("origin.test:{}", o.tls.port()), &[]);
    assert_eq!(head.status, 200);
    let cfg = o.client_config(&[b"http/1.1"]);
    let hello_len = net::client_hello_bytes("origin.test", cfg.clone()).len();
    let slow = Trickle {
        inner: s,
        slow: hello_len,
        pause: Duration::from_millis(1),
    };
    let mut tls = net::tls_over(slow, "origin.test", cfg);
    let (status, body) = net::http_get(&mut tls, "origin.test", "/");
    assert_eq!((status, net::lossy(&body).as_str()), (200, INDEX_BODY));
    drop(tls);
    let rec = ward.expect_access("for the slow hello", |v| {
        field(v, "sni").as_deref() == Some("origin.test")
    });
    assert_eq!(field(&rec, "alpn").as_deref(), Some("http/1.1"));
}

#[test]
fn reset_mid_stream_is_an_outcome_not_a_crash() {
    let o = origins();
    let ward = Ward::start(&Policy::new());
    let (s, head) = http_connect(ward.addr, &format!("origin.test:{}", o.tls.port()), &[]);
    assert_eq!(head.status, 200);
    let mut tls = net::tls_over(s, "origin.test", o.client_config(&[b"http/1.1"]));
    tls.write_all(b"GET /bytes/100000000 HTTP/1.1\r\nHost: origin.test\r\n\r\n")
        .expect("write");
    let mut chunk = [0u8; 8192];
    tls.read_exact(&mut chunk).expect("first bytes");
    socket2::SockRef::from(&tls.sock)
        .set_linger(Some(Duration::ZERO))
        .expect("linger 0");
    drop(tls);
    let rec = ward.expect_access("for the reset tunnel", |v| {
        field(v, "sni").as_deref() == Some("origin.test")
    });
    assert_eq!(field(&rec, "stage").as_deref(), Some("tunnel"), "{rec}");
    assert!(
        !ward.stderr_text().contains("\"level\":\"ERROR\""),
        "a client reset is never an error!: {}",
        ward.stderr_text()
    );
    assert_serves(&ward);
}

#[test]
fn idle_crowd_does_not_starve_real_clients() {
    // The crowd and the real client share 127.0.0.1: this is about the process, not one
    // client's share (tests/it/shares.rs holds that), so the share is as large as the total.
    let ward = Ward::start(
        &Policy::new()
            .set("max_connections", "5000")
            .set("max_connections_per_client", "5000")
            .set(
                "timeouts",
                "{connect: 3s, client_hello: 30s, idle: 60s, handshake: 30s, dns: 3s}",
            ),
    );
    let crowd: Vec<TcpStream> = (0..CROWD).map(|_| net::connect(ward.addr)).collect();
    let started = Instant::now();
    assert_serves(&ward);
    if have("curl") {
        let r = curl_index_via(&ward.http_url());
        assert_eq!(r.expect_ok(200).body, INDEX_BODY);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "with {CROWD} idle connections a request took {:?}",
        started.elapsed()
    );
    let mut idle = crowd.into_iter().next().expect("one idle");
    let mut b = [0u8; 1];
    idle.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    assert!(
        matches!(idle.read(&mut b), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "idle connections are kept until the handshake timeout"
    );
}

#[test]
fn max_connections_answers_503_and_socks_failure() {
    let limit = 3;
    let ward = Ward::start(
        &Policy::new()
            .set("max_connections", &limit.to_string())
            .set(
                "timeouts",
                "{connect: 3s, client_hello: 30s, idle: 60s, handshake: 30s, dns: 3s}",
            ),
    );
    let o = origins();
    let target = format!("origin.test:{}", o.tls.port());
    let mut held: Vec<TcpStream> = Vec::new();
    for _ in 0..limit {
        let (s, head) = http_connect(ward.addr, &target, &[]);
        assert_eq!(head.status, 200);
        held.push(s);
    }
    let started = Instant::now();
    let (_, head) = http_connect(ward.addr, &target, &[]);
    assert_eq!(head.status, 503, "over the limit: {head:#?}");
    assert_eq!(
        head.proxy_error().as_deref(),
        Some("connection_limit_reached")
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered at once"
    );
    let got = net::socks5_open(
        ward.addr,
        &SocksAddr::Domain("origin.test", o.tls.port()),
        None,
    )
    .map(drop);
    assert_eq!(
        got,
        Err(net::socks_reply::GENERAL_FAILURE),
        "SOCKS5 over the limit"
    );

    drop(held);
    wait_until(Duration::from_secs(3), "the slots to be freed", || {
        http_connect(ward.addr, &target, &[]).1.status == 200
    });
}
