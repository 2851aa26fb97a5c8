//! The test PKI: a CA made with rcgen at test start, an origin certificate it signs, and a
//! self-signed "untrusted" certificate. Writes the CA to disk so external clients (curl,
//! Python, Chromium) can trust it; never touches the system trust store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Every name the trusted origin answers for. `*.lab.test` covers the per-test host names
/// (blocked.lab.test, slow.lab.test, ...) that the policies map to loopback.
pub const ORIGIN_NAMES: &[&str] = &["origin.test", "*.lab.test", "localhost", "127.0.0.1"];

pub struct TestPki {
    /// PEM file of the test CA, for `curl --cacert` and friends.
    pub ca_pem_path: PathBuf,
    pub ca_der: CertificateDer<'static>,
    /// The origin's chain (leaf, CA) and key, signed by the test CA.
    pub origin_chain: Vec<CertificateDer<'static>>,
    pub origin_key: PrivatePkcs8KeyDer<'static>,
    /// A self-signed certificate for the same names: what an origin with a bad certificate sends.
    pub untrusted_chain: Vec<CertificateDer<'static>>,
    pub untrusted_key: PrivatePkcs8KeyDer<'static>,
}

impl TestPki {
    /// Generates the PKI and writes `ca.pem` into `dir`.
    pub fn generate(dir: &Path) -> TestPki {
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "ward integration-test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
        let issuer = Issuer::new(ca_params, ca_key);

        let (leaf, leaf_key) = leaf_params("origin.test");
        let leaf_cert = leaf
            .signed_by(&leaf_key, &issuer)
            .expect("origin certificate");

        let (untrusted, untrusted_key) = leaf_params("untrusted origin");
        let untrusted_cert = untrusted
            .self_signed(&untrusted_key)
            .expect("self-signed certificate");

        let ca_pem_path = dir.join("ca.pem");
        std::fs::write(&ca_pem_path, ca_cert.pem()).expect("write ca.pem");
        TestPki {
            ca_pem_path,
            ca_der: ca_cert.der().clone(),
            origin_chain: vec![leaf_cert.der().clone(), ca_cert.der().clone()],
            origin_key: PrivatePkcs8KeyDer::from(leaf_key.serialize_der()),
            untrusted_chain: vec![untrusted_cert.der().clone()],
            untrusted_key: PrivatePkcs8KeyDer::from(untrusted_key.serialize_der()),
        }
    }

    /// A rustls server config for the trusted origin, offering `alpn` (h2 and/or http/1.1).
    pub fn origin_server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        server_config(&self.origin_chain, &self.origin_key, alpn)
    }

    pub fn untrusted_server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        server_config(&self.untrusted_chain, &self.untrusted_key, alpn)
    }

    /// A rustls client config that trusts only the test CA (the clients the tests write
    /// themselves: raw CONNECT + TLS, 1-byte-at-a-time hellos, SNI games).
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).expect("add test CA");
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}

/// A rustls client config trusting only the CA certificate(s) in the PEM file `ca_pem`
/// (ward's interception CA, for tests that look inside a forged connection).
pub fn client_config_trusting(ca_pem: &Path, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).expect("read CA PEM") {
        roots.add(cert.expect("CA PEM")).expect("add CA");
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

fn leaf_params(common_name: &str) -> (CertificateParams, KeyPair) {
    let names: Vec<String> = ORIGIN_NAMES.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    (params, KeyPair::generate().expect("leaf key"))
}

/// One crypto provider, chosen explicitly, so a second provider in the dependency graph can
/// never make the builders panic.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn server_config(
    chain: &[CertificateDer<'static>],
    key: &PrivatePkcs8KeyDer<'static>,
    alpn: &[&[u8]],
) -> Arc<rustls::ServerConfig> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain.to_vec(), PrivateKeyDer::Pkcs8(key.clone_key()))
        .expect("server certificate");
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}
