//! The process over time: hot reload on file edit and SIGHUP (an invalid file keeps the old
//! rules), and SIGTERM (stop accepting at once, drain, exit 0).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::net::{self, http_connect};
use crate::support::ward::{EVENT_WAIT, message};
use crate::support::{Policy, Ward, origins, wait_until};

fn connect_status(ward: &Ward, target: &str) -> u16 {
    http_connect(ward.addr, target, &[]).1.status
}

/// Polls until CONNECT `target` answers `status`; returns how long it took.
fn until_status(ward: &Ward, target: &str, status: u16, within: Duration) -> Duration {
    let started = Instant::now();
    let what = format_args!("CONNECT {target} to turn {status}; log:\n{}", ward.log());
    wait_until(within, what, || connect_status(ward, target) == status);
    started.elapsed()
}

#[test]
fn file_edit_reloads_and_invalid_file_keeps_old_rules() {
    let o = origins();
    let target = format!("origin.test:{}", o.tls.port());
    let base = Policy::new();
    let ward = Ward::start(&base);
    assert_eq!(connect_status(&ward, &target), 200);

    let deny = base
        .clone()
        .rule(r#"{name: reloaded-deny, action: deny, hosts: ["origin.test"]}"#);
    let before = ward.reload_count();
    ward.write_policy(&deny.render());
    // Wait for the reload itself (its record follows the swap), not for a guess at its delay.
    let took = ward.wait_reloaded(before);
    eprintln!("file edit -> rules in force: {took:?}");
    until_status(&ward, &target, 403, EVENT_WAIT);
    let (_, head) = http_connect(ward.addr, &target, &[]);
    assert!(
        head.proxy_details()
            .unwrap_or_default()
            .contains("reloaded-deny"),
        "{head:#?}"
    );

    ward.write_policy(&format!("{}bogus_key: true\n", base.render()));
    ward.wait_log(EVENT_WAIT, |v| {
        message(v).is_some_and(|m| m.contains("reload failed"))
    })
    .unwrap_or_else(|| panic!("no reload-failure record; log:\n{}", ward.stderr_text()));
    assert_eq!(connect_status(&ward, &target), 403, "the old rules stay");

    let before = ward.reload_count();
    ward.write_policy(&base.render());
    ward.wait_reloaded(before);
    until_status(&ward, &target, 200, EVENT_WAIT);
}

#[test]
fn sighup_reloads_and_an_open_tunnel_survives() {
    let o = origins();
    let base = Policy::new();
    let ward = Ward::start(&base);
    let (mut tunnel, head) =
        http_connect(ward.addr, &format!("origin.test:{}", o.echo.port()), &[]);
    assert_eq!(head.status, 200);
    tunnel.write_all(b"1").expect("write");
    let mut b = [0u8; 1];
    tunnel.read_exact(&mut b).expect("echo");

    let hup = ward.records().len();
    ward.signal("HUP");
    ward.wait_log(EVENT_WAIT, |v| {
        message(v).is_some_and(|m| m.contains("reloaded"))
    })
    .unwrap_or_else(|| panic!("SIGHUP did not reload; log:\n{}", ward.stderr_text()));
    assert!(ward.records().len() > hup);

    tunnel.write_all(b"2").expect("write after reload");
    tunnel.read_exact(&mut b).expect("echo after reload");
    assert_eq!(&b, b"2");
}

#[test]
fn sigterm_stops_accepting_drains_then_exits_0() {
    let o = origins();
    let mut ward = Ward::start(&Policy::new());
    let (mut tunnel, head) =
        http_connect(ward.addr, &format!("origin.test:{}", o.echo.port()), &[]);
    assert_eq!(head.status, 200);
    tunnel.write_all(b"a").expect("write");
    let mut b = [0u8; 1];
    tunnel.read_exact(&mut b).expect("echo");

    ward.signal("TERM");
    wait_until(
        Duration::from_secs(2),
        "ward to stop accepting after SIGTERM",
        || TcpStream::connect_timeout(&ward.addr, Duration::from_millis(200)).is_err(),
    );
    assert!(
        ward.wait_exit(Duration::from_millis(300)).is_none(),
        "must drain, not exit"
    );

    tunnel
        .write_all(b"b")
        .expect("the open tunnel still relays");
    tunnel.read_exact(&mut b).expect("echo while draining");
    assert_eq!(&b, b"b");
    net::shutdown_write(&tunnel);
    assert_eq!(
        net::lossy(&net::read_all(&mut tunnel)),
        "EOF after 2 bytes\n"
    );

    let status = ward.wait_exit(Duration::from_secs(3)).unwrap_or_else(|| {
        panic!(
            "ward did not exit after draining; log:\n{}",
            ward.stderr_text()
        )
    });
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn sigterm_grace_over_closes_remaining_tunnels() {
    let o = origins();
    let mut ward = Ward::start(&Policy::new().set("shutdown_grace", "1s"));
    let (mut tunnel, head) =
        http_connect(ward.addr, &format!("origin.test:{}", o.echo.port()), &[]);
    assert_eq!(head.status, 200);
    let started = Instant::now();
    ward.signal("TERM");
    assert!(
        net::closes_within(&mut tunnel, Duration::from_secs(5)),
        "tunnel closed"
    );
    let status = ward
        .wait_exit(Duration::from_secs(5))
        .expect("ward exits after the grace period");
    assert!(status.success(), "exit status {status:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "shutdown_grace 1s, took {took:?}"
    );
}

/// A browser keeps its proxy connection open between requests; a drain must not wait the
/// whole grace period for it to go idle-out, nor cut a request in flight.
#[test]
fn sigterm_closes_idle_forwarding_connections_at_once() {
    let o = origins();
    let mut ward = Ward::start(&Policy::new().set("shutdown_grace", "30s"));
    let mut s = net::connect(ward.addr);
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: origin.test:{}\r\n\r\n",
        o.http("origin.test", "/"),
        o.plain.port()
    );
    s.write_all(req.as_bytes()).expect("write");
    let head = net::read_head(&mut s).expect("the first answer");
    assert_eq!(head.status, 200);
    let started = Instant::now();
    ward.signal("TERM");
    assert!(
        net::closes_within(&mut s, Duration::from_secs(5)),
        "the idle keep-alive connection closes on drain"
    );
    let status = ward.wait_exit(Duration::from_secs(5)).unwrap_or_else(|| {
        panic!(
            "ward waited for an idle forwarding connection; log:\n{}",
            ward.stderr_text()
        )
    });
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drained in {:?}, not the 30 s grace",
        started.elapsed()
    );
}

/// "listening" is the readiness signal: a SIGHUP sent right after it must reload, not kill
/// (SIGHUP's default action is to terminate until a handler is installed).
#[test]
fn sighup_right_after_listening_does_not_kill_ward() {
    for round in 0..5 {
        let ward = Ward::start(&Policy::new());
        ward.signal("HUP");
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            ward.alive(),
            "round {round}: ward died of an early SIGHUP; log:\n{}",
            ward.stderr_text()
        );
    }
}
