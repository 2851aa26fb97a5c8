//! The admin token (issue 11, point 4): with `admin_token` every admin path but the probes, the
//! setup page and CA downloads (and `/metrics` under `admin_public_metrics: true`) answers 401
//! `WWW-Authenticate: Bearer` without `Authorization: Bearer <token>`; a non-loopback `admin`
//! without a token is refused by `ward check` and `ward run`. curl against the real binary.

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::tools::Output;
use crate::support::ward::ward_cli;
use crate::support::{Policy, Ward, curl};

const TOKEN: &str = crate::support::secrets::ADMIN_TOKEN;

/// curl's status, the `WWW-Authenticate` header (if any) and the body of one admin request.
struct Answer {
    status: u16,
    challenge: Option<String>,
    body: String,
}

fn ask(admin: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Answer {
    let url = format!("http://{admin}{path}");
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec!["-i", "-X", method, &url];
    if let Some(a) = &auth {
        args.extend(["-H", a]);
    }
    let got = curl(&args);
    assert!(got.out.success(), "curl {path}: {got:#?}");
    let (head, body) = got.body.split_once("\r\n\r\n").unwrap_or((&got.body, ""));
    let challenge = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("www-authenticate")
            .then(|| value.trim().to_owned())
    });
    Answer {
        status: got.http_code,
        challenge,
        body: body.to_owned(),
    }
}

fn start(extra: &[(&str, &str)]) -> (Ward, SocketAddr) {
    let mut policy = Policy::new().set("admin", "\"127.0.0.1:0\"");
    for (k, v) in extra {
        policy = policy.set(k, v);
    }
    let ward = Ward::start(&policy);
    let admin = ward.admin_addr();
    (ward, admin)
}

#[test]
fn with_a_token_private_paths_answer_401_until_it_is_shown() {
    let (ward, admin) = start(&[("admin_token", TOKEN)]);
    // The live flow view and its HAR included: they show what clients browsed.
    for path in ["/metrics", "/pinning", "/flows", "/flows.har"] {
        let none = ask(admin, "GET", path, None);
        assert_eq!(none.status, 401, "{path} without a token: {}", none.body);
        let challenge = none.challenge.expect("a WWW-Authenticate header");
        assert!(challenge.starts_with("Bearer "), "{challenge}");
        let wrong = ask(admin, "GET", path, Some("it-admin-token-5b1c0e9a77d3"));
        assert_eq!(wrong.status, 401, "{path} with a wrong token");
        assert!(wrong.challenge.is_some_and(|c| c.contains("invalid_token")));
        let right = ask(admin, "GET", path, Some(TOKEN));
        assert_eq!(right.status, 200, "{path} with the token: {}", right.body);
        assert!(right.challenge.is_none());
    }
    assert!(
        ask(admin, "GET", "/metrics", Some(TOKEN))
            .body
            .contains("ward_connections_total")
    );
    // A change of state asks for the token too; with it, the host is simply not pinned.
    assert_eq!(ask(admin, "DELETE", "/pinning/p.test", None).status, 401);
    assert_eq!(
        ask(admin, "DELETE", "/pinning/p.test", Some(TOKEN)).status,
        404
    );
    // Probes and what an untrusting device fetches stay open.
    assert_eq!(ask(admin, "GET", "/healthz", None).status, 200);
    assert_eq!(ask(admin, "GET", "/readyz", None).body, "ready\n");
    assert_eq!(ask(admin, "GET", "/proxy.pac", None).status, 200);
    assert_eq!(ask(admin, "GET", "/", None).status, 200);
    // An unknown path does not say it is unknown to a caller without the token.
    assert_eq!(ask(admin, "GET", "/nope", None).status, 401);
    assert_eq!(ask(admin, "GET", "/nope", Some(TOKEN)).status, 404);
    let refused = ward.wait_log(Duration::from_secs(5), |v| {
        crate::support::ward::message(v) == Some("admin request refused: wrong token")
    });
    assert!(refused.is_some(), "a wrong token is logged: {}", ward.log());
    assert!(
        !ward.stderr_text().contains(TOKEN),
        "the token leaks into the log"
    );
}

#[test]
fn public_metrics_answer_without_the_token_and_nothing_else_does() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("admin-token");
    std::fs::write(&file, format!("{TOKEN}\n")).expect("token file");
    let file = file.to_str().expect("utf-8").to_owned();
    let (_ward, admin) = start(&[
        ("admin_token_file", &file),
        ("admin_public_metrics", "true"),
    ]);
    let metrics = ask(admin, "GET", "/metrics", None);
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.body.contains("ward_connections_total"),
        "{}",
        metrics.body
    );
    assert_eq!(ask(admin, "GET", "/pinning", None).status, 401);
    // The file's trailing newline is not part of the token.
    assert_eq!(ask(admin, "GET", "/pinning", Some(TOKEN)).status, 200);
}

#[test]
fn without_a_token_an_admin_beyond_loopback_is_refused_by_check_and_run() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("policy.yaml");
    let yaml = Policy::new().set("admin", "\"0.0.0.0:0\"").render();
    std::fs::write(&path, &yaml).expect("write policy");
    let path = path.to_str().expect("utf-8");
    let names_the_key = |what: &str, out: &Output| {
        assert_eq!(out.code, Some(1), "{what}: {out:#?}");
        let line = out.stderr.lines().find(|l| l.contains(": admin: "));
        let line = line.unwrap_or_else(|| panic!("{what} names `admin`: {out:#?}"));
        assert!(line.contains("admin_token"), "{what}: {line}");
    };
    names_the_key("check", &ward_cli(&["check", "-c", path], dir.path()));
    names_the_key("run", &ward_cli(&["run", "-c", path], dir.path()));

    // With a token the same policy passes, and `ward check` does not print it.
    let yaml = Policy::new()
        .set("admin", "\"0.0.0.0:0\"")
        .set("admin_token", TOKEN)
        .render();
    std::fs::write(path, &yaml).expect("write policy");
    let out = ward_cli(&["check", "-c", path], dir.path());
    assert_eq!(out.code, Some(0), "{out:#?}");
    assert!(
        !format!("{}{}", out.stdout, out.stderr).contains(TOKEN),
        "{out:#?}"
    );
}
