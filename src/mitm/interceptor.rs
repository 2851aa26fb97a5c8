//! The interceptor: built once at start (and on reload) from the policy file's settings, and
//! shared by every intercepted connection. Must not touch a connection: that is the driver's.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rustls::server::ServerConfig;

use super::ca::{Ca, KeyAccess};
use super::certs::{self, LeafCache};
use super::error::MitmError;
use super::flows::{FlowHub, FlowSink};
use super::pinning::{ClientId, Pinned, PinningSettings, PinningTracker};
use super::requests::RequestJudge;
use super::upstream;
use crate::config::BodyCapture;
use crate::target::{Host, Target};
use crate::tls::ClientHelloFacts;

/// The policy file's interception settings, paths already resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterceptSettings {
    /// Where the interception CA lives (`ca.pem` + `ca.key`).
    pub ca_dir: PathBuf,
    /// Extra roots trusted for origins.
    pub upstream_ca: Option<PathBuf>,
    /// Where flow records are appended as JSON lines, if anywhere.
    pub flows: Option<PathBuf>,
    /// `flows.bodies`: which bodies the records capture, off when `None`.
    pub bodies: Option<BodyCapture>,
    /// Each TLS handshake (client and origin) gets this long.
    pub handshake_timeout: Duration,
    /// An intercepted connection (upgrades included) ends after this long without a byte.
    pub idle: Duration,
    /// `pinning_passthrough`, if enabled.
    pub pinning: Option<PinningSettings>,
    /// `upstream_tls.require_pq`: an origin that does not agree a hybrid group is refused.
    pub require_pq: bool,
    /// Whether a CA key readable by others is refused (`--allow-insecure-key` allows it).
    pub key_access: KeyAccess,
}

/// What the pipeline knows about the connection being intercepted.
#[derive(Debug, Clone)]
pub struct FlowContext {
    /// The connection's id, for its flow records.
    pub conn_id: crate::log::ConnId,
    /// The client's address.
    pub client: SocketAddr,
    /// The authenticated user, if any.
    pub user: Option<String>,
    /// The SNI the pipeline parsed; the ClientHello read here takes precedence.
    pub sni: Option<Host>,
    /// What the client asked to be connected to (CONNECT / SOCKS5).
    pub connect_target: Target,
    /// The name of the rule that chose `inspect`, if a rule did.
    pub rule: Option<String>,
    /// `sni_mismatch: deny`: a request whose Host / `:authority` names another site than the
    /// TLS server name is answered 421 Misdirected Request instead of being relayed.
    pub deny_host_mismatch: bool,
    /// Judges each request, when the policy has rules on requests (`methods`, `paths`).
    pub judge: Option<RequestJudge>,
    /// How long the origin leg's lookup and connect took; the handshake adds its TLS time.
    pub setup: crate::log::Setup,
    /// The client's ClientHello as the pipeline read it: ward's hello to the origin follows
    /// it. `None` offers ward's own choices.
    pub hello: Option<Arc<ClientHelloFacts>>,
}

/// Built once at start (and on reload) and shared by `Arc`.
pub struct Interceptor {
    pub(super) leaves: LeafCache,
    /// The origin leg's configs, one per kind of client hello.
    pub(super) upstream: upstream::UpstreamConfigs,
    pub(super) server_base: ServerConfig,
    pub(super) flows: Arc<FlowSink>,
    pub(super) bodies: Option<Arc<BodyCapture>>,
    pub(super) pinning: Arc<PinningTracker>,
    pub(super) handshake_timeout: Duration,
    pub(super) idle: Duration,
    pub(super) require_pq: bool,
    /// Where the upstream handshake time and the leaf cache are counted.
    pub(super) metrics: Arc<crate::metrics::Metrics>,
    settings: InterceptSettings,
}

impl Interceptor {
    /// Loads (or creates) the CA and builds the TLS configurations both sides start from.
    /// `pinning` and `flows` outlive the interceptor: a reload builds a new one around them.
    pub fn new(
        s: &InterceptSettings,
        pinning: Arc<PinningTracker>,
        flows: Arc<FlowHub>,
    ) -> Result<Self, MitmError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let ca = Arc::new(Ca::load_or_create(&s.ca_dir, s.key_access)?);
        let upstream = upstream::UpstreamConfigs::new(provider.clone(), s.upstream_ca.as_deref())?;
        let leaves = LeafCache::new(ca, certs::DEFAULT_CAPACITY)?;
        // The resolver is replaced per connection; this empty one only satisfies the builder.
        let placeholder = rustls::server::ResolvesServerCertUsingSni::new();
        let server_base = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(placeholder));
        Ok(Interceptor {
            leaves,
            upstream,
            server_base,
            flows: Arc::new(FlowSink::open(s.flows.as_deref(), flows)?),
            bodies: s.bodies.clone().map(Arc::new),
            pinning,
            handshake_timeout: s.handshake_timeout,
            idle: s.idle,
            require_pq: s.require_pq,
            metrics: Arc::default(),
            settings: s.clone(),
        })
    }

    /// Counts into `metrics` (upstream handshake times, the leaf cache) instead of a private
    /// set: the process's, which outlives the interceptors reloads replace.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.leaves.count_into(metrics.leaves.clone());
        self.metrics = metrics;
        self
    }

    /// The settings it was built from: a reload with equal settings keeps this interceptor
    /// (and its leaf cache).
    pub fn settings(&self) -> &InterceptSettings {
        &self.settings
    }

    /// Reopens the flows file at its path (SIGUSR1, for logrotate).
    pub fn reopen_flows(&self) {
        self.flows.reopen();
    }

    /// The CA that signs the forged leaves.
    pub fn ca(&self) -> &Arc<Ca> {
        self.leaves.ca()
    }

    /// The forged leaves, cached per name.
    pub fn leaves(&self) -> &LeafCache {
        &self.leaves
    }

    /// Whether (and until when) the pipeline should tunnel `host` instead of inspecting it
    /// (pinning_passthrough).
    pub fn pinned_passthrough(&self, host: &Host, now: SystemTime) -> Option<Pinned> {
        self.settings.pinning?;
        self.pinning.passthrough(host, now)
    }

    /// Counts `client`'s refusal of the forged leaf for `host`; true when it switched the
    /// host to passthrough. Nothing is counted when `pinning_passthrough` is off.
    pub fn record_client_rejection(&self, host: &Host, client: ClientId, now: SystemTime) -> bool {
        match &self.settings.pinning {
            Some(settings) => self
                .pinning
                .record_client_rejection(settings, host, client, now),
            None => false,
        }
    }
}
