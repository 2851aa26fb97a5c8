//! TLS interception: handshake with the origin first, then finish the client's handshake with a
//! leaf forged for its SNI and relay the HTTP inside. Must not decide policy (the pipeline
//! does), add nothing to the exchange, and never hide an upstream certificate failure.

mod activity;
pub mod ca;
pub mod certs;
mod der;
pub mod flows;
pub mod har;
mod parked;
pub mod pinning;
mod relay;
mod upstream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use rustls::server::{Acceptor, ServerConfig};
use rustls::sign::SingleCertAndKey;
use rustls::{AlertDescription, ClientConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::{LazyConfigAcceptor, StartHandshake};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::{ErrorKind, ProxyError};
use crate::target::{Host, Target, normalize_name};
use activity::{Activity, Metered};
use relay::{FlowMeta, Protocol, Relay, UpstreamSender};

pub use ca::Ca;
pub use certs::{LeafCache, LeafName};
pub use flows::{FlowRecord, FlowSink};
pub use pinning::{PinningSettings, PinningTracker};
pub use relay::Ending;

/// Failures of the CA and certificate machinery (not of a connection).
#[derive(Debug, thiserror::Error)]
pub enum MitmError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {why}", path.display())]
    BadCa { path: PathBuf, why: String },
    #[error("a CA already exists in {}; pass --force to replace it", .0.display())]
    CaExists(PathBuf),
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("forging a certificate for {name}: {why}")]
    Forge { name: String, why: String },
    #[error("upstream_ca {}: {why}", path.display())]
    UpstreamCa { path: PathBuf, why: String },
}

/// The policy file's interception settings, paths already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterceptSettings {
    pub ca_dir: PathBuf,
    pub upstream_ca: Option<PathBuf>,
    pub flows: Option<PathBuf>,
    /// Each TLS handshake (client and origin) gets this long.
    pub handshake_timeout: Duration,
    pub idle: Duration,
    pub pinning: Option<PinningSettings>,
}

/// What the pipeline knows about the connection being intercepted.
#[derive(Debug, Clone)]
pub struct FlowContext {
    pub client: SocketAddr,
    pub user: Option<String>,
    /// The SNI the pipeline parsed; the ClientHello read here takes precedence.
    pub sni: Option<Host>,
    pub connect_target: Target,
    pub rule: Option<String>,
    /// Informational; the ALPN list offered upstream is read from the ClientHello itself.
    pub alpn_offered: Vec<String>,
    /// `sni_mismatch: deny`: a request whose Host / `:authority` names another site than the
    /// TLS server name is answered 421 Misdirected Request instead of being relayed.
    pub deny_host_mismatch: bool,
}

#[derive(Debug)]
pub enum InterceptOutcome {
    /// Relayed until the connection ended this way.
    Finished(Ending),
    /// The origin's TLS failed; every request was answered with ward's 502 (+ Proxy-Status).
    UpstreamTlsFailed(ProxyError),
    /// The client aborted the handshake with this alert: it does not trust ward's CA, or pins.
    ClientRejectedCertificate { alert: &'static str },
}

impl InterceptOutcome {
    /// The access record's `outcome`.
    pub fn as_str(&self) -> &'static str {
        match self {
            InterceptOutcome::Finished(Ending::Closed) => "closed",
            InterceptOutcome::Finished(Ending::IdleTimeout) => "idle_timeout",
            InterceptOutcome::Finished(Ending::Shutdown) => "shutdown",
            InterceptOutcome::UpstreamTlsFailed(_) => "upstream_tls_failed",
            InterceptOutcome::ClientRejectedCertificate { .. } => "client_rejected_certificate",
        }
    }
}

#[derive(Debug)]
pub struct Intercepted {
    pub requests: u64,
    /// Bytes read from / written to the client's stream (TLS records, as for a tunnel).
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// The ALPN protocol negotiated with both sides.
    pub alpn: Option<String>,
    pub outcome: InterceptOutcome,
}

/// Built once at start (and on reload) and shared by `Arc`.
pub struct Interceptor {
    leaves: LeafCache,
    client_base: Arc<ClientConfig>,
    server_base: ServerConfig,
    flows: Arc<FlowSink>,
    pinning: PinningTracker,
    handshake_timeout: Duration,
    idle: Duration,
    settings: InterceptSettings,
}

/// What one connection's relay needs to know, gathered during the handshakes.
struct Session<'a> {
    activity: &'a Activity,
    protocol: Protocol,
    name: &'a Host,
    shutdown: &'a CancellationToken,
}

/// What the client's side of the handshake presents.
struct LeafRequest<'a> {
    name: &'a Host,
    /// The origin's DNS names, added to a leaf when it is forged (not on a cache hit).
    /// `None` when the origin's handshake failed: the leaf is then not cached.
    extra_sans: Option<&'a [String]>,
    alpn: Option<Vec<u8>>,
}

/// Both handshakes done (or the origin's failed): what the relay starts from.
struct Handshaken<IO> {
    accepted: Accepted<IO>,
    origin: Result<Origin, ProxyError>,
    name: Host,
    alpn: Option<Vec<u8>>,
}

/// The origin's TLS stream, boxed so that moving it through the relay's futures moves a
/// pointer, not a kilobyte.
type Origin = Box<tokio_rustls::client::TlsStream<TcpStream>>;

enum Accepted<IO> {
    /// Boxed: a TLS stream is over a kilobyte, the other variant a pointer.
    Stream(Box<tokio_rustls::server::TlsStream<IO>>),
    Rejected(&'static str),
}

impl Interceptor {
    pub fn new(s: &InterceptSettings) -> Result<Self, MitmError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let ca = Arc::new(Ca::load_or_create(&s.ca_dir)?);
        let client_base = upstream::client_config(provider.clone(), s.upstream_ca.as_deref())?;
        let leaves = LeafCache::new(ca, certs::DEFAULT_CAPACITY)?;
        // The resolver is replaced per connection; this empty one only satisfies the builder.
        let placeholder = rustls::server::ResolvesServerCertUsingSni::new();
        let server_base = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(placeholder));
        Ok(Interceptor {
            leaves,
            client_base: Arc::new(client_base),
            server_base,
            flows: Arc::new(FlowSink::open(s.flows.as_deref())?),
            pinning: PinningTracker::new(s.pinning),
            handshake_timeout: s.handshake_timeout,
            idle: s.idle,
            settings: s.clone(),
        })
    }

    /// The settings it was built from: a reload with equal settings keeps this interceptor
    /// (and its leaf cache).
    pub fn settings(&self) -> &InterceptSettings {
        &self.settings
    }

    pub fn ca(&self) -> &Arc<Ca> {
        self.leaves.ca()
    }

    pub fn leaves(&self) -> &LeafCache {
        &self.leaves
    }

    /// Whether the pipeline should tunnel `host` instead of inspecting it (pinning_passthrough).
    pub fn pinned_passthrough(&self, host: &Host, now: std::time::Instant) -> bool {
        self.pinning.pinned_passthrough(host, now)
    }

    pub fn record_client_rejection(&self, host: &Host, now: std::time::Instant) -> bool {
        self.pinning.record_client_rejection(host, now)
    }

    /// Intercepts one connection. `client` is positioned at the very start of its ClientHello;
    /// `upstream` is connected to the origin.
    pub async fn intercept<S>(
        &self,
        client: S,
        upstream: TcpStream,
        ctx: FlowContext,
        shutdown: CancellationToken,
    ) -> Result<Intercepted, ProxyError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        // Boxed: the handshakes' state (two TLS handshakes, the ClientHello) is several KiB
        // that only the first milliseconds need; inline it would size this future, which
        // lives as long as the connection.
        let shaken = Box::pin(self.handshakes(client, upstream, &ctx, &activity)).await?;
        let Handshaken {
            accepted,
            origin,
            name,
            alpn,
        } = shaken;
        let tls = match accepted {
            Accepted::Stream(tls) => tls,
            Accepted::Rejected(alert) => {
                let outcome = InterceptOutcome::ClientRejectedCertificate { alert };
                return Ok(finish(&activity, 0, alpn, outcome));
            }
        };
        let protocol = Protocol::from_alpn(alpn.as_deref());
        let session = Session {
            activity: &activity,
            protocol,
            name: &name,
            shutdown: &shutdown,
        };
        let (requests, outcome) = self.relay(session, tls, origin, ctx).await;
        Ok(finish(&activity, requests, alpn, outcome))
    }

    /// Reads the ClientHello, handshakes with the origin offering what the client offered,
    /// then finishes the client's handshake with a leaf forged for the name.
    async fn handshakes<S>(
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
        let timeout = self.handshake_timeout;
        let origin =
            upstream::handshake(&self.client_base, upstream, &name, &offered, timeout).await;
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
        })
    }

    /// Relays the established pair: bytes for a non-HTTP protocol, else hyper on both sides;
    /// with no usable origin every request gets ward's 502. Returns (requests, outcome).
    async fn relay<IO>(
        &self,
        session: Session<'_>,
        tls: IO,
        origin: Result<Origin, ProxyError>,
        ctx: FlowContext,
    ) -> (u64, InterceptOutcome)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Session {
            activity,
            protocol,
            name,
            shutdown,
        } = session;
        let idle = self.idle;
        let (sender, failure) = match origin {
            Ok(origin) if protocol == Protocol::Opaque => {
                let ending = relay::relay_opaque(tls, origin, activity, idle, shutdown).await;
                return (0, InterceptOutcome::Finished(ending));
            }
            // Boxed: an HTTP/2 handshake future is large and needed only once.
            Ok(origin) => match Box::pin(relay::connect_upstream(origin, protocol)).await {
                Ok(sender) => (sender, None),
                Err(e) => {
                    let err = ProxyError::upstream(
                        ErrorKind::Io,
                        format!("HTTP handshake with {name}: {e}"),
                    );
                    (failed(&err), Some(err))
                }
            },
            Err(err) => {
                tracing::warn!(sni = %name, client = %ctx.client, error = %err, "origin TLS failed; answering the client with 502");
                (failed(&err), Some(err))
            }
        };
        let connect_host = &ctx.connect_target.host;
        let relay = Arc::new(Relay {
            upstream: sender,
            meta: FlowMeta {
                client: ctx.client,
                user: ctx.user,
                sni: Some(name.to_string()),
                rule: ctx.rule,
                connect: ctx.connect_target.to_string(),
                connect_mismatch: names_differ(connect_host, name),
                tls_name: name.clone(),
                deny_host_mismatch: ctx.deny_host_mismatch,
            },
            sink: self.flows.clone(),
            requests: AtomicU64::new(0),
            upgrades: TaskTracker::new(),
        });
        let ending =
            relay::serve_http(tls, protocol, relay.clone(), activity, idle, shutdown).await;
        if let UpstreamSender::Http1(parked) = &relay.upstream {
            parked.close().await;
        }
        let requests = relay.requests.load(Ordering::Relaxed);
        let outcome = match failure {
            Some(err) => InterceptOutcome::UpstreamTlsFailed(err),
            None => InterceptOutcome::Finished(ending),
        };
        (requests, outcome)
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
            Ok(Err(e)) => match rejection_alert(&e) {
                Some(alert) => {
                    tracing::warn!(sni = %name, client = %ctx.client, alert, "client rejected the forged certificate (ward's CA not trusted, or the app pins)");
                    self.pinning
                        .record_client_rejection(name, std::time::Instant::now());
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

/// Two hosts name different sites; an IP names no site, so it never differs (DESIGN).
pub(crate) fn names_differ(a: &Host, b: &Host) -> bool {
    matches!((a, b), (Host::Name(x), Host::Name(y)) if x != y)
}

fn failed(err: &ProxyError) -> UpstreamSender {
    UpstreamSender::Failed {
        kind: err.kind,
        detail: err.detail.clone(),
    }
}

fn finish(
    activity: &Activity,
    requests: u64,
    alpn: Option<Vec<u8>>,
    outcome: InterceptOutcome,
) -> Intercepted {
    Intercepted {
        requests,
        bytes_up: activity.read.load(Ordering::Relaxed),
        bytes_down: activity.written.load(Ordering::Relaxed),
        alpn: alpn.map(|a| String::from_utf8_lossy(&a).into_owned()),
        outcome,
    }
}

/// With no origin to follow, speak the simplest HTTP the client offered, so it can read the
/// 502 that explains why.
fn fallback_alpn(offered: &[Vec<u8>]) -> Option<Vec<u8>> {
    [&b"http/1.1"[..], b"h2"]
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
        .map(<[u8]>::to_vec)
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
mod tests;
