//! Interception seen by real clients: openssl s_client reading the forged chain, Python
//! requests, a WebSocket through the decrypted relay, a 1 GiB download in bounded memory,
//! and headless Chromium loading an inspected and a tunnelled page from one ward.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::clients::have_python_deps;
use crate::inspect::{expect_flow, inspected_tls, inspecting_policy, inspecting_ward, ward_ca};
use crate::support::origin::{INDEX_BODY, PAGE_MARKER};
use crate::support::tools::run;
use crate::support::ward::field;
use crate::support::{Policy, Ward, chromium, curl, have, net, origins, ws};

/// What the download test moves through ward (the origin's /bytes cap).
const BIG_DOWNLOAD: u64 = 1 << 30;
/// How much ward's resident memory may grow while it streams BIG_DOWNLOAD.
const MAX_RSS_GROWTH_KIB: u64 = 100 * 1024;
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(50);

#[test]
fn inspect_openssl_s_client_reads_a_chain_forged_by_wards_ca() {
    if !have("openssl") {
        return;
    }
    let o = origins();
    let ward = Ward::start(
        &Policy::new()
            .set("upstream_ca", &format!("\"{}\"", o.ca()))
            .rule(r#"{name: look, action: inspect, hosts: [origin.test], dst: ["127.0.0.0/8"]}"#),
    );
    let ca = ward_ca(&ward);
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-proxy", &ward.addr.to_string()])
        .args(["-connect", &format!("origin.test:{}", o.tls.port())])
        .args(["-servername", "origin.test", "-showcerts", "-CAfile", &ca]);
    let out = run(cmd, Duration::from_secs(30));
    assert!(
        out.stdout.contains("Verify return code: 0 (ok)"),
        "s_client must verify the forged chain against ward's CA: {out:#?}"
    );
    let pems: Vec<&str> = out
        .stdout
        .split("-----BEGIN CERTIFICATE-----")
        .skip(1)
        .filter_map(|rest| rest.split("-----END CERTIFICATE-----").next())
        .collect();
    assert_eq!(pems.len(), 2, "chain is [leaf, ward's CA]: {}", out.stdout);
    let dir = tempfile::tempdir().expect("temp dir");
    let leaf = dir.path().join("leaf.pem");
    std::fs::write(
        &leaf,
        format!(
            "-----BEGIN CERTIFICATE-----{}-----END CERTIFICATE-----\n",
            pems[0]
        ),
    )
    .expect("write leaf");
    let mut cmd = Command::new("openssl");
    cmd.args([
        "x509",
        "-noout",
        "-subject",
        "-issuer",
        "-ext",
        "subjectAltName",
        "-in",
    ])
    .arg(&leaf);
    let x509 = run(cmd, Duration::from_secs(20)).ok("openssl x509");
    let text = x509.stdout.replace(' ', "");
    assert!(text.contains("subject=CN=origin.test"), "{}", x509.stdout);
    assert!(
        text.contains("issuer=CN=wardinterceptionCA"),
        "{}",
        x509.stdout
    );
    // The SNI first, then the origin's own DNS names (no IP names).
    assert!(
        text.contains("DNS:origin.test,DNS:*.lab.test,DNS:localhost"),
        "{}",
        x509.stdout
    );
    assert!(!text.contains("IPAddress"), "{}", x509.stdout);
    assert_leaf_lifetime_and_key_ids(&leaf, &ca);
}

/// The forged leaf ends 196 to 198 days from now (197 days: the CA/Browser Forum cap is 200),
/// and its authority key identifier is the CA's subject key identifier, as openssl reads them.
fn assert_leaf_lifetime_and_key_ids(leaf: &std::path::Path, ca: &str) {
    let expires_within = |days: u64| {
        let mut cmd = Command::new("openssl");
        cmd.args([
            "x509",
            "-noout",
            "-checkend",
            &(days * 86_400).to_string(),
            "-in",
        ])
        .arg(leaf);
        !run(cmd, Duration::from_secs(20)).success()
    };
    assert!(
        !expires_within(196) && expires_within(198),
        "a 197-day leaf"
    );
    let ext = |cert: &std::ffi::OsStr, which: &str| {
        let mut cmd = Command::new("openssl");
        cmd.args(["x509", "-noout", "-ext", which, "-in"]).arg(cert);
        let out = run(cmd, Duration::from_secs(20)).ok("openssl x509 -ext");
        // The value is the line after the extension's name (OpenSSL 1.1 prefixed "keyid:").
        let value = out.stdout.lines().nth(1).unwrap_or_default().trim();
        value.trim_start_matches("keyid:").to_owned()
    };
    let ca_ski = ext(std::ffi::OsStr::new(ca), "subjectKeyIdentifier");
    let leaf_ski = ext(leaf.as_os_str(), "subjectKeyIdentifier");
    let leaf_aki = ext(leaf.as_os_str(), "authorityKeyIdentifier");
    assert!(
        ca_ski.len() >= 40 && ca_ski.contains(':'),
        "CA SKI {ca_ski:?}"
    );
    assert_eq!(leaf_aki, ca_ski, "the leaf names its CA's key");
    assert!(
        leaf_ski.len() >= 40 && leaf_ski != ca_ski,
        "leaf SKI {leaf_ski:?}"
    );
}

#[test]
fn inspect_python_requests_trusting_wards_ca() {
    if !have_python_deps() {
        return;
    }
    let o = origins();
    let ward = inspecting_ward();
    let got = crate::clients::python_client_trusting(
        &ward.http_url(),
        &ward_ca(&ward),
        &o.https("site.lab.test", "/proto"),
    );
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["second_status"], 200, "{got}");
    assert_eq!(
        got["body"], "HTTP/1.1",
        "an HTTP/1.1 client gets HTTP/1.1: {got}"
    );
    expect_flow(&ward, "for Python's request", |v| {
        field(v, "path").as_deref() == Some("/proto")
            && field(v, "version").as_deref() == Some("HTTP/1.1")
    });
}

/// Upgrades an inspected connection to a WebSocket with the origin's `/ws` echo; returns the
/// bytes read past the 101 head.
fn upgrade_to_websocket(tls: &mut (impl Read + Write), host: &str) -> Vec<u8> {
    // 16 bytes (0..=15), base64: any nonce will do for the origin.
    let key = "AAECAwQFBgcICQoLDA0ODw==";
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    tls.write_all(upgrade.as_bytes()).expect("write upgrade");
    let head = net::read_head(tls).expect("a reply to the upgrade");
    assert_eq!(head.status, 101, "{head:#?}");
    assert_eq!(
        head.header("sec-websocket-accept"),
        Some(ws::accept_key(key).as_str()),
        "the origin's accept key arrives untouched: {head:#?}"
    );
    head.rest
}

#[test]
fn inspect_websocket_echo_passes_through_the_decrypted_relay() {
    let o = origins();
    let ward = inspecting_ward();
    let host = format!("site.lab.test:{}", o.tls.port());
    let mut tls = inspected_tls(&ward, &host, "site.lab.test", &[b"http/1.1"]);
    let mut buf = upgrade_to_websocket(&mut tls, &host);
    let mask = [0x1f, 0x2e, 0x3d, 0x4c];
    for msg in [b"hello through ward".to_vec(), vec![b'w'; 1000]] {
        tls.write_all(&ws::encode(ws::OP_TEXT, &msg, Some(mask)))
            .expect("write frame");
        let echo = ws::read_frame(&mut tls, &mut buf);
        assert_eq!(echo.opcode, ws::OP_TEXT);
        assert_eq!(echo.payload, msg, "echoed unchanged");
    }
    let normal_closure = 1000u16.to_be_bytes();
    tls.write_all(&ws::encode(ws::OP_CLOSE, &normal_closure, Some(mask)))
        .expect("write close");
    let close = ws::read_frame(&mut tls, &mut buf);
    assert_eq!(
        (close.opcode, close.payload),
        (ws::OP_CLOSE, normal_closure.to_vec())
    );
    expect_flow(&ward, "for the upgrade", |v| {
        field(v, "path").as_deref() == Some("/ws") && field(v, "status").as_deref() == Some("101")
    });
}

/// An upgraded connection is bytes like a tunnel, and the idle timeout ends it like one: a
/// forgotten WebSocket must not hold a slot, two sockets and a TLS session for ever.
#[test]
fn inspect_websocket_idle_past_the_timeout_is_closed() {
    let o = origins();
    let ward = Ward::start(&inspecting_policy().set(
        "timeouts",
        "{connect: 3s, client_hello: 3s, idle: 1s, handshake: 3s, dns: 3s}",
    ));
    let host = format!("site.lab.test:{}", o.tls.port());
    let mut tls = inspected_tls(&ward, &host, "site.lab.test", &[b"http/1.1"]);
    let mut buf = upgrade_to_websocket(&mut tls, &host);
    let mask = [0x1f, 0x2e, 0x3d, 0x4c];
    tls.write_all(&ws::encode(ws::OP_TEXT, b"still here", Some(mask)))
        .expect("write frame");
    assert_eq!(ws::read_frame(&mut tls, &mut buf).payload, b"still here");

    let quiet = Instant::now();
    tls.sock
        .set_read_timeout(Some(Duration::from_secs(6)))
        .expect("read timeout");
    let mut b = [0u8; 64];
    let ended = loop {
        match tls.read(&mut b) {
            Ok(0) => break Ok(()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break Err(e),
            // A reset or a missing close_notify: closed all the same.
            Err(_) => break Ok(()),
        }
    };
    let took = quiet.elapsed();
    assert!(ended.is_ok(), "still open after {took:?} with idle: 1s");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "closed after {took:?} of silence, idle: 1s"
    );
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn inspect_streams_a_1gib_download_in_bounded_memory() {
    if !have("curl") {
        return;
    }
    let o = origins();
    let ward = inspecting_ward();
    let (proxy, ca) = (ward.http_url(), ward_ca(&ward));
    let url = o.https("site.lab.test", &format!("/bytes/{BIG_DOWNLOAD}"));
    // Warm up (leaf forged, TLS state allocated) so that the baseline is the steady state.
    curl(&[
        "-x",
        &proxy,
        "--cacert",
        &ca,
        &o.https("site.lab.test", "/"),
    ])
    .expect_ok(200);
    let baseline = rss_kib(ward.pid());
    let started = Instant::now();
    let download =
        std::thread::spawn(move || curl(&["-x", &proxy, "--cacert", &ca, "-o", "/dev/null", &url]));
    let (mut peak, mut samples) = (baseline, 0u32);
    while !download.is_finished() {
        peak = peak.max(rss_kib(ward.pid()));
        samples += 1;
        std::thread::sleep(RSS_SAMPLE_EVERY);
    }
    let r = download.join().expect("curl thread");
    let took = started.elapsed();
    r.expect_ok(200);
    let rec = expect_flow(&ward, "for the download", |v| {
        field(v, "path").is_some_and(|p| p.starts_with("/bytes/"))
    });
    assert_eq!(
        field(&rec, "response_bytes"),
        Some(BIG_DOWNLOAD.to_string())
    );
    assert_eq!(field(&rec, "version").as_deref(), Some("HTTP/2"));
    let growth = peak.saturating_sub(baseline);
    eprintln!(
        "1 GiB through inspection in {took:?} ({:.0} MiB/s); ward RSS {baseline} KiB -> peak {peak} KiB over {samples} samples",
        1024.0 / took.as_secs_f64()
    );
    assert!(samples >= 5, "too few samples to judge: {samples}");
    assert!(
        growth < MAX_RSS_GROWTH_KIB,
        "ward's RSS grew by {growth} KiB while streaming"
    );
}

#[test]
fn inspect_chromium_loads_an_inspected_and_a_tunnelled_page() {
    if !chromium::available() {
        return;
    }
    let o = origins();
    let ward = Ward::start(&inspecting_policy());
    let ca = ward_ca(&ward);
    let proxy = format!("--proxy-server=http://{}", ward.addr);
    let inspected = o.https("site.lab.test", "/");
    let out =
        chromium::dump_dom_trusting(&[Path::new(&ca)], std::slice::from_ref(&proxy), &inspected);
    assert!(
        out.stdout.contains(PAGE_MARKER),
        "Chromium must render the inspected page: {out:#?}\nward log:\n{}",
        ward.stderr_text()
    );
    expect_flow(&ward, "for Chromium's inspected request", |v| {
        field(v, "sni").as_deref() == Some("site.lab.test")
            && field(v, "path").as_deref() == Some("/")
            && field(v, "status").as_deref() == Some("200")
    });
    let out =
        chromium::dump_dom_trusting(&[Path::new(&ca)], &[proxy], &o.https("origin.test", "/"));
    assert!(
        out.stdout.contains(PAGE_MARKER),
        "Chromium must render the tunnelled page: {out:#?}\nward log:\n{}",
        ward.stderr_text()
    );
    ward.expect_access("for Chromium's tunnel", |v| {
        field(v, "sni").as_deref() == Some("origin.test")
            && field(v, "action").as_deref() == Some("allow")
    });
    assert!(INDEX_BODY.contains(PAGE_MARKER));
}
