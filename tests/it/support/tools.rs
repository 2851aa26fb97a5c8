//! Running external clients (curl, openssl, python3, chromium, tinyproxy) with a hard timeout
//! and captured output, and deciding what a missing tool means: under CI=true a failure, on a
//! developer machine a loud skip.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[derive(Debug)]
pub struct Output {
    /// None when the command was killed at its timeout (or by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    /// stdout as bytes, for binary output (`ward ca export --der`).
    pub stdout_bytes: Vec<u8>,
    pub stderr: String,
    pub timed_out: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// Panics with the whole output unless the command exited 0.
    pub fn ok(self, what: &str) -> Output {
        assert!(self.success(), "{what} failed: {self:#?}");
        self
    }
}

/// Runs `cmd` with stdin closed, killing it after `timeout`.
pub fn run(mut cmd: Command, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {:?}: {e}", cmd.get_program()));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let exited = testkit::poll_until(timeout, || child.try_wait().expect("try_wait"));
    let timed_out = exited.is_none();
    let status = exited.unwrap_or_else(|| {
        let _ = child.kill();
        child.wait().expect("wait after kill")
    });
    let stdout_bytes = out_t.join().expect("stdout thread");
    Output {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout_bytes).into_owned(),
        stdout_bytes,
        stderr: String::from_utf8_lossy(&err_t.join().expect("stderr thread")).into_owned(),
        timed_out,
    }
}

/// True when `tool` is on PATH. When it is not: under CI (CI set) the test fails, elsewhere it
/// prints a loud skip notice and the caller returns early.
pub fn have(tool: &str) -> bool {
    if which(tool) {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("`{tool}` is missing and CI is set: .ci/run must install it");
    }
    eprintln!(
        "\n!!!!!!!! SKIPPED: `{tool}` is not installed; run .ci/run (or install it) to run this test !!!!!!!!\n"
    );
    false
}

fn which(tool: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(tool)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Hard limit for one curl run (curl's own --max-time is set below it).
const CURL_TIMEOUT: Duration = Duration::from_secs(30);

/// `curl -sS --max-time 20 ARGS…`, with `-w` appending `\n%{http_code} %{http_connect}` as the
/// last stdout line so the status of the response and of the CONNECT can be asserted.
pub fn curl(args: &[&str]) -> Curl {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20"])
        .args(["-w", "\n%{http_code} %{http_connect}"])
        .args(args)
        // An ambient proxy variable must never redirect a test.
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("NO_PROXY")
        .env_remove("no_proxy");
    let out = run(cmd, CURL_TIMEOUT);
    let (body, codes) = out.stdout.rsplit_once('\n').unwrap_or(("", &out.stdout));
    let mut it = codes.split_whitespace();
    let http_code = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    let connect_code = it.next().and_then(|c| c.parse().ok()).unwrap_or(0);
    Curl {
        body: body.to_owned(),
        http_code,
        connect_code,
        out,
    }
}

/// `curl -x PROXY --cacert TEST-CA https://origin.test:PORT/`: the test origin's page through
/// a proxy that tunnels it (the origin's own certificate is what curl must see).
pub fn curl_index_via(proxy: &str) -> Curl {
    let o = super::origins();
    curl(&[
        "-x",
        proxy,
        "--cacert",
        o.ca(),
        &o.https("origin.test", "/"),
    ])
}

#[derive(Debug)]
pub struct Curl {
    pub body: String,
    /// The final response's status (0 when there was none).
    pub http_code: u16,
    /// The proxy's answer to CONNECT (0 when there was no CONNECT).
    pub connect_code: u16,
    pub out: Output,
}

impl Curl {
    pub fn exit(&self) -> Option<i32> {
        self.out.code
    }

    /// Panics with everything curl said unless it exited 0 with `status`.
    pub fn expect_ok(&self, status: u16) -> &Curl {
        assert!(
            self.out.success() && self.http_code == status,
            "expected curl to succeed with {status}: {self:#?}"
        );
        self
    }
}
