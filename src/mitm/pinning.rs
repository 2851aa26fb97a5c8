//! Pinning passthrough: a host whose clients keep rejecting the forged certificate (pinned
//! apps, a CA not yet trusted) is tunnelled for a while instead of inspected. Pure state with
//! time passed in; it must stay bounded whatever names clients send.

use std::time::Duration;

use dashmap::DashMap;
use tokio::time::Instant;

use crate::target::Host;

/// Hosts tracked at once; beyond this, new hosts are not tracked (inspection simply continues).
const MAX_TRACKED_HOSTS: usize = 4096;

/// `pinning_passthrough`: after `rejections` within `window`, tunnel the host for `ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinningSettings {
    /// Rejections of the forged leaf that switch a host to passthrough...
    pub rejections: u32,
    /// ...when they come within this long...
    pub window: Duration,
    /// ...for this long.
    pub ttl: Duration,
}

#[derive(Debug, Clone, Copy)]
struct HostState {
    window_start: Instant,
    count: u32,
    passthrough_until: Option<Instant>,
}

impl HostState {
    fn is_relevant(&self, settings: &PinningSettings, now: Instant) -> bool {
        self.passthrough_until.is_some_and(|t| now < t)
            || now.saturating_duration_since(self.window_start) < settings.window
    }
}

/// Per-host rejection counts and passthrough deadlines, bounded.
#[derive(Debug, Default)]
pub struct PinningTracker {
    settings: Option<PinningSettings>,
    hosts: DashMap<Host, HostState>,
}

impl PinningTracker {
    /// `None` disables the feature: nothing is tracked and nothing passes through.
    pub fn new(settings: Option<PinningSettings>) -> Self {
        PinningTracker {
            settings,
            hosts: DashMap::new(),
        }
    }

    /// Whether connections to `host` should be tunnelled instead of inspected right now.
    pub fn pinned_passthrough(&self, host: &Host, now: Instant) -> bool {
        self.hosts
            .get(host)
            .and_then(|s| s.passthrough_until)
            .is_some_and(|until| now < until)
    }

    /// Counts a client's rejection of the forged certificate; returns true when this one
    /// switched the host to passthrough.
    pub fn record_client_rejection(&self, host: &Host, now: Instant) -> bool {
        let Some(settings) = self.settings else {
            return false;
        };
        if !self.hosts.contains_key(host) && self.hosts.len() >= MAX_TRACKED_HOSTS {
            self.hosts.retain(|_, s| s.is_relevant(&settings, now));
            if self.hosts.len() >= MAX_TRACKED_HOSTS {
                return false;
            }
        }
        let mut state = self.hosts.entry(host.clone()).or_insert(HostState {
            window_start: now,
            count: 0,
            passthrough_until: None,
        });
        if now.saturating_duration_since(state.window_start) >= settings.window {
            state.window_start = now;
            state.count = 0;
        }
        state.count = state.count.saturating_add(1);
        let active = state.passthrough_until.is_some_and(|t| now < t);
        if state.count >= settings.rejections.max(1) && !active {
            state.passthrough_until = Some(now + settings.ttl);
            state.count = 0;
            tracing::warn!(host = %host, ttl = ?settings.ttl, "clients reject the forged certificate; tunnelling this host instead of inspecting");
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests;
