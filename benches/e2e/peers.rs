//! The proxies under benchmark: ward and the installed peers. Finds their programs, fills
//! the templates of benches/peers/ into a temp dir, starts each on a free loopback port and
//! waits until it listens. Installs nothing; a missing peer is reported with its install line.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use tempfile::TempDir;

use crate::pki::{INSPECT_NAME, ORIGIN_NAME, Pki};
use crate::process::{ChildGuard, free_port, log_tail, wait_listening};
use crate::variants::{self, Variant};

pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// ward writes its CA at start; give it this long to appear after the port opens.
const CA_WAIT: Duration = Duration::from_secs(10);
pub(crate) const LOG_TAIL_LINES: usize = 15;
/// Where Debian's squid-openssl puts its certificate generator.
const SQUID_CERTGEN: &str = "/usr/lib/squid/security_file_certgen";
const SQUID_USER: &str = "proxy";

#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum PeerKind {
    Ward,
    /// The same ward with its access log at INFO: what logging costs.
    WardLogs,
    Squid,
    Tinyproxy,
    Dante,
    MitmTunnel,
    MitmIntercept,
    /// HAProxy (TCP mode, send-proxy-v2) in front of one ward with a PROXY v2 listener.
    WardBehindLb,
    /// The same in front of two wards sharing one CA folder.
    WardPairBehindLb,
}

impl PeerKind {
    pub const ALL: [PeerKind; 7] = [
        PeerKind::Ward,
        PeerKind::WardLogs,
        PeerKind::Squid,
        PeerKind::Tinyproxy,
        PeerKind::Dante,
        PeerKind::MitmTunnel,
        PeerKind::MitmIntercept,
    ];

    /// The `--lb` comparison: ward alone, then behind HAProxy with one and two replicas.
    pub const LB: [PeerKind; 3] = [
        PeerKind::Ward,
        PeerKind::WardBehindLb,
        PeerKind::WardPairBehindLb,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PeerKind::Ward => "ward",
            PeerKind::WardLogs => "ward-logs",
            PeerKind::Squid => "squid",
            PeerKind::Tinyproxy => "tinyproxy",
            PeerKind::Dante => "dante",
            PeerKind::MitmTunnel => "mitmproxy-tunnel",
            PeerKind::MitmIntercept => "mitmproxy-intercept",
            PeerKind::WardBehindLb => "ward-haproxy",
            PeerKind::WardPairBehindLb => "ward-haproxy-2",
        }
    }

    fn program_name(self) -> &'static str {
        match self {
            PeerKind::Ward
            | PeerKind::WardLogs
            | PeerKind::WardBehindLb
            | PeerKind::WardPairBehindLb => "ward",
            PeerKind::Squid => "squid",
            PeerKind::Tinyproxy => "tinyproxy",
            PeerKind::Dante => "danted",
            PeerKind::MitmTunnel | PeerKind::MitmIntercept => "mitmdump",
        }
    }

    pub fn install_hint(self) -> &'static str {
        match self {
            PeerKind::Ward | PeerKind::WardLogs => "cargo bench builds it; or pass --ward PATH",
            PeerKind::WardBehindLb | PeerKind::WardPairBehindLb => "apt-get install -y haproxy",
            PeerKind::Squid => "apt-get install -y squid-openssl",
            PeerKind::Tinyproxy => "apt-get install -y tinyproxy",
            PeerKind::Dante => "apt-get install -y dante-server",
            PeerKind::MitmTunnel | PeerKind::MitmIntercept => "pip install mitmproxy",
        }
    }

    /// The program to run, if installed (`ward` is given by the caller).
    pub fn find_program(self, ward: Option<&Path>) -> Option<PathBuf> {
        if matches!(self, PeerKind::Ward | PeerKind::WardLogs) {
            return ward.filter(|p| p.is_file()).map(Path::to_path_buf);
        }
        if matches!(self, PeerKind::WardBehindLb | PeerKind::WardPairBehindLb) {
            crate::balancer::haproxy_program()?;
            return ward.filter(|p| p.is_file()).map(Path::to_path_buf);
        }
        if self == PeerKind::Squid && !Path::new(SQUID_CERTGEN).is_file() {
            return None;
        }
        // Daemons live in sbin, which is not always on PATH.
        let path = std::env::var_os("PATH").unwrap_or_default();
        std::env::split_paths(&path)
            .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
            .map(|dir| dir.join(self.program_name()))
            .find(|p| p.is_file())
    }

    /// First line of the program's version output, for the report.
    pub fn version(self, program: &Path) -> String {
        let flag = match self {
            PeerKind::Tinyproxy | PeerKind::Dante => "-v",
            _ => "--version",
        };
        let out = Command::new(program)
            .arg(flag)
            .stdin(Stdio::null())
            .output();
        let text = out
            .map(|o| [o.stdout, o.stderr].concat())
            .unwrap_or_default();
        String::from_utf8_lossy(&text)
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("?")
            .trim()
            .to_owned()
    }
}

/// What every start needs to know.
pub struct PeerEnv<'a> {
    pub pki: &'a Pki,
    pub nofile: u64,
}

/// A started proxy; dropping it stops the process group and removes its temp dir.
pub struct Running {
    // Field order matters: the processes stop before their files go.
    pub(crate) child: ChildGuard,
    /// The wards behind a load balancer (`child` is then HAProxy).
    pub(crate) replicas: Vec<ChildGuard>,
    pub port: u16,
    /// ward's admin endpoint (/metrics), for the soak.
    pub admin_port: Option<u16>,
    /// The CA a client must trust when this proxy intercepts.
    pub intercept_ca_pem: String,
    pub(crate) _dir: TempDir,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Every process that serves this subject: the proxy, or HAProxy and its replicas.
    pub fn pids(&self) -> Vec<u32> {
        std::iter::once(self.child.pid())
            .chain(self.replicas.iter().map(ChildGuard::pid))
            .collect()
    }
}

/// Fills `{{KEY}}` placeholders.
pub(crate) fn render(template: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(template.to_owned(), |text, (key, value)| {
        text.replace(&format!("{{{{{key}}}}}"), value)
    })
}

pub fn start(
    kind: PeerKind,
    variant: Variant,
    program: &Path,
    env: &PeerEnv<'_>,
) -> Result<Running> {
    match kind {
        PeerKind::WardBehindLb => return crate::balancer::start(program, env, 1),
        PeerKind::WardPairBehindLb => return crate::balancer::start(program, env, 2),
        _ => {}
    }
    let dir = tempfile::Builder::new().prefix("ward-e2e-").tempdir()?;
    // Squid drops to its own user and must read its files.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
    let d = dir.path();
    fs::write(d.join("bench-ca.pem"), &env.pki.bench_ca_pem)?;
    let port = free_port()?;
    let admin_port = free_port()?;
    let mut vars = vec![
        ("PORT", port.to_string()),
        ("ADMIN_PORT", admin_port.to_string()),
        ("DIR", d.display().to_string()),
        ("MAX_CONNECTIONS", env.nofile.to_string()),
        ("MAX_FDS", env.nofile.to_string()),
        ("MAX_CLIENTS", (env.nofile / 2).to_string()),
    ];
    vars.extend(variants::template_vars(kind, variant));
    let log = d.join(format!("{}.log", kind.name()));
    let mut cmd = command(kind, program, d, &vars, env)?;
    if variant == Variant::OneWorker {
        cmd.env(variants::WORKERS_ENV, "1");
    }
    cmd.stdin(Stdio::null())
        .stdout(fs::File::create(d.join("stdout.log"))?)
        .stderr(fs::File::create(&log)?);
    let mut child = ChildGuard::spawn(kind.name(), &mut cmd)?;
    let ready =
        wait_listening(&mut child, port, READY_TIMEOUT).and_then(|()| intercept_ca(kind, d, env));
    match ready {
        Ok(intercept_ca_pem) => Ok(Running {
            child,
            replicas: Vec::new(),
            port,
            admin_port: matches!(kind, PeerKind::Ward | PeerKind::WardLogs).then_some(admin_port),
            intercept_ca_pem,
            _dir: dir,
        }),
        Err(e) => {
            let tail = [
                log_tail(&log, LOG_TAIL_LINES),
                log_tail(&d.join("stdout.log"), LOG_TAIL_LINES),
            ]
            .join("\n");
            Err(e.context(format!(
                "{} did not start; its log ends:\n{tail}",
                kind.name()
            )))
        }
    }
}

fn command(
    kind: PeerKind,
    program: &Path,
    d: &Path,
    vars: &[(&str, String)],
    env: &PeerEnv<'_>,
) -> Result<Command> {
    let mut cmd = Command::new(program);
    match kind {
        PeerKind::WardBehindLb | PeerKind::WardPairBehindLb => {
            anyhow::bail!("{} is started by balancer::start", kind.name())
        }
        PeerKind::Ward | PeerKind::WardLogs => {
            let policy = d.join("policy.yaml");
            fs::write(&policy, render(include_str!("../peers/ward.yaml"), vars))?;
            let level = if kind == PeerKind::WardLogs {
                "info"
            } else {
                "warn"
            };
            cmd.env("RUST_LOG", level)
                .args(["--log-format", "json", "-c"])
                .arg(&policy)
                .arg("run");
        }
        PeerKind::Squid => {
            fs::write(
                d.join("squid.conf"),
                render(include_str!("../peers/squid.conf"), vars),
            )?;
            fs::write(d.join("peer-ca.pem"), &env.pki.peer_ca_cert_pem)?;
            fs::write(d.join("peer-ca.key"), &env.pki.peer_ca_key_pem)?;
            fs::write(
                d.join("hosts"),
                format!("127.0.0.1 {ORIGIN_NAME} {INSPECT_NAME}\n"),
            )?;
            let db = d.join("ssl_db");
            let status = Command::new(SQUID_CERTGEN)
                .arg("-c")
                .arg("-s")
                .arg(&db)
                .args(["-M", "16MB"])
                .stdout(Stdio::null())
                .status()?;
            anyhow::ensure!(status.success(), "{SQUID_CERTGEN} -c failed: {status}");
            chown_tree(d, SQUID_USER)?;
            cmd.arg("-N").arg("-f").arg(d.join("squid.conf"));
        }
        PeerKind::Tinyproxy => {
            fs::write(
                d.join("tinyproxy.conf"),
                render(include_str!("../peers/tinyproxy.conf"), vars),
            )?;
            cmd.arg("-d").arg("-c").arg(d.join("tinyproxy.conf"));
        }
        PeerKind::Dante => {
            fs::write(
                d.join("danted.conf"),
                render(include_str!("../peers/danted.conf"), vars),
            )?;
            cmd.arg("-f")
                .arg(d.join("danted.conf"))
                .arg("-p")
                .arg(d.join("danted.pid"));
        }
        PeerKind::MitmTunnel | PeerKind::MitmIntercept => {
            let confdir = d.join("mitmproxy");
            fs::create_dir(&confdir)?;
            // mitmproxy takes its CA as key and certificate in one PEM.
            let ca = format!("{}{}", env.pki.peer_ca_key_pem, env.pki.peer_ca_cert_pem);
            fs::write(confdir.join("mitmproxy-ca.pem"), ca)?;
            let template = if kind == PeerKind::MitmTunnel {
                include_str!("../peers/mitmproxy-tunnel.args")
            } else {
                include_str!("../peers/mitmproxy-intercept.args")
            };
            let args = render(template, vars);
            cmd.args(
                args.lines()
                    .filter(|l| !l.starts_with('#') && !l.is_empty()),
            );
        }
    }
    Ok(cmd)
}

/// The CA a client trusts for this proxy's forged leaves (empty for pure tunnels).
fn intercept_ca(kind: PeerKind, d: &Path, env: &PeerEnv<'_>) -> Result<String> {
    match kind {
        PeerKind::Ward | PeerKind::WardLogs => ward_ca(&d.join("certs")),
        PeerKind::Squid | PeerKind::MitmIntercept => Ok(env.pki.peer_ca_cert_pem.clone()),
        PeerKind::Tinyproxy | PeerKind::Dante | PeerKind::MitmTunnel => Ok(String::new()),
        // balancer::start reads the shared CA itself.
        PeerKind::WardBehindLb | PeerKind::WardPairBehindLb => Ok(String::new()),
    }
}

/// The CA ward writes into `ca_dir` at start, once it is there.
pub(crate) fn ward_ca(ca_dir: &Path) -> Result<String> {
    let path = ca_dir.join("ca.pem");
    let written = || {
        fs::read_to_string(&path)
            .ok()
            .filter(|pem| pem.contains("END CERTIFICATE"))
    };
    testkit::poll_until(CA_WAIT, written)
        .with_context(|| format!("ward wrote no {}", path.display()))
}

fn chown_tree(root: &Path, user: &str) -> Result<()> {
    let passwd = fs::read_to_string("/etc/passwd")?;
    let entry = passwd
        .lines()
        .find(|l| l.split(':').next() == Some(user))
        .with_context(|| format!("no user {user}"))?;
    let fields: Vec<&str> = entry.split(':').collect();
    let uid: u32 = fields.get(2).context("passwd uid")?.parse()?;
    let gid: u32 = fields.get(3).context("passwd gid")?.parse()?;
    let mut stack = vec![root.to_path_buf()];
    // Bounded by the few files written above.
    while let Some(path) = stack.pop() {
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        if path.is_dir() {
            stack.extend(fs::read_dir(&path)?.flatten().map(|e| e.path()));
        }
    }
    Ok(())
}
