//! Debian's tinyproxy as a peer: run in the foreground on an OS-chosen port with a config of
//! our own (loopback only, CONNECT to any port), killed on drop.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A tinyproxy process on an OS-chosen port, killed on drop.
pub struct Tinyproxy {
    child: Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Tinyproxy {
    pub fn start() -> Tinyproxy {
        let dir = tempfile::tempdir().expect("dir");
        let port = super::origin::refused_port();
        let conf = dir.path().join("tinyproxy.conf");
        // No ConnectPort lines: CONNECT to every port is allowed.
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\nMaxClients 20\n\
                 LogLevel Info\nUser nobody\nGroup nogroup\nDisableViaHeader No\n"
            ),
        )
        .expect("write conf");
        let child = spawn_foreground(&conf, dir.path());
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        let what = format_args!("tinyproxy to listen on {addr}");
        testkit::wait_until(Duration::from_secs(10), what, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        Tinyproxy {
            child,
            addr,
            _dir: dir,
        }
    }
}

fn spawn_foreground(conf: &Path, cwd: &Path) -> Child {
    Command::new("tinyproxy")
        .args(["-d", "-c"])
        .arg(conf)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn tinyproxy")
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
