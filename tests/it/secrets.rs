//! Secrets at rest (issue 15, point 5) through the real binary: users from an htpasswd
//! `users_file` (bcrypt from `ward passwd`, argon2id from the crate) with real curl, over HTTP
//! and SOCKS5; a wrong password is 407; an edit of the file reloads, a bad line keeps the
//! previous users and `ward check` names every bad line; plaintext passwords are warned about;
//! a CA key that others can read stops `ward run` unless `--allow-insecure-key`; and no admin
//! or setup-page path ever serves the key.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;

use crate::inspect::inspecting_policy;
use crate::support::origin::INDEX_BODY;
use crate::support::secrets::{PASSWORD, PASSWORD_BOB, WRONG_PASSWORD, alice_inline};
use crate::support::tools::run;
use crate::support::ward::{EVENT_WAIT, message, ward_bin, ward_cli};
use crate::support::{Policy, Ward, curl, have, origins};

/// A policy file and its users file in a fresh folder, the way an operator lays them out.
struct Laid {
    dir: tempfile::TempDir,
    policy: PathBuf,
}

impl Laid {
    fn new(policy: &Policy, users: &str) -> Laid {
        let dir = tempfile::Builder::new()
            .prefix("ward-secrets-")
            .tempdir()
            .expect("temp dir");
        let policy_path = dir.path().join("policy.yaml");
        std::fs::write(&policy_path, policy.render()).expect("policy");
        let laid = Laid {
            dir,
            policy: policy_path,
        };
        laid.write_users(users);
        laid
    }

    fn users_path(&self) -> PathBuf {
        self.dir.path().join("users.htpasswd")
    }

    fn write_users(&self, text: &str) {
        std::fs::write(self.users_path(), text).expect("users file");
    }

    fn policy(&self) -> &str {
        self.policy.to_str().expect("utf-8 path")
    }

    fn start(self) -> Ward {
        let policy = self.policy.clone();
        Ward::start_in(self.dir, policy, &[])
    }
}

fn with_users_file() -> Policy {
    Policy::new().set("users_file", "users.htpasswd")
}

/// `echo PASSWORD | ward passwd USER`: the line the README tells operators to make.
fn ward_passwd(user: &str, password: &str) -> String {
    // Cost 10, the lowest it takes: the tests check formats, not strength.
    let script = format!("printf '%s\\n' '{password}' | \"$0\" passwd {user} --cost 10");
    let mut sh = Command::new("sh");
    sh.args(["-c", &script, ward_bin()]);
    let out = run(sh, std::time::Duration::from_secs(20));
    assert!(out.success(), "ward passwd: {out:#?}");
    let line = out.stdout.trim().to_owned();
    assert!(line.starts_with(&format!("{user}:$2y$10$")), "{line}");
    assert!(!line.contains(password), "{line}");
    line
}

fn argon2id_line(user: &str, password: &str) -> String {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
    let params = Params::new(8 * 1024, 2, 1, None).expect("params");
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_with_salt(password.as_bytes(), b"ward-it-salt-16b")
        .expect("argon2");
    format!("{user}:{hash}")
}

/// The CONNECT status curl got through ward as `user:password` over HTTP, or its exit code's
/// outcome over SOCKS5 (`socks5h://`): the status of the page, 0 when refused.
fn fetch_as(ward: &Ward, scheme: &str, user: &str, password: &str) -> (u16, u16) {
    let o = origins();
    let proxy = format!("{scheme}://{}", ward.addr);
    let creds = format!("{user}:{password}");
    let url = o.https("origin.test", "/");
    let r = curl(&[
        "-x",
        &proxy,
        "--proxy-user",
        &creds,
        "--cacert",
        o.ca(),
        &url,
    ]);
    if r.http_code == 200 {
        assert_eq!(r.body, INDEX_BODY);
    }
    (r.connect_code, r.http_code)
}

#[test]
fn bcrypt_and_argon2_users_from_a_users_file_log_in_with_curl_and_a_wrong_password_is_407() {
    if !have("curl") {
        return;
    }
    let users = format!(
        "# made by ward passwd and the argon2 crate\n{}\n{}\n",
        ward_passwd("alice", PASSWORD),
        argon2id_line("bob", PASSWORD_BOB)
    );
    let ward = Laid::new(&with_users_file(), &users).start();
    assert_eq!(fetch_as(&ward, "http", "alice", PASSWORD), (200, 200));
    assert_eq!(fetch_as(&ward, "http", "bob", PASSWORD_BOB), (200, 200));
    // A browser's later connections: the cached success lets them in too.
    assert_eq!(fetch_as(&ward, "http", "alice", PASSWORD), (200, 200));
    assert_eq!(fetch_as(&ward, "http", "alice", WRONG_PASSWORD).0, 407);
    assert_eq!(fetch_as(&ward, "http", "bob", PASSWORD).0, 407);
    assert_eq!(fetch_as(&ward, "http", "mallory", PASSWORD).0, 407);
    assert_eq!(fetch_as(&ward, "socks5h", "bob", PASSWORD_BOB).1, 200);
    assert_eq!(fetch_as(&ward, "socks5h", "alice", WRONG_PASSWORD).1, 0);
    let rec = ward.expect_access("for bob", |v| v["fields"]["user"] == "bob");
    assert_eq!(rec["fields"]["user"], "bob");
}

#[test]
fn an_edited_users_file_reloads_and_a_bad_line_keeps_the_previous_users() {
    if !have("curl") {
        return;
    }
    let alice = ward_passwd("alice", PASSWORD);
    let laid = Laid::new(&with_users_file(), &format!("{alice}\n"));
    let users_path = laid.users_path();
    let policy = laid.policy.clone();
    let ward = laid.start();
    assert_eq!(fetch_as(&ward, "http", "bob", PASSWORD_BOB).0, 407);

    let before = ward.reload_count();
    let good = format!("{alice}\n{}\n", argon2id_line("bob", PASSWORD_BOB));
    std::fs::write(&users_path, &good).expect("edit");
    ward.wait_reloaded(before);
    assert_eq!(fetch_as(&ward, "http", "bob", PASSWORD_BOB), (200, 200));

    // Two bad lines: both named by `ward check`, and the running proxy keeps alice and bob.
    let bad = format!("{good}carol:{{SHA}}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n\ndave:$apr1$x$y\n");
    std::fs::write(&users_path, &bad).expect("edit");
    ward.wait_log(EVENT_WAIT, |v| {
        message(v).is_some_and(|m| m.contains("reload failed"))
    })
    .unwrap_or_else(|| panic!("no failed reload; log:\n{}", ward.log()));
    assert_eq!(fetch_as(&ward, "http", "bob", PASSWORD_BOB), (200, 200));
    let dir = policy.parent().expect("folder");
    let out = ward_cli(&["check", "-c", policy.to_str().expect("utf-8")], dir);
    assert_eq!(out.code, Some(1), "{out:#?}");
    let file = users_path.display().to_string();
    assert!(
        out.stderr.contains(&format!(
            "{file}:3: user \"carol\": {{SHA}} is unsalted SHA-1"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(&format!("{file}:5: user \"dave\": MD5-crypt")),
        "{}",
        out.stderr
    );
}

#[test]
fn ward_check_lists_the_users_file_and_warns_about_plaintext_passwords() {
    let laid = Laid::new(
        &with_users_file().set("users", &alice_inline()),
        &format!("{}\n", argon2id_line("bob", PASSWORD_BOB)),
    );
    let out = ward_cli(&["check", "-c", laid.policy()], laid.dir.path());
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert!(out.stdout.contains("2 users"), "{}", out.stdout);
    let listed = format!("{}: 1 entries (users_file)", laid.users_path().display());
    assert!(out.stdout.contains(&listed), "{}", out.stdout);
    let warning = out
        .stderr
        .lines()
        .find(|l| l.starts_with("warning: "))
        .unwrap_or_else(|| panic!("no warning: {out:#?}"));
    assert!(
        warning.contains(&format!("{}:", laid.policy())),
        "{warning}"
    );
    assert!(
        warning.contains("users[0].password: a plaintext password"),
        "{warning}"
    );
    assert!(
        warning.contains("users_file") && warning.contains("htpasswd -nB"),
        "{warning}"
    );

    // The same name inline and in the file is an error at the file's line.
    laid.write_users(&format!("{}\n", argon2id_line("alice", PASSWORD_BOB)));
    let out = ward_cli(&["check", "-c", laid.policy()], laid.dir.path());
    assert_eq!(out.code, Some(1), "{out:#?}");
    let at = format!(
        "{}:1: user \"alice\" is already defined at {}:",
        laid.users_path().display(),
        laid.policy()
    );
    assert!(out.stderr.contains(&at), "{}", out.stderr);
}

/// Lays out an inspecting policy with a CA whose key has `mode`.
fn with_key_mode(mode: u32) -> (Laid, PathBuf) {
    let laid = Laid::new(&inspecting_policy(), "");
    let out = ward_cli(&["ca", "init", "-c", laid.policy()], laid.dir.path());
    assert!(out.success(), "{out:#?}");
    let key = laid.dir.path().join("certs/ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod");
    (laid, key)
}

#[test]
fn a_ca_key_others_can_read_stops_ward_unless_allow_insecure_key() {
    let (laid, key) = with_key_mode(0o644);
    let shown = key.display().to_string();
    let expect_refusal = |what: &str, out: &crate::support::tools::Output| {
        assert_eq!(out.code, Some(1), "{what}: {out:#?}");
        for part in [
            shown.as_str(),
            "mode 0644",
            "chmod 600",
            "--allow-insecure-key",
        ] {
            assert!(
                out.stderr.contains(part),
                "{what} must name {part:?}: {}",
                out.stderr
            );
        }
        assert!(!out.stderr.contains("PRIVATE KEY"), "{}", out.stderr);
    };
    let run = ward_cli(&["-c", laid.policy(), "run"], laid.dir.path());
    expect_refusal("run", &run);
    let check = ward_cli(&["-c", laid.policy(), "check"], laid.dir.path());
    expect_refusal("check", &check);
    let checked = ward_cli(
        &["-c", laid.policy(), "--allow-insecure-key", "check"],
        laid.dir.path(),
    );
    assert_eq!(checked.code, Some(0), "{checked:#?}");
    assert!(checked.stderr.contains("warning: ") && checked.stderr.contains("chmod 600"));

    let mut cmd = Command::new(ward_bin());
    cmd.args([
        "--log-format",
        "json",
        "--allow-insecure-key",
        "-c",
        laid.policy(),
        "run",
    ])
    .current_dir(laid.dir.path());
    let policy = laid.policy.clone();
    let ward = Ward::spawn(laid.dir, policy, cmd);
    let warned = ward.records().into_iter().any(|v| {
        v["level"] == "WARN"
            && message(&v).is_some_and(|m| m.contains("mode 0644") && m.contains(&shown))
    });
    assert!(warned, "a warning naming the key: {}", ward.log());
}

#[test]
fn a_private_ca_key_starts_as_before() {
    let (laid, _) = with_key_mode(0o600);
    let check = ward_cli(&["-c", laid.policy(), "check"], laid.dir.path());
    assert_eq!(check.code, Some(0), "{check:#?}");
    assert!(!check.stderr.contains("warning"), "{}", check.stderr);
    let _ward = laid.start();
}

/// `INTEGER 1, OCTET STRING (32)`: where RFC 5915's ECPrivateKey (P-256) holds its scalar.
const EC_PRIVATE_KEY_START: [u8; 5] = [0x02, 0x01, 0x01, 0x04, 0x20];

/// Paths a scanner would try for the key, plain and encoded, absolute and climbing out.
const KEY_PATHS: [&str; 16] = [
    "/ca.key",
    "/ca-key.pem",
    "/ca.key.pem",
    "/certs/ca.key",
    "/../ca.key",
    "/../certs/ca.key",
    "/%2e%2e/ca.key",
    "/..%2fca.key",
    "/%2E%2E%2Fcerts%2Fca.key",
    "/%63a.key",
    "//ca.key",
    "/ca.pem/../ca.key",
    "/ca.key%00.pem",
    "/ca.pem?file=ca.key",
    "/./ca.key",
    "/ca.pem",
];

#[test]
fn no_admin_or_setup_page_path_serves_the_ca_key() {
    if !have("curl") {
        return;
    }
    let ward = Ward::start(&inspecting_policy().set("admin", "\"127.0.0.1:0\""));
    let admin = ward.admin_addr();
    let key_pem = std::fs::read_to_string(ward.dir().join("certs/ca.key")).expect("ca.key");
    let body: String = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let key_der = base64::engine::general_purpose::STANDARD
        .decode(&body)
        .expect("PEM body");
    // The private scalar: RFC 5915's ECPrivateKey inside the PKCS#8, `version 1` then an
    // OCTET STRING of 32 bytes (the rest of the DER is the public key, which the certificate
    // rightly carries).
    let at = key_der
        .windows(EC_PRIVATE_KEY_START.len())
        .position(|w| w == EC_PRIVATE_KEY_START)
        .expect("an ECPrivateKey")
        + EC_PRIVATE_KEY_START.len();
    let scalar = &key_der[at..at + 32];
    let key_lines: Vec<&str> = key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let mut served = 0;
    let proxy = ward.http_url();
    for path in KEY_PATHS
        .iter()
        .chain(&["/", "/ca.der", "/ca.crt", "/ca.mobileconfig"])
    {
        let direct = format!("http://{admin}{path}");
        let setup = format!("http://ward.setup{path}");
        let asks: [Vec<&str>; 2] = [
            vec!["--path-as-is", direct.as_str()],
            vec!["--path-as-is", "-x", proxy.as_str(), setup.as_str()],
        ];
        for args in &asks {
            let r = curl(args);
            let bytes = &r.out.stdout_bytes;
            served += usize::from(r.http_code == 200);
            assert!(!r.body.contains("PRIVATE KEY"), "{args:?}: {}", r.body);
            for line in &key_lines {
                assert!(!r.body.contains(line), "{args:?} serves the key's PEM");
            }
            let leaked = bytes.windows(scalar.len()).any(|b| b == scalar);
            assert!(!leaked, "{args:?} serves the key's private scalar");
        }
    }
    // The certificate is still served (the scan did reach real pages).
    assert!(served >= 6, "only {served} answers were 200");
}

/// The users file's path is relative to the policy file, wherever ward is started from.
#[test]
fn the_users_file_path_is_relative_to_the_policy_file() {
    let laid = Laid::new(
        &with_users_file(),
        &format!("{}\n", argon2id_line("bob", PASSWORD_BOB)),
    );
    let out = ward_cli(&["check", "-c", laid.policy()], Path::new("/"));
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert!(out.stdout.contains("1 user"), "{}", out.stdout);
}
