//! The ward process fixture: writes a policy into a temp folder, runs the real binary with JSON
//! logs, learns its port from the "listening" record, keeps collecting stderr in a background
//! thread so tests can assert on log records, and stops it on drop (SIGTERM, then SIGKILL),
//! then fails the test if its stdout or stderr holds one of the tests' secrets
//! ([`super::secrets`]).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::policy::Policy;
use super::secrets;

/// How long ward may take to start listening (a cold start on a busy 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a test waits for an event ward announces (a reload, a failed reload): generous,
/// because a busy machine may delay it by seconds, and the wait ends as soon as it happens.
pub const EVENT_WAIT: Duration = Duration::from_secs(20);
/// After SIGTERM on drop, how long before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

pub fn ward_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ward")
}

/// Lines ward has written to stderr so far (and whether stderr closed), and a condition to
/// wait for more.
#[derive(Default)]
struct LogSink {
    lines: Mutex<Lines>,
    grew: Condvar,
}

#[derive(Default)]
struct Lines {
    text: Vec<String>,
    closed: bool,
}

pub struct Ward {
    child: Child,
    /// Removed on drop.
    _dir: tempfile::TempDir,
    policy_path: PathBuf,
    logs: Arc<LogSink>,
    /// stdout, which ward should leave empty; scanned for secrets like the logs.
    stdout: Arc<LogSink>,
    pub addr: SocketAddr,
    exit: Option<ExitStatus>,
}

impl Ward {
    /// Starts ward on `policy` and waits until it listens.
    pub fn start(policy: &Policy) -> Ward {
        Self::start_yaml(&policy.render())
    }

    pub fn start_yaml(yaml: &str) -> Ward {
        let dir = tempfile::Builder::new()
            .prefix("ward-it-")
            .tempdir()
            .expect("temp dir");
        let policy_path = dir.path().join("policy.yaml");
        std::fs::write(&policy_path, yaml).expect("write policy");
        Self::start_in(dir, policy_path, &[])
    }

    /// Starts ward on a policy file already laid out in `dir` (a ConfigMap's symlinks, say),
    /// with extra environment variables, and waits until it listens.
    pub fn start_in(dir: tempfile::TempDir, policy_path: PathBuf, env: &[(&str, &str)]) -> Ward {
        let mut cmd = Command::new(ward_bin());
        cmd.args(["--log-format", "json", "-c"])
            .arg(&policy_path)
            .arg("run")
            .current_dir(dir.path())
            .envs(env.iter().copied());
        Self::spawn(dir, policy_path, cmd)
    }

    /// Runs `cmd` (ward with JSON logs, on `policy_path` in `dir`) and waits until it listens.
    pub fn spawn(dir: tempfile::TempDir, policy_path: PathBuf, mut cmd: Command) -> Ward {
        let yaml = std::fs::read_to_string(&policy_path).unwrap_or_default();
        let mut child = cmd
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ward");
        let logs = Arc::new(LogSink::default());
        let stderr = child.stderr.take().expect("stderr pipe");
        let sink = logs.clone();
        std::thread::spawn(move || collect(stderr, &sink));
        let stdout_sink = Arc::new(LogSink::default());
        let stdout = child.stdout.take().expect("stdout pipe");
        let sink = stdout_sink.clone();
        std::thread::spawn(move || collect(stdout, &sink));
        let mut ward = Ward {
            child,
            _dir: dir,
            policy_path,
            logs,
            stdout: stdout_sink,
            addr: "0.0.0.0:0".parse().expect("placeholder"),
            exit: None,
        };
        let listening = ward
            .wait_log(START_TIMEOUT, |v| message(v) == Some("listening"))
            .unwrap_or_else(|| {
                panic!(
                    "ward did not log \"listening\" within {START_TIMEOUT:?}; policy:\n{yaml}\nstderr:\n{}",
                    ward.stderr_text()
                )
            });
        let addr = field(&listening, "addr").expect("listening record has fields.addr");
        ward.addr = addr.parse().expect("listening addr parses");
        ward
    }

    /// The admin endpoint's address, from its "admin listening" record (bounded wait).
    pub fn admin_addr(&self) -> SocketAddr {
        self.wait_log(Duration::from_secs(5), |v| {
            message(v) == Some("admin listening")
        })
        .and_then(|v| field(&v, "addr"))
        .expect("admin address")
        .parse()
        .expect("admin addr")
    }

    /// `http://127.0.0.1:PORT`, for `curl -x` and friends.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The folder holding policy.yaml (and `certs/`, ward's CA, when the policy inspects).
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Replaces the policy file in place (an editor's save; the watcher must see it).
    pub fn write_policy(&self, yaml: &str) {
        std::fs::write(&self.policy_path, yaml).expect("rewrite policy");
    }

    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Every stderr line so far that parsed as JSON.
    pub fn records(&self) -> Vec<Value> {
        let lines = self.logs.lines.lock().expect("log lock");
        lines
            .text
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Everything ward wrote to stderr, and whether the process is still running (a failed
    /// assertion prints this, so a crash is told apart from a wrong answer).
    pub fn stderr_text(&self) -> String {
        let text = self.logs.lines.lock().expect("log lock").text.join("\n");
        let state = if self.alive() { "running" } else { "EXITED" };
        format!("{text}\n[ward pid {} is {state}]", self.pid())
    }

    /// [`Ward::stderr_text`], formatted only when shown: for the messages of waits that time
    /// out, which should carry the log as it was then.
    pub fn log(&self) -> impl std::fmt::Display + '_ {
        struct Log<'a>(&'a Ward);
        impl std::fmt::Display for Log<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0.stderr_text())
            }
        }
        Log(self)
    }

    /// True while the process runs (a zombie that exited counts as gone).
    pub fn alive(&self) -> bool {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // The state letter follows the parenthesised command name.
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        matches!(state, Some(s) if s != 'Z' && s != 'X')
    }

    /// Waits up to `timeout` for a record matching `pred` (already logged or to come).
    /// How many "policy reloaded" records ward has written so far: take it before a change.
    pub fn reload_count(&self) -> usize {
        self.records().iter().filter(|v| is_reload(v)).count()
    }

    /// Waits for the reload after the `before`-th (see [`Ward::reload_count`]) and says how
    /// long it took; panics with the log after [`EVENT_WAIT`].
    pub fn wait_reloaded(&self, before: usize) -> Duration {
        let start = Instant::now();
        let seen = std::cell::Cell::new(0);
        self.wait_log(EVENT_WAIT, |v| {
            seen.set(seen.get() + usize::from(is_reload(v)));
            seen.get() > before
        })
        .unwrap_or_else(|| {
            panic!(
                "no reload within {EVENT_WAIT:?}; log:\n{}",
                self.stderr_text()
            )
        });
        start.elapsed()
    }

    pub fn wait_log(&self, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.logs.lines.lock().expect("log lock");
        let mut seen = 0;
        loop {
            for l in &lines.text[seen..] {
                if let Ok(v) = serde_json::from_str::<Value>(l)
                    && pred(&v)
                {
                    return Some(v);
                }
            }
            seen = lines.text.len();
            let now = Instant::now();
            if now >= deadline || lines.closed {
                return None;
            }
            lines = self
                .logs
                .grew
                .wait_timeout(lines, deadline - now)
                .expect("log wait")
                .0;
        }
    }

    /// Waits for an access record matching `pred`, panicking with the whole log if none comes.
    pub fn expect_access(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_log(Duration::from_secs(5), |v| is_access(v) && pred(v))
            .unwrap_or_else(|| {
                panic!(
                    "no access record {what} within 5 s; stderr:\n{}",
                    self.stderr_text()
                )
            })
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(s) = self.exit {
            return Some(s);
        }
        let child = &mut self.child;
        self.exit = testkit::poll_until(timeout, || child.try_wait().expect("try_wait"));
        self.exit
    }
}

impl Drop for Ward {
    fn drop(&mut self) {
        let exited = self.exit.is_some() || matches!(self.child.try_wait(), Ok(Some(_)));
        if !exited {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.pid().to_string())
                .status();
            if self.wait_exit(STOP_TIMEOUT).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        // The whole output, the lines written while stopping included.
        for (sink, stream) in [(&self.logs, "stderr"), (&self.stdout, "stdout")] {
            let text = sink.all_after_close(CLOSE_WAIT);
            secrets::assert_none_in(&text, stream);
        }
    }
}

/// How long, after the process ended, its pipes may take to deliver their last lines.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

impl LogSink {
    /// Every line, once the pipe has closed (or after `wait`, with what came by then).
    fn all_after_close(&self, wait: Duration) -> String {
        let lines = self.lines.lock().expect("log lock");
        let (lines, _) = self
            .grew
            .wait_timeout_while(lines, wait, |l| !l.closed)
            .expect("log wait");
        lines.text.join("\n")
    }
}

fn collect(stderr: impl std::io::Read, sink: &LogSink) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        sink.lines.lock().expect("log lock").text.push(line);
        sink.grew.notify_all();
    }
    sink.lines.lock().expect("log lock").closed = true;
    sink.grew.notify_all();
}

pub fn is_access(v: &Value) -> bool {
    v["target"] == "ward::access"
}

/// `fields.message` of a tracing JSON record.
pub fn message(v: &Value) -> Option<&str> {
    v["fields"]["message"].as_str()
}

/// A field of a tracing JSON record as text (numbers and booleans rendered).
pub fn field(v: &Value, name: &str) -> Option<String> {
    match &v["fields"][name] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Runs `ward ARGS…` to completion (check, explain, ca) with a timeout; fails the test if
/// its output holds one of the tests' secrets.
pub fn ward_cli(args: &[&str], cwd: &Path) -> super::tools::Output {
    let mut cmd = Command::new(ward_bin());
    cmd.args(args).current_dir(cwd);
    let out = super::tools::run(cmd, Duration::from_secs(20));
    secrets::assert_none_in(&out.stdout, "stdout");
    secrets::assert_none_in(&out.stderr, "stderr");
    out
}

fn is_reload(v: &Value) -> bool {
    message(v) == Some("policy reloaded")
}
