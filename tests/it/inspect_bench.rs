//! Rough figures for interception, printed rather than asserted (ignored by default): the leaf
//! forge cost cold and cached, and new HTTPS connections per second direct, tunnelled through
//! ward and inspected by ward. Run with
//! `cargo test --release --test it inspect_bench -- --ignored --nocapture`.

use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use ward::mitm::certs::DEFAULT_CAPACITY;
use ward::mitm::{Ca, LeafCache};
use ward::target::Host;

use crate::inspect::{inspecting_ward, ward_ca};
use crate::support::net::{self, http_connect};
use crate::support::origins;
use crate::support::pki::client_config_trusting;

const FORGES: u32 = 500;
/// Sequential connections per path: enough for a stable rate, bounded in time.
const CONNECTIONS: u32 = 300;

#[test]
#[ignore]
fn inspect_bench_leaf_forge_cold_and_cached() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = Arc::new(Ca::init(dir.path(), false).expect("CA"));
    let cache = LeafCache::new(ca, DEFAULT_CAPACITY).expect("cache");
    let now = SystemTime::now();
    let names: Vec<Host> = (0..FORGES)
        .map(|i| Host::parse(&format!("h{i}.bench.test")).expect("name"))
        .collect();
    let extra: Vec<String> = (0..8).map(|i| format!("alt{i}.bench.test")).collect();
    let t = Instant::now();
    for n in &names {
        cache.get_or_forge(n, &extra, now).expect("forge");
    }
    let cold = t.elapsed() / FORGES;
    let t = Instant::now();
    for n in &names {
        cache.get_or_forge(n, &extra, now).expect("cached");
    }
    let cached = t.elapsed() / FORGES;
    eprintln!("leaf forge: cold {cold:?}/leaf (9 SANs), cached {cached:?}/lookup");
}

/// A rustls config that never resumes: every connection pays a full handshake.
fn full_handshakes(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut cfg = (*client_config_trusting(std::path::Path::new(ca_pem), &[b"http/1.1"])).clone();
    cfg.resumption = rustls::client::Resumption::disabled();
    Arc::new(cfg)
}

/// `CONNECTIONS` sequential connections, each a TLS handshake and one GET /; returns per second.
fn rate(mut open: impl FnMut() -> TcpStream, sni: &str, cfg: &Arc<rustls::ClientConfig>) -> f64 {
    let t = Instant::now();
    for _ in 0..CONNECTIONS {
        let mut tls = net::tls_over(open(), sni, cfg.clone());
        let (status, _) = net::http_get(&mut tls, sni, "/");
        assert_eq!(status, 200);
    }
    f64::from(CONNECTIONS) / t.elapsed().as_secs_f64()
}

#[test]
#[ignore]
fn inspect_bench_new_https_connections_per_second() {
    let o = origins();
    let ward = inspecting_ward();
    let port = o.tls.port();
    let test_ca = full_handshakes(o.ca());
    let direct = rate(|| net::connect(o.tls.addr), "origin.test", &test_ca);
    let tunnel = rate(
        || http_connect(ward.addr, &format!("origin.test:{port}"), &[]).0,
        "origin.test",
        &test_ca,
    );
    let forged = full_handshakes(&ward_ca(&ward));
    let inspect = rate(
        || http_connect(ward.addr, &format!("site.lab.test:{port}"), &[]).0,
        "site.lab.test",
        &forged,
    );
    eprintln!(
        "new HTTPS connections/s ({CONNECTIONS} sequential, full client handshakes, GET /): \
         direct {direct:.0}, tunnel {tunnel:.0}, inspect {inspect:.0}"
    );
}
