//! Hostile clients on the wire (issue 15): slowloris, header and line floods, targets and
//! credentials that carry CR/LF, NUL or 64 KiB of labels (never echoed raw into a reply head
//! or a log line), SOCKS5 with every malformed length, and TLS records of length 0 and
//! 2^14 + 1 after CONNECT. After each, ward still serves a normal client.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::net::{self, SocksAddr, http_connect, is_reset};
use crate::support::{Policy, Ward, origins};

/// Slowloris connections: a few hundred (the box has 2 cores and other suites running).
const LORIS: usize = 300;
/// The handshake timeout the slowloris test sets.
const HANDSHAKE: Duration = Duration::from_secs(3);

fn short_handshake() -> Policy {
    Policy::new().set("max_connections", "2000").set(
        "timeouts",
        "{connect: 3s, client_hello: 3s, idle: 60s, handshake: 3s, dns: 3s}",
    )
}

/// A normal tunnelled request through `ward` succeeds.
fn assert_serves(ward: &Ward) {
    let o = origins();
    let (s, head) = http_connect(ward.addr, &format!("origin.test:{}", o.tls.port()), &[]);
    assert_eq!(head.status, 200, "{head:#?}");
    o.assert_index_over(s, "origin.test");
}

/// Whether the peer has closed `s` (non-blocking peek at the socket).
fn is_closed(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 1024];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::WouldBlock => false,
        Err(e) => is_reset(&e) || e.kind() == ErrorKind::TimedOut,
    }
}

#[test]
fn slowloris_is_cut_at_the_handshake_timeout_while_others_are_served() {
    let ward = Ward::start(&short_handshake());
    let head = b"CONNECT origin.test:443 HTTP/1.1\r\nHost: origin.test:443\r\nX-Slow: ";
    let started = Instant::now();
    let mut loris: Vec<(TcpStream, Option<Duration>)> = (0..LORIS)
        .map(|_| {
            let s = net::connect(ward.addr);
            s.set_nonblocking(true).expect("nonblocking");
            (s, None)
        })
        .collect();
    let mut served = false;
    // One byte per connection per second; bounded by the timeout plus generous slack.
    for (i, &byte) in head.iter().cycle().enumerate().take(20) {
        for (s, closed) in loris.iter_mut().filter(|(_, c)| c.is_none()) {
            let wrote = s.write(&[byte]);
            if matches!(wrote, Err(ref e) if e.kind() != ErrorKind::WouldBlock) || is_closed(s) {
                *closed = Some(started.elapsed());
            }
        }
        if i == 1 {
            // Mid-dribble, a real client still gets through at once.
            let t = Instant::now();
            assert_serves(&ward);
            assert!(
                t.elapsed() < Duration::from_secs(3),
                "took {:?}",
                t.elapsed()
            );
            served = true;
        }
        if loris.iter().all(|(_, c)| c.is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(served);
    let open = loris.iter().filter(|(_, c)| c.is_none()).count();
    assert_eq!(
        open,
        0,
        "{open} of {LORIS} slow heads still open after {:?}",
        started.elapsed()
    );
    let first = loris.iter().filter_map(|(_, c)| *c).min().expect("closed");
    // Cut by the handshake deadline, not earlier (one dribble step of slack).
    assert!(
        first + Duration::from_secs(1) >= HANDSHAKE,
        "first cut after {first:?}"
    );
    assert_serves(&ward);
}

/// Sends `request` raw and returns the reply head's raw bytes (up to the blank line), or
/// what arrived before the close.
fn raw_reply_head(ward: &Ward, request: &[u8]) -> Vec<u8> {
    let mut s = net::connect(ward.addr);
    // A flood may be refused before it is all written: that is a fine answer.
    let _ = s.write_all(request);
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 64 * 1024 {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if is_reset(&e) => break,
            Err(e) => panic!("reading the reply: {e} after {got:?}"),
        }
    }
    let end = got
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(got.len(), |p| p + 4);
    got.truncate(end);
    got
}

/// The status of a raw reply head, checking every field line is one clean `Name: value`.
fn checked_status(head: &[u8], injected: &[&str]) -> u16 {
    let text =
        String::from_utf8(head.to_vec()).unwrap_or_else(|_| panic!("non-UTF-8 head {head:?}"));
    assert!(
        text.len() < 4096,
        "a {}-byte reply head echoes the request",
        text.len()
    );
    let mut lines = text.strip_suffix("\r\n\r\n").unwrap_or(&text).split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok());
    for line in lines {
        assert!(
            line.bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b)),
            "control byte in reply field {line:?}"
        );
        let name = line.split(':').next().unwrap_or_default();
        assert!(
            !injected.iter().any(|i| name.eq_ignore_ascii_case(i)),
            "injected field {line:?} in\n{text}"
        );
    }
    status.unwrap_or_else(|| panic!("no status line in {text:?}"))
}

/// Every stderr line is one JSON record: no raw CR/LF split a record, and none holds `needle`.
fn assert_log_clean(ward: &Ward, needles: &[&str]) {
    let text = ward.stderr_text();
    // The fixture's own last line says whether ward still runs: not one of ward's records.
    let records = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("[ward pid "));
    for line in records {
        assert!(
            serde_json::from_str::<serde_json::Value>(line).is_ok(),
            "a log line that is not one JSON record (injected line break?): {line:?}"
        );
        for n in needles {
            assert!(!line.contains(n), "log line holds {n:?} raw: {line}");
        }
        assert!(line.len() < 16 * 1024, "a {}-byte log line", line.len());
    }
}

#[test]
fn header_and_line_floods_are_refused_with_a_bounded_reply() {
    let ward = Ward::start(&short_handshake());
    let mut many = b"CONNECT origin.test:443 HTTP/1.1\r\n".to_vec();
    for i in 0..500 {
        many.extend_from_slice(format!("X-Flood-{i}: 1\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let status = checked_status(&raw_reply_head(&ward, &many), &["X-Flood-0"]);
    assert!(
        (400..500).contains(&status),
        "{status} for 500 header fields"
    );

    let mut long_line = b"CONNECT origin.test:443 HTTP/1.1\r\nX-Long: ".to_vec();
    long_line.resize(200 * 1024, b'a');
    let status = checked_status(&raw_reply_head(&ward, &long_line), &[]);
    assert!((400..500).contains(&status), "{status} for a 200 KiB line");

    let mut endless = Vec::new();
    for _ in 0..20_000 {
        endless.extend_from_slice(b"\r\n");
    }
    let head = raw_reply_head(&ward, &endless);
    assert!(head.is_empty() || (400..500).contains(&checked_status(&head, &[])));
    assert_serves(&ward);
    assert_log_clean(&ward, &["X-Flood-1", "aaaaaaaaaaaaaaaaaaaaaaaa"]);
}

#[test]
fn cr_lf_nul_and_huge_labels_are_never_echoed_into_a_reply_head_or_a_log_line() {
    let ward = Ward::start(
        &short_handshake().rule(r#"{name: deny-evil, action: deny, hosts: ["evil.test"]}"#),
    );
    // Quote, backslash and semicolon would break the Proxy-Status sf-string if echoed raw.
    let quoted = b"CONNECT ev\"il\\;x=1.test:443 HTTP/1.1\r\nHost: a\r\n\r\n";
    let head = raw_reply_head(&ward, quoted);
    let status = checked_status(&head, &["x"]);
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&head));
    let head_text = String::from_utf8_lossy(&head).into_owned();
    let ps = head_text
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("proxy-status:"))
        .expect("Proxy-Status");
    // Inside details, every `"` and `\` is escaped: the value ends with the one closing quote.
    let details = ps
        .split_once("details=\"")
        .map(|(_, d)| d)
        .expect("details");
    let body = details
        .strip_suffix('"')
        .expect("details ends the field with its quote");
    let mut escaped = false;
    for c in body.chars() {
        assert!(escaped || c != '"', "unescaped quote in details: {ps}");
        escaped = !escaped && c == '\\';
    }

    for request in [
        &b"CONNECT evil.test\0\r\nX-Injected: 1:443 HTTP/1.1\r\n\r\n"[..],
        b"CONNECT a\0b.test:443 HTTP/1.1\r\nHost: a\0b\r\n\r\n",
        b"GET http://x.test/ HTTP/1.1\r\nHost: x.test\rX-Injected: 1\r\n\r\n",
    ] {
        let head = raw_reply_head(&ward, request);
        if !head.is_empty() {
            checked_status(&head, &["X-Injected"]);
        }
    }

    // Credentials decoded from base64 may hold CR/LF: never echoed.
    let auth = net::basic_auth("u\r\nX-Injected: 1", "p\r\nSet-Cookie: s=1");
    let request = format!("CONNECT origin.test:443 HTTP/1.1\r\n{auth}\r\n\r\n");
    checked_status(
        &raw_reply_head(&ward, request.as_bytes()),
        &["X-Injected", "Set-Cookie"],
    );

    // 64 KiB of labels: refused, and neither the reply nor a log line carries them whole.
    let labels = "a.".repeat(30 * 1024);
    let request = format!("CONNECT {labels}evil.test:443 HTTP/1.1\r\n\r\n");
    let head = raw_reply_head(&ward, request.as_bytes());
    assert!(head.is_empty() || (400..500).contains(&checked_status(&head, &[])));

    // A SOCKS5 domain with CR/LF and NUL reaches the log as a target, never raw.
    let mut s = net::connect(ward.addr);
    assert_eq!(net::socks5_greet(&mut s, &[0x00]), 0x00);
    let req = net::socks5_request(
        0x01,
        &SocksAddr::Domain("evil\r\nX-Injected: 1\0.test", 443),
    );
    let rep = net::socks5_send(&mut s, &req);
    assert_ne!(rep, 0x00, "a name with control bytes is refused");

    assert_serves(&ward);
    assert_log_clean(&ward, &["\\r\\nX-Injected", &"a.".repeat(4096)]);
}

/// Opens a SOCKS5 connection and sends `bytes` as they are; true when ward then closes (or
/// answers and closes) within the handshake timeout plus slack.
fn socks_closes(ward: &Ward, bytes: &[u8]) -> bool {
    let mut s = net::connect(ward.addr);
    let _ = s.write_all(bytes);
    net::closes_within(&mut s, HANDSHAKE + Duration::from_secs(5))
}

#[test]
fn socks5_with_every_malformed_length_is_closed_and_ward_survives() {
    let ward = Ward::start(&short_handshake());
    let port = 443u16.to_be_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("NMETHODS 0", vec![5, 0]),
        ("NMETHODS 255, 3 sent", vec![5, 255, 0, 1, 2]),
        ("NMETHODS 1, none sent", vec![5, 1]),
        (
            "request ATYP domain, length 0",
            [&[5, 1, 0][..], &[5, 1, 0, 3, 0], &port].concat(),
        ),
        (
            "request ATYP domain, length 255, 4 sent",
            [&[5, 1, 0][..], &[5, 1, 0, 3, 255], b"evil"].concat(),
        ),
        (
            "request ATYP IPv4, 2 bytes",
            [&[5, 1, 0][..], &[5, 1, 0, 1, 127, 0]].concat(),
        ),
        (
            "request ATYP IPv6, 10 bytes",
            [&[5, 1, 0][..], &[5, 1, 0, 4], &[0; 10]].concat(),
        ),
        (
            "request ATYP 9",
            [&[5, 1, 0][..], &[5, 1, 0, 9, 1, 2, 3, 4], &port].concat(),
        ),
        (
            "request version 4",
            [&[5, 1, 0][..], &[4, 1, 0, 1, 127, 0, 0, 1], &port].concat(),
        ),
        (
            "request RSV 7",
            [&[5, 1, 0][..], &[5, 1, 7, 1, 127, 0, 0, 1], &port].concat(),
        ),
        (
            "request port 0",
            [&[5, 1, 0][..], &[5, 1, 0, 1, 127, 0, 0, 1, 0, 0]].concat(),
        ),
    ];
    for (what, bytes) in &cases {
        assert!(socks_closes(&ward, bytes), "{what}: still open");
    }
    // RFC 1929 with malformed lengths, where ward asks for credentials.
    let users = r#"[{name: alice, password: "s3cret"}]"#;
    let authed = Ward::start(&short_handshake().set("users", users));
    let auth_cases: Vec<(&str, Vec<u8>)> = vec![
        ("ULEN 0 PLEN 0", vec![5, 1, 2, 1, 0, 0]),
        (
            "ULEN 255, 5 sent",
            [&[5, 1, 2, 1, 255][..], b"alice"].concat(),
        ),
        (
            "PLEN 255, 6 sent",
            [&[5, 1, 2, 1, 5][..], b"alice", &[255], b"s3cret"].concat(),
        ),
        (
            "auth version 5",
            [&[5, 1, 2, 5, 5][..], b"alice", &[6], b"s3cret"].concat(),
        ),
    ];
    for (what, bytes) in &auth_cases {
        assert!(socks_closes(&authed, bytes), "{what}: still open");
    }
    assert_serves(&ward);
    assert_log_clean(&authed, &["s3cret"]);
}

#[test]
fn tls_records_of_length_0_and_over_2_pow_14_after_connect_are_refused() {
    let ward = Ward::start(&short_handshake());
    let o = origins();
    let target = format!("origin.test:{}", o.tls.port());
    let mut over = vec![0x16, 0x03, 0x01, 0x40, 0x01];
    over.resize(5 + (1 << 14) + 1, 0x01);
    for (what, record) in [
        ("length 0", vec![0x16, 0x03, 0x01, 0x00, 0x00]),
        ("length 2^14+1", over),
    ] {
        let (mut s, head) = http_connect(ward.addr, &target, &[]);
        assert_eq!(head.status, 200);
        let _ = s.write_all(&record);
        let got = {
            let mut out = Vec::new();
            let mut chunk = [0u8; 64];
            s.set_read_timeout(Some(HANDSHAKE + Duration::from_secs(5)))
                .expect("timeout");
            loop {
                match s.read(&mut chunk) {
                    Ok(0) => break Ok(out),
                    Ok(n) => out.extend_from_slice(&chunk[..n]),
                    Err(e) if is_reset(&e) => break Ok(out),
                    Err(e) => break Err(e),
                }
            }
        };
        let got = got.unwrap_or_else(|e| panic!("{what}: not closed: {e}"));
        // Nothing of the origin: at most one TLS alert record (type 21), then the close.
        assert!(got.is_empty() || got[0] == 21, "{what}: got {got:?}");
    }
    assert_serves(&ward);
}
