//! Running under a supervisor (issue 11, point 3): the real binary tells systemd its state
//! over `$NOTIFY_SOCKET` (a real unix datagram socket, by path and by abstract name), and a
//! Kubernetes ConfigMap update — the kubelet's `..data` symlink swap, done here exactly as it
//! does it — reloads the running ward.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::Duration;

use crate::support::{Policy, Ward, curl_index_via};

/// How long a notification may take to arrive (a cold start on a busy machine included).
const NOTIFY_WAIT: Duration = Duration::from_secs(20);

fn next_datagram(socket: &UnixDatagram, ward: &Ward) -> String {
    let mut buf = [0u8; 512];
    let n = socket.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no sd_notify datagram within {NOTIFY_WAIT:?} ({e}); log:\n{}",
            ward.log()
        )
    });
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn monotonic_usec() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec.unsigned_abs() * 1_000_000 + t.tv_nsec.unsigned_abs() / 1_000
}

fn ward_in(dir: tempfile::TempDir, env: &[(&str, &str)]) -> Ward {
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, Policy::new().render()).expect("policy");
    Ward::start_in(dir, policy, env)
}

#[test]
fn sd_notify_ready_reloading_and_stopping_reach_a_real_socket() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
    socket.set_read_timeout(Some(NOTIFY_WAIT)).expect("timeout");
    let ward = ward_in(dir, &[("NOTIFY_SOCKET", path.to_str().expect("utf-8"))]);
    assert_eq!(next_datagram(&socket, &ward), "READY=1");

    let before = monotonic_usec();
    ward.signal("HUP");
    let reloading = next_datagram(&socket, &ward);
    let after = monotonic_usec();
    let usec = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .and_then(|u| u.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("RELOADING=1 with MONOTONIC_USEC: {reloading:?}"));
    assert!(
        (before..=after).contains(&usec),
        "{before} <= {usec} <= {after}"
    );
    assert_eq!(
        next_datagram(&socket, &ward),
        "READY=1",
        "ready again after the reload"
    );

    ward.signal("TERM");
    assert_eq!(next_datagram(&socket, &ward), "STOPPING=1");
}

#[test]
fn sd_notify_reaches_an_abstract_socket() {
    use std::os::linux::net::SocketAddrExt;
    let name = format!("ward-it-notify-{}-{}", std::process::id(), monotonic_usec());
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("name");
    let socket = UnixDatagram::bind_addr(&addr).expect("bind the abstract socket");
    socket.set_read_timeout(Some(NOTIFY_WAIT)).expect("timeout");
    let dir = tempfile::tempdir().expect("dir");
    let ward = ward_in(dir, &[("NOTIFY_SOCKET", &format!("@{name}"))]);
    assert_eq!(next_datagram(&socket, &ward), "READY=1");
}

/// A new `..<timestamp>` folder holding `policy`, and `..data` renamed over to point at it,
/// as the kubelet's atomic writer updates a mounted ConfigMap. Returns the folder's name.
fn configmap_version(dir: &Path, stamp: &str, policy: &str) -> String {
    let version = format!("..{stamp}");
    std::fs::create_dir(dir.join(&version)).expect("version dir");
    std::fs::write(dir.join(&version).join("policy.yaml"), policy).expect("policy");
    let tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink(&version, &tmp).expect("..data_tmp");
    std::fs::rename(&tmp, dir.join("..data")).expect("rename ..data_tmp over ..data");
    version
}

#[test]
fn a_configmap_symlink_swap_reloads_the_policy() {
    let dir = tempfile::tempdir().expect("dir");
    let first = configmap_version(
        dir.path(),
        "2026_12_04_03_00_00.000000001",
        &Policy::new().render(),
    );
    std::os::unix::fs::symlink("..data/policy.yaml", dir.path().join("policy.yaml")).expect("link");
    let policy = dir.path().join("policy.yaml");
    let path = dir.path().to_path_buf();
    let ward = Ward::start_in(dir, policy, &[]);
    curl_index_via(&ward.http_url()).expect_ok(200);

    let before = ward.reload_count();
    let denying = Policy::new()
        .rule("{name: swapped-in, action: deny, hosts: [origin.test]}")
        .render();
    configmap_version(&path, "2026_12_04_03_05_00.000000002", &denying);
    // The kubelet then removes the previous version.
    std::fs::remove_dir_all(path.join(&first)).expect("remove the old version");
    let took = ward.wait_reloaded(before);
    let got = curl_index_via(&ward.http_url());
    assert_eq!(
        got.connect_code, 403,
        "the swapped-in rule denies: {got:#?}"
    );
    let record = ward.expect_access("denied by the new rule", |v| {
        v["fields"]["rule"] == "swapped-in"
    });
    assert_eq!(record["fields"]["action"], "deny");
    eprintln!("ConfigMap swap to reload: {took:?}");
}
