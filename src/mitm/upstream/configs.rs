//! The rustls configs of the origin leg: one per distinct upstream hello (the client's mirrored
//! versions, suites and groups, its ALPN, whether it sent SNI), built on first need and kept in
//! a small bounded list. All share one verifier and one session store, so a config costs a
//! lookup after the first connection of its kind and resumption spans them all. Must never
//! loosen verification: every config verifies with the same roots.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore, SupportedCipherSuite};

use crate::mitm::error::MitmError;
use crate::tls::mirror::{self, Capabilities, Mirror};

/// Distinct upstream hellos kept. A handful of client kinds is typical (a browser, curl, a
/// language runtime, each with an ALPN or two); past this the least recently used goes, so a
/// client varying its hello on purpose costs CPU (a config build), never memory.
pub const CONFIG_CAPACITY: usize = 64;

/// Every key-exchange group a client may pick, ward's defaults among them.
const GROUP_POOL: &[&dyn SupportedKxGroup] = rustls::crypto::aws_lc_rs::ALL_KX_GROUPS;
/// Every cipher suite a client may pick.
const SUITE_POOL: &[SupportedCipherSuite] = rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES;

/// What one upstream hello is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HelloKey {
    /// `None`: ward's own choices (no ClientHello facts to follow).
    pub mirror: Option<Mirror>,
    /// The client's ALPN list.
    pub alpn: Vec<Vec<u8>>,
    /// Whether the hello carries SNI (the client's did).
    pub sni: bool,
}

/// The origin leg's configs, cached by [`HelloKey`].
pub struct UpstreamConfigs {
    /// Ward's defaults: the verifier and the session store every other config shares.
    base: Arc<ClientConfig>,
    provider: Arc<CryptoProvider>,
    verifier: Arc<WebPkiServerVerifier>,
    capabilities: Capabilities,
    /// Most recently used first.
    cache: Mutex<Vec<(HelloKey, Arc<ClientConfig>)>>,
}

impl UpstreamConfigs {
    /// Roots: webpki-roots (a known baseline), the system store (what the user's other tools
    /// trust) and `upstream_ca` (private origins).
    pub fn new(
        provider: Arc<CryptoProvider>,
        upstream_ca: Option<&Path>,
    ) -> Result<Self, MitmError> {
        let roots = Arc::new(roots(upstream_ca)?);
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| MitmError::Tls(rustls::Error::General(e.to_string())))?;
        let base = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_webpki_verifier(verifier.clone())
            .with_no_client_auth();
        Ok(UpstreamConfigs {
            base: Arc::new(base),
            capabilities: Capabilities::of(&provider, GROUP_POOL),
            provider,
            verifier,
            cache: Mutex::new(Vec::with_capacity(CONFIG_CAPACITY)),
        })
    }

    /// What the provider can offer, for [`mirror::choose`].
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    /// The config for `key`: cached, or built and cached.
    pub fn get(&self, key: &HelloKey) -> Arc<ClientConfig> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = cache.iter().position(|(k, _)| k == key) {
            let hit = cache.remove(i);
            let config = hit.1.clone();
            cache.insert(0, hit);
            return config;
        }
        drop(cache);
        // Built outside the lock: two first connections of a kind may both build; one wins.
        let config = self.build(key);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if !cache.iter().any(|(k, _)| k == key) {
            cache.truncate(CONFIG_CAPACITY - 1);
            cache.insert(0, (key.clone(), config.clone()));
        }
        config
    }

    /// A config for `key`, built afresh (what a cache miss costs).
    pub fn build(&self, key: &HelloKey) -> Arc<ClientConfig> {
        let mut config = match &key.mirror {
            Some(m) => self.mirrored(m).unwrap_or_else(|e| {
                // choose() only picks what the provider has, so this is a bug: ward's own
                // hello still goes, and the connection with it.
                tracing::warn!(error = %e, mirror = ?m, "mirrored upstream config refused; offering ward's defaults");
                ClientConfig::clone(&self.base)
            }),
            None => ClientConfig::clone(&self.base),
        };
        config.alpn_protocols = key.alpn.clone();
        config.enable_sni = key.sni;
        Arc::new(config)
    }

    /// How many distinct hellos are cached now.
    pub fn cached(&self) -> usize {
        self.cache.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn mirrored(&self, m: &Mirror) -> Result<ClientConfig, rustls::Error> {
        let provider = CryptoProvider {
            cipher_suites: m
                .suites
                .iter()
                .filter_map(|&s| SUITE_POOL.iter().find(|c| u16::from(c.suite()) == s))
                .copied()
                .collect(),
            kx_groups: m
                .groups
                .iter()
                .filter_map(|&g| GROUP_POOL.iter().find(|k| u16::from(k.name()) == g))
                .copied()
                .collect(),
            ..CryptoProvider::clone(&self.provider)
        };
        let versions: Vec<_> = m
            .versions
            .iter()
            .filter_map(|&v| mirror::rustls_version(v))
            .collect();
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&versions)?
            .with_webpki_verifier(self.verifier.clone())
            .with_no_client_auth();
        // The same store (an Arc) as every other config: a ticket from one kind of client's
        // connection resumes another's. rustls resumes only under the same verifier, which is
        // why there is one.
        config.resumption = self.base.resumption.clone();
        Ok(config)
    }
}

fn roots(upstream_ca: Option<&Path>) -> Result<RootCertStore, MitmError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let native = rustls_native_certs::load_native_certs();
    let (_, unusable) = roots.add_parsable_certificates(native.certs);
    if unusable > 0 || !native.errors.is_empty() {
        tracing::debug!(
            unusable,
            errors = native.errors.len(),
            "some system roots skipped"
        );
    }
    if let Some(path) = upstream_ca {
        add_pem_bundle(&mut roots, path)?;
    }
    Ok(roots)
}

fn add_pem_bundle(roots: &mut RootCertStore, path: &Path) -> Result<(), MitmError> {
    let bad = |why: String| MitmError::UpstreamCa {
        path: path.to_path_buf(),
        why,
    };
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
    let mut added = 0;
    for cert in certs {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
        added += 1;
    }
    if added == 0 {
        return Err(bad("no PEM certificates in the file".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs() -> UpstreamConfigs {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        UpstreamConfigs::new(provider, None).expect("configs")
    }

    fn key(i: usize) -> HelloKey {
        HelloKey {
            mirror: None,
            alpn: vec![format!("p{i}").into_bytes()],
            sni: true,
        }
    }

    #[test]
    fn one_config_per_hello_and_the_least_recently_used_goes_at_capacity() {
        let configs = configs();
        let first = configs.get(&key(0));
        assert!(Arc::ptr_eq(&first, &configs.get(&key(0))), "a hit");
        let second = configs.get(&key(1));
        for i in 2..=CONFIG_CAPACITY {
            configs.get(&key(i));
            // Kept in use, so never the least recently used, though the oldest.
            configs.get(&key(0));
        }
        assert_eq!(configs.cached(), CONFIG_CAPACITY);
        assert!(Arc::ptr_eq(&first, &configs.get(&key(0))), "still cached");
        assert!(
            !Arc::ptr_eq(&second, &configs.get(&key(1))),
            "evicted, rebuilt"
        );
    }

    #[test]
    fn a_mirrored_config_offers_exactly_the_choice() {
        let configs = configs();
        let mirror = Mirror {
            versions: vec![0x0303],
            suites: vec![0xcca9, 0xc02b],
            groups: vec![0x0017],
            defaulted: Default::default(),
            for_require_pq: false,
        };
        let key = HelloKey {
            mirror: Some(mirror),
            alpn: vec![b"http/1.1".to_vec()],
            sni: false,
        };
        let config = configs.get(&key);
        let provider = config.crypto_provider();
        let suites: Vec<u16> = provider
            .cipher_suites
            .iter()
            .map(|s| u16::from(s.suite()))
            .collect();
        assert_eq!(suites, [0xcca9, 0xc02b]);
        let groups: Vec<u16> = provider
            .kx_groups
            .iter()
            .map(|g| u16::from(g.name()))
            .collect();
        assert_eq!(groups, [0x0017]);
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
        assert!(!config.enable_sni);
    }
}
