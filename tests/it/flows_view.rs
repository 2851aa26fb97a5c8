//! The admin's live flow view with the real binary: `/flows` in headless Chromium (driven over
//! the DevTools protocol) shows a request made through ward within a second and opens it to
//! its headers and timings; `/flows/events` read by curl carries the flow; `/flows/<id>` is 404
//! with a clear body once the flow left the ring; no page, event or HAR carries the secrets
//! the request sent (Authorization, Cookie, the proxy password).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::inspect::{inspecting_policy, ward_ca};
use crate::support::secrets::{BEARER, COOKIE, PASSWORD};
use crate::support::tools::run;
use crate::support::{Policy, Ward, chromium, curl, have, origins};

const SECRETS: [&str; 3] = [BEARER, COOKIE, PASSWORD];
const CDP: &str = include_str!("flows_view/cdp.py");

fn view_policy(keep: usize) -> Policy {
    inspecting_policy()
        .set("admin", "\"127.0.0.1:0\"")
        .set(
            "users",
            &format!("[{{ name: alice, password: \"{PASSWORD}\" }}]"),
        )
        .set("flows", &format!("{{ keep: {keep} }}"))
}

/// curl's arguments for a request through ward to `url`, with every kind of secret a page
/// must not show.
fn secret_args(ward: &Ward, ca: &str, url: &str) -> Vec<String> {
    let user = format!("alice:{PASSWORD}");
    let auth = format!("Authorization: Bearer {BEARER}");
    let cookie = format!("Cookie: sid={COOKIE}");
    let proxy = ward.http_url();
    let args = [
        "-x",
        &proxy,
        "--proxy-user",
        &user,
        "--cacert",
        ca,
        "-H",
        &auth,
        "-H",
        &cookie,
        url,
    ];
    args.iter().map(|s| s.to_string()).collect()
}

/// The admin's answer to `GET path`: status and body.
fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let out = curl(&[&format!("http://{admin}{path}")]);
    (out.http_code, out.body.clone())
}

fn assert_no_secret(what: &str, text: &str) {
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} in {what}:\n{text}");
    }
}

#[test]
fn chromium_sees_a_new_flow_within_a_second_and_no_secret() {
    if !chromium::available() || !have("python3") || !have("curl") {
        return;
    }
    let ward = Ward::start(&view_policy(100));
    let admin = ward.admin_addr();
    let ca = ward_ca(&ward);
    let marker = "/hello?view=chromium-7f3e";
    let url = origins().https("site.lab.test", marker);
    let command: Vec<String> = ["curl", "-sS", "--max-time", "20", "-o", "/dev/null"]
        .iter()
        .map(|s| s.to_string())
        .chain(secret_args(&ward, &ca, &url))
        .collect();
    let curl_args = serde_json::to_string(&command).expect("json");
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(CDP)
        .args([&format!("http://{admin}/flows"), &curl_args, marker]);
    let out = run(cmd, Duration::from_secs(150)).ok("the DevTools driver");
    let got: Value = serde_json::from_str(out.stdout.trim()).expect("driver JSON");
    assert_eq!(
        got["live"], true,
        "the page's event stream opened: {}",
        out.stderr
    );
    assert_eq!(got["curl_rc"], 0);
    assert_eq!(got["appeared"], true, "the flow row appeared");
    let seconds = got["seconds"].as_f64().expect("seconds");
    assert!(seconds < 1.0, "the row took {seconds:.3} s");
    assert_eq!(got["detail"], true, "the row opened to its timings");
    let html = got["html"].as_str().expect("html");
    assert!(
        html.contains("request headers") && html.contains("authorization: &lt;redacted&gt;"),
        "{html}"
    );
    assert!(html.contains("timings (ms): send"), "{html}");
    assert_no_secret("the page", html);
    eprintln!(
        "flow row on the page {:.0} ms after curl finished",
        seconds * 1000.0
    );
}

#[test]
fn curl_reads_the_event_stream_and_an_evicted_flow_is_404() {
    if !have("curl") {
        return;
    }
    let ward = Ward::start(&view_policy(2));
    let admin = ward.admin_addr();
    let ca = ward_ca(&ward);
    let mut events = Command::new("curl")
        .args([
            "-sS",
            "-N",
            "--max-time",
            "30",
            &format!("http://{admin}/flows/events"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl for events");
    let (tx, rx) = mpsc::channel();
    let stdout = events.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the stream's opening comment");
    assert!(first.starts_with(": ward flows"), "{first}");
    let urls: Vec<String> = (0..3)
        .map(|i| origins().https("site.lab.test", &format!("/hello?n={i}")))
        .collect();
    for url in &urls {
        let args = secret_args(&ward, &ca, url);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        curl(&args).expect_ok(200);
    }
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while seen
        .iter()
        .filter(|l: &&String| l.starts_with("data: "))
        .count()
        < 3
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("three events did not come: {seen:#?}"),
        }
    }
    let _ = events.kill();
    let _ = events.wait();
    let stream = seen.join("\n");
    assert_no_secret("the event stream", &stream);
    assert_eq!(
        seen.iter().filter(|l| *l == "event: flow").count(),
        3,
        "{stream}"
    );
    let data: Vec<Value> = seen
        .iter()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("event JSON"))
        .collect();
    let ids: Vec<u64> = data.iter().map(|d| d["id"].as_u64().expect("id")).collect();
    assert_eq!(ids, [1, 2, 3]);
    assert_eq!(data[2]["path"], "/hello?n=2");
    assert_eq!(
        data[2]["user"],
        Value::Null,
        "summaries have no user field to leak into"
    );

    // keep: 2 — the first flow has left the ring.
    let (code, body) = admin_get(admin, "/flows/1");
    assert_eq!(code, 404, "{body}");
    assert!(
        body.contains("flow 1 has left the ring") && body.contains("flows.keep"),
        "{body}"
    );
    let (code, body) = admin_get(admin, "/flows/3");
    assert_eq!(code, 200, "{body}");
    assert_no_secret("/flows/3", &body);
    let rec: Value = serde_json::from_str(&body).expect("flow JSON");
    assert_eq!(rec["path"], "/hello?n=2");
    for (path, want) in [
        ("/flows.har", 2),
        ("/flows.har?status=2xx&host=site", 2),
        ("/flows.har?rule=nope", 0),
    ] {
        let (code, body) = admin_get(admin, path);
        assert_eq!(code, 200);
        assert_no_secret(path, &body);
        let har: Value = serde_json::from_str(&body).expect("HAR");
        assert_eq!(
            har["log"]["entries"].as_array().map(Vec::len),
            Some(want),
            "{path}"
        );
    }
    let (code, page) = admin_get(admin, "/flows");
    assert_eq!(code, 200);
    assert_no_secret("/flows", &page);
}
