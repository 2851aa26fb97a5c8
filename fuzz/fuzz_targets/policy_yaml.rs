//! policy.yaml from a string: any text is a Config or a placed error, never a panic; a Config
//! that loads once loads the same way twice (no hidden state).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // List files are read from disk (and have their own target): keep this one hermetic.
    if text.contains("_file") {
        return;
    }
    let source = Path::new("/nonexistent/ward-fuzz/policy.yaml");
    match ward::config::parse(text, source) {
        Ok(cfg) => {
            let again = ward::config::parse(text, source).expect("parsed once, parses twice");
            assert_eq!(cfg.summary(), again.summary());
            let _ = cfg.list_lines();
        }
        Err(e) => {
            assert!(!e.errors.is_empty(), "an error with no issue");
            for issue in &e.errors {
                assert!(!issue.message.is_empty());
            }
        }
    }
});
