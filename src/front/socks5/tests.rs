use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use super::client::{self, Reply, parse_auth_status, parse_method_choice, parse_reply, reply_name};
use super::*;
use crate::error::ProxyError;
use crate::parse_test_util::{assert_prefixes, done, random_bytes_never_panic};
use crate::target::Host;

/// `curl --socks5-hostname 127.0.0.1:8080 --proxy-user alice:s3cret https://example.com/`
const CURL_GREETING_AUTH: &[u8] = &[0x05, 0x02, 0x00, 0x02];
const CURL_GREETING: &[u8] = &[0x05, 0x01, 0x00];
const CURL_AUTH: &[u8] = b"\x01\x05alice\x06s3cret";
const CURL_REQUEST_NAME: &[u8] = b"\x05\x01\x00\x03\x0bexample.com\x01\xbb";
/// `curl --socks5 ...` (local resolution) and Python's PySocks with rdns=False.
const REQUEST_V4: &[u8] = &[0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0x1f, 0x90];
const REQUEST_V6: &[u8] = &[
    0x05, 0x01, 0x00, 0x04, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x01, 0xbb,
];
/// What a pipelining client could send next: the start of a greeting.
const NEXT: &[u8] = &[0x05, 0x01, 0x00];

fn name(n: &str) -> Host {
    Host::Name(n.into())
}

fn ip(s: &str) -> Host {
    Host::Ip(s.parse().unwrap())
}

#[test]
fn real_client_messages() {
    let g = assert_prefixes(CURL_GREETING_AUTH, NEXT, parse_greeting);
    assert_eq!(g.methods, [method::NO_AUTH, method::USER_PASSWORD]);
    assert_eq!(
        assert_prefixes(CURL_GREETING, NEXT, parse_greeting).methods,
        [0]
    );
    let c = assert_prefixes(CURL_AUTH, NEXT, parse_auth);
    assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "s3cret"));
    let r = assert_prefixes(CURL_REQUEST_NAME, NEXT, parse_request);
    assert_eq!(r.command, command::CONNECT);
    assert_eq!(r.target, Target::new(name("example.com"), 443));
    let r = assert_prefixes(REQUEST_V4, NEXT, parse_request);
    assert_eq!(r.target, Target::new(ip("127.0.0.1"), 8080));
    let r = assert_prefixes(REQUEST_V6, NEXT, parse_request);
    assert_eq!(r.target, Target::new(ip("2001:db8::1"), 443));
}

#[test]
fn domains_are_normalised() {
    let request = |domain: &[u8]| {
        let mut msg = vec![0x05, 0x01, 0x00, 0x03, domain.len() as u8];
        msg.extend_from_slice(domain);
        msg.extend_from_slice(&[0x01, 0xbb]);
        parse_request(&msg).map(|p| done(p).0.target.host)
    };
    assert_eq!(request(b"Example.COM."), Ok(name("example.com")));
    assert_eq!(
        request("bücher.example".as_bytes()),
        Ok(name("xn--bcher-kva.example"))
    );
    // socks5h clients sometimes send an IP literal as a "domain".
    assert_eq!(request(b"192.0.2.1"), Ok(ip("192.0.2.1")));
    assert_eq!(request(b"[2001:db8::2]"), Ok(ip("2001:db8::2")));
    for bad in [&b"a..b"[..], b"a b.test", b"", b"\xff\xfe", b"[a.test]"] {
        let err = request(bad).expect_err("refused");
        assert_eq!(err.kind(), ErrorKind::MalformedRequest, "{bad:?}: {err}");
    }
    let err = request(b"a..b").unwrap_err();
    assert!(err.to_string().contains("empty label"), "{err}");
}

#[test]
fn garbage_is_refused_at_once() {
    // A SOCKS4 request, an HTTP request, a TLS record: refused on the first byte.
    for bytes in [
        &[0x04, 0x01, 0x00, 0x50][..],
        b"GET / HTTP/1.1",
        b"\x16\x03\x01",
    ] {
        for parse in [parse_greeting_kind, parse_request_kind] {
            assert_eq!(parse(&bytes[..1]), Some(ErrorKind::MalformedRequest));
        }
    }
    assert_eq!(
        parse_auth(&[0x05]).unwrap_err().kind(),
        ErrorKind::MalformedRequest
    );
    let err = parse_greeting(&[0x05, 0x00]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedRequest);
    let err = parse_request(&[0x05, 0x01, 0x00, 0x02]).unwrap_err();
    assert_eq!(err, Socks5Error::UnsupportedAddressType(0x02));
    assert_eq!(err.kind(), ErrorKind::UnsupportedAddressType);
    let err = parse_auth(b"\x01\x02\xc3\x28\x00").unwrap_err();
    assert_eq!(err, Socks5Error::NotUtf8("user name"));
    let proxy_err = ProxyError::from(err);
    assert!(
        proxy_err.detail.contains("user name is not UTF-8"),
        "{}",
        proxy_err.detail
    );
}

fn parse_greeting_kind(b: &[u8]) -> Option<ErrorKind> {
    parse_greeting(b).err().map(|e| e.kind())
}

fn parse_request_kind(b: &[u8]) -> Option<ErrorKind> {
    parse_request(b).err().map(|e| e.kind())
}

#[test]
fn only_connect_is_served() {
    let mut bind = REQUEST_V4.to_vec();
    bind[1] = command::BIND;
    let req = done(parse_request(&bind).unwrap()).0;
    let err = req.connect_target().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedCommand);
    assert_eq!(encode_failure(err.kind()).unwrap()[1], 0x07);
    let mut udp = REQUEST_V4.to_vec();
    udp[1] = command::UDP_ASSOCIATE;
    let err = done(parse_request(&udp).unwrap())
        .0
        .connect_target()
        .unwrap_err();
    assert_eq!(err, Socks5Error::UnsupportedCommand(0x03));
    let port0 = [0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0, 0];
    let err = done(parse_request(&port0).unwrap())
        .0
        .connect_target()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedRequest);
    let ok = done(parse_request(REQUEST_V4).unwrap()).0.connect_target();
    assert_eq!(ok, Ok(Target::new(ip("127.0.0.1"), 8080)));
}

#[test]
fn method_choice() {
    let g = |m: &[u8]| Greeting {
        methods: m.to_vec(),
    };
    let cases: &[(&[u8], bool, u8)] = &[
        (&[0x00], false, 0x00),
        (&[0x00, 0x02], false, 0x00),
        (&[0x02], false, 0x02),
        (&[0x01], false, 0xFF),
        (&[0x00], true, 0xFF),
        (&[0x00, 0x02], true, 0x02),
        (&[0x02, 0x00], true, 0x02),
        (&[0x01, 0x03, 0x80], true, 0xFF),
    ];
    for &(methods, auth, expected) in cases {
        assert_eq!(
            choose_method(&g(methods), auth),
            expected,
            "{methods:?} auth={auth}"
        );
    }
}

#[test]
fn handshake_with_authentication() {
    let state = ExpectGreeting::new(true);
    let greeting = done(state.parse(CURL_GREETING_AUTH).unwrap()).0;
    let (bytes, next) = state.answer(&greeting);
    assert_eq!(bytes, [0x05, 0x02]);
    let AfterGreeting::ExpectAuth(auth) = next else {
        panic!("{next:?}")
    };
    let creds = done(auth.parse(CURL_AUTH).unwrap()).0;
    assert_eq!(creds.user, "alice");
    let (bytes, next) = auth.answer(true);
    assert_eq!(bytes, [0x01, 0x00]);
    let request = next.expect("authenticated");
    let target = done(request.parse(CURL_REQUEST_NAME).unwrap())
        .0
        .connect_target();
    assert_eq!(target, Ok(Target::new(name("example.com"), 443)));
}

#[test]
fn handshake_refusals() {
    let state = ExpectGreeting::new(true);
    let greeting = done(state.parse(CURL_GREETING).unwrap()).0;
    let (bytes, next) = state.answer(&greeting);
    assert_eq!(bytes, [0x05, 0xFF]);
    assert!(matches!(next, AfterGreeting::Refused));
    let state = ExpectGreeting::new(true);
    let (_, next) = state.answer(&Greeting { methods: vec![2] });
    let AfterGreeting::ExpectAuth(auth) = next else {
        panic!("{next:?}")
    };
    let (bytes, next) = auth.answer(false);
    assert_eq!(bytes, [0x01, 0x01]);
    assert!(next.is_none());
    let (bytes, next) = ExpectGreeting::new(false).answer(&Greeting { methods: vec![0] });
    assert_eq!(bytes, [0x05, 0x00]);
    assert!(matches!(next, AfterGreeting::ExpectRequest(_)));
}

#[test]
fn replies() {
    assert_eq!(encode_reply(0x00, None), [5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    let v4: SocketAddr = "192.0.2.9:40000".parse().unwrap();
    assert_eq!(
        encode_reply(0x00, Some(v4)),
        [5, 0, 0, 1, 192, 0, 2, 9, 0x9c, 0x40]
    );
    let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
    let bytes = encode_reply(0x05, Some(v6));
    assert_eq!(bytes.len(), 22);
    assert_eq!(&bytes[..4], [5, 5, 0, 4]);
    let reply = assert_prefixes(&bytes, NEXT, parse_reply);
    assert_eq!(
        reply,
        Reply {
            rep: 5,
            bound: Target::new(ip("2001:db8::1"), 443)
        }
    );
    assert_eq!(reply_name(reply.rep), "connection refused");
    // A failing server that sends no real address still yields its REP.
    let (short, took) = done(parse_reply(&[5, 4, 0, 0]).unwrap());
    assert_eq!(short.rep, 0x04);
    // Found by fuzz/socks5: the ATYP byte it read is part of what it took, so the bytes it
    // took parse alone (it said 3, and those 3 were Incomplete).
    assert_eq!(took, 4);
    assert_eq!(
        done(parse_reply(&[5, 4, 0, 0]).unwrap()),
        done(parse_reply(&[5, 4, 0, 0, 9]).unwrap())
    );
    assert!(parse_reply(&[5, 0, 0, 0]).is_err());
    let bound = b"\x05\x00\x00\x03\x06proxy1\x04\x38";
    let reply = assert_prefixes(bound, NEXT, parse_reply);
    assert_eq!(reply.bound, Target::new(name("proxy1"), 1080));
    for kind in crate::error::ALL_KINDS {
        let expected = kind
            .socks5_reply()
            .map(|rep| vec![5, rep, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(encode_failure(kind), expected, "{kind:?}");
    }
}

#[test]
fn client_side_messages() {
    assert_eq!(client::encode_greeting(true), CURL_GREETING_AUTH);
    assert_eq!(client::encode_greeting(false), CURL_GREETING);
    assert_eq!(assert_prefixes(&[5, 2], NEXT, parse_method_choice), 2);
    assert!(parse_method_choice(&[4, 0]).is_err());
    assert!(assert_prefixes(&[1, 0], NEXT, parse_auth_status));
    assert!(!assert_prefixes(&[1, 1], NEXT, parse_auth_status));
    assert!(done(parse_auth_status(&[5, 0]).unwrap()).0);
    assert!(parse_auth_status(&[0x48, 0]).is_err());
    let creds = Credentials {
        user: "alice".into(),
        password: "s3cret".into(),
    };
    assert_eq!(client::encode_auth(&creds).unwrap(), CURL_AUTH);
    let target = Target::new(name("example.com"), 443);
    assert_eq!(client::encode_request(&target).unwrap(), CURL_REQUEST_NAME);
    let long = Credentials {
        user: "u".repeat(256),
        password: String::new(),
    };
    assert_eq!(
        client::encode_auth(&long),
        Err(Socks5Error::TooLong("user name"))
    );
}

fn arb_target() -> impl Strategy<Value = Target> {
    let host = prop_oneof![
        any::<[u8; 4]>().prop_map(|o| Host::Ip(Ipv4Addr::from(o).into())),
        any::<[u8; 16]>().prop_map(|o| Host::Ip(Ipv6Addr::from(o).into())),
        "[a-z0-9][a-z0-9-]{0,20}(\\.[a-z0-9_-]{1,20}){0,3}"
            .prop_filter_map("not a name", |s| Host::parse(&s).ok()),
    ];
    (host, any::<u16>()).prop_map(|(h, p)| Target::new(h, p))
}

random_bytes_never_panic!(300;
    parse_greeting, parse_auth, parse_request, parse_method_choice, parse_auth_status, parse_reply,
);

proptest! {
    #[test]
    fn near_valid_requests_never_panic(
        tail in proptest::collection::vec(any::<u8>(), 0..300),
        cmd in 0u8..5,
        kind in 0u8..6,
    ) {
        let mut msg = vec![5, cmd, 0, kind];
        msg.extend_from_slice(&tail);
        let _ = parse_request(&msg);
        msg[0] = 1;
        let _ = parse_auth(&msg);
    }

    #[test]
    fn client_request_round_trips(target in arb_target()) {
        let bytes = client::encode_request(&target).unwrap();
        let parsed = assert_prefixes(&bytes, NEXT, parse_request);
        prop_assert_eq!(parsed, Socks5Request { command: command::CONNECT, target });
    }

    #[test]
    fn client_auth_round_trips(user in "\\PC{0,60}", password in "\\PC{0,60}") {
        let creds = Credentials { user, password };
        match client::encode_auth(&creds) {
            Ok(bytes) => prop_assert_eq!(assert_prefixes(&bytes, NEXT, parse_auth), creds),
            Err(e) => prop_assert!(creds.user.len() > 255 || creds.password.len() > 255, "{}", e),
        }
    }

    #[test]
    fn reply_round_trips(addr in any::<SocketAddr>(), rep in any::<u8>()) {
        let reply = assert_prefixes(&encode_reply(rep, Some(addr)), NEXT, parse_reply);
        prop_assert_eq!(reply, Reply { rep, bound: Target::new(Host::Ip(addr.ip()), addr.port()) });
    }
}
