//! The HTTP proxy front-end with real curl: CONNECT tunnels (h1 and h2 inside), plain HTTP
//! forwarding (Via added, Proxy-Authorization stripped, keep-alive), Basic authentication.

use std::io::Write;

use crate::support::net::{self, basic_auth, http_connect};
use crate::support::origin::INDEX_BODY;
use crate::support::secrets::{PASSWORD, WRONG_PASSWORD, alice_inline};
use crate::support::ward::field;
use crate::support::{Policy, Ward, curl, curl_index_via, have, origins, ws};

#[test]
fn curl_connect_tunnels_https_h1_and_h2() {
    if !have("curl") {
        return;
    }
    let o = origins();
    let ward = Ward::start(&Policy::new());
    let r = curl_index_via(&ward.http_url());
    r.expect_ok(200);
    assert_eq!(r.connect_code, 200, "CONNECT answer");
    assert_eq!(r.body, INDEX_BODY);
    let rec = ward.expect_access("for the h1 tunnel", |v| {
        field(v, "target").as_deref() == Some(&format!("origin.test:{}", o.tls.port()))
    });
    assert_eq!(field(&rec, "via").as_deref(), Some("http-connect"));
    assert_eq!(field(&rec, "sni").as_deref(), Some("origin.test"));
    assert_eq!(field(&rec, "action").as_deref(), Some("allow"));
    assert_eq!(field(&rec, "rule").as_deref(), Some("lab"));
    assert_eq!(field(&rec, "error").as_deref(), Some("-"));
    let down: u64 = field(&rec, "bytes_down")
        .and_then(|b| b.parse().ok())
        .unwrap_or(0);
    assert!(
        down > INDEX_BODY.len() as u64,
        "bytes_down counts the tunnel: {rec}"
    );

    let r = curl(&[
        "--http2",
        "-x",
        &ward.http_url(),
        "--cacert",
        o.ca(),
        &o.https("h2.lab.test", "/proto"),
    ]);
    assert_eq!(r.expect_ok(200).body, "HTTP/2.0");
    let rec = ward.expect_access("for the h2 tunnel", |v| {
        field(v, "sni").as_deref() == Some("h2.lab.test")
    });
    assert_eq!(
        field(&rec, "alpn").as_deref(),
        Some("h2"),
        "first ALPN offered: {rec}"
    );
}

#[test]
fn curl_streams_a_large_body_through_the_tunnel() {
    if !have("curl") {
        return;
    }
    let o = origins();
    let ward = Ward::start(&Policy::new());
    let size = 20 * 1024 * 1024;
    let r = curl(&[
        "-x",
        &ward.http_url(),
        "--cacert",
        o.ca(),
        "-o",
        "/dev/null",
        "-w",
        " %{size_download}",
        &o.https("origin.test", &format!("/bytes/{size}")),
    ]);
    assert!(r.out.success(), "{r:#?}");
    assert!(
        r.out.stdout.trim_end().ends_with(&format!(" {size}")),
        "downloaded size: {r:#?}"
    );
}

#[test]
fn plain_forwarding_adds_via_and_strips_proxy_authorization() {
    if !have("curl") {
        return;
    }
    let o = origins();
    let ward = Ward::start(&Policy::new().set("users", &alice_inline()));
    let proxy = format!("http://alice:{PASSWORD}@{}", ward.addr);
    let r = curl(&[
        "-x",
        &proxy,
        "-H",
        "Via: 1.0 other",
        &o.http("origin.test", "/headers"),
    ]);
    r.expect_ok(200);
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(
        lines.first().copied(),
        Some("GET /headers HTTP/1.1"),
        "origin-form upstream: {}",
        r.body
    );
    let via: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("via: "))
        .collect();
    assert_eq!(
        via.join(", "),
        "1.0 other, 1.1 ward",
        "Via chain: {}",
        r.body
    );
    for hop in ["proxy-authorization:", "proxy-connection:"] {
        assert!(
            !r.body.contains(hop),
            "{hop} must not reach the origin: {}",
            r.body
        );
    }
    let rec = ward.expect_access("for the forwarded request", |v| {
        field(v, "via").as_deref() == Some("http-forward")
    });
    assert_eq!(field(&rec, "method").as_deref(), Some("GET"));
    assert_eq!(field(&rec, "status").as_deref(), Some("200"));
    assert_eq!(field(&rec, "user").as_deref(), Some("alice"));
    assert!(
        !ward.stderr_text().contains("YWxpY2U6cHc"),
        "no credentials in logs"
    );
}

/// One request on an open forwarding connection: its head and the body it announced.
fn exchange(s: &mut std::net::TcpStream, request: &str) -> (net::Head, Vec<u8>) {
    s.write_all(request.as_bytes()).expect("write");
    let head = net::read_head(s).expect("ward closed the connection instead of answering");
    let len: usize = head
        .header("content-length")
        .and_then(|l| l.parse().ok())
        .expect("content-length");
    let mut body = head.rest.clone();
    while body.len() < len {
        let mut chunk = [0u8; 4096];
        let n = std::io::Read::read(s, &mut chunk).expect("body");
        assert!(n > 0, "closed mid-body");
        body.extend_from_slice(&chunk[..n]);
    }
    (head, body)
}

#[test]
fn plain_forwarding_keeps_the_client_connection_alive() {
    let o = origins();
    let ward = Ward::start(&Policy::new());
    let mut s = net::connect(ward.addr);
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: origin.test:{}\r\n\r\n",
        o.http("origin.test", "/"),
        o.plain.port()
    );
    for round in 0..3 {
        let (head, body) = exchange(&mut s, &req);
        assert_eq!(head.status, 200, "round {round}: {head:?}");
        assert_eq!(net::lossy(&body), INDEX_BODY);
    }
}

/// The front-end checks the first head itself; hyper parses the ones after it. Each later
/// request must meet the same RFC 9112 rules and get the same precise reply.
#[test]
fn plain_forwarding_checks_every_request_not_only_the_first() {
    let o = origins();
    let ward = Ward::start(&Policy::new().set("users", &alice_inline()));
    let url = o.http("origin.test", "/");
    let host = format!("origin.test:{}", o.plain.port());
    let auth = basic_auth("alice", PASSWORD);
    let mut s = net::connect(ward.addr);
    let good = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n\r\n");
    assert_eq!(exchange(&mut s, &good).0.status, 200, "first request");

    let two_hosts =
        format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nHost: other.test\r\n{auth}\r\n\r\n");
    let (head, body) = exchange(&mut s, &two_hosts);
    assert_eq!(
        head.status, 400,
        "second request with two Host fields: {head:?}"
    );
    assert_eq!(head.proxy_error().as_deref(), Some("http_request_error"));
    assert!(
        net::lossy(&body).contains("more than one Host"),
        "the reason: {}",
        net::lossy(&body)
    );
    ward.expect_access("for the refused later request", |v| {
        field(v, "error").as_deref() == Some("malformed_request")
    });

    let mut s = net::connect(ward.addr);
    assert_eq!(exchange(&mut s, &good).0.status, 200, "first request");
    let anonymous = format!("GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let (head, _) = exchange(&mut s, &anonymous);
    assert_eq!(head.status, 407, "later request without credentials");
    assert_eq!(
        head.header("proxy-authenticate"),
        Some(r#"Basic realm="ward""#)
    );
    assert_eq!(
        head.header("proxy-status"),
        Some("ward"),
        "the same 407 as the front-end's: {head:?}"
    );
}

#[test]
fn proxy_authentication_407_then_success() {
    if !have("curl") {
        return;
    }
    let o = origins();
    let ward = Ward::start(&Policy::new().set("users", &alice_inline()));
    let target = format!("origin.test:{}", o.tls.port());

    let (_, head) = http_connect(ward.addr, &target, &[]);
    assert_eq!(head.status, 407, "no credentials: {head:?}");
    assert_eq!(
        head.header("proxy-authenticate"),
        Some(r#"Basic realm="ward""#)
    );

    let (_, head) = http_connect(ward.addr, &target, &[&basic_auth("alice", WRONG_PASSWORD)]);
    assert_eq!(head.status, 407, "wrong password: {head:?}");

    let (_, head) = http_connect(ward.addr, &target, &[&basic_auth("alice", PASSWORD)]);
    assert_eq!(head.status, 200, "right password: {head:?}");

    let url = o.https("origin.test", "/");
    let r = curl(&["-x", &ward.http_url(), "--cacert", o.ca(), &url]);
    assert_eq!(r.connect_code, 407, "curl without credentials: {r:#?}");
    let r = curl(&[
        "-x",
        &ward.http_url(),
        "--proxy-user",
        &format!("alice:{WRONG_PASSWORD}"),
        "--cacert",
        o.ca(),
        &url,
    ]);
    assert_eq!(r.connect_code, 407, "curl with a wrong password: {r:#?}");
    let r = curl(&[
        "-x",
        &ward.http_url(),
        "--proxy-user",
        &format!("alice:{PASSWORD}"),
        "--cacert",
        o.ca(),
        &url,
    ]);
    assert_eq!(r.expect_ok(200).body, INDEX_BODY);
    let proxy = format!("http://alice:{PASSWORD}@{}", ward.addr);
    let r = curl(&["-x", &proxy, "--cacert", o.ca(), &url]);
    assert_eq!(r.expect_ok(200).body, INDEX_BODY);

    let r = curl(&["-x", &ward.http_url(), &o.http("origin.test", "/")]);
    assert_eq!(
        r.http_code, 407,
        "plain forwarding without credentials: {r:#?}"
    );
    ward.expect_access("naming the auth failure", |v| {
        field(v, "error").as_deref() == Some("auth_required")
    });
    assert!(
        !ward.stderr_text().contains(WRONG_PASSWORD),
        "passwords never logged"
    );
}

/// One-shot origin without hyper, which would lower-case every name before a test could look:
/// it keeps the request head byte for byte and answers `ok`.
fn head_recording_origin() -> (std::net::SocketAddr, std::thread::JoinHandle<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let mut head = Vec::new();
        let mut b = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
            let n = std::io::Read::read(&mut s, &mut b).expect("read the forwarded head");
            assert!(n > 0, "ward closed before a whole head");
            head.extend_from_slice(&b[..n]);
        }
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .expect("answer");
        net::lossy(&head)
    });
    (addr, seen)
}

/// Field names reach the origin as the client spelled them and in the client's order (bot
/// filters fingerprint both); only the hop-by-hop fields go and `Via` is added.
#[test]
fn plain_forwarding_keeps_header_case_and_order() {
    let ward = Ward::start(&Policy::new());
    let (origin, seen) = head_recording_origin();
    let host = format!("origin.test:{}", origin.port());
    let mut s = net::connect(ward.addr);
    let request = format!(
        "GET http://{host}/case HTTP/1.1\r\nHost: {host}\r\nUser-Agent: case-test\r\n\
         X-Mixed-CASE: 1\r\nProxy-Connection: keep-alive\r\naccept: */*\r\nX-Trace-ID: 7\r\n\r\n"
    );
    let (head, body) = exchange(&mut s, &request);
    assert_eq!((head.status, net::lossy(&body).as_str()), (200, "ok"));
    let seen = seen.join().expect("the origin saw a request");
    let names: Vec<&str> = seen
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':').map(|(n, _)| n))
        .collect();
    assert_eq!(
        names,
        [
            "Host",
            "User-Agent",
            "X-Mixed-CASE",
            "accept",
            "X-Trace-ID",
            "via"
        ],
        "as the origin saw it:\n{seen}"
    );
    assert!(seen.starts_with("GET /case HTTP/1.1\r\n"), "{seen}");
}

/// A WebSocket through plain-HTTP forwarding: the `Upgrade` survives the hop, the 101 comes
/// back, and both sides are spliced until the close.
#[test]
fn plain_forwarding_carries_a_websocket() {
    let o = origins();
    let ward = Ward::start(&Policy::new());
    let host = format!("origin.test:{}", o.plain.port());
    let key = "AAECAwQFBgcICQoLDA0ODw==";
    let mut s = net::connect(ward.addr);
    let upgrade = format!(
        "GET http://{host}/ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    s.write_all(upgrade.as_bytes()).expect("write upgrade");
    let head = net::read_head(&mut s).expect("a reply to the upgrade");
    assert_eq!(head.status, 101, "{head:#?}");
    assert_eq!(
        head.header("sec-websocket-accept"),
        Some(ws::accept_key(key).as_str())
    );
    assert!(
        head.header("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket")),
        "{head:#?}"
    );
    let mut buf = head.rest.clone();
    let mask = [9, 8, 7, 6];
    s.write_all(&ws::encode(
        ws::OP_TEXT,
        b"over plain forwarding",
        Some(mask),
    ))
    .expect("write frame");
    let echo = ws::read_frame(&mut s, &mut buf);
    assert_eq!(echo.payload, b"over plain forwarding");
    let normal_closure = 1000u16.to_be_bytes();
    s.write_all(&ws::encode(ws::OP_CLOSE, &normal_closure, Some(mask)))
        .expect("write close");
    assert_eq!(ws::read_frame(&mut s, &mut buf).opcode, ws::OP_CLOSE);
    drop(s);
    let rec = ward.expect_access("for the upgraded request", |v| {
        field(v, "status").as_deref() == Some("101")
    });
    let up: u64 = field(&rec, "bytes_up")
        .and_then(|b| b.parse().ok())
        .unwrap_or(0);
    assert!(up > 0, "the upgraded bytes are counted: {rec}");
}
