//! The command line besides `run`: `ward check` (summary or file:line:col errors),
//! `ward explain` (the deciding rule with its file:line), `ward ca init|show|export`.

use std::path::Path;

use crate::support::policy::line_of;
use crate::support::tools::{Output, run};
use crate::support::ward::ward_cli;
use crate::support::{Policy, have};

fn write(dir: &Path, yaml: &str) -> String {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, yaml).expect("write policy");
    path.to_str().expect("utf-8").to_owned()
}

fn check(dir: &Path, yaml: &str) -> (String, Output) {
    let path = write(dir, yaml);
    let out = ward_cli(&["check", "-c", &path], dir);
    (path, out)
}

#[test]
fn check_valid_policy_prints_a_one_line_summary() {
    let dir = tempfile::tempdir().expect("dir");
    let (_, out) = check(
        dir.path(),
        &Policy::new()
            .rule("{name: r1, action: deny, hosts: [a.test]}")
            .render(),
    );
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert_eq!(out.stdout.lines().count(), 1, "one line: {out:#?}");
    assert!(!out.stdout.trim().is_empty());
}

/// Asserts exit 1 and a stderr line `PATH:LINE:COL: …` naming `key`.
fn assert_error_at(out: &Output, path: &str, line: usize, key: &str) {
    assert_eq!(out.code, Some(1), "{out:#?}");
    let prefix = format!("{path}:{line}:");
    let hit = out.stderr.lines().find(|l| l.starts_with(&prefix));
    let hit = hit.unwrap_or_else(|| panic!("no line starting {prefix:?}: {out:#?}"));
    let col = hit[prefix.len()..].split(':').next().unwrap_or("");
    assert!(
        col.parse::<usize>().is_ok_and(|c| c >= 1),
        "a column: {hit:?}"
    );
    assert!(hit.contains(key), "{hit:?} must name {key:?}");
}

#[test]
fn check_reports_file_line_column_and_key() {
    let dir = tempfile::tempdir().expect("dir");
    let yaml = format!("{}bogus_key: 1\n", Policy::new().render());
    let (path, out) = check(dir.path(), &yaml);
    assert_error_at(&out, &path, line_of(&yaml, "bogus_key"), "bogus_key");

    let yaml = Policy::new().set("default", "maybe").render();
    let (path, out) = check(dir.path(), &yaml);
    assert_error_at(&out, &path, line_of(&yaml, "default: maybe"), "default");

    let yaml = Policy::new()
        .rule("{name: ok, action: allow, hosts: [a.test]}")
        .rule("{name: typo, action: alow, hosts: [b.test]}")
        .render();
    let (path, out) = check(dir.path(), &yaml);
    assert_error_at(&out, &path, line_of(&yaml, "name: typo"), "action");

    let yaml = Policy::new().set("timeouts", "{connect: forever}").render();
    let (path, out) = check(dir.path(), &yaml);
    assert_error_at(&out, &path, line_of(&yaml, "connect: forever"), "connect");

    let yaml = Policy::new().set("listen", r#"["0.0.0.0:8080"]"#).render();
    let (_, out) = check(dir.path(), &yaml);
    assert_eq!(out.code, Some(1), "an open proxy is refused: {out:#?}");
    assert!(out.stderr.contains("open_proxy"), "{out:#?}");
}

#[test]
fn explain_names_the_deciding_rule() {
    let dir = tempfile::tempdir().expect("dir");
    let yaml = Policy::new()
        .set(
            "users",
            r#"[{name: alice, password: a}, {name: bob, password: b}]"#,
        )
        .rule(r#"{name: no-blocked, action: deny, hosts: ["blocked.lab.test"]}"#)
        .rule(r#"{name: alice-only, action: allow, hosts: [".staff.test"], users: [alice]}"#)
        .render();
    let path = write(dir.path(), &yaml);
    let first = |args: &[&str]| -> String {
        let mut all = vec!["explain", "-c", &path];
        all.extend_from_slice(args);
        let out = ward_cli(&all, dir.path());
        assert_eq!(
            out.code,
            Some(0),
            "explain exits 0 whatever the action: {out:#?}"
        );
        out.stdout.lines().next().unwrap_or("").to_owned()
    };
    let no_blocked = line_of(&yaml, "no-blocked");
    assert_rule_line(
        &first(&["blocked.lab.test:443"]),
        "deny",
        "no-blocked",
        no_blocked,
    );
    let sni = first(&["origin.test:443", "--sni", "BLOCKED.lab.test."]);
    assert_rule_line(&sni, "deny", "no-blocked", no_blocked);
    let staff = first(&["x.staff.test", "--user", "alice"]);
    assert_rule_line(&staff, "allow", "alice-only", line_of(&yaml, "alice-only"));
    let lab = first(&["origin.test:443", "--dst", "127.0.0.1"]);
    assert_rule_line(&lab, "allow", "lab", line_of(&yaml, "name: lab"));
    let got = first(&["x.staff.test", "--user", "bob", "--dst", "203.0.113.5"]);
    assert!(got.eq_ignore_ascii_case("deny default"), "{got:?}");
}

/// `explain HOST --sni OTHER` under `sni_mismatch: deny` says what the running proxy does
/// with that connection (it used to judge OTHER as the host and print `allow`), and where an
/// allowed connection is dialled.
#[test]
fn explain_tells_the_mismatch_and_the_upstream_as_the_proxy_acts() {
    let dir = tempfile::tempdir().expect("dir");
    let yaml = Policy::new()
        .set("sni_mismatch", "deny")
        .set("upstreams", r#"{corp: "http://u:hidden@127.0.0.1:9"}"#)
        .rule(r#"{name: via-corp, action: allow, hosts: [".corp.test"], upstream: corp}"#)
        .render();
    let path = write(dir.path(), &yaml);
    let explain = |args: &[&str]| {
        let mut all = vec!["explain", "-c", &path];
        all.extend_from_slice(args);
        let out = ward_cli(&all, dir.path());
        assert_eq!(out.code, Some(0), "{out:#?}");
        out.stdout
    };
    let out = explain(&["origin.test:443", "--sni", "other.lab.test"]);
    let lab = line_of(&yaml, "name: lab");
    assert!(
        out.starts_with(&format!(
            "deny sni_mismatch: CONNECT origin.test:443 but SNI other.lab.test; sni_mismatch: deny \
             (rule \"lab\" ({path}:{lab}) says allow)\nhost: origin.test\nsni: other.lab.test\n"
        )),
        "{out}"
    );
    let out = explain(&["origin.test:443"]);
    assert!(
        out.contains("\ndst: 127.0.0.1\n"),
        "the hosts override: {out}"
    );
    assert!(out.contains("\nupstream: direct"), "{out}");
    let out = explain(&["x.corp.test:443"]);
    assert!(out.contains("\nupstream: corp (127.0.0.1:9)"), "{out}");
    assert!(!out.contains("hidden"), "{out}");
}

/// `ACTION rule "NAME" (…policy.yaml:LINE)`, the action compared case-insensitively.
fn assert_rule_line(got: &str, action: &str, rule: &str, line: usize) {
    let (act, rest) = got.split_once(' ').unwrap_or((got, ""));
    assert!(act.eq_ignore_ascii_case(action), "action in {got:?}");
    assert!(
        rest.starts_with(&format!("rule \"{rule}\" ("))
            && rest.ends_with(&format!("policy.yaml:{line})")),
        "expected rule {rule:?} at line {line}: {got:?}"
    );
}

#[test]
fn ca_init_show_export() {
    let dir = tempfile::tempdir().expect("dir");
    let path = write(dir.path(), &Policy::new().render());
    let out = ward_cli(&["ca", "init", "-c", &path], dir.path());
    assert_eq!(out.code, Some(0), "{out:#?}");
    let key = dir.path().join("certs/ca.key");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key).expect("ca.key").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "ca.key must be private");
    let again = ward_cli(&["ca", "init", "-c", &path], dir.path());
    assert_ne!(again.code, Some(0), "init refuses to overwrite: {again:#?}");

    let pem = ward_cli(&["ca", "export", "-c", &path], dir.path());
    assert_eq!(pem.code, Some(0), "{pem:#?}");
    assert!(
        pem.stdout.starts_with("-----BEGIN CERTIFICATE-----"),
        "{pem:#?}"
    );
    assert_eq!(
        pem.stdout,
        std::fs::read_to_string(dir.path().join("certs/ca.pem")).expect("ca.pem")
    );
    let der = ward_cli(&["ca", "export", "--der", "-c", &path], dir.path());
    assert_eq!(der.stdout_bytes.first(), Some(&0x30), "DER is a SEQUENCE");

    let show = ward_cli(&["ca", "show", "-c", &path], dir.path());
    assert_eq!(show.code, Some(0), "{show:#?}");
    if have("openssl") {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(dir.path().join("certs/ca.pem"));
        let fp = run(cmd, std::time::Duration::from_secs(10)).ok("openssl x509");
        let hex: String = fp
            .stdout
            .split('=')
            .nth(1)
            .unwrap_or("")
            .chars()
            .filter(char::is_ascii_hexdigit)
            .collect();
        let shown: String = show
            .stdout
            .chars()
            .filter(char::is_ascii_hexdigit)
            .collect::<String>()
            .to_uppercase();
        assert!(
            hex.len() == 64 && shown.contains(&hex),
            "show prints the SHA-256 fingerprint {hex}: {show:#?}"
        );
    }
}
