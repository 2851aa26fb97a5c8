//! Chaining: ward behind ward (upstream http:// and socks5h://, with credentials), ward behind
//! Debian's tinyproxy, and what the client sees when the upstream proxy fails.

use crate::support::net::http_connect;
use crate::support::origin::INDEX_BODY;
use crate::support::secrets::UPSTREAM_PASSWORD;
use crate::support::tinyproxy::Tinyproxy;
use crate::support::ward::field;
use crate::support::{Policy, Ward, curl, curl_index_via, have, origins, refused_port};

/// The proxy in front: no rules of its own that need `dst` (so ward never resolves),
/// everything allowed, no hosts overrides (the upstream resolves).
fn front(upstream: &str) -> Ward {
    Ward::start(
        &Policy::new()
            .set("default", "allow")
            .set("upstream", &format!("\"{upstream}\""))
            .unset("hosts")
            .without_lab_rule(),
    )
}

fn back_with_users() -> Ward {
    Ward::start(&Policy::new().set(
        "users",
        &format!("[{{name: bob, password: \"{UPSTREAM_PASSWORD}\"}}]"),
    ))
}

fn assert_tunnel_works(front: &Ward) {
    let o = origins();
    let (s, head) = http_connect(front.addr, &format!("origin.test:{}", o.tls.port()), &[]);
    assert_eq!(
        head.status,
        200,
        "{head:#?}\nfront log:\n{}",
        front.stderr_text()
    );
    o.assert_index_over(s, "origin.test");
}

#[test]
fn chain_through_a_second_ward_over_http() {
    let back = back_with_users();
    let a = front(&format!("http://bob:{UPSTREAM_PASSWORD}@{}", back.addr));
    assert_tunnel_works(&a);
    let rec = a.expect_access("at the front", |v| {
        field(v, "via").as_deref() == Some("http-connect")
    });
    assert_eq!(field(&rec, "upstream"), Some(back.addr.to_string()));
    back.expect_access("at the back", |v| {
        field(v, "user").as_deref() == Some("bob")
    });
    if have("curl") {
        let o = origins();
        let r = curl_index_via(&a.http_url());
        assert_eq!(r.expect_ok(200).body, INDEX_BODY);
        let r = curl(&["-x", &a.http_url(), &o.http("origin.test", "/headers")]);
        r.expect_ok(200);
        assert!(r.body.starts_with("GET /headers HTTP/1.1\n"), "{}", r.body);
        assert!(!r.body.contains("proxy-authorization"), "{}", r.body);
    }
}

#[test]
fn chain_through_a_second_ward_over_socks5h() {
    let back = back_with_users();
    let a = front(&format!("socks5h://bob:{UPSTREAM_PASSWORD}@{}", back.addr));
    assert_tunnel_works(&a);
    back.expect_access("at the back", |v| {
        field(v, "via").as_deref() == Some("socks5") && field(v, "user").as_deref() == Some("bob")
    });
}

#[test]
fn upstream_failures_are_502_proxy_internal_error() {
    let o = origins();
    let target = format!("origin.test:{}", o.tls.port());
    let back = back_with_users();
    for upstream in [
        format!("http://bob:wrong@{}", back.addr),
        format!("socks5h://bob:wrong@{}", back.addr),
        format!("http://127.0.0.1:{}", refused_port()),
    ] {
        let a = front(&upstream);
        let (_, head) = http_connect(a.addr, &target, &[]);
        assert_eq!(head.status, 502, "upstream {upstream}: {head:#?}");
        assert_eq!(
            head.proxy_error().as_deref(),
            Some("proxy_internal_error"),
            "upstream {upstream}"
        );
        a.expect_access("naming the upstream failure", |v| {
            field(v, "error").as_deref() == Some("upstream_proxy_error")
        });
    }
    // The upstream's own refusal carries through as a failure too.
    let a = front(&format!("http://bob:{UPSTREAM_PASSWORD}@{}", back.addr));
    let (_, head) = http_connect(a.addr, &format!("origin.test:{}", refused_port()), &[]);
    assert_eq!(head.status, 502, "{head:#?}");
}

#[test]
fn chain_through_tinyproxy() {
    if !have("tinyproxy") {
        return;
    }
    let o = origins();
    let tp = Tinyproxy::start();
    let a = front(&format!("http://{}", tp.addr));
    // tinyproxy resolves with the system resolver: use a name it knows.
    let (s, head) = http_connect(a.addr, &format!("localhost:{}", o.tls.port()), &[]);
    assert_eq!(head.status, 200, "{head:#?}\n{}", a.stderr_text());
    o.assert_index_over(s, "localhost");
    if have("curl") {
        let url = format!("https://localhost:{}/", o.tls.port());
        let r = curl(&["-x", &a.http_url(), "--cacert", o.ca(), &url]);
        assert_eq!(r.expect_ok(200).body, INDEX_BODY);
    }
    let (_, head) = http_connect(a.addr, &format!("localhost:{}", refused_port()), &[]);
    assert_eq!(
        head.status, 502,
        "tinyproxy's failure becomes a 502: {head:#?}"
    );
}

/// A normal policy (its last rule allows loopback by `dst`) works through an upstream: ward
/// resolves the name for the decision only, hands the *name* on, and still refuses what the
/// rules and the prohibited ranges refuse.
#[test]
fn dst_rules_are_judged_through_an_upstream() {
    let o = origins();
    let back = back_with_users();
    let upstream = format!("\"http://bob:{UPSTREAM_PASSWORD}@{}\"", back.addr);
    let a =
        Ward::start(&Policy::new().set("upstream", &upstream).rule(
            r#"{name: no-echo, action: deny, hosts: ["echo.lab.test"], dst: ["127.0.0.0/8"]}"#,
        ));
    assert_tunnel_works(&a);
    let rec = a.expect_access("allowed by the lab rule's dst", |v| {
        field(v, "rule").as_deref() == Some("lab")
    });
    assert_eq!(field(&rec, "upstream"), Some(back.addr.to_string()));
    let by_name = format!("origin.test:{}", o.tls.port());
    back.expect_access("handed the name, not the address", |v| {
        field(v, "target").as_deref() == Some(by_name.as_str())
    });

    let (_, head) = http_connect(a.addr, &format!("echo.lab.test:{}", o.echo.port()), &[]);
    assert_eq!(
        head.status, 403,
        "denied by dst through the upstream: {head:#?}"
    );
    let details = head.proxy_details().unwrap_or_default();
    assert!(details.contains("no-echo"), "names the rule: {details}");

    let (_, head) = http_connect(a.addr, "nowhere.invalid:443", &[]);
    assert_eq!(head.status, 502, "{head:#?}");
    assert_eq!(head.proxy_error().as_deref(), Some("dns_error"));
    let details = head.proxy_details().unwrap_or_default();
    assert!(
        details.contains("resolved for the decision only") && details.contains("lab"),
        "says which rule needed the lookup: {details}"
    );

    // The deciding rule has no dst, but an earlier one made ward resolve: the loopback address
    // it found is prohibited, as on a direct dial.
    let b = Ward::start(
        &Policy::new()
            .set("upstream", &upstream)
            .without_lab_rule()
            .rule(r#"{name: not-ten, action: deny, dst: ["10.0.0.0/8"]}"#)
            .rule(r#"{name: anything, action: allow}"#),
    );
    let (_, head) = http_connect(b.addr, &by_name, &[]);
    assert_eq!(head.status, 403, "{head:#?}");
    assert_eq!(
        head.proxy_error().as_deref(),
        Some("destination_ip_prohibited")
    );
}

/// Per-rule upstreams: one rule through a second ward, one through a list whose first proxy
/// refuses (ward fails over to tinyproxy, and says so), one `direct` past the default upstream.
#[test]
fn rules_choose_their_upstream_and_fail_over() {
    if !have("tinyproxy") {
        return;
    }
    let o = origins();
    let back = back_with_users();
    let tp = Tinyproxy::start();
    let upstreams = format!(
        "{{back: \"http://bob:{UPSTREAM_PASSWORD}@{}\", tiny: \"http://{}\", dead: \"http://127.0.0.1:{}\"}}",
        back.addr,
        tp.addr,
        refused_port()
    );
    let a = Ward::start(
        &Policy::new()
            .set("default", "allow")
            .unset("hosts")
            .without_lab_rule()
            .set("upstreams", &upstreams)
            .rule(r#"{name: via-back, action: allow, hosts: ["origin.test"], upstream: back}"#)
            .rule(
                r#"{name: via-tiny, action: allow, hosts: ["localhost"], upstream: [dead, tiny]}"#,
            ),
    );
    let (s, head) = http_connect(a.addr, &format!("origin.test:{}", o.tls.port()), &[]);
    assert_eq!(head.status, 200, "{head:#?}\n{}", a.stderr_text());
    o.assert_index_over(s, "origin.test");
    let rec = a.expect_access("through the second ward", |v| {
        field(v, "rule").as_deref() == Some("via-back")
    });
    assert_eq!(field(&rec, "upstream_name").as_deref(), Some("back"));
    assert_eq!(field(&rec, "upstream"), Some(back.addr.to_string()));
    back.expect_access("at the second ward", |v| {
        field(v, "user").as_deref() == Some("bob")
    });

    let (s, head) = http_connect(a.addr, &format!("localhost:{}", o.tls.port()), &[]);
    assert_eq!(head.status, 200, "{head:#?}\n{}", a.stderr_text());
    o.assert_index_over(s, "localhost");
    let rec = a.expect_access("through tinyproxy after the dead one", |v| {
        field(v, "rule").as_deref() == Some("via-tiny")
    });
    assert_eq!(field(&rec, "upstream_name").as_deref(), Some("tiny"));
    assert!(
        a.stderr_text().contains("trying the next"),
        "the failover is logged:\n{}",
        a.stderr_text()
    );

    // The default upstream for the rest, and a rule that goes direct past it.
    let b = Ward::start(
        &Policy::new()
            .set("upstream", &format!("\"http://bob:{UPSTREAM_PASSWORD}@{}\"", back.addr))
            .rule(r#"{name: straight, action: allow, hosts: ["origin.test"], dst: ["127.0.0.0/8"], upstream: direct}"#),
    );
    let (s, head) = http_connect(b.addr, &format!("origin.test:{}", o.tls.port()), &[]);
    assert_eq!(head.status, 200, "{head:#?}");
    o.assert_index_over(s, "origin.test");
    let rec = b.expect_access("direct", |v| {
        field(v, "rule").as_deref() == Some("straight")
    });
    assert_eq!(field(&rec, "upstream_name").as_deref(), Some("-"));
    assert_eq!(
        field(&rec, "upstream"),
        Some(format!("127.0.0.1:{}", o.tls.port()))
    );
    let (s, head) = http_connect(b.addr, &format!("site.lab.test:{}", o.tls.port()), &[]);
    assert_eq!(head.status, 200, "{head:#?}");
    o.assert_index_over(s, "site.lab.test");
    let rec = b.expect_access("through the default upstream", |v| {
        field(v, "target").as_deref() == Some(&format!("site.lab.test:{}", o.tls.port()))
    });
    assert_eq!(field(&rec, "upstream_name").as_deref(), Some("default"));
}
