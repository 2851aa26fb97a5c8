//! Child processes of the benchmark and what it reads about them: a guard that kills the
//! child's whole process group on drop (panics included), resident memory from /proc, the
//! file-descriptor limit, free loopback ports. Kills only what it started, by process group.

use std::fs;
use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// How long a child gets to exit on SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(3);
/// One attempt to connect to a starting proxy gives up after this long.
const CONNECT_PROBE: Duration = Duration::from_millis(100);
/// Wanted file-descriptor limit: 10,000 tunnels cost the bench process 20,000 descriptors
/// (client side and origin side) and the proxy as many again.
const WANTED_NOFILE: u64 = 131_072;

/// A running child; dropping it ends its process group.
pub struct ChildGuard {
    child: Child,
    name: String,
}

impl ChildGuard {
    /// Starts `cmd` in its own process group, and asks the kernel to kill it should this
    /// process die without running destructors (SIGKILL, abort).
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<ChildGuard> {
        cmd.process_group(0);
        // SAFETY: the closure runs between fork and exec and only calls prctl, which is
        // async-signal-safe; it touches no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().with_context(|| format!("starting {name}"))?;
        Ok(ChildGuard {
            child,
            name: name.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Ok while running; the exit status once it has stopped.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => bail!("{} exited: {status}", self.name),
        }
    }

    fn signal_group(&self, signal: libc::c_int) {
        let Ok(pgid) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill has no memory effects; the group is the one this guard created.
        unsafe {
            libc::kill(-pgid, signal);
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.signal_group(libc::SIGTERM);
        let child = &mut self.child;
        testkit::poll_until(TERM_GRACE, || matches!(child.try_wait(), Ok(Some(_))));
        // Helpers the child forked (Squid's certgen, Dante's workers) share its group.
        self.signal_group(libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Memory of a proxy: every process in the group led by its main process (Squid and Dante
/// fork helpers and workers, and their memory is the proxy's memory too).
#[derive(Clone, Copy, Default)]
pub struct Mem {
    /// VmRSS summed over the group: counts pages the processes share once per process.
    pub rss_kib: u64,
    /// Pss summed over the group: shared pages split between their users, so the sum is
    /// what the group costs. For one process it is VmRSS less its share of shared libraries.
    pub pss_kib: u64,
}

pub fn group_memory(leader: u32) -> Mem {
    let mut total = Mem::default();
    for pid in group_members(leader) {
        total.rss_kib += kib_field(&format!("/proc/{pid}/status"), "VmRSS:").unwrap_or(0);
        total.pss_kib += kib_field(&format!("/proc/{pid}/smaps_rollup"), "Pss:").unwrap_or(0);
    }
    total
}

/// Every live process of the group led by `leader` (Squid's helpers, Dante's workers).
fn group_members(leader: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| process_group_of(pid) == Some(leader))
        .collect()
}

/// What a process group has spent on the CPU so far, read in one pass over its members.
#[derive(Clone, Copy, Default)]
pub struct GroupCpu {
    /// Every process's own CPU time (all threads, exited ones included) from its CPU-time
    /// clock, exact; plus cutime + cstime, the time of the children each has reaped (a helper
    /// that exits inside a window), which /proc/PID/stat gives in clock ticks only.
    pub ns: u64,
    /// Context switches (voluntary + involuntary) of every live thread.
    pub switches: u64,
}

/// The CPU of the group led by `leader`; None if the leader is gone.
pub fn group_cpu(leader: u32) -> Option<GroupCpu> {
    let members = group_members(leader);
    if !members.contains(&leader) {
        return None;
    }
    let tick_ns = 1e9 / ticks_per_sec();
    let ticks_ns = |f: &[u64], fields: [usize; 2]| {
        (fields.iter().filter_map(|&i| f.get(i)).sum::<u64>() as f64 * tick_ns) as u64
    };
    let mut total = GroupCpu::default();
    for pid in members {
        let Some(f) = stat_fields(pid) else { continue };
        // utime, stime (the clock's figure in ticks, should the clock fail), cutime, cstime.
        let own = process_cpu_ns(pid).unwrap_or_else(|| ticks_ns(&f, [11, 12]));
        total.ns += own + ticks_ns(&f, [13, 14]);
        let Ok(threads) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in threads.flatten() {
            let status = fs::read_to_string(t.path().join("status")).unwrap_or_default();
            total.switches += status
                .lines()
                .filter(|l| l.contains("ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    Some(total)
}

/// A process's CPU time in ns, every thread's, exited ones included: the kernel's exact
/// figure behind the 10 ms ticks of /proc/PID/stat, read through the process's CPU-time clock.
fn process_cpu_ns(pid: u32) -> Option<u64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: both calls only write the values passed by reference.
    let read = unsafe {
        libc::clock_getcpuclockid(pid, &mut clock) == 0 && libc::clock_gettime(clock, &mut now) == 0
    };
    if !read {
        return None;
    }
    Some(u64::try_from(now.tv_sec).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec).ok()?)
}

/// VmRSS of one process, from /proc/PID/status.
pub fn rss_kib(pid: u32) -> Option<u64> {
    kib_field(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// The fields of /proc/PID/stat after the command name, numbered from 0 (state, ppid, pgrp,
/// ...). The name may hold spaces and parentheses: fields start after the last ')'.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // The state is a letter: 0 in its place keeps the numbering of the fields after it.
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// utime + stime of a process (all its threads, exited ones included), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let f = stat_fields(pid)?;
    Some(f.get(11)? + f.get(12)?)
}

pub fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

fn process_group_of(pid: u32) -> Option<u32> {
    // state, ppid, pgrp
    u32::try_from(*stat_fields(pid)?.get(2)?).ok()
}

/// A `Name:  123 kB` line of a /proc file.
fn kib_field(path: &str, name: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Raises RLIMIT_NOFILE as far as the system lets this process (children inherit it).
/// Returns the soft limit in force afterwards.
pub fn raise_nofile_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read only the struct passed by reference.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        let nr_open = fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let wanted = WANTED_NOFILE.min(nr_open.unwrap_or(WANTED_NOFILE));
        let raised = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: wanted.max(limit.rlim_max),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            // Without CAP_SYS_RESOURCE the hard limit is the ceiling.
            let capped = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &capped);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// A loopback port free right now (the OS picks it; it is released for the child to bind).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until `port` accepts a connection, failing early if the child exits.
pub fn wait_listening(child: &mut ChildGuard, port: u16, limit: Duration) -> Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let ready = testkit::poll_until(limit, || match child.check_running() {
        Err(exited) => Some(Err(exited)),
        Ok(()) => TcpStream::connect_timeout(&addr, CONNECT_PROBE)
            .is_ok()
            .then_some(Ok(())),
    });
    ready.unwrap_or_else(|| bail!("{} not listening on {addr} after {limit:?}", child.name))
}

/// The last lines of a log file, for error messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
