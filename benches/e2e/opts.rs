//! Options of the e2e benchmark, from the arguments after `cargo bench --bench e2e --` and
//! from E2E_* environment variables. Parses only; runs nothing.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};

pub const USAGE: &str = "\
cargo bench --bench e2e [-- OPTIONS]
  --quick          short run (~4 min): 2 repetitions, short windows, 1,000 idle tunnels, 2 GiB download
  --reps N         repetitions of the speed scenarios (default 5; quick 2)
  --only A,B       only these proxies (ward, ward-logs, squid, tinyproxy, dante,
                   mitmproxy-tunnel, mitmproxy-intercept); direct always runs
  --no-memory      skip the idle-connection and large-download memory scenarios
  --ward PATH      the ward binary (default: the one cargo built for this bench)
  --lb             instead of the peers: one ward directly, HAProxy (send-proxy-v2) in front
                   of one ward, and in front of two wards sharing one CA (speed scenarios only)
  --soak           instead of everything else: the soak (tunnels and interceptions held with a
                   trickle of traffic; ward's RSS slope, errors, open-connection gauge)
Environment: E2E_QUICK=1, E2E_REPS=N, E2E_ONLY=A,B, E2E_NO_MEMORY=1, WARD_BIN=PATH, E2E_LB=1,
  E2E_SOAK=1; the soak's size: E2E_SOAK_SECS=N (default 600), E2E_SOAK_TUNNELS=N (9900),
  E2E_SOAK_INTERCEPTS=N (1000; half HTTP/1.1, half HTTP/2), E2E_SOAK_REOPENS=N (2: later rounds of the
  same connections, 20 s each);
  for narrowing a measurement: E2E_CASES=Raw1,Raw8,Tls1,Tls8,Rate,Cost (speed scenarios; Cost: the
  cost model's scaling, new connections at 10x the concurrency and through a config with 10x the
  rules), E2E_SUBJECTS='ward,ward (1 worker),ward socks5,ward inspect' (rows by name),
  E2E_RATE_MS=N (window), E2E_RATE_CONC=N (new-connection concurrency), E2E_COST_MS=N (each window
  of Cost; default 1000, quick 400)
Every case also reads the proxy's CPU time from /proc: the report's cost model gives CPU per new
connection and per GiB for each row, and what that projects to on 16 cores.";

pub struct Options {
    pub quick: bool,
    pub reps: usize,
    pub only: Option<Vec<String>>,
    /// E2E_SUBJECTS: only these rows (by name; direct always runs).
    pub only_subjects: Option<Vec<String>>,
    /// E2E_CASES: only these speed scenarios (case-insensitive names).
    pub only_cases: Option<Vec<String>>,
    pub memory: bool,
    pub tput_warmup: Duration,
    pub tput_length: Duration,
    pub rate_length: Duration,
    pub rate_concurrency: usize,
    /// Each window of the cost model's scaling case (connections ×10, rules ×10).
    pub cost_length: Duration,
    pub idle_counts: Vec<usize>,
    /// How long building up the idle connections of one measurement may take.
    pub idle_cap: Duration,
    pub download_bytes: u64,
    pub download_cap: Duration,
    pub ward_bin: Option<PathBuf>,
    /// `--lb`: ward alone against ward behind HAProxy (one and two replicas).
    pub lb: bool,
    /// `--soak`: the soak instead of the speed and memory scenarios.
    pub soak: Option<Soak>,
    /// The command as typed, for the report.
    pub command: String,
}

/// The soak's size, as asked (the run may hold fewer: the file-descriptor limit).
#[derive(Clone, Copy, Debug, Default)]
pub struct Soak {
    /// How long the connections are held once all are open.
    pub hold: Duration,
    pub tunnels: usize,
    pub intercepts: usize,
    /// Later rounds of the same connections, each held briefly, after the gauge is back.
    pub reopens: usize,
}

const GIB: u64 = 1 << 30;
/// The soak of issue 15: 10 minutes, 9,900 tunnels, 1,000 interceptions.
const SOAK_SECS: u64 = 600;
const SOAK_TUNNELS: usize = 9_900;
const SOAK_INTERCEPTS: usize = 1_000;
/// Rounds of the same connections after the first: the second shows reuse, a third that a
/// second round's growth does not repeat.
const SOAK_REOPENS: usize = 2;
const SOAK_MAX_REOPENS: usize = 10;
/// The test kit's origin ends any connection after 20 minutes: a longer hold would count
/// the origin's cut as the proxy's error.
const SOAK_MAX_SECS: u64 = 18 * 60;
/// Concurrency of the new-connection scenario: a busy browser-like client population.
const RATE_CONCURRENCY: usize = 16;
/// Each window of the scaling case: half the new-connection window, so that its ~16 windows
/// per repetition (9 rows × connections ×10, 7 × rules ×10) add about 2 minutes to a full run;
/// still ~100 ticks of the 10 ms CPU clock for ward's CPU per connection.
const COST_MS: u64 = 1000;
const COST_MS_QUICK: u64 = 400;

/// A comma-separated list, trimmed, empty items dropped.
fn list(s: &str) -> Vec<String> {
    s.split(',')
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect()
}

fn number_env<T: std::str::FromStr>(name: &str, default: T) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match std::env::var(name) {
        Ok(v) => Ok(v
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={v:?}: {e}"))?),
        Err(_) => Ok(default),
    }
}

fn soak_env() -> Result<Soak> {
    let secs = number_env("E2E_SOAK_SECS", SOAK_SECS)?;
    if secs == 0 || secs > SOAK_MAX_SECS {
        bail!("E2E_SOAK_SECS must be 1 to {SOAK_MAX_SECS}");
    }
    Ok(Soak {
        hold: Duration::from_secs(secs),
        tunnels: number_env("E2E_SOAK_TUNNELS", SOAK_TUNNELS)?,
        intercepts: number_env("E2E_SOAK_INTERCEPTS", SOAK_INTERCEPTS)?,
        reopens: number_env("E2E_SOAK_REOPENS", SOAK_REOPENS)?.min(SOAK_MAX_REOPENS),
    })
}

fn flag_env(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

impl Options {
    pub fn parse() -> Result<Options> {
        // cargo passes `--bench` to every bench target; it means nothing here.
        let args: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        let mut quick = flag_env("E2E_QUICK");
        let mut reps = std::env::var("E2E_REPS")
            .ok()
            .map(|v| v.parse())
            .transpose()?;
        let mut only = std::env::var("E2E_ONLY").ok();
        let mut memory = !flag_env("E2E_NO_MEMORY");
        let mut ward_bin = std::env::var_os("WARD_BIN").map(PathBuf::from);
        let mut lb = flag_env("E2E_LB");
        let mut soak = flag_env("E2E_SOAK");
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "--quick" => quick = true,
                "--no-memory" => memory = false,
                "--lb" => lb = true,
                "--soak" => soak = true,
                "--reps" => reps = Some(it.next().map(|v| v.parse()).transpose()?.unwrap_or(0)),
                "--only" => only = it.next().cloned(),
                "--ward" => ward_bin = it.next().map(PathBuf::from),
                "-h" | "--help" => bail!("{USAGE}"),
                other => bail!("unknown option {other:?}\n{USAGE}"),
            }
        }
        let reps = reps.unwrap_or(if quick { 2 } else { 5 });
        if reps == 0 {
            bail!("--reps must be at least 1");
        }
        let ward_bin = ward_bin.or_else(|| option_env!("CARGO_BIN_EXE_ward").map(PathBuf::from));
        let mut command = String::from("cargo bench --bench e2e");
        if !args.is_empty() {
            command = format!("{command} -- {}", args.join(" "));
        }
        Ok(Options {
            quick,
            reps,
            only: only.as_deref().map(list),
            only_subjects: std::env::var("E2E_SUBJECTS").ok().as_deref().map(list),
            only_cases: std::env::var("E2E_CASES").ok().as_deref().map(list),
            memory: memory && !lb,
            tput_warmup: Duration::from_millis(if quick { 150 } else { 250 }),
            tput_length: Duration::from_millis(if quick { 400 } else { 1000 }),
            rate_length: std::env::var("E2E_RATE_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(Duration::from_millis)
                .unwrap_or(Duration::from_millis(if quick { 800 } else { 2000 })),
            cost_length: Duration::from_millis(number_env(
                "E2E_COST_MS",
                if quick { COST_MS_QUICK } else { COST_MS },
            )?),
            rate_concurrency: std::env::var("E2E_RATE_CONC")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(RATE_CONCURRENCY),
            idle_counts: if quick {
                vec![1_000]
            } else {
                vec![1_000, 10_000]
            },
            idle_cap: Duration::from_secs(if quick { 15 } else { 40 }),
            download_bytes: if quick { 2 * GIB } else { 10 * GIB },
            download_cap: Duration::from_secs(if quick { 8 } else { 25 }),
            ward_bin,
            lb,
            soak: soak.then(soak_env).transpose()?,
            command,
        })
    }

    pub fn wants(&self, peer: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|p| p == peer))
    }
}
