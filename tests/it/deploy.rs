//! Scale-out for real: Debian's HAProxy in TCP mode in front of two ward replicas that share
//! one CA folder, with `send-proxy-v2`. Clients reach both replicas, policy and logs see the
//! real client (not HAProxy), a leaf forged by either replica verifies with the one CA, a
//! reload of both replicas under load drops nothing, and a replica stopped with SIGTERM
//! finishes its open tunnels while HAProxy, checking each replica's `/readyz`, takes it out of
//! the rotation and sends new clients to the other.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::support::haproxy::Haproxy;
use crate::support::net::{self, http_connect};
use crate::support::origin::INDEX_BODY;
use crate::support::ward::{field, is_access, message};
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

/// A tunnel through `lb` to the trusted origin, open and its TLS up, ready for a GET.
type Tunnel = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn open_tunnel(lb: SocketAddr) -> Tunnel {
    let o = origins();
    let (s, head) = http_connect(lb, &format!("origin.test:{}", o.tls.port()), &[]);
    assert_eq!(head.status, 200, "{head:#?}");
    let mut tls = net::tls_over(s, "origin.test", o.client_config(&[b"http/1.1"]));
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .expect("TLS with the origin");
    }
    tls
}

fn get_index(tunnel: &mut Tunnel) {
    let (status, body) = net::http_get(tunnel, "origin.test", "/");
    assert_eq!((status, net::lossy(&body).as_str()), (200, INDEX_BODY));
}

/// One whole fetch through `lb`; a panic (refused, reset, wrong answer) is a failure.
fn fetch_ok(lb: SocketAddr) -> bool {
    std::panic::catch_unwind(|| get_index(&mut open_tunnel(lb))).is_ok()
}

/// Two replicas (the first creates the shared CA) behind HAProxy.
fn pair(ca_dir: &Path) -> (Ward, Ward, Haproxy) {
    let policy = replica_policy(ca_dir);
    let a = Ward::start(&policy);
    let b = Ward::start(&policy);
    let lb = Haproxy::start(&[a.addr, b.addr]);
    (a, b, lb)
}

/// Two replicas with their admins on, behind HAProxy checking each one's `/readyz`; returns
/// once HAProxy sees both up.
fn checked_pair(ca_dir: &Path) -> (Ward, Ward, Haproxy) {
    let policy = replica_policy(ca_dir).set("admin", "\"127.0.0.1:0\"");
    let a = Ward::start(&policy);
    let b = Ward::start(&policy);
    let lb = Haproxy::start_checked(&[a.addr, b.addr], &[a.admin_addr(), b.admin_addr()]);
    let what = format_args!("HAProxy to see both replicas up");
    testkit::wait_until(Duration::from_secs(10), what, || {
        lb.server_states().iter().all(|(_, state)| state == "UP")
    });
    (a, b, lb)
}

/// The status code of a GET of `path` on an admin.
fn admin_status(admin: SocketAddr, path: &str) -> u16 {
    curl(&[&format!("http://{admin}{path}")]).http_code
}

/// How many times `ward` logged `msg`.
fn logged(ward: &Ward, msg: &str) -> usize {
    ward.records()
        .iter()
        .filter(|v| message(v) == Some(msg))
        .count()
}

#[test]
fn reloading_both_replicas_under_load_drops_nothing() {
    if !have("haproxy") {
        return;
    }
    let shared = tempfile::tempdir().expect("shared CA dir");
    let (a, b, lb) = pair(&shared.path().join("ca"));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (stop, ok, failed, lb) = (stop.clone(), ok.clone(), failed.clone(), lb.addr);
            std::thread::spawn(move || {
                // Bounded: the test stops them within seconds; the cap guards a hung one.
                for _ in 0..10_000 {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let counter = if fetch_ok(lb) { &ok } else { &failed };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for round in 1..=3 {
        let before = ok.load(Ordering::Relaxed);
        a.signal("HUP");
        b.signal("HUP");
        for w in [&a, &b] {
            let what = format_args!("reload {round}; log:\n{}", w.log());
            testkit::wait_until(Duration::from_secs(10), what, || {
                logged(w, "policy reloaded") >= round
            });
        }
        let what = format_args!("fetches to go on after reload {round}");
        testkit::wait_until(Duration::from_secs(10), what, || {
            ok.load(Ordering::Relaxed) >= before + 5
        });
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{ok} fetches succeeded, {failed} failed");
    assert!(ok >= 15, "{ok}");
}

#[test]
fn a_replica_stopped_with_sigterm_finishes_its_tunnels_while_haproxy_uses_the_other() {
    if !have("haproxy") {
        return;
    }
    let shared = tempfile::tempdir().expect("shared CA dir");
    let (mut a, b, lb) = checked_pair(&shared.path().join("ca"));
    let a_admin = a.admin_addr();
    // Round robin spreads them; the test reads from the records where each one went.
    let mut held: Vec<_> = (0..4).map(|_| open_tunnel(lb.addr)).collect();
    a.signal("TERM");
    {
        let what = format_args!("replica a to start draining; log:\n{}", a.log());
        testkit::wait_until(Duration::from_secs(5), what, || {
            logged(&a, "shutting down: draining open connections") == 1
        });
    }
    assert!(a.alive(), "a waits for its open tunnels");
    // What the load balancer acts on: not ready, yet alive (no restart of a draining replica).
    assert_eq!(admin_status(a_admin, "/readyz"), 503);
    assert_eq!(admin_status(a_admin, "/healthz"), 200);
    {
        let what = format_args!("HAProxy to take the draining replica out");
        testkit::wait_until(Duration::from_secs(5), what, || {
            let states = lb.server_states();
            states.contains(&("ward0".into(), "DOWN".into()))
                && states.contains(&("ward1".into(), "UP".into()))
        });
    }
    for i in 0..4 {
        assert!(
            fetch_ok(lb.addr),
            "new client {i} through HAProxy after a's SIGTERM"
        );
    }
    for tunnel in &mut held {
        get_index(tunnel);
    }
    drop(held);
    let status = a
        .wait_exit(Duration::from_secs(10))
        .expect("a exits once drained");
    assert!(status.success(), "{status:?}");
    let served = records(&a, |v| field(v, "sni").as_deref() == Some("origin.test")).len();
    assert!(
        (1..=4).contains(&served),
        "a finished the tunnels it held ({served}):\n{}",
        a.log()
    );
    assert!(b.alive());
    // Its held tunnels and every new client.
    counts(&[&b], 4 - served + 4, "on b", |v| {
        field(v, "sni").as_deref() == Some("origin.test")
    });
}
