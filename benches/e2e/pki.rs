//! Certificates for the benchmark, from the test kit: the bench CA and the origin's leaf, a CA
//! for the peers that intercept (Squid, mitmproxy), and the rustls configs built on them, which
//! never resume a session. Never touches the system trust store.

use std::sync::Arc;

use anyhow::Result;
use rustls::client::Resumption;
use rustls::{ClientConfig, ServerConfig};
use testkit::{ALPN_BOTH, Ca};

/// The names the origin's certificate covers: one tunnelled, one intercepted by policy.
pub const ORIGIN_NAME: &str = "origin.test";
pub const INSPECT_NAME: &str = "inspect.test";

pub use testkit::{ALPN_H1, ALPN_H2};

/// Everything the run trusts or presents, generated fresh at start.
pub struct Pki {
    /// The CA that signed the origin's leaf; proxies that intercept must trust it upstream.
    pub bench_ca_pem: String,
    origin: testkit::Leaf,
    /// A CA handed to Squid and mitmproxy for their forged leaves.
    pub peer_ca_cert_pem: String,
    pub peer_ca_key_pem: String,
}

impl Pki {
    pub fn generate() -> Pki {
        let bench_ca = Ca::new("ward bench origin CA");
        let peer_ca = Ca::new("ward bench peer CA");
        Pki {
            bench_ca_pem: bench_ca.pem(),
            origin: bench_ca.issue(&[ORIGIN_NAME, INSPECT_NAME]),
            peer_ca_cert_pem: peer_ca.pem(),
            peer_ca_key_pem: peer_ca.key_pem(),
        }
    }

    /// The origin's TLS server: both ALPNs, and no session tickets so that every handshake a
    /// client makes is a full one (the rate scenario measures handshakes, not resumptions).
    pub fn origin_server_config(&self) -> Arc<ServerConfig> {
        let mut config = self.origin.server_config(ALPN_BOTH);
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Arc::new(config)
    }
}

/// A client that trusts exactly the given CA (bench CA for tunnels, the proxy's CA when it
/// intercepts): a tunnel that secretly intercepted would fail its handshake instead of passing.
pub fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>> {
    let roots = testkit::pki::certs_in_pem(ca_pem)?;
    anyhow::ensure!(!roots.is_empty(), "no certificate in CA PEM");
    let mut config = testkit::pki::client_config(&roots, alpn);
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}
