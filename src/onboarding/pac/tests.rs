//! The generator's text; the integration tests evaluate it for real (pacparser, Chromium).

use super::*;

fn pac(bypass: &[&str], socks: bool) -> Pac {
    let yaml = format!(
        "pac: {{ bypass: [{}], socks: {socks} }}\n",
        bypass
            .iter()
            .map(|b| format!("{b:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    crate::config::parse(&yaml, std::path::Path::new("t.yaml"))
        .expect("valid pac")
        .pac
}

fn setup() -> Host {
    Host::Name("ward.setup".into())
}

#[test]
fn advertises_the_proxy_with_or_without_socks() {
    let js = pac_js("ward.example:8080", &Pac::default(), &setup());
    assert!(js.contains(r#"var ward = "PROXY ward.example:8080; SOCKS5 ward.example:8080";"#));
    let js = pac_js("ward.example:8080", &pac(&["*.local"], false), &setup());
    assert!(
        js.contains(r#"var ward = "PROXY ward.example:8080";"#),
        "{js}"
    );
    assert!(!js.contains("SOCKS5"));
    assert!(js.starts_with("// Written by ward"));
    assert!(js.contains("function FindProxyForURL(url, host) {"));
}

#[test]
fn each_bypass_kind_has_its_test() {
    let js = pac_js(
        "[2001:db8::1]:3128",
        &pac(
            &[
                "*.local",
                ".corp.example",
                "intranet.example",
                "10.0.0.0/8",
                "192.168.1.9",
                "fc00::/7",
            ],
            true,
        ),
        &setup(),
    );
    for needle in [
        r#"if (dnsDomainIs(host, ".local")) return "DIRECT";"#,
        r#"if (host == "corp.example" || dnsDomainIs(host, ".corp.example")) return "DIRECT";"#,
        r#"if (host == "intranet.example") return "DIRECT";"#,
        r#"if (isInNet(host, "10.0.0.0", "255.0.0.0")) return "DIRECT";"#,
        r#"if (isInNet(host, "192.168.1.9", "255.255.255.255")) return "DIRECT";"#,
        r#"if (isInNetEx(host, "fc00::/7")) return "DIRECT";"#,
        r#"PROXY [2001:db8::1]:3128; SOCKS5 [2001:db8::1]:3128"#,
    ] {
        assert!(js.contains(needle), "missing {needle}:\n{js}");
    }
}

#[test]
fn the_setup_name_is_proxied_before_any_bypass() {
    let js = pac_js("w:1", &pac(&["*.setup", ".ward.setup"], true), &setup());
    let setup_at = js
        .find(r#"if (host == "ward.setup") return ward;"#)
        .expect("setup test");
    let bypass_at = js
        .find(r#"dnsDomainIs(host, ".setup")"#)
        .expect("bypass test");
    assert!(setup_at < bypass_at, "{js}");
}

#[test]
fn no_test_resolves_a_name() {
    let js = pac_js(
        "w:1",
        &pac(&["*.local", "10.0.0.0/8", "fc00::/7"], true),
        &setup(),
    );
    assert!(!js.contains("dnsResolve"), "{js}");
    assert!(!js.contains("isResolvable"), "{js}");
    // isInNet resolves a name it is given: every call sits inside the IP-literal guards.
    let v4_guard = js.find("/^[0-9]+").expect("v4 guard");
    let v6_guard = js.find("host.indexOf(\":\")").expect("v6 guard");
    let isinnet = js.find("isInNet(host, \"10.").expect("v4 test");
    let isinnetex = js.find("isInNetEx(host, \"fc00").expect("v6 test");
    assert!(
        v4_guard < isinnet && isinnet < v6_guard && v6_guard < isinnetex,
        "{js}"
    );
}

#[test]
fn ip_literals_are_judged_before_plain_names() {
    // `2001:db8::1` has no dot: pacparser's isPlainHostName calls it plain, and it went DIRECT.
    let js = pac_js("w:1", &Pac::default(), &setup());
    let v6 = js.find("host.indexOf(\":\")").expect("v6 block");
    let plain = js.find("isPlainHostName(host)").expect("plain test");
    assert!(v6 < plain, "{js}");
    let block = &js[v6..plain];
    assert!(
        block.contains("return ward;\n  }"),
        "the IPv6 block decides: {block}"
    );
}
