//! Real clients beyond curl: Python requests (HTTP proxy with credentials, and SOCKS5 via
//! PySocks) as a proxy manager would use ward, and headless Chromium for the browser path.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::support::chromium;
use crate::support::origin::{INDEX_BODY, PAGE_MARKER};
use crate::support::secrets::{PASSWORD, WRONG_PASSWORD, alice_inline};
use crate::support::tools::run;
use crate::support::ward::field;
use crate::support::{Policy, Ward, have, origins};

pub fn python_client(proxy: &str, url: &str) -> Value {
    python_client_trusting(proxy, origins().ca(), url)
}

/// The Python client (requests, PySocks) through `proxy`, trusting the CA in `cacert`; its
/// JSON report.
pub fn python_client_trusting(proxy: &str, cacert: &str, url: &str) -> Value {
    let script: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "python",
        "proxy_client.py",
    ]
    .iter()
    .collect();
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .args(["--proxy", proxy, "--cacert", cacert, "--url", url]);
    let out = run(cmd, Duration::from_secs(60)).ok("python3 proxy_client.py");
    serde_json::from_str(out.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {out:#?}"))
}

/// python3 with requests and PySocks importable (CI installs them; elsewhere skip loudly).
pub fn have_python_deps() -> bool {
    if !have("python3") {
        return false;
    }
    let mut cmd = Command::new("python3");
    cmd.args(["-c", "import requests, socks"]);
    if run(cmd, Duration::from_secs(20)).success() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "python3 lacks requests/PySocks and CI is set: .ci/run must pip install them"
    );
    eprintln!(
        "\n!!!!!!!! SKIPPED: python3 requests/PySocks missing (pip install requests PySocks) !!!!!!!!\n"
    );
    false
}

#[test]
fn python_requests_through_http_and_socks5_proxies() {
    if !have_python_deps() {
        return;
    }
    let o = origins();
    let ward = Ward::start(&Policy::new().set("users", &alice_inline()));
    let url = o.https("origin.test", "/");
    for scheme in ["http", "socks5h"] {
        let got = python_client(&format!("{scheme}://alice:{PASSWORD}@{}", ward.addr), &url);
        assert_eq!(got["status"], 200, "{scheme}: {got}");
        assert_eq!(got["second_status"], 200, "{scheme}: {got}");
        assert_eq!(got["body"], INDEX_BODY, "{scheme}: {got}");
    }
    let got = python_client(
        &format!("http://alice:{WRONG_PASSWORD}@{}", ward.addr),
        &url,
    );
    assert_eq!(got["error"], "proxy", "wrong password: {got}");
    assert!(
        got["detail"].as_str().unwrap_or("").contains("407"),
        "{got}"
    );

    let got = python_client(
        &format!("http://alice:{PASSWORD}@{}", ward.addr),
        &o.http("origin.test", "/headers"),
    );
    assert_eq!(got["status"], 200, "{got}");
    let body = got["body"].as_str().unwrap_or("");
    assert!(body.contains("via: 1.1 ward"), "{body}");
    assert!(!body.contains("proxy-authorization"), "{body}");
}

#[test]
fn chromium_loads_a_tunnelled_page() {
    if !chromium::available() {
        return;
    }
    let o = origins();
    let ward = Ward::start(&Policy::new());
    let proxy = format!("--proxy-server=http://{}", ward.addr);
    let out = chromium::dump_dom(&[proxy], &o.https("origin.test", "/"));
    assert!(
        out.stdout.contains(PAGE_MARKER),
        "Chromium must render the origin's page: {out:#?}\nward log:\n{}",
        ward.stderr_text()
    );
    let rec = ward.expect_access("for Chromium's tunnel", |v| {
        field(v, "sni").as_deref() == Some("origin.test")
    });
    assert_eq!(field(&rec, "via").as_deref(), Some("http-connect"));
}
