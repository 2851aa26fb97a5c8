//! The flows file with the real binary: `conn_id` joins the access record of a connection with
//! its flow records (and the records of one plain-HTTP connection with each other); SIGUSR1
//! reopens the file after logrotate renamed it; a file whose writes fail costs records (counted
//! in /metrics, logged once per interval), never service.

use std::time::Duration;

use serde_json::Value;

use crate::inspect::{inspecting_policy, ward_ca};
use crate::support::ward::{EVENT_WAIT, field, is_access, message};
use crate::support::{Policy, Ward, curl, have, origins, wait_until};

/// The flow records in `ward`'s flows.jsonl once there are `n`.
fn flow_lines(ward: &Ward, name: &str, n: usize) -> Vec<Value> {
    let path = ward.dir().join(name);
    wait_until(
        Duration::from_secs(10),
        format!("{n} records in {name}"),
        || {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect();
            (lines.len() >= n).then_some(lines)
        },
    )
}

/// `3f9a1c-000042`: six hex digits, a dash, at least six decimal digits.
fn is_conn_id(s: &str) -> bool {
    let Some((prefix, n)) = s.split_once('-') else {
        return false;
    };
    prefix.len() == 6
        && prefix.bytes().all(|b| b.is_ascii_hexdigit())
        && n.len() >= 6
        && n.bytes().all(|b| b.is_ascii_digit())
}

#[test]
fn conn_id_links_access_and_flow_records() {
    if !have("curl") {
        return;
    }
    let o = origins();
    let ward = Ward::start(&inspecting_policy().set("flows", "flows.jsonl"));
    let ca = ward_ca(&ward);
    let proxy = ward.http_url();
    // Two requests on one connection (curl reuses it), then one on another.
    let (a, b) = (
        o.https("site.lab.test", "/hello?c=1"),
        o.https("site.lab.test", "/hello?c=2"),
    );
    curl(&["-x", &proxy, "--cacert", &ca, &a, &b]).expect_ok(200);
    let c = o.https("site.lab.test", "/hello?c=3");
    curl(&["-x", &proxy, "--cacert", &ca, &c]).expect_ok(200);
    let flows = flow_lines(&ward, "flows.jsonl", 3);
    let ids: Vec<&str> = flows
        .iter()
        .map(|f| f["conn_id"].as_str().expect("conn_id"))
        .collect();
    assert!(ids.iter().all(|id| is_conn_id(id)), "{ids:?}");
    assert_eq!(ids[0], ids[1], "one connection, one id");
    assert_ne!(ids[1], ids[2], "another connection, another id");
    assert_eq!(ids[0][..7], ids[2][..7], "one process, one prefix");
    for (flow, id) in flows.iter().zip(&ids) {
        let access = ward.expect_access(&format!("with conn_id {id}"), |v| {
            field(v, "conn_id").as_deref() == Some(*id)
        });
        assert_eq!(
            field(&access, "action").as_deref(),
            Some("inspect"),
            "{flow}"
        );
    }
    let all: Vec<String> = ward
        .records()
        .iter()
        .filter(|v| is_access(v))
        .filter_map(|v| field(v, "conn_id"))
        .collect();
    assert_eq!(all.len(), 2, "one access record per connection: {all:?}");

    // Plain HTTP forwarding: one access record per request, one id per connection.
    let (p, q) = (
        o.http("site.lab.test", "/hello?p=1"),
        o.http("site.lab.test", "/hello?p=2"),
    );
    let fwd = Ward::start(&Policy::new());
    curl(&["-x", &fwd.http_url(), &p, &q]).expect_ok(200);
    wait_until(Duration::from_secs(5), "two forwarded records", || {
        let ids: Vec<String> = fwd
            .records()
            .iter()
            .filter(|v| is_access(v) && field(v, "via").as_deref() == Some("http-forward"))
            .filter_map(|v| field(v, "conn_id"))
            .collect();
        (ids.len() >= 2).then(|| assert_eq!(ids[0], ids[1], "{ids:?}"))
    });
}

/// The admin's `/metrics` value of `name` (0 when absent).
fn metric(admin: std::net::SocketAddr, name: &str) -> u64 {
    let text = curl(&[&format!("http://{admin}/metrics")]).body;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0)
}

/// A request through ward to `/hello?QUERY`, which must succeed.
fn hello(ward: &Ward, ca: &str, query: &str) {
    let url = origins().https("site.lab.test", &format!("/hello?{query}"));
    curl(&["-x", &ward.http_url(), "--cacert", ca, &url]).expect_ok(200);
}

fn logged(ward: &Ward, text: &str) -> usize {
    ward.records()
        .iter()
        .filter(|v| message(v) == Some(text))
        .count()
}

/// logrotate's `create`: the file is renamed away, records keep going to it (the open file)
/// until SIGUSR1; then a new file at the path gets the new ones.
#[test]
fn sigusr1_reopens_the_flows_file_after_logrotate_renamed_it() {
    if !have("curl") {
        return;
    }
    let ward = Ward::start(&inspecting_policy().set("flows", "flows.jsonl"));
    let ca = ward_ca(&ward);
    hello(&ward, &ca, "r=1");
    flow_lines(&ward, "flows.jsonl", 1);
    let (path, rotated) = (
        ward.dir().join("flows.jsonl"),
        ward.dir().join("flows.jsonl.1"),
    );
    std::fs::rename(&path, &rotated).expect("rotate");
    hello(&ward, &ca, "r=2");
    flow_lines(&ward, "flows.jsonl.1", 2);
    ward.signal("USR1");
    ward.wait_log(EVENT_WAIT, |v| message(v) == Some("flows file reopened"))
        .unwrap_or_else(|| panic!("no reopen after SIGUSR1:\n{}", ward.log()));
    hello(&ward, &ca, "r=3");
    let new = flow_lines(&ward, "flows.jsonl", 1);
    assert_eq!(new.len(), 1, "{new:#?}");
    assert_eq!(new[0]["path"], "/hello?r=3");
    let old = std::fs::read_to_string(&rotated).expect("rotated file");
    let paths: Vec<Value> = old
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json")["path"].clone())
        .collect();
    assert_eq!(paths, ["/hello?r=1", "/hello?r=2"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path)
        .expect("new file")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the new file is private like the first"
    );
    assert!(ward.alive());
}

/// issue 15, point 3: a flows file whose writes fail (a symlink to /dev/full: every write is
/// ENOSPC, as on a full disk). ward keeps serving, logs the failure once per interval, counts
/// the lost records in /metrics, and writes again once the file can be written (after
/// SIGUSR1 reopens a writable one).
#[test]
fn an_unwritable_flows_file_costs_records_not_service() {
    if !have("curl") || !std::path::Path::new("/dev/full").exists() {
        return;
    }
    let files = tempfile::tempdir().expect("dir");
    let path = files.path().join("flows.jsonl");
    std::os::unix::fs::symlink("/dev/full", &path).expect("symlink");
    let policy = inspecting_policy()
        .set("admin", "\"127.0.0.1:0\"")
        .set("flows", &format!("\"{}\"", path.display()));
    let ward = Ward::start(&policy);
    let admin = ward.admin_addr();
    let ca = ward_ca(&ward);
    let started = std::time::Instant::now();
    const REQUESTS: u64 = 6;
    for i in 0..REQUESTS {
        hello(&ward, &ca, &format!("full={i}"));
    }
    wait_until(
        Duration::from_secs(10),
        "every record counted as lost",
        || (metric(admin, "ward_flows_write_failed_total") >= REQUESTS).then_some(()),
    );
    assert_eq!(metric(admin, "ward_flows_write_failed_total"), REQUESTS);
    assert_eq!(metric(admin, "ward_flows_written_total"), 0);
    let failures = logged(
        &ward,
        "writing flows file failed; records are lost (ward_flows_write_failed_total), next report in 10s at the earliest",
    );
    let windows = started.elapsed().as_secs() / 10 + 1;
    assert!(
        failures >= 1 && failures as u64 <= windows,
        "{failures} error lines in {:?}:\n{}",
        started.elapsed(),
        ward.log()
    );
    let lost: Value = ward
        .records()
        .into_iter()
        .find(|v| message(v).is_some_and(|m| m.starts_with("writing flows file failed")))
        .expect("the error line");
    assert!(
        field(&lost, "error").is_some_and(|e| e.contains("No space left")),
        "{lost}"
    );

    // A writable file again: the symlink replaced, SIGUSR1, and records are written.
    std::fs::remove_file(&path).expect("remove symlink");
    ward.signal("USR1");
    ward.wait_log(EVENT_WAIT, |v| message(v) == Some("flows file reopened"))
        .unwrap_or_else(|| panic!("no reopen:\n{}", ward.log()));
    hello(&ward, &ca, "after=1");
    wait_until(Duration::from_secs(10), "the record written", || {
        (metric(admin, "ward_flows_written_total") == 1).then_some(())
    });
    let text = std::fs::read_to_string(&path).expect("a real file now");
    assert!(text.contains("/hello?after=1"), "{text}");
    ward.wait_log(EVENT_WAIT, |v| {
        message(v) == Some("flows file writable again")
    })
    .unwrap_or_else(|| panic!("no recovery line:\n{}", ward.log()));
}
