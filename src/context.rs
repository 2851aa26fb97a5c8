//! What every connection task shares: a snapshot of the configuration taken at accept (a
//! reload affects only new connections) and the process-wide services: counters, tokens and
//! the per-client shares ([`shares`]).

pub mod shares;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::mitm::Interceptor;

use self::shares::ClientShares;

/// The per-connection context handed from the server to the pipeline and its stages.
#[derive(Clone)]
pub struct Context {
    /// The configuration in force when the connection was accepted.
    pub config: Arc<Config>,
    /// Present when the policy inspects anything.
    pub interceptor: Option<Arc<Interceptor>>,
    /// Fired when shutdown begins: connections that idle between requests (plain-HTTP
    /// keep-alive) close then instead of holding the drain for the whole grace period.
    pub draining: CancellationToken,
    /// Fired when the shutdown grace period is over: open tunnels end then.
    pub force_close: CancellationToken,
    /// Process-wide counters.
    pub metrics: Arc<Metrics>,
    /// Open connections per client address, for `max_connections_per_client`.
    pub shares: Arc<ClientShares>,
    /// Checks proxy credentials, remembering recent successes across connections and reloads.
    pub auth: Arc<Authenticator>,
}
