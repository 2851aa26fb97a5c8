//! Operations (issue 11, point 4): `/readyz` answers 200 while ward serves and 503 once SIGTERM
//! started the drain, while `/healthz` stays 200 until the last open tunnel is done; the
//! `/metrics` histograms and labelled counters move with real traffic.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::net::http_connect;
use crate::support::ward::{field, message};
use crate::support::{Policy, Ward, curl, curl_index_via, origins};

/// `ward` with an admin port on 127.0.0.1 picked by the OS; returns the admin address.
fn with_admin() -> (Ward, SocketAddr) {
    let ward = Ward::start(&Policy::new().set("admin", "\"127.0.0.1:0\""));
    let admin = ward
        .wait_log(Duration::from_secs(5), |v| {
            message(v) == Some("admin listening")
        })
        .and_then(|v| field(&v, "addr"))
        .expect("admin address")
        .parse()
        .expect("admin addr");
    (ward, admin)
}

/// The status and body of `GET http://ADMIN/path`.
fn get(admin: SocketAddr, path: &str) -> (u16, String) {
    let got = curl(&[&format!("http://{admin}{path}")]);
    (got.http_code, got.body)
}

#[test]
fn readyz_fails_during_the_drain_while_healthz_stays_up() {
    let (mut ward, admin) = with_admin();
    assert_eq!(get(admin, "/readyz"), (200, "ready\n".into()));
    assert_eq!(get(admin, "/healthz").0, 200);
    // An open tunnel keeps ward draining (shutdown_grace 5s) instead of exiting at once.
    let target = format!("origin.test:{}", origins().tls.port());
    let (held, head) = http_connect(ward.addr, &target, &[]);
    assert_eq!(head.status, 200, "{head:#?}");
    ward.signal("TERM");
    {
        let what = format_args!("the drain to start; log:\n{}", ward.log());
        testkit::wait_until(Duration::from_secs(5), what, || {
            ward.records()
                .iter()
                .any(|v| message(v) == Some("shutting down: draining open connections"))
        });
    }
    assert!(ward.alive(), "ward waits for the held tunnel");
    assert_eq!(get(admin, "/readyz"), (503, "draining\n".into()));
    assert_eq!(get(admin, "/healthz"), (200, "ok\n".into()));
    drop(held);
    let status = ward
        .wait_exit(Duration::from_secs(10))
        .expect("ward exits once drained");
    assert!(status.success(), "{status:?}");
}

/// The value of the series `series` (name and labels exactly as rendered) in a scrape.
fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn metrics_histograms_rule_counters_upstream_errors_and_the_leaf_cache_move_with_traffic() {
    let o = origins();
    let dead = crate::support::refused_port();
    let policy = crate::inspect::inspecting_policy()
        .set("admin", "\"127.0.0.1:0\"")
        .set(
            "upstreams",
            &format!("{{dead: \"http://127.0.0.1:{dead}\"}}"),
        )
        .rule(r#"{name: "no \"blocked\"", action: deny, hosts: [blocked.test]}"#)
        .rule(r#"{name: via-dead, action: allow, hosts: [dead.test], upstream: dead}"#);
    let ward = Ward::start(&policy);
    let admin = ward.admin_addr();
    let (status, before) = get(admin, "/metrics");
    assert_eq!(status, 200);
    for s in [
        "ward_connect_seconds_count{to=\"origin\"}",
        "ward_first_byte_seconds_count",
        "ward_leaves_forged_total",
    ] {
        assert_eq!(sample(&before, s), Some(0.0), "{s} before any traffic");
    }

    // A tunnel (connect, first byte), two inspections of one name (a forge, then a hit), a
    // deny by rule, and a rule whose upstream proxy refuses connections.
    curl_index_via(&ward.http_url()).expect_ok(200);
    let ca = crate::inspect::ward_ca(&ward);
    for _ in 0..2 {
        let url = o.https("site.lab.test", "/");
        curl(&["-x", &ward.http_url(), "--cacert", &ca, &url]).expect_ok(200);
    }
    let denied = curl(&["-x", &ward.http_url(), "https://blocked.test/"]);
    assert_eq!(denied.connect_code, 403, "{denied:#?}");
    let failed = curl(&["-x", &ward.http_url(), "https://dead.test/"]);
    assert_eq!(failed.connect_code, 502, "{failed:#?}");
    // Each record is counted as it is written: wait for the last one.
    ward.expect_access("of the dead upstream", |v| {
        v["fields"]["rule"] == "via-dead"
    });

    let (_, after) = get(admin, "/metrics");
    let at_least = |series: &str, n: f64| {
        let got = sample(&after, series).unwrap_or_else(|| panic!("no {series} in:\n{after}"));
        assert!(got >= n, "{series} = {got}, want at least {n}");
    };
    at_least("ward_connect_seconds_count{to=\"origin\"}", 3.0);
    at_least(
        "ward_connect_seconds_bucket{to=\"origin\",le=\"+Inf\"}",
        3.0,
    );
    at_least("ward_first_byte_seconds_count", 1.0);
    at_least("ward_upstream_tls_handshake_seconds_count", 2.0);
    at_least("ward_connection_duration_seconds_count", 5.0);
    at_least(
        "ward_rule_decisions_total{action=\"allow\",rule=\"lab\"}",
        1.0,
    );
    at_least(
        "ward_rule_decisions_total{action=\"inspect\",rule=\"look\"}",
        2.0,
    );
    // The rule's name, quotes and all, escaped in the label value.
    at_least(
        "ward_rule_decisions_total{action=\"deny\",rule=\"no \\\"blocked\\\"\"}",
        1.0,
    );
    at_least("ward_upstream_errors_total{upstream=\"dead\"}", 1.0);
    assert_eq!(
        sample(&after, "ward_leaves_forged_total"),
        Some(1.0),
        "{after}"
    );
    assert_eq!(sample(&after, "ward_leaf_cache_misses_total"), Some(1.0));
    assert_eq!(sample(&after, "ward_leaf_cache_hits_total"), Some(1.0));
    // The connect time is a real measurement: its sum is positive and below the timeout.
    let sum = sample(&after, "ward_connect_seconds_sum{to=\"origin\"}").expect("sum");
    assert!(sum > 0.0 && sum < 3.0, "{sum}");
}
