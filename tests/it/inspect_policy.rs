//! Interception's records and policy: the `flows:` JSON-lines file (one record per request,
//! secrets redacted) and its HAR export, the inner Host / `:authority` checked against the SNI
//! (`sni_mismatch: deny` answers 421). Pinning passthrough: pinning.rs.

use std::io::Write as _;
use std::time::Duration;

use serde_json::Value;

use crate::inspect::{expect_flow, inspected_tls, inspecting_policy, ward_ca};
use crate::support::secrets::{BEARER, COOKIE, PASSWORD as PROXY_PASSWORD};
use crate::support::ward::{field, ward_cli};
use crate::support::{Ward, curl, have, net, origins, wait_until};

/// Secrets the flow test sends; none may appear in any record or log line.
/// The writer thread flushes as soon as its queue runs dry; this bounds the wait for it.
const FLOWS_WAIT: Duration = Duration::from_secs(5);

/// The first complete lines of `path` once there are `n` of them, parsed as JSON.
fn wait_lines(path: &std::path::Path, n: usize) -> Vec<Value> {
    let what = format_args!("{n} lines in {}", path.display());
    let text = wait_until(FLOWS_WAIT, what, || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        (text.matches('\n').count() >= n).then_some(text)
    });
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|l| serde_json::from_str(l.trim()).expect("a JSON line"))
        .collect()
}

#[test]
fn inspect_flows_file_has_one_redacted_record_per_request_and_exports_har() {
    if !have("curl") {
        return;
    }
    let o = origins();
    let ward = Ward::start(&inspecting_policy().set("flows", "flows.jsonl").set(
        "users",
        &format!("[{{name: alice, password: \"{PROXY_PASSWORD}\"}}]"),
    ));
    let ca = ward_ca(&ward);
    let proxy = format!("http://alice:{PROXY_PASSWORD}@{}", ward.addr);
    let auth = format!("Authorization: Bearer {BEARER}");
    let cookie = format!("Cookie: session={COOKIE}");
    let base = ["-x", &proxy, "--cacert", &ca];
    let headers = o.https("site.lab.test", "/headers");
    let r = curl(
        &[
            &base[..],
            &["--http1.1", "-H", &auth, "-H", &cookie, &headers][..],
        ]
        .concat(),
    );
    r.expect_ok(200);
    assert!(
        r.body.contains(&format!("authorization: Bearer {BEARER}")),
        "the origin still gets the credentials: {}",
        r.body
    );
    let echo = o.https("site.lab.test", "/echo?n=1");
    let args = [
        &base[..],
        &["--http2", "--data-binary", "0123456789", &echo][..],
    ]
    .concat();
    assert_eq!(curl(&args).expect_ok(200).body, "0123456789");
    let bytes = o.https("site.lab.test", "/bytes/12345");
    curl(&[&base[..], &["--http2", "-H", &cookie, &bytes][..]].concat()).expect_ok(200);

    let path = ward.dir().join("flows.jsonl");
    let recs = wait_lines(&path, 3);
    assert_eq!(recs.len(), 3, "one record per request: {recs:#?}");
    let port = o.tls.port();
    for r in &recs {
        assert!(r["time"].as_str().is_some_and(|t| t.ends_with('Z')), "{r}");
        assert!(
            r["client"]
                .as_str()
                .is_some_and(|c| c.starts_with("127.0.0.1:")),
            "{r}"
        );
        assert_eq!(r["user"], "alice", "{r}");
        assert_eq!(r["sni"], "site.lab.test", "{r}");
        assert_eq!(r["connect"], format!("site.lab.test:{port}"), "{r}");
        assert_eq!(r["rule"], "look", "{r}");
        assert_eq!(r["status"], 200, "{r}");
        assert!(r["duration_ms"].is_u64(), "{r}");
        assert_eq!(r["mismatch"], serde_json::json!([]), "{r}");
        assert!(
            r["authority"]
                .as_str()
                .is_some_and(|a| a.starts_with("site.lab.test")),
            "{r}"
        );
    }
    let summary: Vec<(String, String, String, u64, u64)> = recs
        .iter()
        .map(|r| {
            (
                r["method"].as_str().unwrap_or_default().to_owned(),
                r["path"].as_str().unwrap_or_default().to_owned(),
                r["version"].as_str().unwrap_or_default().to_owned(),
                r["request_bytes"].as_u64().unwrap_or(u64::MAX),
                r["response_bytes"].as_u64().unwrap_or(u64::MAX),
            )
        })
        .collect();
    assert_eq!(
        summary[1],
        ("POST".into(), "/echo?n=1".into(), "HTTP/2".into(), 10, 10)
    );
    assert_eq!(
        summary[2],
        (
            "GET".into(),
            "/bytes/12345".into(),
            "HTTP/2".into(),
            0,
            12345
        )
    );
    assert_eq!((&summary[0].0[..], &summary[0].2[..]), ("GET", "HTTP/1.1"));

    let text = std::fs::read_to_string(&path).expect("flows file");
    assert!(text.contains(r#"["authorization","<redacted>"]"#), "{text}");
    assert!(text.contains(r#"["cookie","<redacted>"]"#), "{text}");
    let logs = ward.stderr_text();
    for secret in [BEARER, COOKIE, PROXY_PASSWORD] {
        assert!(
            !text.contains(secret),
            "{secret} in the flows file:\n{text}"
        );
        assert!(!logs.contains(secret), "{secret} in ward's log:\n{logs}");
    }

    let policy = ward.dir().join("policy.yaml");
    let har = ward_cli(
        &["flows", "har", "-c", policy.to_str().expect("utf-8")],
        ward.dir(),
    )
    .ok("ward flows har");
    let doc: Value = serde_json::from_str(&har.stdout).expect("HAR is JSON");
    assert_eq!(doc["log"]["version"], "1.2");
    let entries = doc["log"]["entries"].as_array().expect("log.entries");
    assert_eq!(entries.len(), 3, "{doc:#}");
    assert_eq!(
        entries[1]["request"]["url"],
        format!("https://site.lab.test:{port}/echo?n=1")
    );
    assert_eq!(entries[2]["response"]["content"]["size"], 12345);
    assert!(!har.stdout.contains(BEARER) && !har.stdout.contains(COOKIE));
    let input = ward_cli(
        &["flows", "har", "--input", path.to_str().expect("utf-8")],
        ward.dir(),
    )
    .ok("ward flows har --input");
    let again: Value = serde_json::from_str(&input.stdout).expect("HAR is JSON");
    assert_eq!(again["log"]["entries"].as_array().map(Vec::len), Some(3));
}

/// One request with `Host: host` over a fresh inspected connection; returns the head.
fn get_with_host(ward: &Ward, connect: &str, sni: &str, host: &str) -> net::Head {
    let mut tls = inspected_tls(ward, connect, sni, &[b"http/1.1"]);
    let req = format!("GET /headers HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).expect("write request");
    net::read_head(&mut tls).expect("a response")
}

#[test]
fn inspect_inner_host_other_than_the_sni_is_421_under_sni_mismatch_deny() {
    let o = origins();
    let port = o.tls.port();
    let site = format!("site.lab.test:{port}");
    let ward = Ward::start(&inspecting_policy().set("sni_mismatch", "deny"));
    let head = get_with_host(
        &ward,
        &site,
        "site.lab.test",
        &format!("other.lab.test:{port}"),
    );
    assert_eq!(head.status, 421, "{head:#?}");
    assert_eq!(
        head.proxy_error().as_deref(),
        Some("http_request_denied"),
        "{head:#?}"
    );
    let details = head.proxy_details().unwrap_or_default();
    assert!(
        details.contains("other.lab.test") && details.contains("site.lab.test"),
        "{details}"
    );
    let rec = expect_flow(&ward, "for the misdirected request", |v| {
        field(v, "status").as_deref() == Some("421")
    });
    assert_eq!(field(&rec, "mismatch").as_deref(), Some("sni_authority"));
    assert_eq!(field(&rec, "error").as_deref(), Some("sni_mismatch"));
    // The same name in any case, with or without the port, is the same site.
    let head = get_with_host(&ward, &site, "site.lab.test", "SITE.lab.test.");
    assert_eq!(head.status, 200, "{head:#?}");
    if have("curl") {
        // h2: curl turns -H Host into :authority.
        let r = curl(&[
            "--http2",
            "-x",
            &ward.http_url(),
            "--cacert",
            &ward_ca(&ward),
            "-H",
            "Host: other.lab.test",
            &o.https("site.lab.test", "/"),
        ]);
        assert_eq!(r.http_code, 421, "{r:#?}");
    }

    // Allowed (the default), the disagreement is relayed and visible in the record.
    let ward = Ward::start(&inspecting_policy());
    let head = get_with_host(
        &ward,
        &format!("a.lab.test:{port}"),
        "b.lab.test",
        "c.lab.test",
    );
    assert_eq!(head.status, 200, "{head:#?}");
    let rec = expect_flow(&ward, "for the disagreeing names", |v| {
        field(v, "authority").as_deref() == Some("c.lab.test")
    });
    assert_eq!(field(&rec, "connect"), Some(format!("a.lab.test:{port}")));
    assert_eq!(field(&rec, "sni").as_deref(), Some("b.lab.test"));
    assert_eq!(
        field(&rec, "mismatch").as_deref(),
        Some("connect_sni,sni_authority")
    );
}
