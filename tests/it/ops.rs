//! Operations (issue 11, point 4): `/readyz` answers 200 while ward serves and 503 once SIGTERM
//! started the drain, while `/healthz` stays 200 until the last open tunnel is done.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::net::http_connect;
use crate::support::ward::{field, message};
use crate::support::{Policy, Ward, curl, origins};

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
