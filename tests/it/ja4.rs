//! JA4 in the access log and as a rule fact, with real clients: curl and headless Chromium
//! each get their fingerprint logged; a rule that denies curl's refuses curl's tunnel at the
//! ClientHello (TLS alert access_denied, `sni_denied` by that rule) and lets Chromium through.

use crate::support::chromium;
use crate::support::origin::PAGE_MARKER;
use crate::support::policy::line_of;
use crate::support::tools::{Curl, curl_index_via};
use crate::support::ward::{field, ward_cli};
use crate::support::{Policy, Ward, have, origins};

/// The record's fingerprint; `-` (no ClientHello read) is none.
fn ja4_of(v: &serde_json::Value) -> Option<String> {
    field(v, "ja4").filter(|j| j != "-")
}

/// curl's, then Chromium's tunnel to the test origin through `ward`: what each got, and the
/// fingerprint each record shows.
fn curl_then_chromium(ward: &Ward) -> (Curl, String, String, String) {
    let curl = curl_index_via(&ward.http_url());
    let rec = ward.expect_access("for curl's tunnel", |v| ja4_of(v).is_some());
    let curl_ja4 = ja4_of(&rec).unwrap_or_default();
    let proxy = format!("--proxy-server=http://{}", ward.addr);
    let page = chromium::dump_dom(&[proxy], &origins().https("origin.test", "/"));
    let rec = ward.expect_access("for Chromium's tunnel", |v| {
        ja4_of(v).is_some_and(|j| j != curl_ja4)
    });
    let chromium_ja4 = ja4_of(&rec).unwrap_or_default();
    (curl, page.stdout, curl_ja4, chromium_ja4)
}

#[test]
fn a_ja4_rule_denies_curl_and_lets_chromium_through() {
    if !have("curl") || !chromium::available() {
        return;
    }
    // First learn each client's fingerprint from the log, with nothing denied.
    let open = Ward::start(&Policy::new());
    let (curl, page, curl_ja4, chromium_ja4) = curl_then_chromium(&open);
    curl.expect_ok(200);
    assert!(page.contains(PAGE_MARKER), "Chromium through ward: {page}");
    // The spec's shape: TLS 1.3 over TCP to a domain, h2 offered first by both.
    for fp in [&curl_ja4, &chromium_ja4] {
        assert_eq!(fp.len(), 36, "{fp}");
        assert!(fp.starts_with("t13d") && fp[8..10] == *"h2", "{fp}");
    }
    drop(open);

    let ward = Ward::start(&Policy::new().rule(&format!(
        r#"{{name: no-curl, action: deny, ja4: ["{curl_ja4}"]}}"#
    )));
    let curl = curl_index_via(&ward.http_url());
    // curl's CONNECT succeeds (the fingerprint is not known yet); its handshake is refused.
    assert_eq!(curl.connect_code, 200, "{curl:#?}");
    assert!(!curl.out.success(), "curl must be refused: {curl:#?}");
    assert!(
        curl.out.stderr.to_lowercase().contains("access denied"),
        "curl reports the access_denied alert: {curl:#?}"
    );
    let rec = ward.expect_access("for curl's refusal", |v| {
        field(v, "error").as_deref() == Some("sni_denied")
    });
    assert_eq!(field(&rec, "rule").as_deref(), Some("no-curl"));
    assert_eq!(field(&rec, "ja4").as_deref(), Some(curl_ja4.as_str()));

    let proxy = format!("--proxy-server=http://{}", ward.addr);
    let page = chromium::dump_dom(&[proxy], &origins().https("origin.test", "/"));
    assert!(
        page.stdout.contains(PAGE_MARKER),
        "Chromium must get through: {page:#?}\n{}",
        ward.stderr_text()
    );
    let rec = ward.expect_access("for Chromium's tunnel", |v| {
        field(v, "ja4").as_deref() == Some(chromium_ja4.as_str())
    });
    assert_eq!(field(&rec, "rule").as_deref(), Some("lab"));
    assert_eq!(field(&rec, "action").as_deref(), Some("allow"));
}

#[test]
fn ward_check_names_the_line_of_a_malformed_ja4_and_explain_judges_one() {
    let fp = "t13d1516h2_8daaf6152771_02713d6af862";
    let policy = Policy::new()
        .rule(&format!(
            r#"{{name: chrome, action: allow, ja4: ["{fp}"]}}"#
        ))
        .without_lab_rule();
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("policy.yaml");
    let text = policy.render();
    std::fs::write(&path, &text).expect("write policy");
    let path = path.to_str().expect("utf-8 path");
    let explain = |ja4: &str| {
        // A name outside the test policy's `hosts`: explain judges an override address as the
        // proxy dials it, and loopback would be refused before any fingerprint.
        let args = ["explain", "far.example", "--ja4", ja4, "-c", path];
        ward_cli(&args, dir.path())
    };
    let out = explain(fp);
    assert!(out.stdout.starts_with("allow rule \"chrome\""), "{out:#?}");
    assert!(out.stdout.contains(&format!("ja4: {fp}")), "{out:#?}");
    let out = explain("t13d1516h2_8daaf6152771_000000000000");
    assert!(out.stdout.starts_with("deny default"), "{out:#?}");
    let out = explain("t13d1516h2");
    assert!(!out.success() && out.stderr.contains("--ja4"), "{out:#?}");

    let bad = text.replace(fp, "t13d1516h2_8daaf6152771");
    std::fs::write(path, &bad).expect("write policy");
    let out = ward_cli(&["check", "-c", path], dir.path());
    assert!(!out.success(), "{out:#?}");
    let line = line_of(&bad, "t13d1516h2_8daaf6152771");
    assert!(
        out.stderr.contains(&format!("policy.yaml:{line}")) && out.stderr.contains("JA4"),
        "{out:#?}"
    );
}
