//! The measurements, each against one `Route`: tunnel throughput, new-connection rate with
//! latency, idle connections held open, and one large download with memory sampled. Every loop
//! is bounded by a count and a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout};

use crate::client::{Port, Route, STEP_TIMEOUT, get_h1, h2_session};
use crate::cost::ProxyCost;
use crate::pki::ALPN_H2;
use testkit::body::CHUNK;
use testkit::raw::read_head;

/// Response size of the new-connection scenario.
const RATE_BODY: u64 = 1024;
/// Response size on connections held idle: enough to prove the path carries data.
const IDLE_BODY: u64 = 64;
/// A streaming GET never reaches its end: 1 TiB.
const ENDLESS: u64 = 1 << 40;
const MAX_RATE_SAMPLES: usize = 2_000_000;
/// Concurrent handshakes while building up idle connections.
const SETUP_CONCURRENCY: usize = 64;
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// A CPU snapshot of the throughput window may come this fraction of the window late.
const PROBE_SLACK_DIVISOR: u32 = 10;

/// What the client received in a throughput window, and what the proxy spent on it.
pub struct Throughput {
    pub mib_per_s: f64,
    /// CPU seconds of the proxy (`pids`' process groups) in the window per GiB received.
    pub cpu_s_per_gib: Option<f64>,
}

/// Throughput in MiB/s of `streams` parallel downloads, counted after `warmup` for `length`,
/// with the CPU of the proxy's `pids` read at the window's edges.
pub async fn throughput(
    route: &Route,
    port: Port,
    streams: usize,
    warmup: Duration,
    length: Duration,
    pids: &[u32],
) -> Result<Throughput> {
    let mut readers = Vec::with_capacity(streams);
    for _ in 0..streams {
        readers.push(open_stream(route, port).await?);
    }
    let start = Instant::now() + warmup;
    let end = start + length;
    let pids = pids.to_vec();
    // On a thread of its own: the runtime's workers, busy decrypting eight streams on a loaded
    // machine, were seen to fire a timer 50-60 ms late.
    let probe = tokio::task::spawn_blocking(move || {
        let at = |t: Instant| {
            std::thread::sleep(t.saturating_duration_since(Instant::now()));
            (Instant::now(), ProxyCost::now(&pids))
        };
        (at(start), at(end))
    });
    let counted = Arc::new(AtomicU64::new(0));
    let mut set = JoinSet::new();
    for mut reader in readers {
        let counted = counted.clone();
        set.spawn(async move {
            let mut buf = vec![0u8; CHUNK];
            loop {
                let Ok(read) = tokio::time::timeout_at(end, reader.read(&mut buf)).await else {
                    return Ok(());
                };
                let n = read?;
                if n == 0 {
                    bail!("stream ended early");
                }
                // A read that is always ready never lets the timeout fire: check the clock.
                let now = Instant::now();
                if now >= end {
                    return Ok(());
                }
                if now >= start {
                    counted.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        joined??;
    }
    let bytes = counted.load(Ordering::Relaxed);
    let ((at_start, before), (at_end, after)) = probe.await?;
    // A snapshot taken late (this process starved on a loaded machine) would pair CPU and
    // bytes of different spans: no figure rather than a wrong one.
    let late = (at_start - start).max(at_end - end);
    let on_time = late <= length / PROBE_SLACK_DIVISOR;
    if !on_time {
        eprintln!(
            "    CPU snapshot {} ms late: no CPU figure",
            late.as_millis()
        );
    }
    Ok(Throughput {
        mib_per_s: bytes as f64 / length.as_secs_f64() / (1024.0 * 1024.0),
        cpu_s_per_gib: on_time
            .then(|| after.secs_per_gib_since(&before, bytes))
            .flatten(),
    })
}

type Reader = Box<dyn tokio::io::AsyncRead + Unpin + Send>;

/// One endless download: raw zeros after "GO", or an HTTP/1.1 body of 1 TiB over TLS.
async fn open_stream(route: &Route, port: Port) -> Result<Reader> {
    if port == Port::Raw {
        let mut tcp = route.open(Port::Raw).await?;
        tcp.write_all(b"GO\n").await?;
        return Ok(Box::new(tcp));
    }
    let mut tls = route.open_tls(&route.tls_h1).await?;
    let request = format!(
        "GET /bytes/{ENDLESS} HTTP/1.1\r\nHost: {}\r\n\r\n",
        route.authority()
    );
    tls.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    timeout(STEP_TIMEOUT, read_head(&mut tls, &mut head))
        .await?
        .context("no response head")?;
    Ok(Box::new(tls))
}

pub struct Rate {
    pub per_sec: f64,
    /// Connections completed, those that ended after the window included.
    pub completed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub first_error: Option<String>,
}

/// New connections, each: connect, proxy handshake, TLS handshake, GET 1 KiB, close.
pub async fn connect_rate(route: &Route, concurrency: usize, length: Duration) -> Result<Rate> {
    let started = Instant::now();
    let deadline = started + length;
    let mut set = JoinSet::new();
    for _ in 0..concurrency {
        let route = route.clone();
        set.spawn(async move {
            let (mut lat, mut late, mut errors, mut first_error) = (Vec::new(), 0, 0u64, None);
            while Instant::now() < deadline && lat.len() < MAX_RATE_SAMPLES {
                let t0 = Instant::now();
                match timeout(STEP_TIMEOUT, one_connection(&route)).await {
                    // Only connections completed inside the window count towards the rate.
                    Ok(Ok(())) if Instant::now() <= deadline => lat.push(t0.elapsed()),
                    Ok(Ok(())) => late += 1,
                    Ok(Err(e)) => {
                        errors += 1;
                        first_error.get_or_insert(format!("{e:#}"));
                    }
                    Err(_) => {
                        errors += 1;
                        first_error.get_or_insert("timed out".to_owned());
                    }
                }
            }
            (lat, late, errors, first_error)
        });
    }
    let (mut all, mut late_total, mut errors, mut first_error) = (Vec::new(), 0u64, 0, None);
    while let Some(joined) = set.join_next().await {
        let (lat, late, e, first) = joined?;
        all.extend(lat);
        late_total += late;
        errors += e;
        first_error = first_error.or(first);
    }
    if all.is_empty() && late_total == 0 {
        bail!(
            "no connection succeeded: {}",
            first_error.unwrap_or_default()
        );
    }
    all.sort_unstable();
    // NaN (shown as –) when every connection ended after the window: slow proxies at 10× the
    // concurrency, where only the CPU per connection is wanted.
    let pct = |p: f64| {
        let i = ((all.len().max(1) - 1) as f64 * p).round() as usize;
        all.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
    };
    Ok(Rate {
        per_sec: all.len() as f64 / length.as_secs_f64(),
        completed: all.len() as u64 + late_total,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        errors,
        first_error,
    })
}

/// One connection as the new-connection scenario makes them: through a fresh proxy it takes
/// what is set up lazily (a forged leaf, a helper process) off the first measurement.
pub async fn one_connection(route: &Route) -> Result<()> {
    let mut tls = route.open_tls(&route.tls_h1).await?;
    get_h1(&mut tls, &route.authority(), RATE_BODY, true).await?;
    let _ = tls.shutdown().await;
    Ok(())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Idle {
    /// TLS with ALPN http/1.1, one keep-alive GET, then silence.
    H1,
    /// TLS with ALPN h2 (and http/1.1), an HTTP/2 session with one GET, then silence.
    H2,
}

/// An open connection kept for its memory; dropping it closes it.
pub enum Held {
    H1 {
        _stream: Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    },
    H2 {
        _sender: hyper::client::conn::http2::SendRequest<http_body_util::Empty<bytes::Bytes>>,
        _driver: AbortOnDrop,
    },
}

pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    pub fn new(task: tokio::task::JoinHandle<()>) -> AbortOnDrop {
        AbortOnDrop(task)
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub struct HeldSet {
    pub held: Vec<Held>,
    pub errors: usize,
    pub first_error: Option<String>,
}

/// Opens up to `count` connections (at most `SETUP_CONCURRENCY` handshakes at once) and
/// returns those that succeeded before `cap`.
pub async fn hold_idle(route: &Route, mode: Idle, count: usize, cap: Duration) -> HeldSet {
    let deadline = Instant::now() + cap;
    let permits = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut set = JoinSet::new();
    let mut out = HeldSet {
        held: Vec::with_capacity(count),
        errors: 0,
        first_error: None,
    };
    for _ in 0..count {
        let Ok(Ok(permit)) =
            tokio::time::timeout_at(deadline, permits.clone().acquire_owned()).await
        else {
            break;
        };
        let route = route.clone();
        set.spawn(async move {
            let held = timeout(STEP_TIMEOUT, open_idle(&route, mode)).await;
            drop(permit);
            held.unwrap_or_else(|_| Err(anyhow::anyhow!("timed out")))
        });
        // Collect finished ones as we go so that errors stop the build-up early.
        while let Some(joined) = set.try_join_next() {
            collect(&mut out, joined);
        }
        if out.errors > count / 10 + 10 {
            break;
        }
    }
    while let Ok(Some(joined)) =
        tokio::time::timeout_at(deadline + STEP_TIMEOUT, set.join_next()).await
    {
        collect(&mut out, joined);
    }
    out
}

fn collect(out: &mut HeldSet, joined: Result<Result<Held>, tokio::task::JoinError>) {
    match joined {
        Ok(Ok(held)) => out.held.push(held),
        Ok(Err(e)) => {
            out.errors += 1;
            out.first_error.get_or_insert(format!("{e:#}"));
        }
        Err(e) => {
            out.errors += 1;
            out.first_error.get_or_insert(e.to_string());
        }
    }
}

async fn open_idle(route: &Route, mode: Idle) -> Result<Held> {
    match mode {
        Idle::H1 => {
            let mut tls = route.open_tls(&route.tls_h1).await?;
            get_h1(&mut tls, &route.authority(), IDLE_BODY, false).await?;
            Ok(Held::H1 {
                _stream: Box::new(tls),
            })
        }
        Idle::H2 => {
            let tls = route.open_tls(&route.tls_h2).await?;
            if tls.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
                bail!("h2 not negotiated through this proxy");
            }
            let (sender, driver) = h2_session(tls, &route.authority(), IDLE_BODY).await?;
            Ok(Held::H2 {
                _sender: sender,
                _driver: AbortOnDrop(driver),
            })
        }
    }
}

pub struct Download {
    pub bytes: u64,
    pub secs: f64,
    /// (seconds since start, memory of the proxy's process group)
    pub samples: Vec<(f64, crate::process::Mem)>,
}

/// One HTTP/1.1 download of `total` bytes (stopped at `cap`), sampling the proxy's memory.
pub async fn big_download(
    route: &Route,
    total: u64,
    cap: Duration,
    proxy_pid: u32,
) -> Result<Download> {
    let mut tls = route.open_tls(&route.tls_h1).await?;
    let request = format!(
        "GET /bytes/{total} HTTP/1.1\r\nHost: {}\r\n\r\n",
        route.authority()
    );
    tls.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let head_len = timeout(STEP_TIMEOUT, read_head(&mut tls, &mut head))
        .await?
        .context("no response head")?;
    let started = Instant::now();
    let deadline = started + cap;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_flag = stop.clone();
    let sampler = tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut tick = tokio::time::interval(RSS_SAMPLE_EVERY);
        while Instant::now() < deadline + RSS_SAMPLE_EVERY && !stop_flag.load(Ordering::Relaxed) {
            tick.tick().await;
            let mem = tokio::task::spawn_blocking(move || crate::process::group_memory(proxy_pid))
                .await
                .unwrap_or_default();
            samples.push((started.elapsed().as_secs_f64(), mem));
        }
        samples
    });
    let mut got = (head.len() - head_len) as u64;
    let mut buf = vec![0u8; CHUNK];
    while got < total {
        let Ok(read) = tokio::time::timeout_at(deadline, tls.read(&mut buf)).await else {
            break;
        };
        let n = read?;
        if n == 0 {
            bail!("download cut short at {got} bytes");
        }
        got += n as u64;
    }
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.await.unwrap_or_default();
    Ok(Download {
        bytes: got,
        secs,
        samples,
    })
}
