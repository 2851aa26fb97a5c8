//! Headless Chromium for the browser path: a throwaway HOME whose NSS database trusts the test
//! CA and any other CA a test names (so certificates are verified for real, no
//! --ignore-certificate-errors), and `--dump-dom`.

use std::path::Path;
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

/// A temp HOME with `.pki/nssdb` trusting the test CA and `extra_cas` (PEM files).
fn home_trusting(extra_cas: &[&Path]) -> tempfile::TempDir {
    let home = tempfile::tempdir().expect("home");
    let db = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&db).expect("nssdb dir");
    let db_arg = format!("sql:{}", db.display());
    let mut cmd = Command::new("certutil");
    cmd.args(["-N", "-d", &db_arg, "--empty-password"]);
    run(cmd, Duration::from_secs(20)).ok("certutil -N");
    let test_ca = Path::new(origins().ca());
    for (i, ca) in std::iter::once(test_ca)
        .chain(extra_cas.iter().copied())
        .enumerate()
    {
        let mut cmd = Command::new("certutil");
        cmd.args([
            "-A",
            "-d",
            &db_arg,
            "-t",
            "C,,",
            "-n",
            &format!("ward-test-ca-{i}"),
            "-i",
        ])
        .arg(ca);
        run(cmd, Duration::from_secs(20)).ok("certutil -A");
    }
    home
}

/// `chromium --headless … EXTRA… --dump-dom URL`; stdout holds the rendered DOM.
pub fn dump_dom(extra: &[String], url: &str) -> Output {
    dump_dom_trusting(&[], extra, url)
}

/// `dump_dom`, with `extra_cas` (e.g. ward's interception CA) trusted beside the test CA.
pub fn dump_dom_trusting(extra_cas: &[&Path], extra: &[String], url: &str) -> Output {
    let home = home_trusting(extra_cas);
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
