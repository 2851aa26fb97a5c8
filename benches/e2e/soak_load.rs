//! The soak's clients: one tokio task per connection, asleep between small exchanges, so that
//! tens of thousands cost the client little. A tunnel sends 16 bytes every 5 s to an echo
//! origin and reads them back; an interception makes one GET every 3 s (HTTP/1.1 keep-alive
//! or HTTP/2). A connection that fails is counted by kind and not reopened. Every wait is
//! bounded; every loop ends on the stop token.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use crate::client::{Port, Route, STEP_TIMEOUT, drain_body, get_h1, h2_session};
use crate::pki::ALPN_H2;

/// Bytes each way per tunnel exchange (issue 15: "a trickle of bytes each way").
pub const TRICKLE: usize = 16;
pub const TUNNEL_EVERY: Duration = Duration::from_secs(5);
/// "A request every few seconds" on each intercepted connection.
pub const REQUEST_EVERY: Duration = Duration::from_secs(3);
/// Response size of an intercepted request.
pub const REQUEST_BODY: u64 = 1024;
/// One exchange or request may take this long before it counts as an error.
const OP_TIMEOUT: Duration = Duration::from_secs(10);
/// The echo origin reads at most this much at a time: a trickle needs no more.
const ECHO_BUF: usize = 256;

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Kind {
    Tunnel,
    H1,
    H2,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Tunnel, Kind::H1, Kind::H2];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Tunnel => "tunnel",
            Kind::H1 => "intercepted HTTP/1.1",
            Kind::H2 => "intercepted HTTP/2",
        }
    }

    fn every(self) -> Duration {
        match self {
            Kind::Tunnel => TUNNEL_EVERY,
            Kind::H1 | Kind::H2 => REQUEST_EVERY,
        }
    }
}

/// Failed connections: (kind, stage) → (count, first message).
pub type ErrorsByKind = BTreeMap<(Kind, &'static str), (u64, String)>;

/// Counts shared by every client task.
#[derive(Default)]
pub struct Tally {
    opened: [AtomicU64; 3],
    /// Connections that ended their set-up, opened or failed.
    pub settled: AtomicU64,
    exchanges: [AtomicU64; 3],
    errors: Mutex<ErrorsByKind>,
}

impl Tally {
    pub fn opened(&self, kind: Kind) -> u64 {
        self.opened[kind as usize].load(Ordering::Relaxed)
    }

    pub fn exchanges(&self, kind: Kind) -> u64 {
        self.exchanges[kind as usize].load(Ordering::Relaxed)
    }

    fn error(&self, kind: Kind, stage: &'static str, e: &anyhow::Error) {
        let mut errors = self.errors.lock().unwrap_or_else(|p| p.into_inner());
        let entry = errors
            .entry((kind, stage))
            .or_insert_with(|| (0, format!("{e:#}")));
        entry.0 += 1;
    }

    pub fn errors(&self) -> ErrorsByKind {
        self.errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// What one client task brings back: its exchanges' latencies in microseconds.
pub type Latencies = Vec<u32>;

/// Everything one client task needs.
#[derive(Clone)]
pub struct Client {
    pub route: Route,
    pub setup: Arc<Semaphore>,
    pub tally: Arc<Tally>,
    pub stop: CancellationToken,
}

/// Spawns `count` clients of `kind`, their first exchanges spread evenly over one period.
pub fn spawn(set: &mut JoinSet<(Kind, Latencies)>, client: &Client, kind: Kind, count: usize) {
    for i in 0..count {
        let phase = kind.every().mul_f64(i as f64 / count.max(1) as f64);
        let c = client.clone();
        set.spawn(async move { (kind, c.run(kind, phase).await) });
    }
}

/// An open connection of one kind.
enum Conn {
    Tunnel(TcpStream, u64),
    H1(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    H2 {
        sender: hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
        /// Ends the connection's driver task when the connection is dropped.
        _driver: crate::scenarios::AbortOnDrop,
    },
}

impl Client {
    async fn run(self, kind: Kind, phase: Duration) -> Latencies {
        let mut latencies = Vec::new();
        let opened = {
            let Ok(_permit) = self.setup.acquire().await else {
                return latencies;
            };
            let opened = tokio::select! {
                _ = self.stop.cancelled() => return latencies,
                o = timeout(STEP_TIMEOUT, self.open(kind)) => o,
            };
            self.tally.settled.fetch_add(1, Ordering::Relaxed);
            opened.unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")))
        };
        let mut conn = match opened {
            Ok(conn) => conn,
            Err(e) => {
                self.tally.error(kind, "set-up", &e);
                return latencies;
            }
        };
        self.tally.opened[kind as usize].fetch_add(1, Ordering::Relaxed);
        let mut next = Instant::now() + phase;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return latencies,
                _ = sleep_until(next) => {}
            }
            next += kind.every();
            let t0 = Instant::now();
            match timeout(OP_TIMEOUT, self.exchange(&mut conn)).await {
                Ok(Ok(())) => {
                    let us = u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX);
                    latencies.push(us);
                    self.tally.exchanges[kind as usize].fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => {
                    self.tally.error(kind, "exchange", &e);
                    return latencies;
                }
                Err(_) => {
                    let e = anyhow::anyhow!("no answer in {OP_TIMEOUT:?}");
                    self.tally.error(kind, "exchange timed out", &e);
                    return latencies;
                }
            }
        }
    }

    async fn open(&self, kind: Kind) -> Result<Conn> {
        let r = &self.route;
        match kind {
            Kind::Tunnel => Ok(Conn::Tunnel(r.open(Port::Raw).await?, 0)),
            Kind::H1 => {
                let mut tls = r.open_tls(&r.tls_h1).await?;
                get_h1(&mut tls, &r.authority(), REQUEST_BODY, false).await?;
                Ok(Conn::H1(Box::new(tls)))
            }
            Kind::H2 => {
                let tls = r.open_tls(&r.tls_h2).await?;
                ensure!(
                    tls.get_ref().1.alpn_protocol() == Some(ALPN_H2),
                    "h2 not negotiated"
                );
                let (sender, driver) = h2_session(tls, &r.authority(), REQUEST_BODY).await?;
                Ok(Conn::H2 {
                    sender,
                    _driver: crate::scenarios::AbortOnDrop::new(driver),
                })
            }
        }
    }

    async fn exchange(&self, conn: &mut Conn) -> Result<()> {
        match conn {
            Conn::Tunnel(tcp, sent) => {
                // Numbered bytes: an echo of stale or misplaced data does not pass.
                let out: [u8; TRICKLE] = std::array::from_fn(|i| (*sent as usize + i) as u8);
                tcp.write_all(&out).await.context("write")?;
                let mut back = [0u8; TRICKLE];
                tcp.read_exact(&mut back).await.context("read")?;
                ensure!(back == out, "echo differs");
                *sent += TRICKLE as u64;
                Ok(())
            }
            Conn::H1(tls) => {
                get_h1(tls.as_mut(), &self.route.authority(), REQUEST_BODY, false).await?;
                Ok(())
            }
            Conn::H2 { sender, .. } => {
                sender.ready().await.context("h2 connection gone")?;
                let request = hyper::Request::get(format!(
                    "https://{}/bytes/{REQUEST_BODY}",
                    self.route.authority()
                ))
                .body(http_body_util::Empty::new())?;
                let response = sender.send_request(request).await?;
                if response.status() != hyper::StatusCode::OK {
                    bail!("h2 status {}", response.status());
                }
                let got = drain_body(response.into_body()).await?;
                ensure!(got == REQUEST_BODY, "h2 body {got} of {REQUEST_BODY} bytes");
                Ok(())
            }
        }
    }
}

/// A loopback echo origin with a small buffer per connection; stops when dropped.
pub struct Echo {
    pub addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Echo {
    pub async fn start() -> Result<Echo> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accept = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            conns.spawn(echo(stream));
                        }
                        // EMFILE and friends: back off instead of spinning.
                        Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Ok(Echo { addr, accept })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        // The connections live in the accept task's JoinSet: aborting it ends them too.
        self.accept.abort();
    }
}

async fn echo(mut stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let mut buf = [0u8; ECHO_BUF];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if stream.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}
