//! Debian's HAProxy as the load balancer in front of ward replicas: TCP mode, round robin,
//! `send-proxy-v2` to every server, on an OS-chosen port, in the foreground, killed on drop.

use std::net::{SocketAddr, TcpStream};
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
        let dir = tempfile::tempdir().expect("dir");
        let port = super::origin::refused_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let conf = dir.path().join("haproxy.cfg");
        std::fs::write(&conf, config(addr, servers)).expect("write haproxy.cfg");
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
/// robin, no health checks (their LOCAL headers would only add log noise to the tests). A
/// connect that fails (a replica that stopped accepting) is retried on another replica. One
/// thread, so that round robin alternates strictly (threads would each keep their own turn).
fn config(frontend: SocketAddr, servers: &[SocketAddr]) -> String {
    let mut out = format!(
        "global\n    maxconn 256\n    nbthread 1\n\
         defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n    retries 3\n    option redispatch\n\
         frontend proxies\n    bind {frontend}\n    default_backend wards\n\
         backend wards\n    balance roundrobin\n"
    );
    for (i, s) in servers.iter().enumerate() {
        out.push_str(&format!("    server ward{i} {s} send-proxy-v2\n"));
    }
    out
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
