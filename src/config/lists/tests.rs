use std::fs;
use std::path::Path;

use crate::config::{Config, ConfigError, load};
use crate::policy::{Decision, Facts, Verdict};
use crate::target::Host;

/// A folder with policy.yaml and the given files in it.
fn folder(policy: &str, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    dir
}

fn loaded(dir: &Path) -> Result<Config, ConfigError> {
    load(&dir.join("policy.yaml"))
}

fn rule_for(c: &Config, host: &str, client: &str, dst: Option<&str>) -> Option<String> {
    let h = Host::parse(host).unwrap();
    let f = Facts {
        host: Some(&h),
        port: 443,
        client: client.parse().unwrap(),
        user: None,
        dst: dst.map(|d| d.parse().unwrap()),
        sni: None,
        hello: crate::policy::HelloFact::Absent,
        request: crate::policy::RequestFact::Pending,
    };
    match c.policy.decide(&f) {
        Verdict::Decided(Decision { rule, .. }) => rule.map(|i| c.policy.rule(i).name.clone()),
        Verdict::NeedsDst => Some("needs dst".into()),
    }
}

const POLICY: &str = "rules:\n\
  - { name: ads, action: deny, hosts_file: lists/ads.txt }\n\
  - { name: office, action: allow, hosts: [intranet.test], clients_file: office.txt }\n\
  - { name: bad-nets, action: deny, dst_file: lists/nets.txt, hosts: [.test] }\n";

#[test]
fn list_files_relative_to_the_policy_feed_their_rules() {
    let dir = folder(
        POLICY,
        &[
            (
                "lists/ads.txt",
                "# ads\nads.example\n0.0.0.0 tracker.example\n||cdn.ads^\n",
            ),
            ("office.txt", "10.0.0.0/8\n192.0.2.7\n"),
            ("lists/nets.txt", "198.51.100.0/24\n"),
        ],
    );
    let c = loaded(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let ads = Some("ads".to_owned());
    assert_eq!(rule_for(&c, "ads.example", "127.0.0.1", None), ads);
    assert_eq!(rule_for(&c, "tracker.example", "127.0.0.1", None), ads);
    assert_eq!(rule_for(&c, "x.cdn.ads", "127.0.0.1", None), ads);
    assert_eq!(rule_for(&c, "sub.tracker.example", "127.0.0.1", None), None);
    let office = Some("office".to_owned());
    assert_eq!(rule_for(&c, "intranet.test", "10.9.9.9", None), office);
    assert_eq!(
        rule_for(&c, "intranet.test", "192.0.2.7", Some("192.0.2.1")),
        office
    );
    let bad = Some("bad-nets".to_owned());
    assert_eq!(
        rule_for(&c, "intranet.test", "192.0.2.8", Some("198.51.100.9")),
        bad
    );
    assert_eq!(
        rule_for(&c, "intranet.test", "192.0.2.8", Some("198.51.101.9")),
        None
    );
    let counts: Vec<(String, usize)> = c.lists.iter().map(|l| (l.key.clone(), l.entries)).collect();
    assert_eq!(
        counts,
        [
            ("rules[0].hosts_file".to_owned(), 3),
            ("rules[1].clients_file".to_owned(), 2),
            ("rules[2].dst_file".to_owned(), 1)
        ]
    );
    let lines = c.list_lines();
    assert!(
        lines[0].ends_with("lists/ads.txt: 3 entries (rules[0].hosts_file)"),
        "{lines:?}"
    );
    assert!(
        c.summary().contains("3 list files (6 entries)"),
        "{}",
        c.summary()
    );
}

#[test]
fn every_bad_line_is_file_colon_line() {
    let dir = folder(
        POLICY,
        &[
            (
                "lists/ads.txt",
                "ads.example\nnot a name\n10.1.1.1 x.example\n",
            ),
            ("office.txt", "10.0.0.0/8\n10.0.0.0/33\n"),
            ("lists/nets.txt", "# nothing\n"),
        ],
    );
    let e = loaded(dir.path()).unwrap_err();
    let text = e.to_string();
    let ads = dir.path().join("lists/ads.txt");
    let office = dir.path().join("office.txt");
    assert!(text.contains(&format!("{}:2: ", ads.display())), "{text}");
    assert!(text.contains(&format!("{}:3: ", ads.display())), "{text}");
    assert!(
        text.contains(&format!("{}:2: ", office.display())),
        "{text}"
    );
    // The empty dst_file is placed at its key in policy.yaml.
    assert!(text.contains("policy.yaml:4:"), "{text}");
    assert!(
        text.contains("rules[2].dst_file: the file lists no address"),
        "{text}"
    );
    assert_eq!(e.errors.len(), 4, "{text}");
    // policy.yaml's own issue comes first.
    assert!(e.errors[0].file.ends_with("policy.yaml"), "{text}");
}

#[test]
fn a_missing_list_file_is_an_issue_at_its_key() {
    let dir = folder(
        "rules: [{ name: a, action: deny, hosts_file: nope.txt }]\n",
        &[],
    );
    let e = loaded(dir.path()).unwrap_err().to_string();
    assert!(e.contains("policy.yaml:1:"), "{e}");
    assert!(e.contains("rules[0].hosts_file: cannot read"), "{e}");
}

#[test]
fn an_empty_hosts_file_matches_no_host() {
    let dir = folder(
        "rules: [{ name: a, action: deny, hosts_file: empty.txt }]\n",
        &[("empty.txt", "# emptied blocklist\n")],
    );
    let c = loaded(dir.path()).unwrap();
    assert_eq!(rule_for(&c, "anything.example", "127.0.0.1", None), None);
}

#[test]
fn a_ja4_file_adds_fingerprints_and_every_bad_line_is_placed() {
    const CURL: &str = "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6";
    const CHROMIUM: &str = "t13d1517h2_8daaf6152771_cb7bf5808d99";
    let policy = format!(
        "rules:\n  - {{ name: bots, action: deny, ja4: [\"{CURL}\"], ja4_file: bots.txt }}\n"
    );
    let dir = folder(
        &policy,
        &[(
            "bots.txt",
            &format!("# scanners\n{CHROMIUM}  # one\n{CURL}\n"),
        )],
    );
    let c = loaded(dir.path()).unwrap_or_else(|e| panic!("{e}"));
    let fps: Vec<String> = c.policy.rule(0).ja4.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        fps,
        [CHROMIUM, CURL],
        "inline and file entries, sorted, once each"
    );
    let bots = c
        .lists
        .iter()
        .find(|l| l.key == "rules[0].ja4_file")
        .expect("listed");
    assert_eq!(bots.entries, 2);

    fs::write(
        dir.path().join("bots.txt"),
        format!("{CHROMIUM}\nt13d_nope\n"),
    )
    .unwrap();
    let err = loaded(dir.path()).unwrap_err();
    let issue = &err.errors[0];
    assert_eq!(issue.line, 2, "{err}");
    assert!(issue.file.ends_with("bots.txt"), "{err}");
    assert!(issue.message.contains("not a JA4 fingerprint"), "{err}");

    fs::write(dir.path().join("bots.txt"), "# nothing yet\n").unwrap();
    let err = loaded(dir.path()).unwrap_err().to_string();
    assert!(err.contains("lists no fingerprint"), "{err}");
}
