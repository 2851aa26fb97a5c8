//! HAProxy in front of ward replicas, for the `--lb` comparison: each replica has a PROXY v2
//! listener trusting loopback and all share one CA folder; HAProxy (TCP mode, send-proxy-v2,
//! round robin, one thread) listens on a free loopback port. Starts and waits only; the
//! returned `Running` stops HAProxy, then the replicas, then removes the temp dir.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

use crate::peers::{LOG_TAIL_LINES, PeerEnv, READY_TIMEOUT, Running, render, ward_ca};
use crate::process::{ChildGuard, free_port, log_tail, wait_listening};

/// HAProxy's connection limit: far above the scenarios' 8 streams and 16 concurrent
/// connections, and within the descriptors it may open (two per connection).
const MAXCONN: u64 = 4_096;

/// `haproxy` on PATH or in sbin, if installed.
pub fn haproxy_program() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("haproxy"))
        .find(|p| p.is_file())
}

/// The first line of `haproxy -v`, for the report.
pub fn haproxy_version() -> Option<String> {
    let out = Command::new(haproxy_program()?)
        .arg("-v")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().next().map(|l| l.trim().to_owned())
}

/// `replicas` wards (the first creates the shared CA before the others start) behind HAProxy.
pub fn start(ward: &Path, env: &PeerEnv<'_>, replicas: usize) -> Result<Running> {
    let dir = tempfile::Builder::new().prefix("ward-e2e-lb-").tempdir()?;
    let d = dir.path();
    fs::write(d.join("bench-ca.pem"), &env.pki.bench_ca_pem)?;
    let ca_dir = d.join("certs");
    let mut wards = Vec::with_capacity(replicas);
    let mut ports = Vec::with_capacity(replicas);
    for i in 0..replicas {
        let port = free_port()?;
        wards.push(start_replica(ward, env, d, &ca_dir, i, port)?);
        ports.push(port);
        if i == 0 {
            ward_ca(&ca_dir)?;
        }
    }
    let intercept_ca_pem = ward_ca(&ca_dir)?;

    let port = free_port()?;
    let servers: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("    server ward{i} 127.0.0.1:{p} send-proxy-v2"))
        .collect();
    let vars = [
        ("PORT", port.to_string()),
        ("MAXCONN", MAXCONN.min(env.nofile / 2).to_string()),
        ("SERVERS", servers.join("\n")),
    ];
    let conf = d.join("haproxy.cfg");
    fs::write(&conf, render(include_str!("../peers/haproxy.cfg"), &vars))?;
    let log = d.join("haproxy.log");
    let program = haproxy_program().context("haproxy not installed")?;
    let mut cmd = Command::new(program);
    // -db: stay in the foreground, in the group the guard kills.
    cmd.arg("-db")
        .arg("-f")
        .arg(&conf)
        .current_dir(d)
        .stdin(Stdio::null())
        .stdout(fs::File::create(d.join("haproxy.out"))?)
        .stderr(fs::File::create(&log)?);
    let mut child = ChildGuard::spawn("haproxy", &mut cmd)?;
    wait_listening(&mut child, port, READY_TIMEOUT)
        .with_context(|| format!("haproxy did not start:\n{}", log_tail(&log, LOG_TAIL_LINES)))?;
    Ok(Running {
        child,
        replicas: wards,
        port,
        admin_port: None,
        intercept_ca_pem,
        _dir: dir,
    })
}

fn start_replica(
    ward: &Path,
    env: &PeerEnv<'_>,
    d: &Path,
    ca_dir: &Path,
    i: usize,
    port: u16,
) -> Result<ChildGuard> {
    let vars = [
        ("PORT", port.to_string()),
        ("DIR", d.display().to_string()),
        ("CA_DIR", ca_dir.display().to_string()),
        ("MAX_CONNECTIONS", env.nofile.to_string()),
    ];
    let policy = d.join(format!("policy-{i}.yaml"));
    fs::write(
        &policy,
        render(include_str!("../peers/ward-replica.yaml"), &vars),
    )?;
    let log = d.join(format!("ward-{i}.log"));
    let mut cmd = Command::new(ward);
    cmd.env("RUST_LOG", "warn")
        .args(["--log-format", "json", "-c"])
        .arg(&policy)
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log)?);
    let name = format!("ward replica {i}");
    let mut child = ChildGuard::spawn(&name, &mut cmd)?;
    wait_listening(&mut child, port, READY_TIMEOUT)
        .with_context(|| format!("{name} did not start:\n{}", log_tail(&log, LOG_TAIL_LINES)))?;
    Ok(child)
}
