//! SOCKS5 codec, server side and the client side ward uses towards upstream proxies: the first
//! byte picks the message, the rest is the message's bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ward::front::socks5::{self, client};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&which, buf)) = data.split_first() else {
        return;
    };
    match which % 6 {
        0 => {
            let got = socks5::parse_greeting(buf);
            if let Some(g) = common::done_is_self_contained(buf, got, socks5::parse_greeting) {
                assert!(!g.methods.is_empty() || buf.get(1) == Some(&0));
                for auth in [false, true] {
                    let m = socks5::choose_method(&g, auth);
                    assert!(m == 0xff || g.methods.contains(&m), "chose unoffered method {m}");
                }
            }
        }
        1 => {
            let got = socks5::parse_auth(buf);
            if let Some(c) = common::done_is_self_contained(buf, got, socks5::parse_auth) {
                // What the client side encodes, the server side reads back unchanged.
                let wire = client::encode_auth(&c).expect("a parsed credential re-encodes");
                let back = common::done_is_self_contained(&wire, socks5::parse_auth(&wire), socks5::parse_auth);
                assert_eq!(back.as_ref(), Some(&c));
            }
        }
        2 => {
            let got = socks5::parse_request(buf);
            if let Some(r) = common::done_is_self_contained(buf, got, socks5::parse_request)
                && let Ok(t) = r.connect_target()
                && let Ok(wire) = client::encode_request(&t)
            {
                let back = common::done_is_self_contained(&wire, socks5::parse_request(&wire), socks5::parse_request);
                assert_eq!(back.map(|r| r.target), Some(t));
            }
        }
        3 => {
            let got = client::parse_method_choice(buf);
            common::done_is_self_contained(buf, got, client::parse_method_choice);
        }
        4 => {
            let got = client::parse_auth_status(buf);
            common::done_is_self_contained(buf, got, client::parse_auth_status);
        }
        _ => {
            let got = client::parse_reply(buf);
            if let Some(r) = common::done_is_self_contained(buf, got, client::parse_reply) {
                let _ = client::reply_name(r.rep);
            }
        }
    }
});
