//! Scale-out for real: Debian's HAProxy in TCP mode in front of two ward replicas that share
//! one CA folder, with `send-proxy-v2`. Clients reach both replicas, policy and logs see the
//! real client (not HAProxy), and a leaf forged by either replica verifies with the one CA.

use std::path::Path;

use serde_json::Value;

use crate::support::haproxy::Haproxy;
use crate::support::origin::INDEX_BODY;
use crate::support::ward::{field, is_access};
use crate::support::{Policy, Ward, curl, have, origins};

/// A replica behind the load balancer: PROXY v2 believed from loopback only (where HAProxy
/// runs), the shared CA folder, a rule for one client address, inspection of one host.
fn replica_policy(ca_dir: &Path) -> Policy {
    Policy::new()
        .set(
            "listen",
            r#"[{addr: "127.0.0.1:0", proxy_protocol: v2, trusted: ["127.0.0.1/32"]}]"#,
        )
        .set("ca_dir", &format!("\"{}\"", ca_dir.display()))
        .set("upstream_ca", &format!("\"{}\"", origins().ca()))
        .rule(r#"{name: second-host, action: deny, clients: ["127.0.0.2"]}"#)
        .rule(r#"{name: look, action: inspect, hosts: ["inspect.lab.test"], dst: ["127.0.0.0/8"]}"#)
}

/// The access records of `ward` that `pred` picks.
fn records(ward: &Ward, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
    ward.records()
        .into_iter()
        .filter(|v| is_access(v) && pred(v))
        .collect()
}

/// Waits until the replicas together logged `n` records that `pred` picks; returns the count
/// of each.
fn counts(replicas: &[&Ward], n: usize, what: &str, pred: impl Fn(&Value) -> bool) -> Vec<usize> {
    let count = || -> Vec<usize> { replicas.iter().map(|w| records(w, &pred).len()).collect() };
    let log = || {
        replicas
            .iter()
            .map(|w| w.stderr_text())
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let wait = format_args!("{n} records {what}");
    testkit::wait_until(std::time::Duration::from_secs(10), wait, || {
        count().iter().sum::<usize>() >= n
    });
    let got = count();
    assert_eq!(got.iter().sum::<usize>(), n, "{what}: {got:?}\n{}", log());
    got
}

#[test]
fn haproxy_spreads_clients_over_two_replicas_that_see_the_real_client_and_share_one_ca() {
    if !have("haproxy") || !have("curl") {
        return;
    }
    let o = origins();
    let shared = tempfile::tempdir().expect("shared CA dir");
    let ca_dir = shared.path().join("ca");
    let policy = replica_policy(&ca_dir);
    // One after the other: the first creates the CA, the second loads it.
    let a = Ward::start(&policy);
    let b = Ward::start(&policy);
    let lb = Haproxy::start(&[a.addr, b.addr]);
    let proxy = format!("http://{}", lb.addr);
    let replicas = [&a, &b];

    for _ in 0..4 {
        let r = curl(&[
            "-x",
            &proxy,
            "--cacert",
            o.ca(),
            &o.https("origin.test", "/"),
        ]);
        assert_eq!(r.expect_ok(200).body, INDEX_BODY);
    }
    let tunnels = counts(&replicas, 4, "of tunnels", |v| {
        field(v, "sni").as_deref() == Some("origin.test")
            && field(v, "client").is_some_and(|c| c.starts_with("127.0.0.1:"))
    });
    assert!(
        tunnels.iter().all(|&n| n > 0),
        "both replicas serve: {tunnels:?}"
    );

    // From 127.0.0.2: HAProxy still connects from 127.0.0.1, but the header names the client,
    // and the rule for it applies on either replica.
    for _ in 0..2 {
        let r = curl(&[
            "--interface",
            "127.0.0.2",
            "-x",
            &proxy,
            "--cacert",
            o.ca(),
            &o.https("origin.test", "/"),
        ]);
        assert_eq!(r.connect_code, 403, "{r:#?}");
    }
    let denied = counts(&replicas, 2, "for 127.0.0.2", |v| {
        field(v, "rule").as_deref() == Some("second-host")
            && field(v, "client").is_some_and(|c| c.starts_with("127.0.0.2:"))
    });
    assert_eq!(denied, [1, 1], "one each, round robin");

    // Trusting only the shared CA: the leaf either replica forges verifies.
    let ca = ca_dir.join("ca.pem");
    for _ in 0..2 {
        let url = o.https("inspect.lab.test", "/");
        let r = curl(&["-x", &proxy, "--cacert", ca.to_str().expect("utf-8"), &url]);
        assert_eq!(r.expect_ok(200).body, INDEX_BODY);
    }
    let inspected = counts(&replicas, 2, "of inspections", |v| {
        field(v, "action").as_deref() == Some("inspect")
    });
    assert_eq!(inspected, [1, 1], "each replica forged one leaf");
}
