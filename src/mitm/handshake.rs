//! Both TLS handshakes of an interception: read the client's ClientHello, handshake with the
//! origin offering what the client offered, then finish the client's handshake with a leaf
//! forged for the name and the ALPN the origin chose. Must never hide the origin's failure:
//! the client's handshake still completes, so that it can read ward's 502.

use std::sync::Arc;
use std::time::SystemTime;

use rustls::AlertDescription;
use rustls::server::Acceptor;
use rustls::sign::SingleCertAndKey;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use tokio_rustls::{LazyConfigAcceptor, StartHandshake};

use super::activity::{Activity, Metered};
use super::certs;
use super::der;
use super::interceptor::{FlowContext, Interceptor};
use super::pinning::ClientId;
use super::upstream::{self, HelloKey, Origin};
use crate::error::{ErrorKind, ProxyError};
use crate::target::{Host, normalize_name};
use crate::tls::Ja4;
use crate::tls::mirror::{self, Defaulted, Mirror};

/// What the client's side of the handshake presents.
struct LeafRequest<'a> {
    name: &'a Host,
    /// The origin's DNS names, added to a leaf when it is forged (not on a cache hit).
    /// `None` when the origin's handshake failed: the leaf is then not cached.
    extra_sans: Option<&'a [String]>,
    alpn: Option<Vec<u8>>,
}

/// Both handshakes done (or the origin's failed): what the relay starts from.
pub(super) struct Handshaken<IO> {
    pub accepted: Accepted<IO>,
    pub origin: Result<Origin, ProxyError>,
    /// The name the leaf was forged for: the SNI, else the pipeline's, else the CONNECT host.
    pub name: Host,
    /// The ALPN protocol agreed with both sides.
    pub alpn: Option<Vec<u8>>,
    /// How long the origin's TLS handshake took, in microseconds, when it succeeded.
    pub ssl_us: Option<u64>,
    /// The JA4 of the hello ward sent the origin.
    pub ja4_upstream: Option<Ja4>,
}

/// How the client's handshake ended.
pub(super) enum Accepted<IO> {
    /// Boxed: a TLS stream is over a kilobyte, the other variant a pointer.
    Stream(Box<tokio_rustls::server::TlsStream<IO>>),
    /// The client refused the forged leaf with this alert.
    Rejected(&'static str),
    /// The client offered ECH, got the outer hello answered without it (RFC 9849 §6.1.6:
    /// ward holds no ECH key, so it answers as the public name) and aborted with
    /// `ech_required`, to retry without ECH: the retry is a new connection, inspected as usual.
    EchRetry,
}

impl Interceptor {
    /// Reads the ClientHello, handshakes with the origin offering what the client offered,
    /// then finishes the client's handshake with a leaf forged for the name.
    pub(super) async fn handshakes<S>(
        &self,
        client: S,
        upstream: TcpStream,
        ctx: &FlowContext,
        activity: &Arc<Activity>,
    ) -> Result<Handshaken<Metered<S>>, ProxyError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let start = self
            .read_hello(Metered::new(client, activity.clone()))
            .await?;
        let hello = start.client_hello();
        let sni = hello.server_name().and_then(|n| normalize_name(n).ok());
        let offered: Vec<Vec<u8>> = hello
            .alpn()
            .map(|list| list.map(<[u8]>::to_vec).collect())
            .unwrap_or_default();
        let name = sni
            .map(Host::Name)
            .or_else(|| ctx.sni.clone())
            .unwrap_or_else(|| ctx.connect_target.host.clone());
        let key = HelloKey {
            mirror: self.mirror(ctx),
            alpn: offered.clone(),
            sni: hello.server_name().is_some(),
        };
        let config = self.upstream.get(&key);
        let timeout = self.handshake_timeout;
        let started = tokio::time::Instant::now();
        let (origin, ja4_upstream) = upstream::handshake(config, upstream, &name, timeout).await;
        let origin = origin
            .inspect(|_| self.metrics.upstream_tls.0.observe(started.elapsed()))
            .and_then(|tls| upstream::check_pq(tls, &name, self.require_pq));
        let ssl_us = origin
            .as_ref()
            .ok()
            .map(|_| u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
        let alpn = match &origin {
            Ok(tls) => tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec),
            Err(_) => fallback_alpn(&offered),
        };
        let extra_sans = origin.as_ref().ok().map(upstream_sans);
        let leaf = LeafRequest {
            name: &name,
            extra_sans: extra_sans.as_deref(),
            alpn: alpn.clone(),
        };
        let accepted = self.accept_client(start, leaf, ctx).await?;
        Ok(Handshaken {
            accepted,
            origin,
            name,
            alpn,
            ssl_us,
            ja4_upstream,
        })
    }

    /// What ward's hello to the origin takes from the client's; `None` (ward's own choices)
    /// when the pipeline read no hello.
    fn mirror(&self, ctx: &FlowContext) -> Option<Mirror> {
        let hello = ctx.hello.as_deref()?;
        let m = mirror::choose(hello, self.upstream.capabilities(), self.require_pq);
        if m.defaulted != Defaulted::default() || m.for_require_pq {
            tracing::debug!(
                conn_id = %ctx.conn_id,
                defaulted = %m.defaulted.names(),
                for_require_pq = m.for_require_pq,
                "upstream hello does not follow the client everywhere"
            );
        }
        Some(m)
    }

    async fn read_hello<IO>(&self, client: IO) -> Result<StartHandshake<IO>, ProxyError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = LazyConfigAcceptor::new(Acceptor::default(), client);
        match tokio::time::timeout(self.handshake_timeout, acceptor).await {
            Ok(Ok(start)) => Ok(start),
            Ok(Err(e)) => Err(ProxyError::client(
                ErrorKind::MalformedRequest,
                format!("ClientHello: {e}"),
            )
            .with_source(e)),
            Err(_) => Err(ProxyError::client(
                ErrorKind::ClientHelloTimeout,
                format!("no ClientHello within {:?}", self.handshake_timeout),
            )),
        }
    }

    /// Finishes the client's handshake with the forged leaf and the origin's ALPN choice.
    async fn accept_client<IO>(
        &self,
        start: StartHandshake<IO>,
        leaf: LeafRequest<'_>,
        ctx: &FlowContext,
    ) -> Result<Accepted<IO>, ProxyError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let name = leaf.name;
        let now = SystemTime::now();
        let key = match leaf.extra_sans {
            Some(sans) => self.leaves.get_or_forge(name, sans, now),
            None => self.leaves.get_or_forge_uncached(name, now),
        }
        .map_err(|e| ProxyError::local(ErrorKind::Internal, e.to_string()))?;
        let mut config = self.server_base.clone();
        config.cert_resolver = Arc::new(SingleCertAndKey::from(key));
        config.alpn_protocols = leaf.alpn.into_iter().collect();
        let accept = start.into_stream(Arc::new(config));
        match tokio::time::timeout(self.handshake_timeout, accept).await {
            Ok(Ok(tls)) => Ok(Accepted::Stream(Box::new(tls))),
            Ok(Err(e)) if received(&e, AlertDescription::EncryptedClientHelloRequired) => {
                tracing::debug!(sni = %name, client = %ctx.client, "client declined the hello without ECH (ech_required); it retries without ECH");
                Ok(Accepted::EchRetry)
            }
            Ok(Err(e)) => match rejection_alert(&e) {
                Some(alert) => {
                    tracing::warn!(sni = %name, client = %ctx.client, alert, "client rejected the forged certificate (ward's CA not trusted, or the app pins)");
                    self.record_client_rejection(
                        name,
                        ClientId::of(ctx.client, ctx.user.as_deref()),
                        SystemTime::now(),
                    );
                    Ok(Accepted::Rejected(alert))
                }
                None => Err(ProxyError::client(
                    ErrorKind::Io,
                    format!("TLS handshake with the client: {e}"),
                )
                .with_source(e)),
            },
            Err(_) => Err(ProxyError::client(
                ErrorKind::ClientTimeout,
                format!(
                    "client TLS handshake not done within {:?}",
                    self.handshake_timeout
                ),
            )),
        }
    }
}

/// The verified origin leaf's DNS names, so that the forged leaf answers for the same names
/// (clients that pool connections by certificate keep doing so). Bounded.
fn upstream_sans(tls: &Origin) -> Vec<String> {
    tls.get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| der::san_dns_names(leaf, certs::MAX_EXTRA_SANS))
        .unwrap_or_default()
}

/// With no origin to follow, speak the simplest HTTP the client offered, so it can read the
/// 502 that explains why.
fn fallback_alpn(offered: &[Vec<u8>]) -> Option<Vec<u8>> {
    [&b"http/1.1"[..], b"h2"]
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
        .map(<[u8]>::to_vec)
}

/// Whether an error, anywhere in its chain of sources, is the client's `ech_required` alert.
pub(super) fn is_ech_required(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && received(io, AlertDescription::EncryptedClientHelloRequired)
        {
            return true;
        }
        if let Some(rustls::Error::AlertReceived(AlertDescription::EncryptedClientHelloRequired)) =
            e.downcast_ref::<rustls::Error>()
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// Whether the handshake ended on this alert from the client.
fn received(err: &std::io::Error, alert: AlertDescription) -> bool {
    let tls = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>());
    matches!(tls, Some(rustls::Error::AlertReceived(a)) if *a == alert)
}

/// The alerts a client sends when it refuses our certificate.
fn rejection_alert(err: &std::io::Error) -> Option<&'static str> {
    let tls = err.get_ref()?.downcast_ref::<rustls::Error>()?;
    match tls {
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::UnknownCA => Some("unknown_ca"),
            AlertDescription::BadCertificate => Some("bad_certificate"),
            AlertDescription::CertificateUnknown => Some("certificate_unknown"),
            AlertDescription::UnsupportedCertificate => Some("unsupported_certificate"),
            AlertDescription::CertificateExpired => Some("certificate_expired"),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that wraps another, as hyper's errors wrap the stream's.
    #[derive(Debug)]
    struct Wrapped(std::io::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    fn alert(a: AlertDescription) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(a),
        )
    }

    #[test]
    fn ech_required_is_found_wherever_it_is_in_the_chain() {
        let ech = AlertDescription::EncryptedClientHelloRequired;
        assert!(is_ech_required(&alert(ech)));
        assert!(is_ech_required(&Wrapped(alert(ech))));
        assert!(!is_ech_required(&Wrapped(alert(
            AlertDescription::UnknownCA
        ))));
        let plain = std::io::Error::other("reset");
        assert!(!is_ech_required(&Wrapped(plain)));
        // Declining ECH is not refusing the certificate: it never feeds pinning passthrough.
        assert_eq!(rejection_alert(&alert(ech)), None);
        assert_eq!(
            rejection_alert(&alert(AlertDescription::UnknownCA)),
            Some("unknown_ca")
        );
    }
}
