//! An HTTPS listener's certificate: the PEM chain and key read from disk, checked to belong
//! together, and made into the rustls server side (ALPN `http/1.1`: the proxy protocol spoken
//! inside is HTTP/1.1 or SOCKS5). File reading only; no sockets.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, ConfigIssue, ListenerTls};

/// The one protocol an HTTPS proxy speaks inside its TLS (RFC 7301 names it).
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Reads the chain and key of `tls` and builds the server config; an error is placed at the
/// listener's `tls` key, so `ward check` prints it with file:line.
pub fn load(tls: &ListenerTls) -> Result<Arc<ServerConfig>, ConfigIssue> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|certs| certs.collect())
        .map_err(|e| tls.issue(format!("certificate {}: {e}", tls.cert.display())))?;
    if chain.is_empty() {
        let msg = format!("certificate {}: no CERTIFICATE in it", tls.cert.display());
        return Err(tls.issue(msg));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| tls.issue(format!("key {}: {e}", tls.key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls.issue(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => tls.issue(format!(
                "key {} does not match certificate {}",
                tls.key.display(),
                tls.cert.display()
            )),
            e => tls.issue(format!("certificate {}: {e}", tls.cert.display())),
        })?;
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// Loads every HTTPS listener's certificate, collecting every problem: for `ward check` and
/// for the start of `ward run`, so that a bad pair is found before any client is.
pub fn check_all(config: &crate::config::Config) -> Result<(), ConfigError> {
    let errors: Vec<ConfigIssue> = config
        .listen
        .iter()
        .filter_map(|l| l.tls.as_ref())
        .filter_map(|tls| load(tls).err())
        .collect();
    match errors.is_empty() {
        true => Ok(()),
        false => Err(ConfigError { errors }),
    }
}
