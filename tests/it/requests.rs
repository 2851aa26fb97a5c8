//! Rules on requests (`methods`, `paths`) through the real binary and real curl: per request in
//! plain HTTP forwarding (a kept-alive connection included) and inside interception, over
//! HTTP/1.1 and HTTP/2; a refusal is 403 with the rule in Proxy-Status and the next request on
//! the same connection is still served.

use crate::inspect::{expect_flow, ward_ca};
use crate::support::ward::field;
use crate::support::{Policy, Ward, curl, origins};

/// Two rules on requests, then the inspect rule for .lab.test (first match wins); the lab rule
/// at the end lets plain HTTP to loopback through.
fn start() -> Ward {
    Ward::start(
        &Policy::new()
            .set("upstream_ca", &format!("\"{}\"", origins().ca()))
            .rule(r#"{name: no-delete, action: deny, hosts: [".lab.test"], methods: [DELETE]}"#)
            .rule(r#"{name: no-admin, action: deny, hosts: [".lab.test"], paths: ["/admin/*"]}"#)
            .rule(r#"{name: look, action: inspect, hosts: [".lab.test"], dst: ["127.0.0.0/8"]}"#),
    )
}

/// The Proxy-Status line curl -v printed for the response.
fn proxy_status(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("< proxy-status:"))
        .unwrap_or_else(|| panic!("no Proxy-Status in:\n{stderr}"))
        .to_owned()
}

#[test]
fn plain_http_requests_are_judged_one_by_one_on_a_kept_connection() {
    let ward = start();
    let o = origins();
    let url = |path: &str| o.http("site.lab.test", path);
    let c = curl(&[
        "-v",
        "-x",
        &ward.http_url(),
        "-X",
        "DELETE",
        &url("/headers"),
    ]);
    assert_eq!(c.http_code, 403, "{:?}", c.out);
    let status = proxy_status(&c.out.stderr);
    assert!(
        status.contains("http_request_denied") && status.contains("rule \\\"no-delete\\\""),
        "{status}"
    );
    assert!(status.contains("DELETE /headers"), "{status}");
    for path in ["/admin/users", "/%61dmin/users", "/x/../admin"] {
        let c = curl(&["--path-as-is", "-x", &ward.http_url(), &url(path)]);
        assert_eq!(c.http_code, 403, "{path}: {:?}", c.out);
    }
    // One curl, one proxy connection: GET, then DELETE, then GET again. The origin connection
    // kept after the first request must not carry the second past the rule.
    let c = curl(&[
        "-x",
        &ward.http_url(),
        &url("/headers"),
        "-o",
        "/dev/null",
        "--next",
        "-w",
        "\n%{http_code} %{http_connect}",
        "-x",
        &ward.http_url(),
        "-X",
        "DELETE",
        &url("/headers"),
        "-o",
        "/dev/null",
        "--next",
        "-w",
        "\n%{http_code} %{http_connect}",
        "-x",
        &ward.http_url(),
        &url("/headers"),
        "-o",
        "/dev/null",
    ]);
    let codes: Vec<&str> = c.out.stdout.split_whitespace().collect();
    assert_eq!(
        codes,
        ["200", "000", "403", "000", "200", "000"],
        "{:?}",
        c.out
    );
    let rec = ward.expect_access("the refused DELETE", |v| {
        field(v, "method").as_deref() == Some("DELETE")
            && field(v, "status").as_deref() == Some("403")
    });
    assert_eq!(field(&rec, "rule").as_deref(), Some("no-delete"), "{rec}");
    assert_eq!(field(&rec, "action").as_deref(), Some("deny"), "{rec}");
}

#[test]
fn inspected_requests_are_judged_inside_the_tls_over_h1_and_h2() {
    let ward = start();
    let o = origins();
    let ca = ward_ca(&ward);
    for proto in ["--http1.1", "--http2"] {
        let base = ["-v", proto, "-x", &ward.http_url(), "--cacert", &ca];
        let ok = curl(&[&base[..], &[&o.https("site.lab.test", "/headers")]].concat());
        ok.expect_ok(200);
        let c = curl(
            &[
                &base[..],
                &["-X", "DELETE", &o.https("site.lab.test", "/headers")],
            ]
            .concat(),
        );
        assert_eq!(
            (c.connect_code, c.http_code),
            (200, 403),
            "{proto}: {:?}",
            c.out
        );
        let status = proxy_status(&c.out.stderr);
        assert!(
            status.contains("rule \\\"no-delete\\\""),
            "{proto}: {status}"
        );
        let c = curl(&[&base[..], &[&o.https("site.lab.test", "/admin/x")]].concat());
        assert_eq!(c.http_code, 403, "{proto}: {:?}", c.out);
        assert!(proxy_status(&c.out.stderr).contains("no-admin"), "{proto}");
    }
    // The flow record of a refused request names the rule that refused it; a relayed one the
    // inspect rule.
    let refused = expect_flow(&ward, "for the refused DELETE", |v| {
        field(v, "method").as_deref() == Some("DELETE")
    });
    assert_eq!(
        field(&refused, "rule").as_deref(),
        Some("no-delete"),
        "{refused}"
    );
    assert_eq!(
        field(&refused, "status").as_deref(),
        Some("403"),
        "{refused}"
    );
    let relayed = expect_flow(&ward, "for a relayed GET", |v| {
        field(v, "method").as_deref() == Some("GET") && field(v, "status").as_deref() == Some("200")
    });
    assert_eq!(
        field(&relayed, "rule").as_deref(),
        Some("look"),
        "{relayed}"
    );
}
