//! End-to-end benchmark: ward against a direct connection and the installed peers (Squid,
//! tinyproxy, Dante, mitmproxy), alternated in one run on one machine, with its own TLS origin
//! and load generator on loopback. Writes a Markdown report to stdout and
//! target/bench-report.md. Installs nothing, reaches nothing beyond 127.0.0.1, and kills every
//! process it started when it ends (also on panic and Ctrl-C).
//!
//! `cargo bench --bench e2e` (about 14 minutes on 2 cores), `cargo bench --bench e2e -- --quick`
//! (about 4), `-- --lb` (ward behind HAProxy), `-- --soak` (issue 15's soak, to
//! target/soak-report.md), `-- --help` for the rest.
// These time real processes and real sockets, where tokio's pausable clock has no say.
#![allow(clippy::disallowed_types)]

#[path = "e2e/balancer.rs"]
mod balancer;
#[path = "e2e/client.rs"]
mod client;
#[path = "e2e/cost.rs"]
mod cost;
#[path = "e2e/cost_report.rs"]
mod cost_report;
#[path = "e2e/memory.rs"]
mod memory;
#[path = "e2e/opts.rs"]
mod opts;
#[path = "e2e/origin.rs"]
mod origin;
#[path = "e2e/peers.rs"]
mod peers;
#[path = "e2e/pki.rs"]
mod pki;
#[path = "e2e/process.rs"]
mod process;
#[path = "e2e/report.rs"]
mod report;
#[path = "e2e/run.rs"]
mod run;
#[path = "e2e/scenarios.rs"]
mod scenarios;
#[path = "e2e/soak.rs"]
mod soak;
#[path = "e2e/soak_load.rs"]
mod soak_load;
#[path = "e2e/soak_report.rs"]
mod soak_report;
#[path = "e2e/subjects.rs"]
mod subjects;
#[path = "e2e/variants.rs"]
mod variants;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;

use crate::opts::Options;
use crate::peers::{PeerEnv, PeerKind};
use crate::report::{Meta, Results};

fn main() {
    let opts = match Options::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e:#}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let outcome = runtime.block_on(async {
        tokio::select! {
            r = bench(&opts) => r,
            // Dropping the bench future drops every running proxy's guard, which kills it.
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    if let Err(e) = outcome {
        eprintln!("e2e benchmark failed: {e:#}");
        std::process::exit(1);
    }
}

async fn bench(opts: &Options) -> Result<()> {
    let started = Instant::now();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // Others compiling on the same machine show up here: a reason for a wide spread.
    let load_at_start = load_average();
    let nofile = process::raise_nofile_limit();
    let pki = pki::Pki::generate();
    let origin = origin::Origin::start(pki.origin_server_config()).await;

    if let Some(soak) = opts.soak {
        return run_soak(opts, soak, &pki, &origin, nofile, started, &load_at_start).await;
    }

    let (mut found, mut missing) = (Vec::new(), Vec::new());
    let kinds: &[PeerKind] = if opts.lb {
        &PeerKind::LB
    } else {
        &PeerKind::ALL
    };
    for &kind in kinds.iter().filter(|k| opts.wants(k.name())) {
        match kind.find_program(opts.ward_bin.as_deref()) {
            Some(program) => found.push((kind, program)),
            None => missing.push(kind),
        }
    }
    for kind in &missing {
        eprintln!(
            "not installed: {} (install: {})",
            kind.name(),
            kind.install_hint()
        );
    }
    let meta_lines = meta(opts, nofile, &found, &missing);
    for line in &meta_lines {
        eprintln!("{line}");
    }

    let max_idle = idle_limit(nofile);
    let bench = run::Bench {
        opts,
        pki: &pki,
        origin: &origin,
        env: PeerEnv { pki: &pki, nofile },
        peers: found,
        max_idle,
    };
    let mut results = Results::default();
    bench.speed(&mut results).await;
    if opts.memory {
        eprintln!("idle connections: memory");
        bench.idle_memory(&mut results).await;
        eprintln!("large intercepted download: memory");
        bench.download_memory(&mut results).await;
    }

    let mut lines = meta_lines;
    lines.push(format!(
        "wall time of the run: {:.0} s; load average at start {load_at_start}, at end {}",
        started.elapsed().as_secs_f64(),
        load_average()
    ));
    let text = report::render(&Meta { lines }, &results);
    println!("{text}");
    write_report(&report_path("bench-report.md"), &text)
}

fn write_report(path: &std::path::Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)?;
    eprintln!("report written to {}", path.display());
    Ok(())
}

async fn run_soak(
    opts: &Options,
    soak: opts::Soak,
    pki: &pki::Pki,
    origin: &origin::Origin,
    nofile: u64,
    started: Instant,
    load_at_start: &str,
) -> Result<()> {
    let ward = PeerKind::Ward
        .find_program(opts.ward_bin.as_deref())
        .ok_or_else(|| anyhow::anyhow!("no ward binary: {}", PeerKind::Ward.install_hint()))?;
    let mut lines = vec![
        format!("date: {}", utc_now()),
        format!("machine: {}", machine()),
        format!("command: `{}`", soak_command(opts, soak)),
        format!(
            "ward: {} ({}), RUST_LOG=warn, one process, fresh; the clients and both origins (TLS for the \
             interceptions, echo for the tunnels) run in this one process; all on 127.0.0.1",
            PeerKind::Ward.version(&ward),
            ward.display()
        ),
        format!("RLIMIT_NOFILE of the bench and of ward (inherited): {nofile}"),
    ];
    for line in &lines {
        eprintln!("{line}");
    }
    let figures = soak::run(soak::Inputs {
        soak,
        pki,
        origin,
        nofile,
        fit: idle_limit(nofile),
        ward: &ward,
    })
    .await?;
    lines.push(format!(
        "wall time of the run: {:.0} s; load average at start {load_at_start}, at end {}",
        started.elapsed().as_secs_f64(),
        load_average()
    ));
    let text = soak_report::render(&lines, &figures);
    println!("{text}");
    write_report(&report_path("soak-report.md"), &text)
}

/// The command that reproduces this soak, its size spelled out.
fn soak_command(opts: &Options, soak: opts::Soak) -> String {
    format!(
        "E2E_SOAK_SECS={} E2E_SOAK_TUNNELS={} E2E_SOAK_INTERCEPTS={} {}",
        soak.hold.as_secs(),
        soak.tunnels,
        soak.intercepts,
        opts.command
    )
}

/// Idle connections that fit: the proxy (and this process: client side plus origin side)
/// needs two descriptors per connection, plus a reserve for listeners, logs and helpers.
fn idle_limit(nofile: u64) -> usize {
    const FD_RESERVE: u64 = 200;
    const ROUND_TO: u64 = 100;
    let fit = nofile.saturating_sub(FD_RESERVE) / 2;
    usize::try_from(fit / ROUND_TO * ROUND_TO).unwrap_or(usize::MAX)
}

/// `target/NAME`, under CARGO_TARGET_DIR when that is set.
fn report_path(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    target.join(name)
}

fn meta(
    opts: &Options,
    nofile: u64,
    found: &[(PeerKind, PathBuf)],
    missing: &[PeerKind],
) -> Vec<String> {
    let mut lines = vec![
        format!("date: {}", utc_now()),
        format!("machine: {}", machine()),
        format!("command: `{}`{}", opts.command, if opts.quick { " (quick mode)" } else { "" }),
        format!(
            "method: {} repetitions; each starts every proxy afresh, then runs each scenario on direct and every \
             proxy in turn (round-robin, the order rotated each repetition); figures are medians with (min–max), \
             ratios are medians of per-repetition ratios to direct; throughput counted for {:.2} s after {:.2} s of warm-up; new connections \
             {} at a time for {:.1} s; memory scenarios run once each on a fresh proxy",
            opts.reps,
            opts.tput_length.as_secs_f64(),
            opts.tput_warmup.as_secs_f64(),
            opts.rate_concurrency,
            opts.rate_length.as_secs_f64()
        ),
        "load: the load generator and the TLS origin run in this one process (tokio, rustls with aws-lc-rs) and share \
         the machine's cores with the proxy under test; all traffic is on 127.0.0.1"
            .to_owned(),
        "logging: ward runs with RUST_LOG=warn (no access log) except the \"logs on\" rows (RUST_LOG=info, JSON to a \
         file); Squid runs with access_log none; the others at their error level"
            .to_owned(),
        format!("RLIMIT_NOFILE of the bench and of every proxy (inherited): {nofile}"),
        format!(
            "workers: ward's runtime runs one worker thread per core ({} here); the \"ward (1 worker)\" row runs \
             the same ward with {}=1",
            std::thread::available_parallelism().map_or(0, |n| n.get()),
            variants::WORKERS_ENV
        ),
    ];
    if let Some(&most) = opts.idle_counts.iter().max()
        && most > idle_limit(nofile)
    {
        lines.push(format!(
            "idle connections capped at {} (not {most}): a proxy holds two descriptors per tunnel, and this system's \
             hard RLIMIT_NOFILE of {nofile} cannot be raised without CAP_SYS_RESOURCE",
            idle_limit(nofile)
        ));
    }
    let versions: Vec<String> = found
        .iter()
        .map(|(k, p)| format!("{} = {} ({})", k.name(), k.version(p), p.display()))
        .collect();
    lines.push(format!("proxies: {}", versions.join("; ")));
    if opts.lb {
        lines.push(format!(
            "load balancer: {} in TCP mode, round robin, `send-proxy-v2` to each replica, one thread; each replica \
             is ward with a `proxy_protocol: v2, trusted: [127.0.0.1/32]` listener, and the two of \"haproxy → 2 wards\" \
             share one `ca_dir`; \"(×N of ward)\": median of per-repetition ratios to the same ward reached directly. \
             On {} cores shared by the client, the origin, HAProxy and the replicas, two replicas cannot show \
             scale-out: these rows show what HAProxy and the PROXY header cost",
            balancer::haproxy_version().unwrap_or_else(|| "HAProxy".to_owned()),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        ));
    }
    if !missing.is_empty() {
        let hints: Vec<String> = missing
            .iter()
            .map(|k| format!("{} ({})", k.name(), k.install_hint()))
            .collect();
        lines.push(format!("not installed, not measured: {}", hints.join("; ")));
    }
    lines
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .and_then(|r| r.split(':').nth(1))
        })
        .map_or("unknown CPU", str::trim)
        .to_owned();
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    format!(
        "nproc {nproc}, {model}, {} GiB RAM, Linux {}",
        mem_kib >> 20,
        kernel.trim()
    )
}

/// The 1-, 5- and 15-minute load averages.
fn load_average() -> String {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Now as `YYYY-MM-DD HH:MM UTC`.
fn utc_now() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}
