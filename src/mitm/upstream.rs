//! The origin side of interception: which roots we trust, the TLS handshake offering what the
//! client offered, and failures described in words a user can act on. Must never accept a
//! certificate that fails verification.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::error::MitmError;
use crate::error::{ErrorKind, ProxyError, describe_io};
use crate::target::Host;
use reason::describe_certificate_error;

mod reason;

/// The origin's TLS stream, boxed so that moving it through the relay's futures moves a
/// pointer, not a kilobyte.
pub(crate) type Origin = Box<TlsStream<TcpStream>>;

/// Roots: webpki-roots (a known baseline), the system store (what the user's other tools
/// trust) and `upstream_ca` (private origins). One config per interceptor so that rustls's
/// session cache resumes upstream sessions across connections.
pub(crate) fn client_config(
    provider: Arc<rustls::crypto::CryptoProvider>,
    upstream_ca: Option<&Path>,
) -> Result<ClientConfig, MitmError> {
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
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth())
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

/// Handshakes with the origin, offering `alpn` (the client's list) and verifying the chain for
/// `name`. A client without SNI that asked for a name still gets that name verified.
/// Boxed: the stream outlives the handshake and is moved along the relay's futures.
pub(crate) async fn handshake(
    base: &Arc<ClientConfig>,
    upstream: TcpStream,
    name: &Host,
    alpn: &[Vec<u8>],
    timeout: Duration,
) -> Result<Origin, ProxyError> {
    let server_name = match name {
        Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
        Host::Name(n) => ServerName::try_from(n.clone()).map_err(|e| {
            ProxyError::client(ErrorKind::MalformedRequest, format!("server name {n}: {e}"))
        })?,
    };
    let config = if alpn == base.alpn_protocols.as_slice() {
        base.clone()
    } else {
        // A clone shares the session store (an Arc), so resumption still spans connections.
        let mut config = ClientConfig::clone(base);
        config.alpn_protocols = alpn.to_vec();
        Arc::new(config)
    };
    let connect = TlsConnector::from(config).connect(server_name, upstream);
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(tls)) => Ok(Box::new(tls)),
        Ok(Err(e)) => Err(classify(name, &e)),
        Err(_) => Err(ProxyError::upstream(
            ErrorKind::TlsHandshake,
            format!("TLS handshake with {name} timed out after {timeout:?}"),
        )),
    }
}

/// `upstream_tls.require_pq`: refuses an origin whose agreed key exchange is not a
/// post-quantum hybrid (502, Proxy-Status `tls_protocol_error`, the group named).
pub(crate) fn check_pq(tls: Origin, name: &Host, require_pq: bool) -> Result<Origin, ProxyError> {
    let group = tls
        .get_ref()
        .1
        .negotiated_key_exchange_group()
        .map(|g| g.name());
    if !require_pq || group.is_some_and(crate::tls::is_pq_hybrid) {
        return Ok(tls);
    }
    let agreed = group.map_or_else(|| "no key-exchange group".to_owned(), |g| format!("{g:?}"));
    Err(ProxyError::upstream(
        ErrorKind::TlsHandshake,
        format!(
            "{name} agreed {agreed}, not a post-quantum hybrid group (X25519MLKEM768, \
             secp256r1MLKEM768): upstream_tls.require_pq refuses it"
        ),
    ))
}

/// A rustls certificate error becomes `TlsCertificate` with the reason; anything else is a
/// handshake failure.
fn classify(name: &Host, err: &io::Error) -> ProxyError {
    let tls = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    let (kind, detail) = match tls {
        Some(rustls::Error::InvalidCertificate(ce)) => (
            ErrorKind::TlsCertificate,
            format!(
                "certificate of {name}: {}",
                describe_certificate_error(ce, name)
            ),
        ),
        Some(other) => (
            ErrorKind::TlsHandshake,
            format!("TLS handshake with {name}: {other}"),
        ),
        None => (
            ErrorKind::TlsHandshake,
            format!("TLS handshake with {name}: {}", describe_io(err)),
        ),
    };
    ProxyError::upstream(kind, detail)
}

#[cfg(test)]
mod tests {
    use rustls::CertificateError;

    use super::*;

    fn tls_io_error(e: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn certificate_failures_name_their_reason() {
        let host = Host::parse("origin.test").unwrap();
        let cases = [
            (CertificateError::UnknownIssuer, "unknown issuer"),
            (CertificateError::Expired, "expired"),
            (
                CertificateError::NotValidForName,
                "not issued for origin.test",
            ),
        ];
        for (cert_err, reason) in cases {
            let err = classify(
                &host,
                &tls_io_error(rustls::Error::InvalidCertificate(cert_err)),
            );
            assert_eq!(err.kind, ErrorKind::TlsCertificate);
            assert!(err.detail.contains(reason), "{}", err.detail);
            assert!(err.detail.contains("origin.test"));
        }
        let other = classify(&host, &tls_io_error(rustls::Error::HandshakeNotComplete));
        assert_eq!(other.kind, ErrorKind::TlsHandshake);
        let reset = classify(&host, &io::Error::from(io::ErrorKind::ConnectionReset));
        assert_eq!(reset.kind, ErrorKind::TlsHandshake);
    }
}
