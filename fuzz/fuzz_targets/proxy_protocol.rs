//! PROXY protocol v1/v2 header: the first byte picks the accepted versions.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward::Parsed;
use ward::front::proxy_protocol::{Versions, parse_proxy_header};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&which, buf)) = data.split_first() else {
        return;
    };
    let accepted = match which % 3 {
        0 => Versions::V1,
        1 => Versions::V2,
        _ => Versions::Any,
    };
    let parse = |b: &[u8]| parse_proxy_header(b, accepted);
    let got = parse(buf);
    if matches!(got, Ok(Parsed::Incomplete)) {
        // Incomplete only for a proper prefix of some header: v1 lines end within 107 bytes,
        // v2 headers within 16 + 65535.
        assert!(buf.len() < 16 + 65_535, "incomplete after {} bytes", buf.len());
    }
    // Any accepted-version answer is also what `Any` says.
    if let Ok(Parsed::Done { value, consumed }) = &got {
        let any = parse_proxy_header(buf, Versions::Any);
        assert!(matches!(any, Ok(Parsed::Done { value: ref v, consumed: c }) if v == value && c == *consumed));
    }
    common::done_is_self_contained(buf, got, parse);
});
