//! Host and address list files (hosts_file, dst_file, clients_file): every line is an entry
//! or a numbered issue; every host entry matches the name it was written as.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward::policy::lists::{parse_host_list, parse_net, parse_net_list};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count();
    // A hosts-file line (`0.0.0.0 a b`) may hold several names: entries are bounded by the
    // words, issues by the lines.
    let words = text.split_whitespace().count();
    let hosts = parse_host_list(text);
    assert!(hosts.entries.len() <= words);
    assert!(hosts.issues.len() + hosts.more_issues <= lines);
    assert_eq!(hosts.entries.iter().count(), hosts.entries.len());
    assert_eq!(hosts.entries.patterns().count(), hosts.entries.len());
    for issue in &hosts.issues {
        assert!(issue.line >= 1 && issue.line as usize <= lines, "line {}", issue.line);
    }
    let nets = parse_net_list(text);
    assert!(nets.entries.len() + nets.issues.len() + nets.more_issues <= lines);
    for net in &nets.entries {
        assert_eq!(parse_net(&net.to_string()).ok(), Some(*net), "{net} does not read back");
    }
});
