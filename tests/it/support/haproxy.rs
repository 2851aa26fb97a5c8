//! Debian's HAProxy as the load balancer in front of ward replicas: TCP mode, round robin,
//! `send-proxy-v2` to every server, on an OS-chosen port, in the foreground, killed on drop.
//! Each replica may be health-checked on its admin's `/readyz`, as a deployment would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::tools::run;

/// How long HAProxy may take to bind its frontend.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// An HAProxy process balancing over `servers`, killed on drop.
pub struct Haproxy {
    child: Child,
    /// The frontend clients connect to.
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Starts HAProxy in front of `servers`, each sent a PROXY v2 header.
    pub fn start(servers: &[SocketAddr]) -> Haproxy {
        Haproxy::start_checked(servers, &[])
    }

    /// As [`Haproxy::start`]; with `admins` (one per server), each server is taken out of the
    /// rotation while its admin's `/readyz` does not answer 200.
    pub fn start_checked(servers: &[SocketAddr], admins: &[SocketAddr]) -> Haproxy {
        let dir = tempfile::tempdir().expect("dir");
        let port = super::origin::refused_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let conf = dir.path().join("haproxy.cfg");
        let stats = dir.path().join("stats.sock");
        std::fs::write(&conf, config(addr, servers, admins, &stats)).expect("write haproxy.cfg");
        let mut check = Command::new("haproxy");
        check.arg("-c").arg("-f").arg(&conf);
        run(check, Duration::from_secs(20)).ok("haproxy -c");
        let child = Command::new("haproxy")
            // -db: stay in the foreground, so that the test owns the process.
            .args(["-db", "-f"])
            .arg(&conf)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn haproxy");
        let what = format_args!("haproxy to listen on {addr}");
        testkit::wait_until(START_TIMEOUT, what, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        Haproxy {
            child,
            addr,
            _dir: dir,
        }
    }
}

/// TCP mode (HAProxy sees bytes, not HTTP: CONNECT, TLS and SOCKS5 pass untouched), round
/// robin. Health checks only where admins are given, and then on the admin port, which takes
/// no PROXY header (a check on the proxy port would send LOCAL headers). A connect that fails
/// (a replica that stopped accepting) is retried on another replica. One thread, so that round
/// robin alternates strictly (threads would each keep their own turn). A stats socket answers
/// [`Haproxy::server_states`].
fn config(
    frontend: SocketAddr,
    servers: &[SocketAddr],
    admins: &[SocketAddr],
    stats: &std::path::Path,
) -> String {
    let stats = stats.display();
    let mut out = format!(
        "global\n    maxconn 256\n    nbthread 1\n    stats socket {stats} level operator\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n    timeout check 2s\n    retries 3\n    option redispatch\n\
         frontend proxies\n    bind {frontend}\n    default_backend wards\n\
         backend wards\n    balance roundrobin\n"
    );
    if !admins.is_empty() {
        out.push_str("    option httpchk\n    http-check send meth GET uri /readyz\n    http-check expect status 200\n    default-server inter 250ms fall 1 rise 2\n");
    }
    for (i, s) in servers.iter().enumerate() {
        let check = admins
            .get(i)
            .map(|a| format!(" check addr {} port {}", a.ip(), a.port()))
            .unwrap_or_default();
        out.push_str(&format!("    server ward{i} {s} send-proxy-v2{check}\n"));
    }
    out
}

impl Haproxy {
    /// Each server's name (`ward0`, …) and state as HAProxy sees it (`UP`, `DOWN`, …), from the
    /// stats socket's `show stat`.
    pub fn server_states(&self) -> Vec<(String, String)> {
        let sock = self._dir.path().join("stats.sock");
        let mut s = UnixStream::connect(&sock).expect("haproxy stats socket");
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        s.write_all(b"show stat\n").expect("show stat");
        let mut csv = String::new();
        s.read_to_string(&mut csv).expect("read show stat");
        // `# pxname,svname,qcur,…,status,…`: find the columns by name.
        let mut lines = csv.lines();
        let header: Vec<&str> = lines
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ")
            .split(',')
            .collect();
        let col = |name| header.iter().position(|h| *h == name).expect("stat column");
        let (sv, status) = (col("svname"), col("status"));
        lines
            .map(|l| l.split(',').collect::<Vec<_>>())
            .filter(|f| f.len() > status && f[sv].starts_with("ward"))
            .map(|f| (f[sv].to_string(), f[status].to_string()))
            .collect()
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
