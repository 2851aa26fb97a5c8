//! ClientHello reader and JA4: any bytes give a clear answer; a parsed hello's JA4 has the
//! spec's shape and is the JA4 of the facts it came with.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward::Parsed;
use ward::tls::{Ja4, MAX_CLIENT_HELLO, Transport, parse_client_hello};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let got = parse_client_hello(data);
    if data.len() >= MAX_CLIENT_HELLO {
        assert!(!matches!(got, Ok(Parsed::Incomplete)), "a full buffer must get a final answer");
    }
    let Some(facts) = common::done_is_self_contained(data, got, parse_client_hello) else {
        return;
    };
    let ja4 = facts.ja4.as_str();
    assert_eq!(Ja4::parse(ja4).ok(), Some(facts.ja4), "JA4 {ja4:?} lacks the spec's shape");
    assert_eq!(Ja4::of(&facts.ja4_input, Transport::Tcp), facts.ja4);
    assert_eq!(facts.len, data.len().min(facts.len));
    if let Some(sni) = &facts.sni {
        let name = sni.to_string();
        assert!(!name.bytes().any(|b| b.is_ascii_control()), "SNI {name:?} holds a control byte");
    }
    for p in &facts.alpn {
        assert!(!p.is_empty());
    }
});
