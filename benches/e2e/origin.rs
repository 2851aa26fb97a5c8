//! The bench's origin on 127.0.0.1, from the test kit: a raw TCP source (after one line from the
//! client it streams bytes until the client goes away) and a TLS server for load (`GET
//! /bytes/N`: a minimal HTTP/1.1 responder, HTTP/2 through hyper when the client negotiates h2).
//! Both stop when the bench drops them; they serve only loopback.

use std::net::SocketAddr;
use std::sync::Arc;

use testkit::Service;

/// The running origin's two ports.
pub struct Origin {
    pub raw_addr: SocketAddr,
    pub tls_addr: SocketAddr,
    _raw: testkit::Origin,
    _tls: testkit::Origin,
}

impl Origin {
    pub async fn start(tls: Arc<rustls::ServerConfig>) -> Origin {
        let raw = testkit::Origin::start(Service::Source).await;
        let tls = testkit::Origin::start(Service::Load(tls)).await;
        Origin {
            raw_addr: raw.addr,
            tls_addr: tls.addr,
            _raw: raw,
            _tls: tls,
        }
    }
}
