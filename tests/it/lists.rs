//! Rule lists in their own files (`hosts_file`, `dst_file`, `clients_file`) through the real
//! binary and real curl: each list format refuses what it lists, with the rule named in
//! Proxy-Status; an edit of a list file reloads while an open tunnel lives on; a bad line keeps
//! the old list, and `ward check` prints it as FILE:LINE.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::net::http_connect;
use crate::support::ward::{EVENT_WAIT, message, ward_cli};
use crate::support::{Policy, Ward, curl, origins, wait_until};

/// Generous: each wait below follows the reload's own record, and ends when the rules apply.
const RELOAD_WITHIN: Duration = EVENT_WAIT;

/// A folder of list files, outside ward's own folder, named by absolute path in the policy.
struct Lists(tempfile::TempDir);

impl Lists {
    fn new(files: &[(&str, &str)]) -> Lists {
        let dir = tempfile::Builder::new()
            .prefix("ward-lists-")
            .tempdir()
            .expect("temp dir");
        let lists = Lists(dir);
        for (name, text) in files {
            lists.write(name, text);
        }
        lists
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).expect("write list");
    }
}

/// `curl -v -x WARD https://HOST:PORT/`: the CONNECT status and curl's stderr (which shows the
/// proxy's response headers).
fn curl_via(ward: &Ward, host: &str) -> (u16, String) {
    let o = origins();
    let url = format!("https://{host}:{}/", o.tls.port());
    let c = curl(&["-v", "-x", &ward.http_url(), "--cacert", o.ca(), &url]);
    (c.connect_code, c.out.stderr)
}

/// The Proxy-Status details of a refused CONNECT name `rule`, as curl saw them.
fn assert_refused_by(ward: &Ward, host: &str, rule: &str) {
    let (status, stderr) = curl_via(ward, host);
    assert_eq!(
        status,
        403,
        "{host}: curl said:\n{stderr}\nlog:\n{}",
        ward.log()
    );
    let status_line = stderr
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("< proxy-status:"))
        .unwrap_or_else(|| panic!("{host}: no Proxy-Status in:\n{stderr}"));
    assert!(
        status_line.contains(&format!("rule \\\"{rule}\\\"")),
        "{host}: {status_line}"
    );
}

fn connect_status(ward: &Ward, target: &str) -> u16 {
    http_connect(ward.addr, target, &[]).1.status
}

fn rule_with(key: &str, path: &Path, rest: &str) -> String {
    format!(
        "{{name: from-{key}, action: deny, {key}: \"{}\"{rest}}}",
        path.display()
    )
}

#[test]
fn each_hosts_file_format_refuses_its_names_and_names_the_rule() {
    let lists = Lists::new(&[(
        "blocked.txt",
        "# one of each format\n\
         blocked.lab.test\n\
         0.0.0.0 ads.lab.test other.lab.test\n\
         ||tracker.lab.test^\n",
    )]);
    let ward =
        Ward::start(&Policy::new().rule(&rule_with("hosts_file", &lists.path("blocked.txt"), "")));
    assert_refused_by(&ward, "blocked.lab.test", "from-hosts_file");
    assert_refused_by(&ward, "ads.lab.test", "from-hosts_file");
    assert_refused_by(&ward, "other.lab.test", "from-hosts_file");
    // Adblock's ||name^ covers the name and every name under it.
    assert_refused_by(&ward, "tracker.lab.test", "from-hosts_file");
    assert_refused_by(&ward, "cdn.tracker.lab.test", "from-hosts_file");
    // A hosts-file line is one exact name, and what is not listed passes.
    assert_eq!(curl_via(&ward, "www.ads.lab.test").0, 200);
    assert_eq!(curl_via(&ward, "origin.test").0, 200);
}

#[test]
fn clients_file_and_dst_file_cidrs() {
    let lists = Lists::new(&[
        ("clients.txt", "# the lab\n192.0.2.0/24\n127.0.0.0/8\n"),
        ("dst.txt", "198.51.100.7\n127.0.0.1/32 # the origin\n"),
        ("lab.txt", "127.0.0.0/8\n::1\n"),
    ]);
    let clients = Policy::new().rule(&rule_with(
        "clients_file",
        &lists.path("clients.txt"),
        ", hosts: [blocked.lab.test]",
    ));
    let ward = Ward::start(&clients);
    assert_refused_by(&ward, "blocked.lab.test", "from-clients_file");
    assert_eq!(curl_via(&ward, "origin.test").0, 200);
    drop(ward);

    let dst = Policy::new().rule(&rule_with("dst_file", &lists.path("dst.txt"), ""));
    let ward = Ward::start(&dst);
    assert_refused_by(&ward, "origin.test", "from-dst_file");
    drop(ward);

    // A dst_file can also allow: the lab rule's loopback ranges, from a file.
    let lab = format!(
        "{{name: lab-file, action: allow, dst_file: \"{}\"}}",
        lists.path("lab.txt").display()
    );
    let ward = Ward::start(&Policy::new().without_lab_rule().rule(&lab));
    assert_eq!(curl_via(&ward, "origin.test").0, 200);
}

#[test]
fn list_edit_reloads_with_a_tunnel_open_and_a_bad_line_keeps_the_old_list() {
    let o = origins();
    let lists = Lists::new(&[("block.txt", "# nothing blocked yet\n")]);
    let ward =
        Ward::start(&Policy::new().rule(&rule_with("hosts_file", &lists.path("block.txt"), "")));
    let target = format!("origin.test:{}", o.echo.port());
    let (mut tunnel, head) = http_connect(ward.addr, &target, &[]);
    assert_eq!(head.status, 200);
    let mut b = [0u8; 1];
    tunnel.write_all(b"1").expect("write");
    tunnel.read_exact(&mut b).expect("echo");

    let before = ward.reload_count();
    lists.write("block.txt", "origin.test\n");
    ward.wait_reloaded(before);
    let what = format_args!(
        "CONNECT {target} to turn 403 after the list edit; log:\n{}",
        ward.log()
    );
    wait_until(RELOAD_WITHIN, what, || {
        connect_status(&ward, &target) == 403
    });
    assert_refused_by(&ward, "origin.test", "from-hosts_file");
    tunnel
        .write_all(b"2")
        .expect("the open tunnel survives the reload");
    tunnel.read_exact(&mut b).expect("echo after reload");
    assert_eq!(&b, b"2");

    lists.write("block.txt", "origin.test\nnot a name\n");
    ward.wait_log(EVENT_WAIT, |v| {
        message(v).is_some_and(|m| m.contains("reload failed"))
    })
    .unwrap_or_else(|| panic!("no reload failure; log:\n{}", ward.stderr_text()));
    assert_eq!(connect_status(&ward, &target), 403, "the old list stays");

    let out = ward_cli(&["-c", "policy.yaml", "check"], ward.dir());
    assert!(!out.success(), "{out:#?}");
    let want = format!("{}:2: ", lists.path("block.txt").display());
    assert!(
        out.stderr.contains(&want),
        "want {want:?} in:\n{}",
        out.stderr
    );

    let before = ward.reload_count();
    lists.write("block.txt", "# cleared\n");
    ward.wait_reloaded(before);
    let what = format_args!("CONNECT {target} to turn 200 again; log:\n{}", ward.log());
    wait_until(RELOAD_WITHIN, what, || {
        connect_status(&ward, &target) == 200
    });
    let out = ward_cli(&["-c", "policy.yaml", "check"], ward.dir()).ok("ward check");
    let want = format!(
        "{}: 0 entries (rules[0].hosts_file)",
        lists.path("block.txt").display()
    );
    assert!(
        out.stdout.contains(&want),
        "want {want:?} in:\n{}",
        out.stdout
    );
}

#[test]
fn relative_list_files_live_beside_the_policy() {
    let o = origins();
    let ward = Ward::start(&Policy::new());
    let target = format!("origin.test:{}", o.tls.port());
    assert_eq!(connect_status(&ward, &target), 200);
    std::fs::create_dir_all(ward.dir().join("lists")).expect("mkdir");
    std::fs::write(ward.dir().join("lists/block.txt"), "||origin.test^\n").expect("write list");
    let policy = Policy::new().rule("{name: relative, action: deny, hosts_file: lists/block.txt}");
    let before = ward.reload_count();
    ward.write_policy(&policy.render());
    ward.wait_reloaded(before);
    let what = format_args!("CONNECT {target} to turn 403; log:\n{}", ward.log());
    wait_until(RELOAD_WITHIN, what, || {
        connect_status(&ward, &target) == 403
    });
    let out = ward_cli(&["-c", "policy.yaml", "check"], ward.dir()).ok("ward check");
    assert!(
        out.stdout
            .contains("lists/block.txt: 1 entries (rules[0].hosts_file)"),
        "{}",
        out.stdout
    );
}
