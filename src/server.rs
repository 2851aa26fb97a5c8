//! The process: listeners, the connection limit, policy hot reload (a watch on the policy and
//! its list files, and SIGHUP), the flows file reopened on SIGUSR1,
//! and graceful shutdown (SIGTERM/Ctrl-C: stop accepting, drain for `shutdown_grace`, exit);
//! each step told to systemd (`sd_notify`) when it supervises ward.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, AdminState};
use crate::auth::Authenticator;
use crate::config::Config;
use crate::conn;
use crate::context::Context;
use crate::context::shares::ClientShares;
use crate::error::{ErrorKind, ProxyError};
use crate::front::entry::Entry;
use crate::front::refuse;
use crate::metrics::Metrics;
use crate::mitm::ca::{KeyAccess, check_key};
use crate::mitm::pinning::{self, PinningSettings, PinningTracker};
use crate::mitm::{FlowHub, InterceptSettings, Interceptor};

mod cert_watch;
mod reload;
mod sd_notify;

use self::reload::{Watch, reloader};

/// After EMFILE/ENFILE, accepting again at once would spin: wait for descriptors to free up.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Out of descriptors, accept fails ten times a second: it is logged at most this often, with
/// how many failures the line stands for.
const EMFILE_LOG_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
/// Why the server could not start.
pub enum ServerError {
    #[error("listen on {addr}: {source}")]
    /// A listen or admin address could not be bound.
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    #[error("install signal handlers: {0}")]
    /// Signal handlers could not be installed.
    Signals(std::io::Error),
    #[error("policy has no `listen` address")]
    /// The policy lists no listen address.
    NoListener,
    #[error("interception setup: {0}")]
    /// The CA could not be loaded or made.
    Intercept(String),
    #[error("{0}")]
    /// A listener's certificate or key could not be loaded.
    Listener(crate::config::ConfigIssue),
}

/// What the command line adds to the policy file.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// `--allow-insecure-key`: a CA key readable by others is a warning, not a refusal.
    pub key_access: KeyAccess,
}

/// The live state shared by the accept loops and the reloader.
struct State {
    config: ArcSwap<Config>,
    interceptor: ArcSwap<Option<Arc<Interceptor>>>,
    open: AtomicUsize,
    force_close: CancellationToken,
    metrics: Arc<Metrics>,
    shares: Arc<ClientShares>,
    /// Password checks and their cache: one per process, kept across reloads.
    auth: Arc<Authenticator>,
    /// Pinning passthrough state: made once, shared by every interceptor a reload builds.
    pinning: Arc<PinningTracker>,
    /// The live flow ring, likewise (and shared with the admin).
    flows: Arc<FlowHub>,
    /// Whether an exposed CA key is refused, for every interceptor a reload builds.
    key_access: KeyAccess,
}

/// Serves until SIGTERM/Ctrl-C, then drains. `path` is watched for changes when given.
pub async fn run(
    config: Config,
    path: Option<PathBuf>,
    options: RunOptions,
) -> Result<(), ServerError> {
    // Checked before anything is bound, and whether or not the policy inspects yet: a key
    // others can read is refused at start, not at the first reload that turns inspection on.
    match check_key(&config.ca_dir, options.key_access) {
        // Loading the CA for interception warns itself.
        Ok(Some(warning)) if !config.policy.inspects_anything() => tracing::warn!("{warning}"),
        Ok(_) => {}
        Err(e) => return Err(ServerError::Intercept(e.to_string())),
    }
    // Handlers go in before "listening" is announced: until then a SIGHUP or SIGTERM would
    // take its default action and kill the process.
    let signals = Signals::install().map_err(ServerError::Signals)?;
    // The watch too: an edit made right after "listening" must not be missed. Its events wait
    // in the channel until the reloader runs.
    let (reload_tx, reload_rx) = mpsc::channel(8);
    let watch = path
        .as_deref()
        .and_then(|p| Watch::start(p, &config, reload_tx.clone()));
    let pinning = Arc::new(PinningTracker::with_store(
        config.ca_dir.join(pinning::store::FILE_NAME),
        std::time::SystemTime::now(),
    ));
    let metrics = Arc::<Metrics>::default();
    // `flows.keep` is read at start, like the admin address: the ring is the admin's.
    let keep = if config.admin.is_some() {
        config.flows.keep
    } else {
        0
    };
    let flows = Arc::new(FlowHub::new(keep));
    let key_access = options.key_access;
    let interceptor = build_interceptor(&config, None, &pinning, &metrics, &flows, key_access)?;
    let admin_addr = config.admin;
    let mut listeners = Vec::with_capacity(config.listen.len());
    for listener in &config.listen {
        let addr = listener.addr;
        let entry = Arc::new(Entry::new(listener).map_err(ServerError::Listener)?);
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let local = l
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        let tls = entry.is_tls();
        let proxy_protocol = listener
            .proxy_protocol
            .map(|v| format!("{v:?}").to_lowercase());
        tracing::info!(addr = %local, tls, proxy_protocol, "listening");
        listeners.push((l, entry));
    }
    let first_listen = match listeners.first() {
        Some((l, _)) => l.local_addr().unwrap_or(config.listen[0].addr),
        None => return Err(ServerError::NoListener),
    };
    let _cert_watcher = cert_watch::spawn(listeners.iter().map(|(_, e)| e.clone()).collect());
    let state = Arc::new(State {
        config: ArcSwap::from_pointee(config),
        interceptor: ArcSwap::from_pointee(interceptor),
        open: AtomicUsize::new(0),
        force_close: CancellationToken::new(),
        metrics,
        shares: Arc::default(),
        auth: Arc::default(),
        pinning,
        flows,
        key_access,
    });
    let stop_accepting = CancellationToken::new();
    // The admin outlives the accept loops: `/readyz` answers 503 while the drain runs.
    let stop_admin = CancellationToken::new();
    let tracker = TaskTracker::new();
    if let Some(addr) = admin_addr {
        let l = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        tracing::info!(addr = %l.local_addr().unwrap_or(addr), "admin listening");
        let cfg = state.config.load();
        let admin = AdminState {
            metrics: state.metrics.clone(),
            proxy_addr: first_listen,
            ca_pem: cfg.ca_dir.join("ca.pem"),
            pac: cfg.pac.clone(),
            setup_host: cfg.setup_host.clone(),
            draining: stop_accepting.clone(),
            pinning: state.pinning.clone(),
            access: admin::auth::Access {
                token: cfg.admin_token.clone(),
                public_metrics: cfg.admin_public_metrics,
            },
            flows: state.flows.clone(),
        };
        tokio::spawn(admin::serve(l, Arc::new(admin), stop_admin.clone()));
    }
    for (l, entry) in listeners {
        tokio::spawn(accept_loop(
            l,
            entry,
            state.clone(),
            tracker.clone(),
            stop_accepting.clone(),
        ));
    }
    let notifier = Arc::new(sd_notify::Notifier::from_env());
    tokio::spawn(reloader(
        path,
        state.clone(),
        reload_rx,
        watch,
        notifier.clone(),
    ));
    tokio::spawn(forward_sighup(signals.hup, reload_tx));
    // Every listener (and the admin) is bound: a supervisor may send traffic now.
    notifier.ready();
    tokio::spawn(reopen_on_sigusr1(signals.usr1, state.clone()));

    wait_for_shutdown_signal(signals.term, signals.int).await;
    notifier.stopping();
    stop_accepting.cancel();
    tracker.close();
    let grace = state.config.load().shutdown_grace;
    let open = state.open.load(Ordering::Relaxed);
    tracing::info!(open, grace = %humantime::format_duration(grace), "shutting down: draining open connections");
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::info!(
            open = state.open.load(Ordering::Relaxed),
            "grace period over: closing the rest"
        );
        state.force_close.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
    }
    stop_admin.cancel();
    tracing::info!("stopped");
    Ok(())
}

async fn accept_loop(
    l: TcpListener,
    entry: Arc<Entry>,
    state: Arc<State>,
    tracker: TaskTracker,
    stop: CancellationToken,
) {
    // When out of descriptors was last logged, and the failures since.
    let mut emfile: (Option<tokio::time::Instant>, u64) = (None, 0);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            r = l.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(ok) => ok,
            Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                emfile.1 += 1;
                let now = tokio::time::Instant::now();
                if emfile.0.is_none_or(|last| now >= last + EMFILE_LOG_EVERY) {
                    let failures = std::mem::take(&mut emfile.1);
                    tracing::warn!(error = %e, failures, "out of file descriptors: pausing accept");
                    emfile.0 = Some(now);
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            Err(e) => {
                // ECONNABORTED and friends concern one connection, not the listener.
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        };
        let cfg = state.config.load_full();
        let open = state.open.fetch_add(1, Ordering::AcqRel) + 1;
        state.metrics.open.store(open as u64, Ordering::Relaxed);
        let guard = OpenGuard(state.clone());
        if open > cfg.max_connections {
            state.metrics.over_limit.fetch_add(1, Ordering::Relaxed);
            tracker.spawn(over_limit(stream, peer, entry.clone(), cfg, guard));
            continue;
        }
        state.metrics.connections.fetch_add(1, Ordering::Relaxed);
        let ctx = Context {
            config: cfg,
            interceptor: state.interceptor.load().as_ref().clone(),
            draining: stop.clone(),
            force_close: state.force_close.clone(),
            metrics: state.metrics.clone(),
            shares: state.shares.clone(),
            auth: state.auth.clone(),
        };
        let entry = entry.clone();
        tracker.spawn(async move {
            conn::handle(stream, peer, entry, ctx).await;
            drop(guard);
        });
    }
}

/// Counts a client connection for as long as its task lives.
struct OpenGuard(Arc<State>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let open = self.0.open.fetch_sub(1, Ordering::AcqRel) - 1;
        self.0.metrics.open.store(open as u64, Ordering::Relaxed);
    }
}

/// A connection over `max_connections`, logged with its client and answered at once in its
/// own protocol. Behind a load balancer the peer is the balancer: the PROXY header is read
/// first (within [`refuse::GRACE`], like the answer) so that the log names the real client.
async fn over_limit(
    stream: TcpStream,
    peer: SocketAddr,
    entry: Arc<Entry>,
    cfg: Arc<Config>,
    guard: OpenGuard,
) {
    let limit = cfg.max_connections;
    let deadline = tokio::time::Instant::now() + refuse::GRACE;
    let (stream, client) = match entry.client_of(stream, peer, deadline).await {
        Ok(opened) => opened,
        Err(e) => {
            let reason = e.reason();
            tracing::warn!(client = %peer, %peer, limit, reason, "connection limit reached (PROXY header refused)");
            return drop(guard);
        }
    };
    tracing::warn!(%client, %peer, limit, "connection limit reached");
    // An HTTPS listener's client expects TLS, which an answer in clear is not.
    if !entry.is_tls() {
        let err = ProxyError::local(
            ErrorKind::ConnectionLimit,
            format!("{limit} connections open (max_connections)"),
        );
        refuse::refuse(stream, &err).await;
    }
    drop(guard);
}

/// Builds the interceptor when the policy inspects anything (creating the CA on first need);
/// keeps the current one when its settings did not change, so its leaf cache survives reloads.
fn build_interceptor(
    cfg: &Config,
    current: Option<&Arc<Interceptor>>,
    pinning: &Arc<PinningTracker>,
    metrics: &Arc<Metrics>,
    flows: &Arc<FlowHub>,
    key_access: KeyAccess,
) -> Result<Option<Arc<Interceptor>>, ServerError> {
    if !cfg.policy.inspects_anything() {
        return Ok(None);
    }
    let settings = InterceptSettings {
        ca_dir: cfg.ca_dir.clone(),
        upstream_ca: cfg.upstream_ca.clone(),
        flows: cfg.flows.file.clone(),
        bodies: cfg.flows.bodies.clone(),
        handshake_timeout: cfg.timeouts.client_hello,
        idle: cfg.timeouts.idle,
        pinning: cfg.pinning_passthrough.map(|p| PinningSettings {
            rejections: p.failures,
            window: p.window,
            ttl: p.ttl,
        }),
        require_pq: cfg.require_pq,
        key_access,
    };
    if let Some(cur) = current
        && cur.settings() == &settings
    {
        return Ok(Some(cur.clone()));
    }
    let interceptor = Interceptor::new(&settings, pinning.clone(), flows.clone())
        .map_err(|e| ServerError::Intercept(e.to_string()))?
        .with_metrics(metrics.clone());
    Ok(Some(Arc::new(interceptor)))
}

struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }
}

async fn forward_sighup(mut hup: tokio::signal::unix::Signal, tx: mpsc::Sender<&'static str>) {
    while hup.recv().await.is_some() {
        let _ = tx.send("SIGHUP").await;
    }
}

/// SIGUSR1 reopens the flows file (logrotate's `create`: the old file was renamed away).
/// ward's logs go to stderr, which is the service manager's to rotate.
async fn reopen_on_sigusr1(mut usr1: tokio::signal::unix::Signal, state: Arc<State>) {
    while usr1.recv().await.is_some() {
        match state.interceptor.load().as_ref() {
            Some(i) if i.settings().flows.is_some() => {
                tracing::info!("SIGUSR1: reopening the flows file");
                i.reopen_flows();
            }
            _ => tracing::info!("SIGUSR1: no flows file to reopen"),
        }
    }
}

async fn wait_for_shutdown_signal(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) {
    tokio::select! {
        _ = int.recv() => tracing::info!("interrupted"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}
