//! The test PKI: CAs and leaves made with rcgen for the names a caller gives, the rustls configs
//! built on them, and PEM written where the caller asks. Never touches the system trust store.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// Certificates live a short while: long enough for any run, short enough to be obviously
/// throwaway if one leaks out of a temp dir.
const VALIDITY_DAYS: i64 = 30;
/// Valid from a day ago, so that a clock a little behind still accepts them.
const BACKDATE_DAYS: i64 = 1;

/// One crypto provider, chosen explicitly (aws-lc-rs, as ward), so that a second provider in
/// the dependency graph can never make the builders panic.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A certificate authority generated at start: it signs leaves and can be trusted by clients.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    /// A new CA whose subject is `common_name`.
    pub fn new(common_name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        set_validity(&mut params);
        let key = KeyPair::generate().expect("CA key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA certificate, DER (for a root store).
    pub fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// The CA's private key, PEM (for peers that forge with it: Squid, mitmproxy).
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// Writes the certificate as PEM to `path` (for `curl --cacert`, `upstream_ca`, NSS).
    pub fn write_pem(&self, path: &Path) {
        std::fs::write(path, self.pem())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// A server leaf for `names` (DNS names, wildcards or IP literals), signed by this CA; the
    /// first name is its common name.
    pub fn issue(&self, names: &[&str]) -> Leaf {
        self.issue_with(names, |_| {})
    }

    /// [`Ca::issue`], with the leaf's parameters changed by `edit` first (an expired leaf, a
    /// CA certificate served as a leaf: what an origin's misconfiguration looks like).
    pub fn issue_with(&self, names: &[&str], edit: impl FnOnce(&mut CertificateParams)) -> Leaf {
        let (mut params, key) = leaf_params(names);
        edit(&mut params);
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            chain: vec![cert.der().clone(), self.der()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            pem: (cert.pem() + &self.pem(), key.serialize_pem()),
        }
    }
}

/// A server certificate chain (leaf first) and its key.
pub struct Leaf {
    /// The leaf, then the CA that signed it (if any).
    pub chain: Vec<CertificateDer<'static>>,
    key: PrivatePkcs8KeyDer<'static>,
    /// The chain and the key as PEM, for servers configured by file.
    pem: (String, String),
}

impl Leaf {
    /// Writes the chain (leaf first) and the key as PEM files: what a server configured by
    /// file (ward's HTTPS listener, HAProxy) reads.
    pub fn write_pem(&self, chain: &Path, key: &Path) {
        for (path, text) in [(chain, &self.pem.0), (key, &self.pem.1)] {
            std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
    }

    /// A self-signed leaf for `names`: what an origin with a certificate no one trusts sends.
    pub fn self_signed(names: &[&str]) -> Leaf {
        let (params, key) = leaf_params(names);
        let cert = params.self_signed(&key).expect("self-signed certificate");
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
            pem: (cert.pem(), key.serialize_pem()),
        }
    }

    /// A rustls server presenting this leaf and offering `alpn`.
    pub fn server_config(&self, alpn: &[&[u8]]) -> ServerConfig {
        self.server_config_with(provider(), alpn)
    }

    /// As `server_config`, offering only the key-exchange `groups` (e.g. only
    /// `X25519MLKEM768`, or only `X25519`): an origin that can or cannot do post-quantum.
    pub fn server_config_groups(
        &self,
        alpn: &[&[u8]],
        groups: &[rustls::NamedGroup],
    ) -> ServerConfig {
        let mut provider = (*provider()).clone();
        provider.kx_groups.retain(|g| groups.contains(&g.name()));
        assert_eq!(
            provider.kx_groups.len(),
            groups.len(),
            "aws-lc-rs offers {groups:?}"
        );
        self.server_config_with(Arc::new(provider), alpn)
    }

    fn server_config_with(
        &self,
        provider: Arc<rustls::crypto::CryptoProvider>,
        alpn: &[&[u8]],
    ) -> ServerConfig {
        let mut cfg = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(
                self.chain.clone(),
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .expect("server certificate");
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg
    }
}

fn leaf_params(names: &[&str]) -> (CertificateParams, KeyPair) {
    let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(sans).expect("leaf params");
    if let Some(first) = names.first() {
        params.distinguished_name.push(DnType::CommonName, *first);
    }
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params);
    (params, KeyPair::generate().expect("leaf key"))
}

fn set_validity(params: &mut CertificateParams) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(BACKDATE_DAYS);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
}

/// A rustls client that trusts exactly `roots` (none: it trusts nothing) and offers `alpn`.
pub fn client_config(roots: &[CertificateDer<'static>], alpn: &[&[u8]]) -> ClientConfig {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("a CA certificate");
    }
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(store)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    cfg
}

/// The certificates in PEM text (a CA file another program wrote, such as ward's `ca.pem`).
pub fn certs_in_pem(
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, rustls::pki_types::pem::Error> {
    CertificateDer::pem_slice_iter(pem.as_bytes()).collect()
}

/// A client trusting only the certificates of the PEM file `ca_pem`, offering `alpn`.
pub fn client_config_trusting(ca_pem: &Path, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let text = std::fs::read_to_string(ca_pem)
        .unwrap_or_else(|e| panic!("read {}: {e}", ca_pem.display()));
    let roots = certs_in_pem(&text).expect("CA PEM");
    Arc::new(client_config(&roots, alpn))
}
