//! Certificates for the benchmark: the bench CA and the origin's leaf, a CA for the peers that
//! intercept (Squid, mitmproxy), and the rustls configs built on them. Never touches the system
//! trust store.

use std::sync::Arc;

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The names the origin's certificate covers: one tunnelled, one intercepted by policy.
pub const ORIGIN_NAME: &str = "origin.test";
pub const INSPECT_NAME: &str = "inspect.test";

/// Certificates live a short while: long enough for any run, short enough to be obviously
/// throwaway if one leaks out of the temp dir.
const VALIDITY_DAYS: i64 = 30;

pub const ALPN_H1: &[u8] = b"http/1.1";
pub const ALPN_H2: &[u8] = b"h2";

/// Everything the run trusts or presents, generated fresh at start.
pub struct Pki {
    /// The CA that signed the origin's leaf; proxies that intercept must trust it upstream.
    pub bench_ca_pem: String,
    origin_chain: Vec<CertificateDer<'static>>,
    origin_key_der: Vec<u8>,
    /// A CA handed to Squid and mitmproxy for their forged leaves.
    pub peer_ca_cert_pem: String,
    pub peer_ca_key_pem: String,
}

fn ca_params(common_name: &str) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "ward e2e bench");
    set_validity(&mut params);
    Ok(params)
}

fn set_validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
}

impl Pki {
    pub fn generate() -> Result<Pki> {
        let bench_ca =
            CertifiedIssuer::self_signed(ca_params("ward bench origin CA")?, KeyPair::generate()?)?;
        let mut leaf =
            CertificateParams::new(vec![ORIGIN_NAME.to_owned(), INSPECT_NAME.to_owned()])?;
        leaf.distinguished_name
            .push(DnType::CommonName, ORIGIN_NAME);
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        set_validity(&mut leaf);
        let leaf_key = KeyPair::generate()?;
        let leaf_cert = leaf.signed_by(&leaf_key, &bench_ca)?;

        let peer_key = KeyPair::generate()?;
        let peer_ca = ca_params("ward bench peer CA")?.self_signed(&peer_key)?;
        Ok(Pki {
            bench_ca_pem: bench_ca.pem(),
            origin_chain: vec![leaf_cert.der().clone(), bench_ca.der().clone()],
            origin_key_der: leaf_key.serialize_der(),
            peer_ca_cert_pem: peer_ca.pem(),
            peer_ca_key_pem: peer_key.serialize_pem(),
        })
    }

    /// The origin's TLS server: both ALPNs, and no session tickets so that every handshake a
    /// client makes is a full one (the rate scenario measures handshakes, not resumptions).
    pub fn origin_server_config(&self) -> Result<Arc<ServerConfig>> {
        let key = PrivateKeyDer::try_from(self.origin_key_der.clone())
            .map_err(|e| anyhow::anyhow!("origin key: {e}"))?;
        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(self.origin_chain.clone(), key)?;
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_H1.to_vec()];
        config.send_tls13_tickets = 0;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        Ok(Arc::new(config))
    }
}

/// A client that trusts exactly the given CA (bench CA for tunnels, the proxy's CA when it
/// intercepts): a tunnel that secretly intercepted would fail its handshake instead of passing.
pub fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.context("CA PEM")?)?;
    }
    anyhow::ensure!(!roots.is_empty(), "no certificate in CA PEM");
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}
