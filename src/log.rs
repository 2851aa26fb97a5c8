//! The access record: created at accept, filled in stage by stage, emitted exactly once — also
//! when the connection dies early (it says in which stage). Pure: it formats and hands the
//! record to `tracing`; where the record goes is the subscriber's business.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::time::Instant;

use crate::error::{ErrorKind, ProxyError};
use crate::metrics::Metrics;
use crate::outcome::Outcome;
use crate::policy::{Action, Judgement, Policy};
use crate::request::{Request, Via};
use crate::target::{Host, Target};
use crate::tls::{ClientHelloFacts, EchSeen, Ja4, TlsLeg};

pub mod conn_id;
pub use conn_id::ConnId;

/// The stage a connection reached; an error record names the stage it died in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The front-end: reading the request head or the SOCKS5 handshake.
    Handshake,
    /// Judging the target, an address or the SNI.
    Policy,
    /// Resolving and connecting, directly or through the upstream proxy.
    Dial,
    /// Reading the client's TLS ClientHello.
    ClientHello,
    /// Relaying opaque bytes.
    Tunnel,
    /// Terminating TLS and relaying HTTP inside it.
    Intercept,
    /// Plain-HTTP forwarding of one request.
    Forward,
}

impl Stage {
    /// The name in the record's `stage` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Handshake => "handshake",
            Stage::Policy => "policy",
            Stage::Dial => "dial",
            Stage::ClientHello => "client_hello",
            Stage::Tunnel => "tunnel",
            Stage::Intercept => "intercept",
            Stage::Forward => "forward",
        }
    }
}

/// How long a connection's origin leg took to set up, in microseconds, each `None` where ward
/// did not do that step: no lookup for an address, or for a name an upstream proxy resolves;
/// no TLS handshake of its own for a tunnel. `connect` is the TCP connect to the origin, or to
/// the upstream proxy and its answer to ward's CONNECT.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Setup {
    /// Looking the name up (hosts overrides, then DNS).
    pub dns_us: Option<u64>,
    /// Connecting (and, through an upstream proxy, its CONNECT exchange).
    pub connect_us: Option<u64>,
    /// The TLS handshake with the origin (interception only).
    pub ssl_us: Option<u64>,
}

/// One connection's (or one forwarded request's) access record.
#[derive(Debug)]
pub struct AccessRecord {
    started: Instant,
    /// Joins this record with the flow records of the same connection.
    pub conn_id: ConnId,
    /// The client's address as ward saw it.
    pub client: SocketAddr,
    /// The authenticated user, when `users` is set.
    pub user: Option<String>,
    /// How the client asked: HTTP CONNECT, plain HTTP or SOCKS5.
    pub via: Option<Via>,
    /// The host and port the client asked for.
    pub target: Option<Target>,
    /// The server name the connection was judged for: the ClientHello's SNI or, when the hello
    /// offers ECH, the name asked for (none when an address was asked for); the cleartext SNI
    /// is then `ech_outer_sni`.
    pub sni: Option<Host>,
    /// The first ALPN protocol the client offered.
    pub alpn: Option<String>,
    /// What the ClientHello's ECH extension showed (GREASE and real ECH look alike).
    pub ech: EchSeen,
    /// The cleartext SNI of a hello that offers ECH: ECH's public name, or under GREASE the
    /// real name.
    pub ech_outer_sni: Option<Host>,
    /// The hello offers ECH to a target asked for by IP literal: no name says where it goes.
    pub ech_unverifiable_destination: bool,
    /// The ClientHello's JA4 fingerprint, once one was read.
    pub ja4: Option<Ja4>,
    /// What the policy decided.
    pub action: Option<Action>,
    /// The rule that decided, by name (or `rules[i]`).
    pub rule: Option<String>,
    /// The address ward connected to (the origin, or the upstream proxy).
    pub upstream: Option<SocketAddr>,
    /// The upstream proxy taken, by its name in `upstreams` (`default` for a top-level URL).
    pub upstream_name: Option<String>,
    /// Bytes relayed from the client to the upstream side.
    pub bytes_up: u64,
    /// Bytes relayed from the upstream side to the client.
    pub bytes_down: u64,
    /// How far the connection got.
    pub stage: Stage,
    /// How it ended, when known: written by its log name ("client_closed", "idle_timeout", ...).
    pub outcome: Option<Outcome>,
    /// What each TLS leg of an interception negotiated (`tls_client`, `kx_upstream`, …).
    pub legs: crate::tls::Legs,
    /// The error that ended the connection, with its detail.
    pub error: Option<(ErrorKind, String)>,
    /// Plain HTTP forwarding: the request's method.
    pub method: Option<String>,
    /// Plain HTTP forwarding: the response's status (ward's own, for a refusal).
    pub status: Option<u16>,
    /// How long the origin leg took to set up, for the first flow record's HAR timings.
    pub setup: Setup,
    metrics: Arc<Metrics>,
    emitted: bool,
}

impl AccessRecord {
    /// An empty record for a connection from `client`, started now.
    pub fn new(client: SocketAddr, metrics: Arc<Metrics>) -> Self {
        AccessRecord {
            started: Instant::now(),
            conn_id: ConnId::next(),
            client,
            user: None,
            via: None,
            target: None,
            sni: None,
            alpn: None,
            ech: EchSeen::None,
            ech_outer_sni: None,
            ech_unverifiable_destination: false,
            ja4: None,
            action: None,
            rule: None,
            upstream: None,
            upstream_name: None,
            bytes_up: 0,
            bytes_down: 0,
            stage: Stage::Handshake,
            outcome: None,
            legs: Default::default(),
            error: None,
            method: None,
            status: None,
            setup: Setup::default(),
            metrics,
            emitted: false,
        }
    }

    /// Copies what the front-end learnt: user, protocol and target.
    pub fn set_request(&mut self, req: &Request) {
        self.user.clone_from(&req.user);
        self.via = Some(req.via);
        self.target = Some(req.target.clone());
    }

    /// What the ClientHello showed, read against the name asked for (`asked`).
    pub fn note_hello(&mut self, hello: &ClientHelloFacts, asked: &Host) {
        let offered = hello.ech.offered();
        self.alpn = hello.alpn.first().cloned();
        self.ja4 = Some(hello.ja4);
        self.ech = EchSeen::of(hello.ech, asked, hello.sni.as_ref());
        self.ech_outer_sni = hello.sni.clone().filter(|_| offered);
        self.ech_unverifiable_destination = offered && matches!(asked, Host::Ip(_));
        // The name the judge read (`Facts::hello_sni`): under ECH the one asked for, or none
        // when that was an address.
        self.sni = match asked {
            _ if !offered => hello.sni.clone(),
            Host::Name(_) => Some(asked.clone()),
            Host::Ip(_) => None,
        };
    }

    /// The judge's answer so far: what happens to the connection, and the rule that said so.
    pub fn note_judgement(&mut self, policy: &Policy, judgement: &Judgement) {
        self.action = Some(judgement.action());
        self.rule = policy.rule_name(&judgement.decision).map(str::to_owned);
    }

    /// The process's metrics, for the stages that time a step (connect, first byte).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Records the error that ends the connection (the last one set wins).
    pub fn set_error(&mut self, err: &ProxyError) {
        self.error = Some((err.kind, err.detail.clone()));
    }

    /// Drops the record unemitted: the connection's work is recorded elsewhere (the plain-HTTP
    /// forwarder writes one record per request).
    pub fn discard(&mut self) {
        self.emitted = true;
    }

    /// Emits the record now (once). Later calls, and the drop, do nothing.
    pub fn emit(&mut self) {
        if std::mem::replace(&mut self.emitted, true) {
            return;
        }
        if let Some(action) = self.action {
            self.metrics.record_action(action);
            self.metrics.record_rule(action, self.rule.as_deref());
        }
        self.metrics.duration.0.observe(self.started.elapsed());
        if let Some((kind, _)) = &self.error {
            self.metrics.record_error(*kind);
        }
        self.metrics.record_bytes(self.bytes_up, self.bytes_down);
        let duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
        let (error, detail) = match &self.error {
            Some((kind, detail)) => (kind.log_name(), detail.as_str()),
            None => ("-", "-"),
        };
        let outcome = match (self.outcome, &self.error) {
            (Some(o), _) => o,
            (None, Some(_)) => Outcome::Failed,
            (None, None) => Outcome::Closed,
        };
        tracing::info!(
            target: "ward::access",
            conn_id = %self.conn_id,
            client = %self.client,
            user = %opt(self.user.clone()),
            via = %self.via.map_or("-", Via::as_str),
            target = %opt(self.target.as_ref().map(Target::to_string)),
            sni = %opt(self.sni.as_ref().map(Host::to_string)),
            alpn = %opt(self.alpn.clone()),
            ech = %self.ech.log_name(),
            ech_outer_sni = %opt(self.ech_outer_sni.as_ref().map(Host::to_string)),
            ech_unverifiable_destination = self.ech_unverifiable_destination,
            ja4 = %opt(self.ja4.map(|j| j.to_string())),
            ja4_upstream = %opt(self.legs.ja4_upstream.map(|j| j.to_string())),
            action = %action_name(self.action, outcome),
            rule = %opt(self.rule.clone()),
            upstream = %opt(self.upstream.map(|a| a.to_string())),
            upstream_name = %opt(self.upstream_name.clone()),
            method = %opt(self.method.clone()),
            status = self.status.unwrap_or(0),
            bytes_up = self.bytes_up,
            bytes_down = self.bytes_down,
            duration_ms = %format_ms(duration_ms),
            stage = %self.stage.as_str(),
            outcome = %outcome.log_name(),
            error = %error,
            detail = %detail,
            tls_client = %leg(&self.legs.client, |l| &l.version),
            cipher_client = %leg(&self.legs.client, |l| &l.cipher),
            kx_client = %leg(&self.legs.client, |l| &l.kx),
            tls_upstream = %leg(&self.legs.upstream, |l| &l.version),
            cipher_upstream = %leg(&self.legs.upstream, |l| &l.cipher),
            kx_upstream = %leg(&self.legs.upstream, |l| &l.kx),
            "access"
        );
    }
}

impl Drop for AccessRecord {
    /// A connection task that is cancelled or panics still leaves its record.
    fn drop(&mut self) {
        self.emit();
    }
}

/// The record's `action`: a host in pinning passthrough was tunnelled although its rule said
/// inspect, and the record says so (`action=tunnel outcome=pinned_passthrough`).
fn action_name(action: Option<Action>, outcome: Outcome) -> &'static str {
    match (action, outcome) {
        (Some(_), Outcome::PinnedPassthrough) => "tunnel",
        (a, _) => a.map_or("-", Action::as_str),
    }
}

/// One leg's field, `-` when the leg has no finished handshake (or is not ward's: a tunnel).
fn leg<'a>(l: &'a Option<TlsLeg>, pick: impl Fn(&'a TlsLeg) -> &'a String) -> &'a str {
    l.as_ref().map_or("-", |l| pick(l).as_str())
}

fn format_ms(ms: f64) -> String {
    let mut s = String::with_capacity(12);
    let _ = write!(s, "{ms:.3}");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_once() {
        let mut rec = AccessRecord::new("127.0.0.1:5555".parse().unwrap(), Arc::default());
        rec.emit();
        assert!(rec.emitted);
        rec.emit();
        drop(rec);
    }
}
