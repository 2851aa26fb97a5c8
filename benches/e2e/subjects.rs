//! What is measured: one row of the report per subject (a proxy used one way: tunnel or
//! intercept, CONNECT or SOCKS5), and the client route that reaches the origin through it.

use anyhow::Result;

use crate::client::{Front, Route};
use crate::origin::Origin;
use crate::peers::{PeerKind, Running};
use crate::pki::{ALPN_H1, ALPN_H2, INSPECT_NAME, ORIGIN_NAME, Pki, client_config};
use crate::variants::Variant;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Direct,
    Connect,
    Socks5,
}

pub struct Subject {
    pub name: &'static str,
    pub peer: Option<PeerKind>,
    /// How that proxy is set up (ward with one worker, or as the bench config says).
    pub variant: Variant,
    pub via: Via,
    /// The proxy is told our `hosts` (ward's `hosts`, Squid's `hosts_file`) and is asked for
    /// the name; the others resolve with the system and are asked for 127.0.0.1.
    pub by_name: bool,
    pub intercept: bool,
    /// Measured only for the new-connection rate (the logging-cost rows).
    pub rate_only: bool,
    /// Also measured in the idle-memory scenario.
    pub memory: bool,
    /// Also measured in the cost model's scaling case (rules ×10, connections ×10).
    pub scaling: bool,
}

const fn subject(
    name: &'static str,
    peer: Option<PeerKind>,
    via: Via,
    by_name: bool,
    intercept: bool,
) -> Subject {
    Subject {
        name,
        peer,
        via,
        by_name,
        intercept,
        variant: Variant::Stock,
        rate_only: false,
        memory: true,
        scaling: peer.is_some(),
    }
}

/// A `--lb` row: HAProxy in front of one or two replicas, judged on speed alone (no memory
/// line, no scaling columns).
const fn behind_lb(name: &'static str, peer: PeerKind, intercept: bool) -> Subject {
    Subject {
        memory: false,
        scaling: false,
        ..subject(name, Some(peer), Via::Connect, true, intercept)
    }
}

pub const SUBJECTS: &[Subject] = &[
    Subject {
        memory: false,
        ..subject("direct", None, Via::Direct, true, false)
    },
    subject("ward", Some(PeerKind::Ward), Via::Connect, true, false),
    // What the second core buys: the same ward on one runtime worker.
    Subject {
        variant: Variant::OneWorker,
        memory: false,
        scaling: false,
        ..subject(
            "ward (1 worker)",
            Some(PeerKind::Ward),
            Via::Connect,
            true,
            false,
        )
    },
    Subject {
        memory: false,
        ..subject(
            "ward socks5",
            Some(PeerKind::Ward),
            Via::Socks5,
            true,
            false,
        )
    },
    subject(
        "ward inspect",
        Some(PeerKind::Ward),
        Via::Connect,
        true,
        true,
    ),
    Subject {
        rate_only: true,
        memory: false,
        scaling: false,
        ..subject(
            "ward, logs on",
            Some(PeerKind::WardLogs),
            Via::Connect,
            true,
            false,
        )
    },
    Subject {
        rate_only: true,
        memory: false,
        scaling: false,
        ..subject(
            "ward inspect, logs on",
            Some(PeerKind::WardLogs),
            Via::Connect,
            true,
            true,
        )
    },
    subject(
        "squid peek+splice",
        Some(PeerKind::Squid),
        Via::Connect,
        true,
        false,
    ),
    subject(
        "squid ssl-bump",
        Some(PeerKind::Squid),
        Via::Connect,
        true,
        true,
    ),
    subject(
        "tinyproxy",
        Some(PeerKind::Tinyproxy),
        Via::Connect,
        false,
        false,
    ),
    subject("dante", Some(PeerKind::Dante), Via::Socks5, false, false),
    subject(
        "mitmproxy tunnel",
        Some(PeerKind::MitmTunnel),
        Via::Connect,
        false,
        false,
    ),
    subject(
        "mitmproxy intercept",
        Some(PeerKind::MitmIntercept),
        Via::Connect,
        false,
        true,
    ),
    // The `--lb` rows: the client connects to HAProxy, which hands the bytes to a replica.
    behind_lb("haproxy → ward", PeerKind::WardBehindLb, false),
    behind_lb("haproxy → 2 wards", PeerKind::WardPairBehindLb, false),
    behind_lb("haproxy → ward inspect", PeerKind::WardBehindLb, true),
    behind_lb(
        "haproxy → 2 wards inspect",
        PeerKind::WardPairBehindLb,
        true,
    ),
];

/// The rows of the `--lb` comparison; the other rows of ward (SOCKS5, logs) stay out of it.
const LB_ROWS: &[&str] = &[
    "direct",
    "ward",
    "ward inspect",
    "haproxy → ward",
    "haproxy → 2 wards",
    "haproxy → ward inspect",
    "haproxy → 2 wards inspect",
];

impl Subject {
    pub fn in_lb_comparison(&self) -> bool {
        LB_ROWS.contains(&self.name)
    }

    pub fn sni(&self) -> &'static str {
        if self.intercept {
            INSPECT_NAME
        } else {
            ORIGIN_NAME
        }
    }

    /// The client route through `running` (None for direct).
    pub fn route(&self, origin: &Origin, running: Option<&Running>, pki: &Pki) -> Result<Route> {
        let proxy = |r: Option<&Running>| -> Result<std::net::SocketAddr> {
            let r = r.ok_or_else(|| anyhow::anyhow!("{} needs a running proxy", self.name))?;
            Ok(std::net::SocketAddr::from(([127, 0, 0, 1], r.port)))
        };
        let front = match self.via {
            Via::Direct => Front::Direct,
            Via::Connect => Front::Connect(proxy(running)?),
            Via::Socks5 => Front::Socks5(proxy(running)?),
        };
        // A tunnel must show the origin's own certificate; an interception the proxy's.
        let ca = match running {
            Some(r) if self.intercept => r.intercept_ca_pem.as_str(),
            _ => pki.bench_ca_pem.as_str(),
        };
        let host = if self.by_name {
            self.sni().to_owned()
        } else {
            "127.0.0.1".to_owned()
        };
        Ok(Route {
            front,
            host,
            sni: self.sni(),
            raw_origin: origin.raw_addr,
            tls_origin: origin.tls_addr,
            tls_h1: client_config(ca, &[ALPN_H1])?,
            tls_h2: client_config(ca, &[ALPN_H2, ALPN_H1])?,
        })
    }
}
