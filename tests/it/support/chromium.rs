//! Headless Chromium for the browser path: a throwaway HOME whose NSS database trusts the test
//! CA (so certificates are verified for real, no --ignore-certificate-errors), and `--dump-dom`.

use std::process::Command;
use std::time::Duration;

use super::origin::origins;
use super::tools::{Output, have, run};

/// Chromium's cold start on 2 busy cores is slow; a page load through ward is not.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);

/// True when chromium and certutil are installed (see `tools::have` for what missing means).
pub fn available() -> bool {
    have("chromium") && have("certutil")
}

/// A temp HOME with `.pki/nssdb` trusting the test CA.
fn home_trusting_test_ca() -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("home");
    let db = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&db).expect("nssdb dir");
    let db_arg = format!("sql:{}", db.display());
    let mut cmd = Command::new("certutil");
    cmd.args(["-N", "-d", &db_arg, "--empty-password"]);
    run(cmd, Duration::from_secs(20)).ok("certutil -N");
    let mut cmd = Command::new("certutil");
    cmd.args(["-A", "-d", &db_arg, "-t", "C,,", "-n", "ward-test-ca", "-i"])
        .arg(origins().ca());
    run(cmd, Duration::from_secs(20)).ok("certutil -A");
    home
}

/// `chromium --headless … EXTRA… --dump-dom URL`; stdout holds the rendered DOM.
pub fn dump_dom(extra: &[String], url: &str) -> Output {
    let home = home_trusting_test_ca();
    let mut cmd = Command::new("chromium");
    cmd.env("HOME", home.path())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
        ])
        .arg(format!(
            "--user-data-dir={}",
            home.path().join("profile").display()
        ))
        .args(extra)
        .arg("--dump-dom")
        .arg(url);
    run(cmd, CHROMIUM_TIMEOUT)
}
