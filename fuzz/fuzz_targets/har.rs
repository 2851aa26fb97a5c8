//! The flows file reader (`ward har`): any bytes give a HAR document; each non-blank line is
//! an entry or counted as skipped, and the document is valid JSON that reads back.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(har) = ward::mitm::har::har_from_lines(data) else {
        return; // not UTF-8: the reader says so as an I/O error
    };
    let text = std::str::from_utf8(data).expect("the reader accepted it as text");
    let lines = text.lines().filter(|l| !l.trim().is_empty()).count();
    let entries = har.doc["log"]["entries"].as_array().expect("entries is an array").len();
    assert_eq!(entries + har.skipped, lines);
    let out = har.doc.to_string();
    let back: serde_json::Value = serde_json::from_str(&out).expect("HAR is JSON");
    assert_eq!(back, har.doc);
});
