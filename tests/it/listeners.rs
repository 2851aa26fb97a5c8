//! Listener objects: the HTTPS proxy listener (TLS to ward itself, with curl, Python requests,
//! Chromium and a raw SOCKS5 client inside it; its certificate reloaded on change) and the
//! PROXY protocol (believed from `trusted` peers only; malformed, truncated or untrusted
//! headers closed with a log line and counted, never parsed as HTTP).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use testkit::{Ca, Leaf};

use crate::clients::{have_python_deps, python_client_trusting};
use crate::support::net::{self, SocksAddr};
use crate::support::origin::{INDEX_BODY, PAGE_MARKER};
use crate::support::ward::{EVENT_WAIT, field, message, ward_cli};
use crate::support::{Policy, Ward, chromium, curl, have, origins};

/// An HTTPS listener's files: a CA of its own, a leaf for 127.0.0.1 signed by it, and a bundle
/// trusting both that CA and the test origins' (for clients with one trust setting).
pub struct ProxyPki {
    dir: tempfile::TempDir,
    pub ca: Ca,
}

impl ProxyPki {
    pub fn new() -> ProxyPki {
        let dir = tempfile::tempdir().expect("pki dir");
        let pki = ProxyPki {
            dir,
            ca: Ca::new("ward proxy listener test CA"),
        };
        pki.ca.write_pem(&pki.ca_pem());
        pki.write_leaf(&pki.ca.issue(&["127.0.0.1", "localhost"]));
        let bundle = std::fs::read_to_string(origins().ca()).expect("origin CA") + &pki.ca.pem();
        std::fs::write(pki.bundle(), bundle).expect("bundle");
        pki
    }

    pub fn write_leaf(&self, leaf: &Leaf) {
        leaf.write_pem(&self.cert(), &self.key());
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("proxy.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("proxy.key")
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("proxy-ca.pem")
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle.pem")
    }

    /// The `listen` value of one HTTPS listener on an OS port.
    pub fn listen(&self) -> String {
        format!(
            "[{{addr: \"127.0.0.1:0\", tls: {{cert: \"{}\", key: \"{}\"}}}}]",
            self.cert().display(),
            self.key().display()
        )
    }
}

fn text(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn curl_uses_connect_and_plain_forwarding_inside_the_https_listener() {
    if !have("curl") {
        return;
    }
    let o = origins();
    let pki = ProxyPki::new();
    let ward = Ward::start(&Policy::new().set("listen", &pki.listen()));
    let proxy = format!("https://{}", ward.addr);
    let ca_path = pki.ca_pem();
    let ca = text(&ca_path);
    let tunnelled = curl(&[
        "--proxy",
        &proxy,
        "--proxy-cacert",
        ca,
        "--cacert",
        o.ca(),
        &o.https("origin.test", "/"),
    ]);
    tunnelled.expect_ok(200);
    assert_eq!(tunnelled.body, INDEX_BODY);
    assert_eq!(tunnelled.connect_code, 200);
    let forwarded = curl(&[
        "--proxy",
        &proxy,
        "--proxy-cacert",
        ca,
        &o.http("origin.test", "/"),
    ]);
    forwarded.expect_ok(200);
    assert_eq!(forwarded.body, INDEX_BODY);
    let rec = ward.expect_access("for the tunnel", |v| {
        field(v, "via").as_deref() == Some("http-connect")
    });
    assert_eq!(field(&rec, "sni").as_deref(), Some("origin.test"));
    ward.expect_access("for the forwarded GET", |v| {
        field(v, "method").as_deref() == Some("GET")
    });

    // Without the listener's CA, curl refuses the proxy itself: the TLS is real.
    let untrusted = curl(&[
        "--proxy",
        &proxy,
        "--cacert",
        o.ca(),
        &o.https("origin.test", "/"),
    ]);
    assert!(!untrusted.out.success(), "{untrusted:#?}");
    // A client speaking plain HTTP to the HTTPS listener gets no HTTP answer.
    let plain = curl(&[
        "--proxy",
        &format!("http://{}", ward.addr),
        &o.http("origin.test", "/"),
    ]);
    assert_eq!(plain.http_code, 0, "{plain:#?}");
    ward.wait_log(Duration::from_secs(5), |v| {
        message(v) == Some("TLS handshake with the client failed: connection closed")
    })
    .unwrap_or_else(|| panic!("no TLS failure line:\n{}", ward.log()));
}

#[test]
fn python_requests_uses_an_https_proxy_url() {
    if !have_python_deps() {
        return;
    }
    let o = origins();
    let pki = ProxyPki::new();
    let ward = Ward::start(&Policy::new().set("listen", &pki.listen()));
    let proxy = format!("https://{}", ward.addr);
    let got = python_client_trusting(&proxy, text(&pki.bundle()), &o.https("origin.test", "/"));
    assert_eq!(got["status"], 200, "{got}\n{}", ward.log());
    assert_eq!(got["second_status"], 200, "{got}");
    assert_eq!(got["body"], INDEX_BODY, "{got}");
}

#[test]
fn socks5_works_inside_the_https_listener() {
    let o = origins();
    let pki = ProxyPki::new();
    let ward = Ward::start(&Policy::new().set("listen", &pki.listen()));
    let to_proxy = Arc::new(testkit::pki::client_config(&[pki.ca.der()], &[b"http/1.1"]));
    let mut tls = net::tls_over(net::connect(ward.addr), "127.0.0.1", to_proxy);
    tls.write_all(&[5, 1, 0]).expect("greeting");
    let mut choice = [0u8; 2];
    tls.read_exact(&mut choice).expect("method choice");
    assert_eq!(choice, [5, 0]);
    let target = SocksAddr::Domain("origin.test", o.tls.port());
    tls.write_all(&net::socks5_request(1, &target))
        .expect("request");
    let mut reply = [0u8; 10];
    tls.read_exact(&mut reply).expect("reply");
    assert_eq!(reply[1], 0, "SOCKS5 reply {reply:?}\n{}", ward.log());
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let mut inner = net::tls_over(tls, "origin.test", o.client_config(&[b"http/1.1"]));
    let (status, body) = net::http_get(&mut inner, "origin.test", "/");
    assert_eq!((status, net::lossy(&body).as_str()), (200, INDEX_BODY));
    // The record is written when the tunnel ends.
    drop(inner);
    let rec = ward.expect_access("for the SOCKS5 tunnel", |v| {
        field(v, "via").as_deref() == Some("socks5")
    });
    assert_eq!(field(&rec, "sni").as_deref(), Some("origin.test"));
}

#[test]
fn chromium_uses_an_https_proxy() {
    if !chromium::available() {
        return;
    }
    let o = origins();
    let pki = ProxyPki::new();
    let ward = Ward::start(&Policy::new().set("listen", &pki.listen()));
    let proxy = format!("--proxy-server=https://{}", ward.addr);
    let out = chromium::dump_dom_trusting(&[&pki.ca_pem()], &[proxy], &o.https("origin.test", "/"));
    assert!(
        out.stdout.contains(PAGE_MARKER),
        "Chromium must render the page through the HTTPS proxy: {out:#?}\nward log:\n{}",
        ward.log()
    );
    ward.expect_access("for Chromium's tunnel", |v| {
        field(v, "sni").as_deref() == Some("origin.test")
    });
}

/// A TLS handshake with the listener, trusting only `ca`: Err when its leaf is not from `ca`.
fn proxy_handshake(addr: SocketAddr, ca: &Ca) -> Result<(), String> {
    let cfg = Arc::new(testkit::pki::client_config(&[ca.der()], &[b"http/1.1"]));
    let mut tls = net::tls_over(net::connect(addr), "127.0.0.1", cfg);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[test]
fn the_listener_certificate_reloads_when_its_files_change() {
    let pki = ProxyPki::new();
    let ward = Ward::start(&Policy::new().set("listen", &pki.listen()));
    proxy_handshake(ward.addr, &pki.ca).expect("the first certificate");

    let next_ca = Ca::new("the next listener CA");
    pki.write_leaf(&next_ca.issue(&["127.0.0.1"]));
    ward.wait_log(EVENT_WAIT, |v| {
        message(v) == Some("listener certificate reloaded")
    })
    .unwrap_or_else(|| panic!("no reload:\n{}", ward.log()));
    proxy_handshake(ward.addr, &next_ca).expect("the new certificate");
    assert!(
        proxy_handshake(ward.addr, &pki.ca).is_err(),
        "the old one is gone"
    );

    // A key that does not match: refused, the certificate in service stays.
    std::fs::write(
        pki.key(),
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let failed = ward.wait_log(EVENT_WAIT, |v| {
        message(v) == Some("listener certificate reload failed: keeping the previous one")
    });
    let failed = failed.unwrap_or_else(|| panic!("no failed reload:\n{}", ward.log()));
    assert!(
        field(&failed, "error")
            .unwrap_or_default()
            .contains("does not match"),
        "{failed}"
    );
    proxy_handshake(ward.addr, &next_ca).expect("still the new certificate");
}

#[test]
fn ward_check_refuses_a_listener_key_that_does_not_match() {
    let pki = ProxyPki::new();
    std::fs::write(
        pki.key(),
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = Policy::new().set("listen", &pki.listen()).render();
    std::fs::write(dir.path().join("policy.yaml"), &yaml).unwrap();
    let out = ward_cli(&["-c", "policy.yaml", "check"], dir.path());
    assert!(!out.success(), "{out:#?}");
    let line = crate::support::policy::line_of(&yaml, "listen:");
    assert!(
        out.stderr.contains(&format!("policy.yaml:{line}:"))
            && out.stderr.contains("does not match certificate"),
        "{out:#?}"
    );
    let trusted_missing = Policy::new()
        .set("listen", r#"[{addr: "127.0.0.1:0", proxy_protocol: v2}]"#)
        .render();
    std::fs::write(dir.path().join("policy.yaml"), &trusted_missing).unwrap();
    let out = ward_cli(&["-c", "policy.yaml", "check"], dir.path());
    assert!(
        !out.success() && out.stderr.contains("needs `trusted`"),
        "{out:#?}"
    );
}

/// A PROXY-protocol listener trusting `trusted`, an admin port, and a rule that names the
/// documentation network's client 203.0.113.7 (which only a PROXY header can claim).
fn proxied_ward(versions: &str, trusted: &str) -> (Ward, SocketAddr) {
    let listen =
        format!("[{{addr: \"127.0.0.1:0\", proxy_protocol: {versions}, trusted: [{trusted}]}}]");
    let policy = Policy::new()
        .set("listen", &listen)
        .set("admin", "\"127.0.0.1:0\"")
        .rule(r#"{name: far-client, action: deny, clients: ["203.0.113.7"]}"#);
    let ward = Ward::start(&policy);
    let admin = ward.admin_addr();
    (ward, admin)
}

fn metrics(admin: SocketAddr) -> String {
    let got = curl(&[&format!("http://{admin}/metrics")]);
    got.expect_ok(200);
    got.body
}

/// Sends `header` and a CONNECT in one write. A refused connection may be closed before the
/// write ends: what matters is what comes back, so a failed write is not an error here.
fn connect_after(ward: &Ward, header: &[u8], target: &str) -> TcpStream {
    let mut bytes = header.to_vec();
    bytes.extend_from_slice(
        format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes(),
    );
    send(ward, &bytes)
}

fn send(ward: &Ward, bytes: &[u8]) -> TcpStream {
    let mut s = net::connect(ward.addr);
    let _ = s.write_all(bytes);
    s
}

#[test]
fn a_trusted_proxy_header_names_the_client_policy_and_logs_see() {
    let o = origins();
    let (ward, _) = proxied_ward("any", "127.0.0.0/8");
    let target = format!("origin.test:{}", o.tls.port());
    let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 40001 443\r\n";
    let mut s = connect_after(&ward, v1, &target);
    let head = net::read_head(&mut s).expect("an answer");
    assert_eq!(head.status, 403, "the far client's rule applies: {head:#?}");
    let rec = ward.expect_access("for the far client", |v| {
        field(v, "rule").as_deref() == Some("far-client")
    });
    assert_eq!(field(&rec, "client").as_deref(), Some("203.0.113.7:40001"));

    // v2, another client: the lab rule allows it, and the log names it.
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[198, 51, 100, 9, 127, 0, 0, 1, 0x9c, 0x42, 0x01, 0xbb]);
    let mut s = connect_after(&ward, &v2, &target);
    assert_eq!(net::read_head(&mut s).expect("an answer").status, 200);
    o.assert_index_over(s, "origin.test");
    let rec = ward.expect_access("for the v2 client", |v| {
        field(v, "client").as_deref() == Some("198.51.100.9:40002")
    });
    assert_eq!(field(&rec, "sni").as_deref(), Some("origin.test"));

    // LOCAL (a load balancer's health check): the peer's own address stands.
    let local = b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
    let mut s = connect_after(&ward, local, &target);
    assert_eq!(net::read_head(&mut s).expect("an answer").status, 200);
    drop(s);
    ward.expect_access("for the LOCAL connection", |v| {
        field(v, "client").is_some_and(|c| c.starts_with("127.0.0.1:"))
    });
}

#[test]
fn untrusted_malformed_and_truncated_headers_are_closed_logged_and_counted() {
    let o = origins();
    let (ward, admin) = proxied_ward("v2", "10.0.0.0/8");
    let target = format!("origin.test:{}", o.tls.port());
    let v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 40001 443\r\n";

    // From 127.0.0.1, which is not trusted: closed without a word.
    let mut s = connect_after(&ward, v1, &target);
    assert!(net::read_all(&mut s).is_empty(), "nothing is answered");
    let rec = refused_in(&ward, "untrusted");
    assert!(
        field(&rec, "error")
            .unwrap_or_default()
            .contains("not in the listener's `trusted` list")
    );
    let m = metrics(admin);
    assert!(
        m.contains("ward_proxy_protocol_rejected_total{reason=\"untrusted\"} 1"),
        "{m}"
    );

    let (ward, admin) = proxied_ward("v2", "127.0.0.1/32");
    // A v2 header whose length is over the limit: refused before any body, never HTTP.
    let mut bad_len = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\xff\xff".to_vec();
    bad_len.extend_from_slice(b"GET http://origin.test/ HTTP/1.1\r\n\r\n");
    let mut s = send(&ward, &bad_len);
    assert!(
        net::read_all(&mut s).is_empty(),
        "no HTTP answer to a malformed header"
    );
    let rec = refused_in(&ward, "malformed");
    assert!(
        field(&rec, "error")
            .unwrap_or_default()
            .contains("length 65535"),
        "{rec}"
    );
    // A v1 header on a v2-only listener, and plain HTTP with no header at all.
    for bytes in [
        &v1[..],
        b"GET http://origin.test/ HTTP/1.1\r\nHost: origin.test\r\n\r\n",
    ] {
        let mut s = send(&ward, bytes);
        assert!(net::read_all(&mut s).is_empty());
    }
    // Half a header, then the peer gives up.
    let mut s = net::connect(ward.addr);
    s.write_all(b"\r\n\r\n\0\r\nQU").unwrap();
    net::shutdown_write(&s);
    assert!(net::read_all(&mut s).is_empty());
    refused_in(&ward, "truncated");
    let want = [("malformed", 3), ("truncated", 1), ("untrusted", 0)];
    testkit::wait_until(Duration::from_secs(5), "the refusals to be counted", || {
        let m = metrics(admin);
        want.iter().all(|(r, n)| {
            m.contains(&format!(
                "ward_proxy_protocol_rejected_total{{reason=\"{r}\"}} {n}"
            ))
        })
    });
    assert!(
        !ward.records().iter().any(crate::support::ward::is_access),
        "no refused connection was read as a request:\n{}",
        ward.log()
    );
}

fn refused_in(ward: &Ward, reason: &str) -> serde_json::Value {
    ward.wait_log(Duration::from_secs(5), |v| {
        message(v) == Some("PROXY header refused: connection closed")
            && field(v, "reason").as_deref() == Some(reason)
    })
    .unwrap_or_else(|| panic!("no {reason} refusal:\n{}", ward.log()))
}
