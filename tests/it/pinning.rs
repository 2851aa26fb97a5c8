//! Pinning passthrough with real curl clients that reject ward's forged leaf (they trust only
//! the origin's CA, as a pinning app trusts only its own key): one client repeating itself does
//! not switch a host off, two distinct users do; the passthrough shows in the access record,
//! `/pinning`, `/metrics` and `ward explain`, survives a restart and is cleared by `DELETE`.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::inspect::inspecting_policy;
use crate::support::origin::INDEX_BODY;
use crate::support::secrets::{PASSWORD, PASSWORD_BOB};
use crate::support::ward::{field, is_access, message, ward_cli};
use crate::support::{Ward, curl, have, origins, wait_until};

const HOST: &str = "pinned.lab.test";

fn start(ca_dir: &std::path::Path) -> (Ward, SocketAddr) {
    let policy = inspecting_policy()
        .set("pinning_passthrough", "{failures: 2, window: 1m, ttl: 1h}")
        .set(
            "users",
            &format!(
                "[{{name: alice, password: \"{PASSWORD}\"}}, {{name: bob, password: \"{PASSWORD_BOB}\"}}]"
            ),
        )
        .set("admin", "\"127.0.0.1:0\"")
        .set("ca_dir", &format!("\"{}\"", ca_dir.display()));
    let ward = Ward::start(&policy);
    let admin = ward.admin_addr();
    (ward, admin)
}

/// curl as `user`, trusting only the origin's CA: exit 60 when ward forges, 200 when tunnelled.
fn as_user(ward: &Ward, user: &str) -> crate::support::tools::Curl {
    let o = origins();
    let password = if user == "alice" {
        PASSWORD
    } else {
        PASSWORD_BOB
    };
    let creds = format!("{user}:{password}");
    curl(&[
        "-x",
        &ward.http_url(),
        "--proxy-user",
        &creds,
        "--cacert",
        o.ca(),
        &o.https(HOST, "/"),
    ])
}

/// Waits (bounded) until `n` access records match `pred`.
fn wait_access(ward: &Ward, n: usize, pred: impl Fn(&Value) -> bool) {
    let what = format_args!("{n} matching access records; stderr:\n{}", ward.log());
    wait_until(Duration::from_secs(5), what, || {
        ward.records()
            .iter()
            .filter(|v| is_access(v) && pred(v))
            .count()
            >= n
    });
}

fn rejected_by(user: &'static str) -> impl Fn(&Value) -> bool {
    move |v| {
        field(v, "outcome").as_deref() == Some("client_rejected_certificate")
            && field(v, "user").as_deref() == Some(user)
    }
}

fn admin_get(admin: SocketAddr, path: &str) -> String {
    let got = curl(&[&format!("http://{admin}{path}")]);
    got.expect_ok(200);
    got.body
}

#[test]
fn distinct_clients_switch_a_host_to_passthrough_visible_persistent_and_clearable() {
    if !have("curl") {
        return;
    }
    let ca_dir = tempfile::tempdir().expect("ca dir");
    let (ward, admin) = start(ca_dir.path());
    for n in 1..=3 {
        assert_eq!(
            as_user(&ward, "alice").exit(),
            Some(60),
            "alice is refused the forged leaf"
        );
        // The rejection is counted when ward reads the alert, which may trail curl's exit.
        wait_access(&ward, n, rejected_by("alice"));
    }
    assert!(admin_get(admin, "/metrics").contains("ward_pinning_passthrough_hosts 0\n"));
    assert_eq!(
        admin_get(admin, "/pinning"),
        "{\"hosts\":[]}\n",
        "one client, however often"
    );
    assert_eq!(as_user(&ward, "bob").exit(), Some(60));
    wait_access(&ward, 1, rejected_by("bob"));
    ward.wait_log(Duration::from_secs(5), |v| {
        message(v).is_some_and(|m| m.contains("tunnelling this host instead of inspecting"))
            && field(v, "host").as_deref() == Some(HOST)
    })
    .unwrap_or_else(|| panic!("the switch is logged:\n{}", ward.stderr_text()));
    let r = as_user(&ward, "alice");
    assert_eq!(
        r.expect_ok(200).body,
        INDEX_BODY,
        "tunnelled: the origin's own certificate"
    );
    ward.expect_access("for the pinned passthrough", |v| {
        field(v, "outcome").as_deref() == Some("pinned_passthrough")
            && field(v, "action").as_deref() == Some("tunnel")
            && field(v, "rule").as_deref() == Some("look")
            && field(v, "sni").as_deref() == Some(HOST)
    });
    let list: Value = serde_json::from_str(&admin_get(admin, "/pinning")).expect("json");
    let hosts = list["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 1, "{list}");
    assert_eq!(hosts[0]["host"], HOST);
    assert_eq!(hosts[0]["clients"], 2);
    let until = hosts[0]["until"].as_str().expect("until").to_owned();
    assert!(admin_get(admin, "/metrics").contains("ward_pinning_passthrough_hosts 1\n"));
    let policy = ward.dir().join("policy.yaml");
    let target = format!("{HOST}:443");
    let out = ward_cli(
        &[
            "explain",
            "-c",
            policy.to_str().unwrap(),
            &target,
            "--dst",
            "127.0.0.1",
        ],
        ward.dir(),
    );
    assert!(
        out.stdout.starts_with(&format!(
            "tunnel (pinning passthrough until {until}, after 2 clients) rule \"look\""
        )),
        "{out:#?}"
    );
    drop(ward);

    // A restart keeps the passthrough (the state file beside the CA)...
    let (ward, admin) = start(ca_dir.path());
    assert!(admin_get(admin, "/pinning").contains(HOST));
    assert_eq!(as_user(&ward, "bob").expect_ok(200).body, INDEX_BODY);
    // ...until the admin clears it; then the host is inspected again.
    let del = |url: &str| curl(&["-X", "DELETE", url]).http_code;
    let url = format!("http://{admin}/pinning/{HOST}");
    assert_eq!(del(&url), 200);
    assert_eq!(del(&url), 404, "already cleared");
    assert_eq!(admin_get(admin, "/pinning"), "{\"hosts\":[]}\n");
    assert_eq!(
        as_user(&ward, "bob").exit(),
        Some(60),
        "inspected again: the forged leaf"
    );
}
