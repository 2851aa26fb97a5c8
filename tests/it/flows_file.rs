//! The flows file with the real binary: `conn_id` joins the access record of a connection with
//! its flow records (and the records of one plain-HTTP connection with each other).

use std::time::Duration;

use serde_json::Value;

use crate::inspect::{inspecting_policy, ward_ca};
use crate::support::ward::{field, is_access};
use crate::support::{Policy, Ward, curl, have, origins, wait_until};

/// The flow records in `ward`'s flows.jsonl once there are `n`.
fn flow_lines(ward: &Ward, name: &str, n: usize) -> Vec<Value> {
    let path = ward.dir().join(name);
    wait_until(
        Duration::from_secs(10),
        &format!("{n} records in {name}"),
        || {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect();
            (lines.len() >= n).then_some(lines)
        },
    )
}

/// `3f9a1c-000042`: six hex digits, a dash, at least six decimal digits.
fn is_conn_id(s: &str) -> bool {
    let Some((prefix, n)) = s.split_once('-') else {
        return false;
    };
    prefix.len() == 6
        && prefix.bytes().all(|b| b.is_ascii_hexdigit())
        && n.len() >= 6
        && n.bytes().all(|b| b.is_ascii_digit())
}

#[test]
fn conn_id_links_access_and_flow_records() {
    if !have("curl") {
        return;
    }
    let o = origins();
    let ward = Ward::start(&inspecting_policy().set("flows", "flows.jsonl"));
    let ca = ward_ca(&ward);
    let proxy = ward.http_url();
    // Two requests on one connection (curl reuses it), then one on another.
    let (a, b) = (
        o.https("site.lab.test", "/hello?c=1"),
        o.https("site.lab.test", "/hello?c=2"),
    );
    curl(&["-x", &proxy, "--cacert", &ca, &a, &b]).expect_ok(200);
    let c = o.https("site.lab.test", "/hello?c=3");
    curl(&["-x", &proxy, "--cacert", &ca, &c]).expect_ok(200);
    let flows = flow_lines(&ward, "flows.jsonl", 3);
    let ids: Vec<&str> = flows
        .iter()
        .map(|f| f["conn_id"].as_str().expect("conn_id"))
        .collect();
    assert!(ids.iter().all(|id| is_conn_id(id)), "{ids:?}");
    assert_eq!(ids[0], ids[1], "one connection, one id");
    assert_ne!(ids[1], ids[2], "another connection, another id");
    assert_eq!(ids[0][..7], ids[2][..7], "one process, one prefix");
    for (flow, id) in flows.iter().zip(&ids) {
        let access = ward.expect_access(&format!("with conn_id {id}"), |v| {
            field(v, "conn_id").as_deref() == Some(*id)
        });
        assert_eq!(
            field(&access, "action").as_deref(),
            Some("inspect"),
            "{flow}"
        );
    }
    let all: Vec<String> = ward
        .records()
        .iter()
        .filter(|v| is_access(v))
        .filter_map(|v| field(v, "conn_id"))
        .collect();
    assert_eq!(all.len(), 2, "one access record per connection: {all:?}");

    // Plain HTTP forwarding: one access record per request, one id per connection.
    let (p, q) = (
        o.http("site.lab.test", "/hello?p=1"),
        o.http("site.lab.test", "/hello?p=2"),
    );
    let fwd = Ward::start(&Policy::new());
    curl(&["-x", &fwd.http_url(), &p, &q]).expect_ok(200);
    wait_until(Duration::from_secs(5), "two forwarded records", || {
        let ids: Vec<String> = fwd
            .records()
            .iter()
            .filter(|v| is_access(v) && field(v, "via").as_deref() == Some("http-forward"))
            .filter_map(|v| field(v, "conn_id"))
            .collect();
        (ids.len() >= 2).then(|| assert_eq!(ids[0], ids[1], "{ids:?}"))
    });
}
