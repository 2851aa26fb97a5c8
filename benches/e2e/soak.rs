//! The soak (`--soak`, issue 15): one fresh ward holding thousands of tunnels with a trickle
//! each way and a thousand interceptions making a request every few seconds, for minutes;
//! ward's RSS sampled every second, its `/metrics` open-connection gauge read before, during
//! and after. Collects the figures; `soak_report` renders them. Every phase has a deadline.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep, timeout};
use tokio_util::sync::CancellationToken;

use crate::opts::Soak;
use crate::origin::Origin;
use crate::peers::{self, PeerEnv, PeerKind, Running};
use crate::pki::Pki;
use crate::soak_load::{self, Client, Echo, Kind, Latencies, Tally};
use crate::soak_report::{Figures, KindFigures};
use crate::subjects::SUBJECTS;
use crate::variants::Variant;

/// Concurrent set-ups during the ramp (TCP connect, CONNECT, and TLS for interceptions).
pub const SETUP_CONCURRENCY: usize = 64;
/// The ramp gives up on connections not open after this long.
const RAMP_CAP: Duration = Duration::from_secs(300);
/// ward idles this long after starting before its baseline is read.
const SETTLE: Duration = Duration::from_secs(2);
/// RSS is sampled this often (the issue: every second).
const RSS_EVERY: Duration = Duration::from_secs(1);
/// Progress, the gauge and the liveness check this often while the connections are held.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// The steady part of the hold starts this long after the ramp (a fifth of a short hold).
const STEADY_AFTER: Duration = Duration::from_secs(60);
/// Client tasks get this long to notice the stop before they are aborted.
const STOP_CAP: Duration = Duration::from_secs(20);
/// The gauge must be back at its baseline within this long after the clients have gone.
pub const BACK_TO_BASELINE: Duration = Duration::from_secs(30);
/// ward's RSS is read this long after the clients have gone.
pub const AFTER_SAMPLES: Duration = Duration::from_secs(5);
/// The second opening of the same connections is held this long before its RSS is read.
pub const REOPEN_HOLD: Duration = Duration::from_secs(20);
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Inputs<'a> {
    pub soak: Soak,
    pub pki: &'a Pki,
    pub origin: &'a Origin,
    pub nofile: u64,
    /// Connections the descriptor limit lets one ward (and this process) hold.
    pub fit: usize,
    pub ward: &'a Path,
}

pub async fn run(i: Inputs<'_>) -> Result<Figures> {
    let intercepts = i.soak.intercepts.min(i.fit);
    let tunnels = i.soak.tunnels.min(i.fit - intercepts);
    let echo = Echo::start().await?;
    let env = PeerEnv {
        pki: i.pki,
        nofile: i.nofile,
    };
    let mut running = peers::start(PeerKind::Ward, Variant::Stock, i.ward, &env)?;
    let admin = running
        .admin_port
        .context("ward started without its admin")?;
    let pid = running.pid();
    let t0 = Instant::now();
    sleep(SETTLE).await;
    let before = scrape(admin).await?;
    let mut f = Figures {
        asked: i.soak,
        tunnels,
        intercepts,
        fit: i.fit,
        nofile: i.nofile,
        gauge_before: gauge(&before, "ward_open_connections"),
        ward_errors_before: sum_series(&before, "ward_errors_total{"),
        load_start: crate::load_average(),
        rss_baseline: crate::process::rss_kib(pid),
        ..Figures::default()
    };

    let stop_sampler = CancellationToken::new();
    let sampler = tokio::spawn(sample_rss(pid, t0, stop_sampler.clone()));

    let routes = routes(&i, &running, echo.addr)?;
    let tally = Arc::new(Tally::default());
    let stop = CancellationToken::new();
    let setup = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let client = |route| Client {
        route,
        setup: setup.clone(),
        tally: tally.clone(),
        stop: stop.clone(),
    };
    f.ramp_start = t0.elapsed().as_secs_f64();
    let set = open_all(
        &client(routes.0.clone()),
        &client(routes.1.clone()),
        tunnels,
        intercepts,
    );
    ramp(&tally, (tunnels + intercepts) as u64, t0).await;
    f.ramp_end = t0.elapsed().as_secs_f64();
    f.load_ramp_end = crate::load_average();
    eprintln!("soak: ramp-up done in {:.1} s", f.ramp_end - f.ramp_start);

    let cpu = (cpu_secs(pid), cpu_secs(std::process::id()));
    let hold_end = t0 + Duration::from_secs_f64(f.ramp_end) + i.soak.hold;
    while Instant::now() < hold_end {
        sleep(PROGRESS_EVERY.min(hold_end - Instant::now())).await;
        if let Err(e) = running.child.check_running() {
            f.ward_died = Some(format!("{e:#}"));
            break;
        }
        let g = scrape(admin)
            .await
            .ok()
            .and_then(|m| gauge(&m, "ward_open_connections"));
        let t = t0.elapsed().as_secs_f64();
        f.gauge_during.extend(g.map(|g| (t, g)));
        eprintln!(
            "soak: {t:.0} s, RSS {} MiB, open {g:?}, exchanges {}, failed connections {}",
            crate::process::rss_kib(pid).unwrap_or(0) >> 10,
            Kind::ALL.map(|k| tally.exchanges(k)).iter().sum::<u64>(),
            tally.errors().values().map(|(n, _)| n).sum::<u64>(),
        );
    }
    f.hold_end = t0.elapsed().as_secs_f64();
    f.steady_start = (f.ramp_end + STEADY_AFTER.min(i.soak.hold / 5).as_secs_f64()).min(f.hold_end);
    f.ward_cpu_secs = cpu.0.and_then(|b| Some(cpu_secs(pid)? - b));
    f.bench_cpu_secs = cpu.1.and_then(|b| Some(cpu_secs(std::process::id())? - b));
    f.load_hold_end = crate::load_average();

    stop.cancel();
    let latencies = stop_clients(set).await;
    f.clients_gone = t0.elapsed().as_secs_f64();
    for kind in Kind::ALL {
        let mut l: Vec<u32> = latencies
            .iter()
            .filter(|(k, _)| *k == kind)
            .flat_map(|(_, l)| l.iter().copied())
            .collect();
        l.sort_unstable();
        f.kinds.push(KindFigures {
            kind,
            opened: tally.opened(kind),
            exchanges: tally.exchanges(kind),
            p50_ms: percentile_ms(&l, 0.50),
            p99_ms: percentile_ms(&l, 0.99),
        });
    }
    f.errors = tally.errors();
    back_to_baseline(admin, &mut f, t0).await;
    sleep(AFTER_SAMPLES).await;
    f.rss_after = crate::process::rss_kib(pid);

    // The same connections again, briefly: memory the first round freed but kept (the
    // allocator's) is reused, where memory it leaked adds to each round's peak.
    for _ in 0..i.soak.reopens {
        let again = Arc::new(Tally::default());
        let stop_again = CancellationToken::new();
        let client = |route| Client {
            route,
            setup: setup.clone(),
            tally: again.clone(),
            stop: stop_again.clone(),
        };
        let set = open_all(
            &client(routes.0.clone()),
            &client(routes.1.clone()),
            tunnels,
            intercepts,
        );
        ramp(&again, (tunnels + intercepts) as u64, t0).await;
        sleep(REOPEN_HOLD).await;
        let peak = crate::process::rss_kib(pid);
        stop_again.cancel();
        stop_clients(set).await;
        let opened = Kind::ALL.map(|k| again.opened(k)).iter().sum();
        let failed = again.errors().values().map(|(n, _)| n).sum();
        let mut f2 = Figures {
            gauge_before: f.gauge_before,
            ..Figures::default()
        };
        back_to_baseline(admin, &mut f2, Instant::now()).await;
        f.reopens
            .push((opened, failed, peak, f2.back_after_secs.is_some()));
    }
    stop_sampler.cancel();
    f.rss = sampler.await.unwrap_or_default();
    if let Ok(m) = scrape(admin).await {
        f.ward_errors_after = sum_series(&m, "ward_errors_total{");
    }
    drop(running);
    drop(echo);
    Ok(f)
}

/// The tunnel route (raw bytes to the echo origin) and the interception route, through ward.
fn routes(
    i: &Inputs<'_>,
    running: &Running,
    echo: std::net::SocketAddr,
) -> Result<(crate::client::Route, crate::client::Route)> {
    let subject = |name: &str| {
        SUBJECTS
            .iter()
            .find(|s| s.name == name)
            .with_context(|| format!("no subject {name}"))
    };
    let mut tunnel = subject("ward")?.route(i.origin, Some(running), i.pki)?;
    tunnel.raw_origin = echo;
    let inspect = subject("ward inspect")?.route(i.origin, Some(running), i.pki)?;
    Ok((tunnel, inspect))
}

/// One client task per connection: the interceptions (half HTTP/1.1, half HTTP/2), the tunnels.
fn open_all(
    tunnel: &Client,
    inspect: &Client,
    tunnels: usize,
    intercepts: usize,
) -> JoinSet<(Kind, Latencies)> {
    let mut set = JoinSet::new();
    soak_load::spawn(&mut set, inspect, Kind::H1, intercepts.div_ceil(2));
    soak_load::spawn(&mut set, inspect, Kind::H2, intercepts / 2);
    soak_load::spawn(&mut set, tunnel, Kind::Tunnel, tunnels);
    set
}

/// Waits until every client has opened its connection or failed to (or the cap).
async fn ramp(tally: &Tally, total: u64, t0: Instant) {
    let cap = Instant::now() + RAMP_CAP;
    let mut shown = Instant::now();
    while tally.settled.load(Ordering::Relaxed) < total && Instant::now() < cap {
        sleep(Duration::from_millis(250)).await;
        if shown.elapsed() >= Duration::from_secs(5) {
            shown = Instant::now();
            eprintln!(
                "soak: {:.0} s, ramp-up {} of {total}",
                t0.elapsed().as_secs_f64(),
                tally.settled.load(Ordering::Relaxed)
            );
        }
    }
}

/// Joins the client tasks (they end on the stop token), aborting stragglers after a bound.
async fn stop_clients(mut set: JoinSet<(Kind, Latencies)>) -> Vec<(Kind, Latencies)> {
    let cap = Instant::now() + STOP_CAP;
    let mut out = Vec::with_capacity(set.len());
    while let Ok(Some(joined)) = tokio::time::timeout_at(cap, set.join_next()).await {
        out.extend(joined.ok());
    }
    set.abort_all();
    // Bounded: abort_all leaves only tasks that end at their next poll.
    while set.join_next().await.is_some() {}
    out
}

/// Polls the gauge until it is back at its baseline (or the bound).
async fn back_to_baseline(admin: u16, f: &mut Figures, t0: Instant) {
    let Some(baseline) = f.gauge_before else {
        return;
    };
    let started = Instant::now();
    while started.elapsed() < BACK_TO_BASELINE {
        if let Some(g) = scrape(admin)
            .await
            .ok()
            .and_then(|m| gauge(&m, "ward_open_connections"))
        {
            f.gauge_after = Some(g);
            if g <= baseline {
                f.back_after_secs = Some(t0.elapsed().as_secs_f64() - f.clients_gone);
                return;
            }
        }
        sleep(Duration::from_millis(250)).await;
    }
}

/// (seconds since `t0`, VmRSS in KiB) every second until stopped.
async fn sample_rss(pid: u32, t0: Instant, stop: CancellationToken) -> Vec<(f64, u64)> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(RSS_EVERY);
    // Bounded by the stop token; the count cap is a second guard (a day of samples).
    while samples.len() < 86_400 {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        if let Some(kib) = crate::process::rss_kib(pid) {
            samples.push((t0.elapsed().as_secs_f64(), kib));
        }
    }
    samples
}

fn cpu_secs(pid: u32) -> Option<f64> {
    Some(crate::process::cpu_ticks(pid)? as f64 / crate::process::ticks_per_sec())
}

fn percentile_ms(sorted: &[u32], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    Some(f64::from(sorted[(last as f64 * p).round() as usize]) / 1000.0)
}

/// ward's `/metrics` (the admin on loopback, no token in the bench's policy).
async fn scrape(port: u16) -> Result<String> {
    let fetch = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await?;
        let mut body = Vec::new();
        s.read_to_end(&mut body).await?;
        anyhow::Ok(String::from_utf8_lossy(&body).into_owned())
    };
    timeout(SCRAPE_TIMEOUT, fetch)
        .await
        .context("/metrics timed out")?
}

/// The value of an unlabelled series.
fn gauge(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The sum of a labelled series over its labels (`prefix` ends with `{`).
fn sum_series(text: &str, prefix: &str) -> Option<u64> {
    let values = text
        .lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.trim().parse::<u64>().ok());
    Some(values.sum())
}
