//! Pinning passthrough: a host whose clients keep rejecting the forged certificate (pinned
//! apps, a CA not yet trusted) is tunnelled for a while instead of inspected. It counts
//! *distinct* clients (the user when authenticated, else the address), so one client cannot
//! switch inspection off for everyone. Time is passed in; every set stays bounded whatever
//! names and clients arrive. The passthrough list survives a restart through `store`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use dashmap::DashMap;

use crate::target::Host;

pub mod store;

/// Hosts tracked at once; beyond this, new hosts are not tracked (inspection simply continues).
pub const MAX_TRACKED_HOSTS: usize = 4096;
/// Distinct clients remembered per host: `failures` above this count as this many.
pub const MAX_CLIENTS_PER_HOST: usize = 256;

/// `pinning_passthrough`: after `rejections` distinct clients within `window`, tunnel the host
/// for `ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinningSettings {
    /// Distinct clients rejecting the forged leaf that switch a host to passthrough...
    pub rejections: u32,
    /// ...when they come within this long...
    pub window: Duration,
    /// ...for this long.
    pub ttl: Duration,
}

impl PinningSettings {
    fn threshold(&self) -> usize {
        (self.rejections as usize).clamp(1, MAX_CLIENTS_PER_HOST)
    }
}

/// Who rejected: the authenticated user, else the client's address (its port is not a client).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ClientId {
    /// A proxy user (Basic auth): several users behind one address count apart.
    User(String),
    /// An unauthenticated client's IP address.
    Addr(IpAddr),
}

impl ClientId {
    /// The identity pinning counts for a connection from `addr` as `user`.
    pub fn of(addr: SocketAddr, user: Option<&str>) -> Self {
        match user {
            Some(u) => ClientId::User(u.to_owned()),
            None => ClientId::Addr(addr.ip()),
        }
    }
}

/// A host in passthrough: until when, and how many distinct clients put it there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pinned {
    /// Inspection resumes at this time.
    pub until: SystemTime,
    /// Distinct clients that rejected the forged leaf within the window.
    pub clients: u32,
}

#[derive(Debug, Clone)]
struct HostState {
    window_start: SystemTime,
    clients: Vec<ClientId>,
    pinned: Option<Pinned>,
}

impl HostState {
    fn active(&self, now: SystemTime) -> Option<Pinned> {
        self.pinned.filter(|p| now < p.until)
    }

    fn is_relevant(&self, window: Duration, now: SystemTime) -> bool {
        self.active(now).is_some() || elapsed(self.window_start, now) < window
    }
}

fn elapsed(since: SystemTime, now: SystemTime) -> Duration {
    now.duration_since(since).unwrap_or_default()
}

/// Per-host distinct rejecting clients and passthrough deadlines, bounded. Shared by every
/// interceptor a reload builds, the admin endpoint and `/metrics`.
#[derive(Debug, Default)]
pub struct PinningTracker {
    hosts: DashMap<Host, HostState>,
    /// The state file, if any: written on every change to the passthrough list.
    store: Option<PathBuf>,
    /// One writer at a time, so a slower save cannot rename an older list over a newer one.
    saving: Mutex<()>,
}

impl PinningTracker {
    /// An empty tracker that remembers nothing across restarts.
    pub fn new() -> Self {
        PinningTracker::default()
    }

    /// A tracker whose passthrough list lives in `path`: read now (a missing file is empty, a
    /// bad one is a warning and empty, never an error), written on every change.
    pub fn with_store(path: PathBuf, now: SystemTime) -> Self {
        let hosts = DashMap::new();
        for (host, pinned) in store::load(&path, now) {
            let state = HostState {
                window_start: now,
                clients: Vec::new(),
                pinned: Some(pinned),
            };
            hosts.insert(host, state);
        }
        PinningTracker {
            hosts,
            store: Some(path),
            saving: Mutex::new(()),
        }
    }

    /// Whether (and until when) connections to `host` are tunnelled instead of inspected.
    pub fn passthrough(&self, host: &Host, now: SystemTime) -> Option<Pinned> {
        self.hosts.get(host).and_then(|s| s.active(now))
    }

    /// Counts `client`'s rejection of the forged certificate for `host`; returns true when it
    /// switched the host to passthrough. A client already counted in this window adds nothing.
    pub fn record_client_rejection(
        &self,
        settings: &PinningSettings,
        host: &Host,
        client: ClientId,
        now: SystemTime,
    ) -> bool {
        if !self.hosts.contains_key(host) && self.hosts.len() >= MAX_TRACKED_HOSTS {
            self.hosts
                .retain(|_, s| s.is_relevant(settings.window, now));
            if self.hosts.len() >= MAX_TRACKED_HOSTS {
                return false;
            }
        }
        let switched = {
            let mut state = self.hosts.entry(host.clone()).or_insert(HostState {
                window_start: now,
                clients: Vec::new(),
                pinned: None,
            });
            if elapsed(state.window_start, now) >= settings.window {
                state.window_start = now;
                state.clients.clear();
            }
            if state.active(now).is_some() {
                return false;
            }
            if !state.clients.contains(&client) && state.clients.len() < MAX_CLIENTS_PER_HOST {
                state.clients.push(client);
            }
            let n = state.clients.len();
            if n < settings.threshold() {
                return false;
            }
            state.pinned = Some(Pinned {
                until: now + settings.ttl,
                clients: u32::try_from(n).unwrap_or(u32::MAX),
            });
            state.clients.clear();
            n
        };
        tracing::warn!(host = %host, clients = switched, ttl = ?settings.ttl, "distinct clients reject the forged certificate; tunnelling this host instead of inspecting");
        self.save(now);
        true
    }

    /// The hosts in passthrough now, soonest to resume first.
    pub fn list(&self, now: SystemTime) -> Vec<(Host, Pinned)> {
        let mut out: Vec<_> = self
            .hosts
            .iter()
            .filter_map(|e| e.active(now).map(|p| (e.key().clone(), p)))
            .collect();
        out.sort_by(|a, b| {
            a.1.until
                .cmp(&b.1.until)
                .then_with(|| a.0.to_string().cmp(&b.0.to_string()))
        });
        out
    }

    /// How many hosts are in passthrough now (the `/metrics` gauge).
    pub fn count(&self, now: SystemTime) -> usize {
        self.hosts
            .iter()
            .filter(|e| e.active(now).is_some())
            .count()
    }

    /// Ends `host`'s passthrough (and forgets its rejections); false when it was not in one.
    pub fn clear(&self, host: &Host, now: SystemTime) -> bool {
        let was = self
            .hosts
            .remove(host)
            .is_some_and(|(_, s)| s.active(now).is_some());
        if was {
            self.save(now);
        }
        was
    }

    /// Writes the passthrough list, if there is a state file. A failed write is a warning: the
    /// live state is right, only a restart would forget it.
    fn save(&self, now: SystemTime) {
        let Some(path) = &self.store else {
            return;
        };
        let _one_at_a_time = self.saving.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = store::save(path, &self.list(now)) {
            tracing::warn!(path = %path.display(), error = %e, "could not write the pinning passthrough state");
        }
    }
}

#[cfg(test)]
mod tests;
