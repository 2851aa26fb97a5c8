//! HTTP proxy request head, the upstream proxy's response head and Basic credentials: the
//! first byte picks which; a parsed head never keeps CR, LF or NUL in a field it hands on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward::front::http::{
    MAX_HEAD, MAX_HEADERS, RequestTarget, encode_basic_auth, parse_basic_auth, parse_request_head,
    parse_response_head,
};

#[path = "common.rs"]
mod common;

fn clean(b: &[u8]) -> bool {
    !b.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0)
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, buf)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            let got = parse_request_head(buf);
            let Some(req) = common::done_is_self_contained(buf, got, parse_request_head) else {
                return;
            };
            assert!(req.version <= 1);
            assert!(req.headers.len() <= MAX_HEADERS);
            assert!(clean(req.method.as_bytes()));
            for (name, value) in &req.headers {
                assert!(clean(name.as_bytes()) && clean(value), "{name:?}: {value:?}");
            }
            if let RequestTarget::Connect(t) | RequestTarget::Absolute(t) = &req.target {
                let shown = t.to_string();
                assert!(clean(shown.as_bytes()), "target {shown:?}");
            }
        }
        1 => {
            let got = parse_response_head(buf);
            if let Some(head) = common::done_is_self_contained(buf, got, parse_response_head) {
                assert!(buf.len() <= MAX_HEAD || head.headers.len() <= MAX_HEADERS);
                assert!(clean(head.reason.as_bytes()));
            }
        }
        _ => {
            if let Some(c) = parse_basic_auth(buf) {
                let again = encode_basic_auth(&c);
                assert_eq!(parse_basic_auth(again.as_bytes()).as_ref(), Some(&c), "{again:?}");
            }
        }
    }
});
