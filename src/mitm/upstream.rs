//! The origin side of interception: which roots we trust, the TLS handshake offering what the
//! client offered (`configs` holds one rustls config per kind of client hello, `tap` reads back
//! the hello ward sent), and failures described in words a user can act on. Must never accept a
//! certificate that fails verification.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::error::{ErrorKind, ProxyError, describe_io};
use crate::target::Host;
use crate::tls::Ja4;
use reason::describe_certificate_error;

mod configs;
#[cfg(test)]
mod fixture_table;
mod reason;
mod tap;

pub use configs::{CONFIG_CAPACITY, HelloKey, UpstreamConfigs};
use tap::HelloTap;

/// The origin's TLS stream, boxed so that moving it through the relay's futures moves a
/// pointer, not a kilobyte.
pub(crate) type Origin = Box<TlsStream<HelloTap<TcpStream>>>;

/// Handshakes with the origin under `config` (the client's hello mirrored, see `configs`),
/// verifying the chain for `name`. A client without SNI that asked for a name still gets that
/// name verified, though none is sent. Also returns the JA4 of the hello ward sent, which a
/// failed handshake has too (not one that timed out). Boxed: the stream outlives the handshake
/// and is moved along the relay's futures.
pub(crate) async fn handshake(
    config: Arc<ClientConfig>,
    upstream: TcpStream,
    name: &Host,
    timeout: Duration,
) -> (Result<Origin, ProxyError>, Option<Ja4>) {
    let server_name = match name {
        Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
        Host::Name(n) => match ServerName::try_from(n.clone()) {
            Ok(n) => n,
            Err(e) => {
                let detail = format!("server name {n}: {e}");
                return (
                    Err(ProxyError::client(ErrorKind::MalformedRequest, detail)),
                    None,
                );
            }
        },
    };
    let connect = TlsConnector::from(config)
        .connect(server_name, HelloTap::new(upstream))
        .into_fallible();
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(tls)) => {
            let ja4 = tls.get_ref().0.ja4();
            (Ok(Box::new(tls)), ja4)
        }
        Ok(Err((e, tap))) => (Err(classify(name, &e)), tap.ja4()),
        Err(_) => (
            Err(ProxyError::upstream(
                ErrorKind::TlsHandshake,
                format!("TLS handshake with {name} timed out after {timeout:?}"),
            )),
            None,
        ),
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
