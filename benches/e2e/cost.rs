//! What a proxy costs in CPU, from the kernel's own accounting: snapshots of the CPU time and
//! context switches of its process groups (/proc), and the new-connection scenario with the
//! proxy's CPU per connection over it. Reads /proc and CPU-time clocks, runs clients; judges
//! nothing.

use std::time::Duration;

use anyhow::Result;

use crate::client::Route;
use crate::process::{GroupCpu, group_cpu};
use crate::scenarios::{Rate, connect_rate};

const GIB: f64 = (1u64 << 30) as f64;

/// The CPU time and context switches of a proxy so far: summed over every process of the
/// group of each of `pids` (the proxy with its helpers and workers; HAProxy and its replicas
/// for the `--lb` rows). None where /proc could not tell, and for direct (no proxy).
#[derive(Default)]
pub struct ProxyCost {
    cpu: Option<GroupCpu>,
}

impl ProxyCost {
    pub fn now(pids: &[u32]) -> ProxyCost {
        if pids.is_empty() {
            return ProxyCost::default();
        }
        let groups: Option<Vec<GroupCpu>> = pids.iter().map(|&p| group_cpu(p)).collect();
        let cpu = groups.map(|g| {
            g.into_iter().fold(GroupCpu::default(), |a, b| GroupCpu {
                ns: a.ns + b.ns,
                switches: a.switches + b.switches,
            })
        });
        ProxyCost { cpu }
    }

    /// `now`, off the runtime's workers: a snapshot reads a file per process on the machine.
    pub async fn sample(pids: &[u32]) -> ProxyCost {
        let pids = pids.to_vec();
        tokio::task::spawn_blocking(move || ProxyCost::now(&pids))
            .await
            .unwrap_or_default()
    }

    /// CPU seconds spent since `before`.
    pub fn cpu_secs_since(&self, before: &ProxyCost) -> Option<f64> {
        let (b, a) = (before.cpu?, self.cpu?);
        Some(a.ns.saturating_sub(b.ns) as f64 / 1e9)
    }

    /// CPU seconds since `before` per GiB of `bytes`.
    pub fn secs_per_gib_since(&self, before: &ProxyCost, bytes: u64) -> Option<f64> {
        let secs = self.cpu_secs_since(before)?;
        (bytes > 0).then(|| secs * GIB / bytes as f64)
    }

    /// CPU microseconds since `before` per connection of `conns`.
    pub fn us_per_connection_since(&self, before: &ProxyCost, conns: u64) -> Option<f64> {
        let secs = self.cpu_secs_since(before)?;
        (conns > 0).then(|| secs * 1e6 / conns as f64)
    }

    /// " cpu N us/conn cs N/conn" for the progress line; the parts /proc could not tell are
    /// left out.
    fn per_connection_since(&self, before: &ProxyCost, conns: u64) -> String {
        let mut out = String::new();
        if let Some(us) = self.us_per_connection_since(before, conns) {
            out += &format!(" cpu {us:.0} us/conn");
        }
        if let (Some(b), Some(a), true) = (before.cpu, self.cpu, conns > 0) {
            let switches = a.switches.saturating_sub(b.switches);
            out += &format!(" cs {:.1}/conn", switches as f64 / conns as f64);
        }
        out
    }
}

/// The new-connection scenario and what the proxy spent on it.
pub struct CostedRate {
    pub rate: Rate,
    /// The proxy's CPU over the whole scenario ÷ every connection completed in it (those
    /// that ended after the window too: their CPU is in the figure as well).
    pub cpu_us_per_conn: Option<f64>,
    /// The cost part of the progress line.
    pub shown: String,
}

/// `connect_rate` with the CPU of `pids` read just before and just after it.
pub async fn costed_rate(
    route: &Route,
    pids: &[u32],
    concurrency: usize,
    length: Duration,
) -> Result<CostedRate> {
    let before = ProxyCost::sample(pids).await;
    let rate = connect_rate(route, concurrency, length).await?;
    let after = ProxyCost::sample(pids).await;
    Ok(CostedRate {
        cpu_us_per_conn: after.us_per_connection_since(&before, rate.completed),
        shown: after.per_connection_since(&before, rate.completed),
        rate,
    })
}
