use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;

use super::*;
use crate::parse_test_util::{assert_prefixes, done, random_bytes_never_panic};

/// What HAProxy 2.x writes for `server s 172.19.0.3:80 send-proxy-v2` (captured with netcat).
const HAPROXY_V2: &[u8] =
    b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xac\x13\x00\x01\xac\x13\x00\x03\xa6\x52\x00\x50";
/// What nginx writes with `proxy_protocol on` (v1 only).
const NGINX_V1: &[u8] = b"PROXY TCP4 172.19.0.1 172.19.0.3 42272 80\r\n";
/// What follows the header: a client's CONNECT.
const NEXT: &[u8] = b"CONNECT example.com:443 HTTP/1.1\r\n\r\n";

fn parse_any(buf: &[u8]) -> Result<Parsed<ProxyHeader>, ProxyHeaderError> {
    parse_proxy_header(buf, Versions::Any)
}

fn addrs(src: &str, dst: &str) -> Option<Addresses> {
    Some(Addresses {
        source: src.parse().unwrap(),
        destination: dst.parse().unwrap(),
    })
}

/// The sender's side, for the tests only: ward never writes PROXY headers.
fn encode(version: Version, addresses: Option<Addresses>, tlvs: &[(u8, Vec<u8>)]) -> Vec<u8> {
    match version {
        Version::V1 => encode_v1(addresses),
        Version::V2 => encode_v2(addresses, tlvs),
    }
}

fn encode_v1(addresses: Option<Addresses>) -> Vec<u8> {
    let Some(a) = addresses else {
        return b"PROXY UNKNOWN\r\n".to_vec();
    };
    let family = if a.source.is_ipv4() { "TCP4" } else { "TCP6" };
    let (s, d) = (a.source, a.destination);
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        s.ip(),
        d.ip(),
        s.port(),
        d.port()
    )
    .into_bytes()
}

fn encode_v2(addresses: Option<Addresses>, tlvs: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    let (cmd, fam) = match addresses {
        None => (0x20, 0x00),
        Some(a) => {
            let fam = match (a.source.ip(), a.destination.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => {
                    body.extend_from_slice(&s.octets());
                    body.extend_from_slice(&d.octets());
                    0x11
                }
                (IpAddr::V6(s), IpAddr::V6(d)) => {
                    body.extend_from_slice(&s.octets());
                    body.extend_from_slice(&d.octets());
                    0x21
                }
                _ => panic!("mixed families"),
            };
            body.extend_from_slice(&a.source.port().to_be_bytes());
            body.extend_from_slice(&a.destination.port().to_be_bytes());
            (0x21, fam)
        }
    };
    for (kind, value) in tlvs {
        body.push(*kind);
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value);
    }
    let mut out = V2_SIGNATURE.to_vec();
    out.extend_from_slice(&[cmd, fam]);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

#[test]
fn real_senders_headers() {
    let h = assert_prefixes(HAPROXY_V2, NEXT, parse_any);
    assert_eq!(h.version, Version::V2);
    assert_eq!(h.addresses, addrs("172.19.0.1:42578", "172.19.0.3:80"));
    let h = assert_prefixes(NGINX_V1, NEXT, parse_any);
    assert_eq!(h.version, Version::V1);
    assert_eq!(h.addresses, addrs("172.19.0.1:42272", "172.19.0.3:80"));
}

#[test]
fn v1_forms() {
    let v6 = b"PROXY TCP6 2001:db8::1 ::1 65535 0\r\n";
    let h = assert_prefixes(v6, NEXT, parse_any);
    assert_eq!(h.addresses, addrs("[2001:db8::1]:65535", "[::1]:0"));
    let unknown = b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n";
    assert_eq!(assert_prefixes(unknown, NEXT, parse_any).addresses, None);
    assert_eq!(
        assert_prefixes(b"PROXY UNKNOWN\r\n", NEXT, parse_any).addresses,
        None
    );
}

#[test]
fn v1_longest_header_fits_and_one_more_byte_does_not() {
    let longest = b"PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
    assert_eq!(longest.len(), V1_MAX);
    assert_prefixes(longest, NEXT, parse_any);
    let mut over = b"PROXY UNKNOWN ".to_vec();
    over.resize(V1_MAX, b'x');
    assert_eq!(parse_any(&over), Err(ProxyHeaderError::V1TooLong));
    over.extend_from_slice(b"\r\n");
    assert_eq!(parse_any(&over), Err(ProxyHeaderError::V1TooLong));
}

#[test]
fn v1_malformed_lines_are_errors() {
    for bad in [
        &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        b"PROXY TCP4 ::1 ::1 1 2\r\n",
        b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
        b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY \r\n",
        b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n",
    ] {
        assert!(
            matches!(parse_any(bad), Err(ProxyHeaderError::V1(_))),
            "{:?}: {:?}",
            String::from_utf8_lossy(bad),
            parse_any(bad)
        );
    }
}

#[test]
fn other_protocols_are_missing_headers_at_their_first_byte() {
    for first in [
        &b"CONNECT "[..],
        b"\x05\x01\x00",
        b"\x16\x03\x01",
        b"GET / HTTP/1.1\r\n",
    ] {
        assert_eq!(parse_any(first), Err(ProxyHeaderError::Missing));
    }
    assert_eq!(parse_any(b"PROXZ"), Err(ProxyHeaderError::Missing));
    assert_eq!(
        parse_any(b"\r\n\r\n\0\r\nQUIX"),
        Err(ProxyHeaderError::Missing)
    );
    // "P" could still be "PROXY ": wait, as for a real header.
    assert_eq!(parse_any(b"P"), Ok(Parsed::Incomplete));
    assert_eq!(parse_any(b""), Ok(Parsed::Incomplete));
}

#[test]
fn a_listener_refuses_the_version_it_does_not_accept() {
    let only_v1 = parse_proxy_header(HAPROXY_V2, Versions::V1);
    assert_eq!(
        only_v1,
        Err(ProxyHeaderError::WrongVersion {
            got: Version::V2,
            accepted: Versions::V1
        })
    );
    let only_v2 = parse_proxy_header(&NGINX_V1[..1], Versions::V2);
    assert!(matches!(
        only_v2,
        Err(ProxyHeaderError::WrongVersion { .. })
    ));
    assert!(matches!(
        parse_proxy_header(HAPROXY_V2, Versions::V2),
        Ok(Parsed::Done { .. })
    ));
}

#[test]
fn v2_bad_fixed_parts_are_refused_before_the_body_arrives() {
    let fixed = |ver_cmd: u8, fam: u8, len: u16| {
        let mut b = V2_SIGNATURE.to_vec();
        b.extend_from_slice(&[ver_cmd, fam]);
        b.extend_from_slice(&len.to_be_bytes());
        b
    };
    assert_eq!(
        parse_any(&fixed(0x11, 0x11, 12)),
        Err(ProxyHeaderError::V2Version(1))
    );
    assert_eq!(
        parse_any(&fixed(0x22, 0x11, 12)),
        Err(ProxyHeaderError::V2Command(2))
    );
    assert_eq!(
        parse_any(&fixed(0x21, 0x12, 12)),
        Err(ProxyHeaderError::V2Family(0x12))
    );
    assert_eq!(
        parse_any(&fixed(0x21, 0x41, 12)),
        Err(ProxyHeaderError::V2Family(0x41))
    );
    assert_eq!(
        parse_any(&fixed(0x21, 0x11, 0xffff)),
        Err(ProxyHeaderError::V2TooLong(0xffff))
    );
    assert_eq!(
        parse_any(&fixed(0x21, 0x21, 12)),
        Err(ProxyHeaderError::V2TooShort { len: 12, need: 36 })
    );
    // LOCAL (a health check) ignores the family, datagram or not.
    let mut local = fixed(0x20, 0x12, 0);
    local.extend_from_slice(NEXT);
    assert_eq!(done(parse_any(&local).unwrap()).0.addresses, None);
}

#[test]
fn v2_unix_and_unspecified_families_keep_the_peer_address() {
    let mut unix = V2_SIGNATURE.to_vec();
    unix.extend_from_slice(&[0x21, 0x31, 0, 216]);
    unix.resize(V2_FIXED + 216, b'/');
    assert_eq!(assert_prefixes(&unix, NEXT, parse_any).addresses, None);
    let mut unspec = V2_SIGNATURE.to_vec();
    unspec.extend_from_slice(&[0x21, 0x00, 0, 0]);
    assert_eq!(assert_prefixes(&unspec, NEXT, parse_any).addresses, None);
}

#[test]
fn v2_overrunning_tlv_is_an_error() {
    let mut h = encode_v2(addrs("10.0.0.1:1", "10.0.0.2:2"), &[(0x01, b"h2".to_vec())]);
    // Claim one more TLV byte than the header holds.
    let at = V2_FIXED + V2_INET_LEN + 2;
    h[at] += 1;
    assert_eq!(parse_any(&h), Err(ProxyHeaderError::V2Tlv));
    let mut stub = encode_v2(addrs("10.0.0.1:1", "10.0.0.2:2"), &[]);
    stub.extend_from_slice(&[0x04, 0x00]);
    stub[15] += 2;
    assert_eq!(parse_any(&stub), Err(ProxyHeaderError::V2Tlv));
}

fn socket_pair() -> impl Strategy<Value = Addresses> {
    let v4 = (
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(s, d, sp, dp)| Addresses {
            source: SocketAddr::new(IpAddr::from(s), sp),
            destination: SocketAddr::new(IpAddr::from(d), dp),
        });
    let v6 = (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(s, d, sp, dp)| Addresses {
            source: SocketAddr::new(IpAddr::from(s), sp),
            destination: SocketAddr::new(IpAddr::from(d), dp),
        });
    prop_oneof![v4, v6]
}

fn tlvs() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    proptest::collection::vec(
        (any::<u8>(), proptest::collection::vec(any::<u8>(), 0..200)),
        0..6,
    )
}

proptest! {
    #[test]
    fn round_trip_and_every_truncation_is_incomplete(
        addresses in proptest::option::of(socket_pair()),
        v2 in any::<bool>(),
        tlvs in tlvs(),
    ) {
        let version = if v2 { Version::V2 } else { Version::V1 };
        let bytes = encode(version, addresses, &tlvs);
        let parsed = assert_prefixes(&bytes, NEXT, parse_any);
        prop_assert_eq!(parsed, ProxyHeader { version, addresses });
        let only = if v2 { Versions::V2 } else { Versions::V1 };
        prop_assert_eq!(done(parse_proxy_header(&bytes, only).unwrap()).0, parsed);
    }

    #[test]
    fn corrupted_v2_headers_never_panic(
        addresses in proptest::option::of(socket_pair()),
        tlvs in tlvs(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let mut bytes = encode_v2(addresses, &tlvs);
        for (at, byte) in flips {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        if let Ok(Parsed::Done { consumed, .. }) = parse_any(&bytes) {
            prop_assert!(consumed <= bytes.len() && consumed <= MAX_HEADER);
        }
    }

    #[test]
    fn near_v1_lines_never_panic(tail in "[ -~]{0,120}", crlf in any::<bool>()) {
        let mut line = format!("PROXY {tail}").into_bytes();
        if crlf {
            line.extend_from_slice(b"\r\n");
        }
        if let Ok(Parsed::Done { consumed, .. }) = parse_any(&line) {
            prop_assert!(consumed <= V1_MAX);
        }
    }
}

random_bytes_never_panic!(4096; parse_any, |b| parse_proxy_header(b, Versions::V1));
