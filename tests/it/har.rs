//! The HAR export read by a real HAR reader (haralyzer, from PyPI) and held to HAR 1.2's
//! structure: response heads, cookies by name, decoded query strings and measured timings
//! for HTTP/1.1 and HTTP/2 requests made through the real binary with curl, no secret in it.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::inspect::{inspecting_policy, ward_ca};
use crate::support::secrets::{BEARER, COOKIE};
use crate::support::tools::{Output, run};
use crate::support::ward::ward_cli;
use crate::support::{Ward, curl, have, origins, wait_until};

/// haralyzer reads every entry; then each is checked against HAR 1.2's required fields and
/// types (a schema check by hand: the spec has no official JSON schema), and the timings rule
/// (`time` is the sum of the timings that are not -1). Prints what haralyzer read, as JSON.
const READ_HAR: &str = r#"
import json, sys
from haralyzer import HarParser, HarPage
doc = json.load(open(sys.argv[1]))
parser = HarParser(doc)
assert parser.version == "1.2", parser.version
assert parser.creator["name"] == "ward", parser.creator
log = doc["log"]
for key, ty in [("version", str), ("creator", dict), ("entries", list)]:
    assert isinstance(log[key], ty), key
NV = lambda xs: all(isinstance(x["name"], str) and isinstance(x["value"], str) for x in xs)
out = []
for e in HarPage("unknown", har_parser=parser).entries:
    raw = e.raw_entry
    for key in ["startedDateTime", "time", "request", "response", "cache", "timings"]:
        assert key in raw, key
    req, resp, t = e.request, e.response, e.timings
    # haralyzer's Response has no `cookies`: the raw entry holds them.
    for side, rawside in ((req, raw["request"]), (resp, raw["response"])):
        assert NV(side.headers) and NV(rawside["cookies"]), side
        assert isinstance(side.httpVersion, str) and side.httpVersion.startswith("HTTP/")
        assert isinstance(side.headersSize, int) and isinstance(side.bodySize, int)
    assert NV(req.queryString)
    assert isinstance(resp.status, int) and isinstance(resp.statusText, str)
    assert isinstance(raw["response"]["content"]["size"], int)
    assert isinstance(raw["response"]["content"]["mimeType"], str)
    assert isinstance(resp.redirectURL, str)
    for k in ["blocked", "dns", "connect", "ssl", "send", "wait", "receive"]:
        assert isinstance(t[k], (int, float)), k
        assert t[k] == -1 or t[k] >= 0, (k, t[k])
    for k in ["send", "wait", "receive"]:
        assert t[k] >= 0, k
    # HAR 1.2: `connect` includes `ssl`, so `time` counts it once.
    total = sum(v for k, v in t.items() if k not in ("comment", "ssl") and v != -1)
    assert abs(total - e.time) < 0.01, (total, e.time)
    assert e.startTime is not None
    out.append({
        "method": req.method, "url": req.url, "req_version": req.httpVersion,
        "query": req.queryString, "req_cookies": req.cookies,
        "status": resp.status, "status_text": resp.statusText,
        "resp_version": resp.httpVersion, "mime": resp.mimeType,
        "resp_cookies": raw["response"]["cookies"],
        "auth": req.get_header_value("authorization"),
        "resp_headers": {h["name"]: h["value"] for h in resp.headers},
        "timings": t, "time": e.time,
    })
print(json.dumps(out))
"#;

fn have_haralyzer() -> bool {
    if python("import haralyzer", &[]).success() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "python3 lacks haralyzer and CI is set: .ci/run must pip install it"
    );
    eprintln!("\n!!!!!!!! SKIPPED: pip install haralyzer to read the HAR !!!!!!!!\n");
    false
}

fn python(script: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new("python3");
    cmd.arg("-c").arg(script).args(args);
    run(cmd, Duration::from_secs(30))
}

#[test]
fn har_export_reads_in_haralyzer_with_response_heads_cookies_and_timings() {
    if !have("curl") || !have("python3") || !have_haralyzer() {
        return;
    }
    let o = origins();
    let ward = Ward::start(&inspecting_policy().set("flows", "flows.jsonl"));
    let ca = ward_ca(&ward);
    let proxy = format!("http://{}", ward.addr);
    let base = ["-x", &proxy, "--cacert", &ca];
    let auth = format!("Authorization: Bearer {BEARER}");
    let cookie = format!("Cookie: session={COOKIE}; theme=dark");
    let url = o.https("site.lab.test", "/cookie?q=a%20b+c&flag");
    // Two requests on one connection: only the first carries the connection's set-up.
    let again = o.https("site.lab.test", "/cookie?again");
    let h1 = [
        &base[..],
        &["--http1.1", "-H", &auth, "-H", &cookie, &url, &again][..],
    ]
    .concat();
    curl(&h1).expect_ok(200);
    let echo = o.https("site.lab.test", "/echo");
    let h2 = [
        &base[..],
        &["--http2", "--data-binary", "0123456789", &echo][..],
    ]
    .concat();
    assert_eq!(curl(&h2).expect_ok(200).body, "0123456789");

    let flows = ward.dir().join("flows.jsonl");
    wait_until(Duration::from_secs(5), "two flow records", || {
        let text = std::fs::read_to_string(&flows).unwrap_or_default();
        (text.lines().count() >= 3).then_some(())
    });
    let policy = ward.dir().join("policy.yaml");
    let har = ward_cli(
        &["flows", "har", "-c", policy.to_str().expect("utf-8")],
        ward.dir(),
    )
    .ok("ward flows har");
    for secret in [BEARER, COOKIE] {
        assert!(
            !har.stdout.contains(secret),
            "{secret} in the HAR:\n{}",
            har.stdout
        );
    }
    let har_path = ward.dir().join("flows.har");
    std::fs::write(&har_path, &har.stdout).expect("write HAR");
    let read = python(READ_HAR, &[har_path.to_str().expect("utf-8")]).ok("haralyzer");
    let entries: Vec<Value> = serde_json::from_str(read.stdout.trim()).expect("reader JSON");
    assert_eq!(entries.len(), 3, "{entries:#?}");

    let (e1, again, e2) = (&entries[0], &entries[1], &entries[2]);
    assert!(again["url"].as_str().is_some_and(|u| u.ends_with("?again")));
    assert_eq!(e1["method"], "GET");
    assert_eq!(
        (&e1["req_version"], &e1["resp_version"]),
        (&"HTTP/1.1".into(), &"HTTP/1.1".into())
    );
    assert_eq!(
        (&e1["status"], &e1["status_text"]),
        (&200.into(), &"OK".into())
    );
    assert_eq!(e1["mime"], "text/plain");
    assert_eq!(e1["auth"], "<redacted>");
    let query = serde_json::json!([{"name": "q", "value": "a b c"}, {"name": "flag", "value": ""}]);
    assert_eq!(e1["query"], query);
    let redacted = |name: &str| serde_json::json!({"name": name, "value": "<redacted>"});
    assert_eq!(
        e1["req_cookies"],
        serde_json::json!([redacted("session"), redacted("theme")])
    );
    assert_eq!(e1["resp_cookies"], serde_json::json!([redacted("echo")]));
    assert_eq!(e1["resp_headers"]["set-cookie"], "<redacted>");

    assert_eq!(e2["method"], "POST");
    assert_eq!(
        (&e2["req_version"], &e2["resp_version"]),
        (&"HTTP/2".into(), &"HTTP/2".into())
    );
    assert_eq!(e2["status"], 200);
    // A connection's first entry carries its set-up as measured; a reused connection's
    // later entry has none of it. `site.lab.test` is a hosts override: looked up, quickly.
    for e in [e1, e2] {
        let t = &e["timings"];
        let (dns, connect, ssl) = (&t["dns"], &t["connect"], &t["ssl"]);
        let ms = |v: &Value| v.as_f64().filter(|v| *v >= 0.0);
        let (Some(_), Some(connect), Some(ssl)) = (ms(dns), ms(connect), ms(ssl)) else {
            panic!("the first entry on a connection has its set-up: {e}");
        };
        assert!(ssl > 0.0 && connect >= ssl, "connect includes ssl: {e}");
    }
    for k in ["blocked", "dns", "connect", "ssl"] {
        assert_eq!(
            again["timings"][k], -1,
            "{k} on a reused connection: {again}"
        );
    }
    for e in &entries {
        let t = &e["timings"];
        assert_eq!(t["blocked"], -1, "ward queues no request: {e}");
        let time = e["time"].as_f64().expect("time");
        assert!(
            time > 0.0 && time < 10_000.0,
            "a measured, plausible time: {e}"
        );
        let wait = t["wait"].as_f64().expect("wait");
        assert!(wait > 0.0, "the origin's answer took some time: {e}");
    }
}

/// haralyzer's view of each entry's bodies: the request's postData (mime, text), the
/// response's content (size, mime, text, encoding) and the raw comments.
const READ_BODIES: &str = r#"
import json, sys
from haralyzer import HarParser, HarPage
doc = json.load(open(sys.argv[1]))
parser = HarParser(doc)
out = []
for e in HarPage("unknown", har_parser=parser).entries:
    raw = e.raw_entry
    post = raw["request"].get("postData")
    if post is not None:
        assert isinstance(post["mimeType"], str) and isinstance(post["text"], str), post
    content = raw["response"]["content"]
    assert isinstance(content["size"], int) and isinstance(content["mimeType"], str)
    out.append({
        "url": e.request.url,
        "req_mime": e.request.mimeType, "req_text": e.request.text,
        "req_comment": (post or {}).get("comment"), "req_encoding": (post or {}).get("_encoding"),
        "size": e.response.contentSize, "mime": e.response.mimeType,
        "text": content.get("text"), "encoding": content.get("encoding"),
        "comment": content.get("comment"),
        "auth": e.request.get_header_value("authorization"),
    })
print(json.dumps(out))
"#;

/// Bodies through the real binary with curl: a JSON post and its echo, a text response, a
/// binary post and its echo (base64 in the HAR, decoding to the bytes sent), a text body over
/// the cap both ways (cut, with its full size and a comment), and a body of a type not asked
/// for (not captured). Read back by haralyzer; the bearer token is in none of it.
#[test]
fn har_bodies_are_captured_capped_and_base64_for_binary() {
    use base64::Engine as _;
    if !have("curl") || !have("python3") || !have_haralyzer() {
        return;
    }
    let o = origins();
    let flows = r#"{ file: flows.jsonl, bodies: { max: 1KiB, types: ["text/*", "application/json", "application/octet-stream"] } }"#;
    let ward = Ward::start(&inspecting_policy().set("flows", flows));
    let ca = ward_ca(&ward);
    let proxy = format!("http://{}", ward.addr);
    let base = ["-x", &proxy, "--cacert", &ca];
    let echo = o.https("site.lab.test", "/echo");
    let auth = format!("Authorization: Bearer {BEARER}");
    let json_body = r#"{"msg":"héllo","n":1}"#;
    let post = |extra: &[&str]| {
        let args = [&base[..], extra, &[echo.as_str()][..]].concat();
        curl(&args).expect_ok(200).body.clone()
    };
    let sent = post(&[
        "--http2",
        "-H",
        &auth,
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        json_body,
    ]);
    assert_eq!(sent, json_body);
    let hello = o.https("site.lab.test", "/hello");
    curl(&[&base[..], &["--http1.1", &hello][..]].concat()).expect_ok(200);
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    let bin_path = ward.dir().join("bin.dat");
    std::fs::write(&bin_path, &binary).expect("write binary");
    let at_bin = format!("@{}", bin_path.display());
    post(&[
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &at_bin,
    ]);
    let long = "x".repeat(3000);
    post(&["-H", "Content-Type: text/plain", "--data-binary", &long]);
    let untyped = o.https("site.lab.test", "/bytes/100");
    curl(&[&base[..], &[untyped.as_str()][..]].concat()).expect_ok(200);

    let file = ward.dir().join("flows.jsonl");
    wait_until(Duration::from_secs(5), "five flow records", || {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        (text.lines().count() >= 5).then_some(())
    });
    let policy = ward.dir().join("policy.yaml");
    let har = ward_cli(
        &["flows", "har", "-c", policy.to_str().expect("utf-8")],
        ward.dir(),
    )
    .ok("ward flows har");
    assert!(!har.stdout.contains(BEARER), "{}", har.stdout);
    let har_path = ward.dir().join("flows.har");
    std::fs::write(&har_path, &har.stdout).expect("write HAR");
    let read = python(READ_BODIES, &[har_path.to_str().expect("utf-8")]).ok("haralyzer");
    let e: Vec<Value> = serde_json::from_str(read.stdout.trim()).expect("reader JSON");
    assert_eq!(e.len(), 5, "{e:#?}");

    assert_eq!(e[0]["req_mime"], "application/json");
    assert_eq!(e[0]["req_text"], json_body);
    assert_eq!(e[0]["text"], json_body);
    assert_eq!(
        (&e[0]["mime"], &e[0]["encoding"]),
        (&"application/json".into(), &Value::Null)
    );
    assert_eq!(e[0]["size"], json_body.len());
    assert_eq!(e[0]["auth"], "<redacted>");

    assert_eq!(e[1]["req_text"], Value::Null, "a GET has no postData");
    assert_eq!(e[1]["mime"], "text/plain");
    assert!(
        e[1]["text"]
            .as_str()
            .expect("text")
            .starts_with("hello HTTP/1.1"),
        "{}",
        e[1]
    );

    let decode = |v: &Value| {
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 text"))
            .expect("valid base64")
    };
    assert_eq!(e[2]["req_encoding"], "base64");
    assert_eq!(decode(&e[2]["req_text"]), binary);
    assert_eq!(e[2]["encoding"], "base64");
    assert_eq!(decode(&e[2]["text"]), binary);
    assert_eq!(e[2]["size"], 256);

    for (text, comment) in [("req_text", "req_comment"), ("text", "comment")] {
        assert_eq!(e[3][text].as_str().map(str::len), Some(1024), "{}", e[3]);
        let note = e[3][comment].as_str().expect("a truncation comment");
        assert!(note.contains("1024 of 3000"), "{note}");
    }
    assert_eq!(e[3]["size"], 3000);
    assert_eq!(e[0]["comment"], Value::Null);

    assert_eq!((&e[4]["text"], &e[4]["size"]), (&Value::Null, &100.into()));

    let records = std::fs::read_to_string(&file).expect("flows file");
    let first: Value = serde_json::from_str(records.lines().next().expect("a line")).expect("json");
    assert_eq!(first["request_body"]["size"], json_body.len());
    assert_eq!(first["request_body"]["truncated"], false);
}

/// Bad `flows.bodies` values are `ward check` errors naming file, line and key.
#[test]
fn ward_check_refuses_bad_body_capture() {
    let dir = tempfile::tempdir().expect("dir");
    let cases = [
        (
            "flows:\n  bodies:\n    max: 0\n",
            "policy.yaml:3:10: flows.bodies.max",
        ),
        (
            "flows:\n  bodies:\n    max: 65MiB\n",
            "policy.yaml:3:10: flows.bodies.max",
        ),
        (
            "flows:\n  bodies:\n    types: [text/*, json]\n",
            "policy.yaml:3:21: flows.bodies.types",
        ),
        ("flows: { keep: 100001 }\n", "policy.yaml:1:16: flows.keep"),
    ];
    for (yaml, want) in cases {
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, yaml).expect("write");
        let out = ward_cli(&["check", "-c", path.to_str().expect("utf-8")], dir.path());
        assert!(!out.success(), "accepted:\n{yaml}");
        assert!(
            out.stderr.contains(want),
            "want {want:?} for\n{yaml}\ngot: {}",
            out.stderr
        );
    }
}
