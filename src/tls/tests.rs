use std::net::{IpAddr, Ipv4Addr};

use proptest::prelude::*;

use super::body::{EXT_ENCRYPTED_CLIENT_HELLO, EXT_KEY_SHARE, is_grease};
use super::records::{
    CONTENT_TYPE_CHANGE_CIPHER_SPEC, CONTENT_TYPE_HANDSHAKE, HANDSHAKE_CLIENT_HELLO,
    HANDSHAKE_HEADER_LEN, HANDSHAKE_SERVER_HELLO, RECORD_HEADER_LEN,
};
use super::*;
use crate::parse_test_util::{done, random_bytes_never_panic};
use crate::target::Host;

const TLS13: u16 = 0x0304;
const TLS12: u16 = 0x0303;
const TLS11: u16 = 0x0302;
const TLS10: u16 = 0x0301;
const EXT_SNI: u16 = 0;
const EXT_ALPN: u16 = 16;
const EXT_SUPPORTED_VERSIONS: u16 = 43;

/// Real hellos captured on loopback by tests/fixtures/capture_hellos.py.
pub(super) const FIXTURES: [(&str, &[u8]); 6] = [
    ("curl", include_bytes!("../../tests/fixtures/curl.bin")),
    ("python", include_bytes!("../../tests/fixtures/python.bin")),
    (
        "python_tls12",
        include_bytes!("../../tests/fixtures/python_tls12.bin"),
    ),
    (
        "openssl",
        include_bytes!("../../tests/fixtures/openssl.bin"),
    ),
    (
        "openssl_ip_sni",
        include_bytes!("../../tests/fixtures/openssl_ip_sni.bin"),
    ),
    (
        "chromium",
        include_bytes!("../../tests/fixtures/chromium.bin"),
    ),
];

fn fixture(name: &str) -> &'static [u8] {
    FIXTURES
        .iter()
        .find(|(n, _)| *n == name)
        .expect("fixture")
        .1
}

/// The facts of a whole hello, which says it took exactly the bytes that were consumed.
fn hello_facts(buf: &[u8]) -> ClientHelloFacts {
    let (facts, consumed) = done(parse_client_hello(buf).expect("a hello"));
    assert_eq!(consumed, facts.len);
    facts
}

fn name(n: &str) -> Option<Host> {
    Some(Host::Name(n.into()))
}

/// The handshake message carried by a stream of records.
fn message_of(mut records: &[u8]) -> Vec<u8> {
    let mut message = Vec::new();
    while let Some(header) = records.get(..RECORD_HEADER_LEN) {
        let end = RECORD_HEADER_LEN + usize::from(u16::from_be_bytes([header[3], header[4]]));
        message.extend_from_slice(&records[RECORD_HEADER_LEN..end]);
        records = &records[end..];
    }
    message
}

/// Frames `message` into handshake records whose payloads have the given sizes (the last
/// record takes whatever is left).
pub(super) fn frame(message: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = message;
    let mut sizes = sizes.iter();
    while !rest.is_empty() {
        let n = sizes.next().map_or(rest.len(), |&n| n.clamp(1, rest.len()));
        let len = u16::try_from(n).expect("record size");
        out.extend_from_slice(&[CONTENT_TYPE_HANDSHAKE, 3, 1]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
    }
    out
}

/// The encoded extensions, without the block's length.
pub(super) fn extension_block(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut ext = Vec::new();
    for (t, data) in extensions {
        ext.extend_from_slice(&t.to_be_bytes());
        ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
        ext.extend_from_slice(data);
    }
    ext
}

/// A minimal ClientHello record carrying the given extensions, for cases no client sends.
fn hello_with(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let ext = extension_block(extensions);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]); // random
    body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]); // no session id, one suite, null
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let mut message = vec![HANDSHAKE_CLIENT_HELLO, 0];
    message.extend_from_slice(&(body.len() as u16).to_be_bytes());
    message.extend_from_slice(&body);
    frame(&message, &[])
}

fn sni_ext(host: &[u8]) -> (u16, Vec<u8>) {
    let mut data = ((host.len() + 3) as u16).to_be_bytes().to_vec();
    data.push(0);
    data.extend_from_slice(&(host.len() as u16).to_be_bytes());
    data.extend_from_slice(host);
    (EXT_SNI, data)
}

fn not_tls(buf: &[u8]) -> &'static str {
    match parse_client_hello(buf) {
        Err(HelloError::NotTls(why)) => why,
        other => panic!("expected NotTls for {buf:02x?}, got {other:?}"),
    }
}

#[test]
fn every_fixture_gives_its_facts() {
    let h2_h1 = vec!["h2".to_string(), "http/1.1".to_string()];
    let curl = hello_facts(fixture("curl"));
    assert_eq!(curl.sni, name("curl.ward.test"));
    assert_eq!(curl.alpn, h2_h1);
    assert_eq!(curl.versions, [TLS13, TLS12, TLS11, TLS10]);
    assert!(curl.ech == EchOffer::None && !curl.has_pq_key_share);

    let python = hello_facts(fixture("python"));
    assert_eq!(python.sni, name("python.ward.test"));
    assert_eq!(python.alpn, h2_h1);
    assert_eq!(python.versions, [TLS13, TLS12]);

    let tls12 = hello_facts(fixture("python_tls12"));
    assert_eq!(tls12.sni, name("python12.ward.test"));
    assert!(tls12.alpn.is_empty());
    assert_eq!(
        tls12.versions,
        [TLS12],
        "no supported_versions: the legacy version"
    );

    let openssl = hello_facts(fixture("openssl"));
    assert_eq!(openssl.sni, name("openssl.ward.test"));
    assert_eq!(openssl.alpn, ["http/1.1"]);
    assert_eq!(openssl.versions, [TLS13, TLS12, TLS11, TLS10]);

    let ip = hello_facts(fixture("openssl_ip_sni"));
    assert_eq!(ip.sni, Some(Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))));

    let chromium = hello_facts(fixture("chromium"));
    assert_eq!(chromium.sni, name("chromium.ward.test"));
    assert_eq!(chromium.alpn, h2_h1);
    assert_eq!(chromium.versions, [TLS13, TLS12], "GREASE versions dropped");
    assert!(chromium.has_pq_key_share, "X25519MLKEM768");
    assert_eq!(chromium.ech, EchOffer::Outer, "Chromium sends ECH GREASE");
    assert!(chromium.len > 1500, "the post-quantum hello is large");

    for (n, bytes) in FIXTURES {
        assert_eq!(hello_facts(bytes).len, bytes.len(), "{n}");
    }
}

#[test]
fn every_prefix_of_a_fixture_is_incomplete() {
    for (n, bytes) in FIXTURES {
        for i in 0..bytes.len() {
            assert_eq!(
                parse_client_hello(&bytes[..i]),
                Ok(Parsed::Incomplete),
                "{n} [..{i}]"
            );
        }
    }
}

#[test]
fn trailing_bytes_after_the_hello_records_are_not_consumed() {
    let hello = fixture("curl");
    let mut stream = hello.to_vec();
    stream.extend_from_slice(&[CONTENT_TYPE_CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1]);
    assert_eq!(hello_facts(&stream).len, hello.len());
}

#[test]
fn a_hello_split_over_records_parses_identically() {
    for (n, bytes) in FIXTURES {
        let whole = hello_facts(bytes);
        let message = message_of(bytes);
        for records in 2..=8 {
            let size = message.len().div_ceil(records);
            let stream = frame(&message, &vec![size; records]);
            let facts = hello_facts(&stream);
            assert_eq!(
                ClientHelloFacts {
                    len: whole.len,
                    ..facts
                },
                whole,
                "{n} / {records}"
            );
            assert_eq!(facts.len, stream.len());
        }
    }
}

#[test]
fn tiny_records_every_prefix_is_incomplete() {
    // The handshake header itself is split over four records here, the rest over
    // 4-byte records (within MAX_HELLO_RECORDS).
    let bytes = fixture("curl");
    let sizes: Vec<usize> = [1; 8].into_iter().chain([4; 200]).collect();
    let stream = frame(&message_of(bytes), &sizes);
    for i in 0..stream.len() {
        assert_eq!(
            parse_client_hello(&stream[..i]),
            Ok(Parsed::Incomplete),
            "[..{i}]"
        );
    }
    assert_eq!(hello_facts(&stream).sni, name("curl.ward.test"));
}

#[test]
fn a_hello_over_too_many_records_is_refused() {
    let message = message_of(fixture("chromium"));
    let at_cap = message.len().div_ceil(MAX_HELLO_RECORDS);
    let stream = frame(&message, &vec![at_cap; MAX_HELLO_RECORDS]);
    assert_eq!(hello_facts(&stream).sni, name("chromium.ward.test"));
    let stream = frame(&message, &vec![1; message.len()]);
    let err = parse_client_hello(&stream).unwrap_err();
    assert!(err.to_string().contains("more than 256 records"), "{err}");
    // Refused once the cap's worth of records is in and the hello is still unfinished.
    let cut = (RECORD_HEADER_LEN + 1) * MAX_HELLO_RECORDS;
    assert_eq!(parse_client_hello(&stream[..cut]), Err(err));
}

#[test]
fn a_huge_handshake_is_refused_from_its_header() {
    // A record announcing a 1 MiB ClientHello: refused after 9 bytes, nothing buffered.
    let claim = [
        CONTENT_TYPE_HANDSHAKE,
        3,
        1,
        0x40,
        0,
        HANDSHAKE_CLIENT_HELLO,
        0x10,
        0,
        0,
    ];
    assert_eq!(parse_client_hello(&claim[..8]), Ok(Parsed::Incomplete));
    assert_eq!(parse_client_hello(&claim), Err(HelloError::TooLarge));
    // The same claim with its header split over 1-byte records.
    let split = frame(&claim[5..], &[1, 1, 1, 1]);
    assert_eq!(parse_client_hello(&split), Err(HelloError::TooLarge));
}

#[test]
fn records_beyond_the_cap_are_refused_before_they_arrive() {
    // A 65 KB hello fits the message cap, but cut into 256-byte records (fewer than
    // MAX_HELLO_RECORDS) it needs 66.3 KB of records: refused once the record bytes reach
    // the cap, never needing a bigger buffer.
    let body_len: usize = 64_996;
    let mut message = vec![HANDSHAKE_CLIENT_HELLO, 0];
    message.extend_from_slice(&(body_len as u16).to_be_bytes());
    message.resize(HANDSHAKE_HEADER_LEN + body_len, 0);
    let stream = frame(&message, &vec![256; body_len]);
    assert!(stream.len() > MAX_CLIENT_HELLO);
    let record = RECORD_HEADER_LEN + 256;
    let fitting = MAX_CLIENT_HELLO / record * record;
    let under_cap = &stream[..fitting];
    assert_eq!(parse_client_hello(under_cap), Ok(Parsed::Incomplete));
    // The next record's header says it would end past the cap.
    let over_cap = &stream[..fitting + RECORD_HEADER_LEN];
    assert_eq!(parse_client_hello(over_cap), Err(HelloError::TooLarge));
    // A record longer than TLS allows is malformed, whatever follows.
    let long = [CONTENT_TYPE_HANDSHAKE, 3, 1, 0x40, 1];
    assert!(matches!(
        parse_client_hello(&long),
        Err(HelloError::Malformed(_))
    ));
}

#[test]
fn non_tls_bytes_are_refused_with_a_reason() {
    assert_eq!(parse_client_hello(b""), Ok(Parsed::Incomplete));
    assert_eq!(not_tls(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), "plain HTTP");
    assert_eq!(not_tls(b"G"), "plain HTTP");
    assert_eq!(not_tls(b"PRI * HTTP/2.0\r\n"), "plain HTTP");
    assert_eq!(not_tls(b"SSH-2.0-OpenSSH_9.2p1\r\n"), "SSH banner");
    assert_eq!(not_tls(&[5, 1, 0]), "SOCKS5 greeting");
    assert_eq!(not_tls(&[4, 1, 0, 80, 127, 0, 0, 1, 0]), "SOCKS4 request");
    assert_eq!(not_tls(b"EHLO x\r\n"), "plain text");
    assert_eq!(
        not_tls(&[0x80, 0x2e, 0x01, 0x03, 0x01]),
        "SSLv2-format ClientHello"
    );
    assert_eq!(not_tls(&[0x00, 0xff]), "not a TLS handshake record");
    // TLS, but not a handshake record: application data, alert.
    assert_eq!(
        not_tls(&[0x17, 3, 3, 0, 1, 0]),
        "TLS record that is not a handshake"
    );
    assert_eq!(
        not_tls(&encode_alert(AlertDescription::AccessDenied)),
        "TLS record that is not a handshake"
    );
    assert_eq!(
        not_tls(&[0x16, 2, 0]),
        "handshake content type with a non-TLS record version"
    );
    assert_eq!(
        not_tls(&[0x16, 3, 9]),
        "handshake record with an unknown TLS version"
    );
    assert_eq!(not_tls(&[0x16, 3, 1, 0, 0]), "empty handshake record");
    let server_hello = [
        0x16,
        3,
        3,
        0,
        0x30,
        HANDSHAKE_SERVER_HELLO,
        0,
        0,
        0x2c,
        3,
        3,
    ];
    assert_eq!(not_tls(&server_hello), "a ServerHello, not a ClientHello");
    let certificate = [0x16, 3, 3, 0, 0x30, 11, 0, 0, 0x2c];
    assert_eq!(
        not_tls(&certificate),
        "a handshake message other than ClientHello"
    );
}

#[test]
fn broken_continuations_are_malformed() {
    let message = message_of(fixture("curl"));
    let mut stream = frame(&message[..100], &[]);
    let bad_next = |next: &[u8]| {
        let mut s = stream.clone();
        s.extend_from_slice(next);
        parse_client_hello(&s)
    };
    assert!(matches!(
        bad_next(&[0x14, 3, 3, 0, 1, 1]),
        Err(HelloError::Malformed(_))
    ));
    assert!(matches!(
        bad_next(&[0x16, 3, 3, 0, 0]),
        Err(HelloError::Malformed(_))
    ));
    assert!(matches!(
        bad_next(&[0x16, 0x47]),
        Err(HelloError::Malformed(_))
    ));
    // The hello ends inside a record that carries more bytes.
    stream = frame(&[&message[..], &[0x14, 0, 0, 0]].concat(), &[]);
    assert!(matches!(
        parse_client_hello(&stream),
        Err(HelloError::Malformed(_))
    ));
}

#[test]
fn synthetic_hellos_give_their_facts() {
    let ech = (
        EXT_ENCRYPTED_CLIENT_HELLO,
        vec![0, 0, 1, 0, 1, 0x2a, 0, 0, 0, 1, 0x55],
    );
    let versions = (EXT_SUPPORTED_VERSIONS, vec![4, 0x7a, 0x7a, 3, 4]);
    // An X25519MLKEM768 share (1-byte stand-in key) and an empty x25519 one.
    let key_share = vec![0, 9, 0x11, 0xec, 0, 1, 9, 0, 0x1d, 0, 0];
    let facts = hello_facts(&hello_with(&[
        sni_ext(b"Example.COM."),
        ech,
        versions,
        (EXT_KEY_SHARE, key_share),
    ]));
    assert_eq!(facts.sni, name("example.com"));
    assert_eq!(facts.ech, EchOffer::Outer);
    assert_eq!(facts.versions, [TLS13]);
    assert!(facts.has_pq_key_share);

    let bare = hello_facts(&hello_with(&[]));
    assert_eq!(
        (bare.sni, bare.versions, bare.ech),
        (None, vec![TLS12], EchOffer::None)
    );
    let idn = hello_facts(&hello_with(&[sni_ext("bücher.example".as_bytes())]));
    assert_eq!(idn.sni, name("xn--bcher-kva.example"));
}

#[test]
fn bad_names_and_extensions_are_refused() {
    let bad_sni = |host: &[u8]| parse_client_hello(&hello_with(&[sni_ext(host)]));
    assert!(matches!(bad_sni(b"bad name!"), Err(HelloError::BadSni(_))));
    assert!(matches!(bad_sni(b"a..b"), Err(HelloError::BadSni(_))));
    assert!(matches!(bad_sni(&[0xff, 0xfe]), Err(HelloError::BadSni(_))));
    let malformed = |exts: &[(u16, Vec<u8>)]| {
        matches!(
            parse_client_hello(&hello_with(exts)),
            Err(HelloError::Malformed(_))
        )
    };
    assert!(
        malformed(&[sni_ext(b"a.test"), sni_ext(b"b.test")]),
        "two SNIs"
    );
    assert!(
        malformed(&[(EXT_ALPN, vec![0, 9, 2, b'h'])]),
        "ALPN overruns"
    );
    // Found by fuzz/client_hello: RFC 7301 forbids empty protocol names, and an origin (OpenSSL)
    // refuses them with decode_error.
    assert!(
        malformed(&[(EXT_ALPN, vec![0, 4, 2, b'h', b'2', 0])]),
        "an empty ALPN protocol name"
    );
    assert!(
        malformed(&[(EXT_SUPPORTED_VERSIONS, vec![2, 0x1a, 0x1a])]),
        "only GREASE"
    );
    assert!(
        malformed(&[(EXT_KEY_SHARE, vec![0, 4, 0, 0x1d, 0, 9])]),
        "key share overruns"
    );
    // An extension header that overruns the block.
    let mut stream = hello_with(&[(EXT_ALPN, vec![0, 3, 2, b'h', b'2'])]);
    let len = stream.len();
    stream[len - 6] = 0x40;
    assert!(matches!(
        parse_client_hello(&stream),
        Err(HelloError::Malformed(_))
    ));
}

#[test]
fn alerts() {
    assert_eq!(
        encode_alert(AlertDescription::AccessDenied),
        [0x15, 3, 3, 0, 2, 2, 49]
    );
    assert_eq!(encode_alert(AlertDescription::DecodeError)[6], 50);
}

#[test]
fn grease_values() {
    assert!(is_grease(0x0a0a) && is_grease(0xfafa));
    assert!(!is_grease(0x0a1a) && !is_grease(0x0304));
}

random_bytes_never_panic!(600; parse_client_hello);

proptest! {
    #[test]
    fn mutated_hellos_never_panic(
        which in 0..FIXTURES.len(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = FIXTURES[which].1.to_vec();
        for (at, b) in edits {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        let _ = parse_client_hello(&bytes);
    }

    #[test]
    fn random_record_splits_give_the_same_facts(
        which in 0..FIXTURES.len(),
        sizes in proptest::collection::vec(1usize..600, 0..40),
    ) {
        let (_, bytes) = FIXTURES[which];
        let whole = hello_facts(bytes);
        let stream = frame(&message_of(bytes), &sizes);
        let facts = hello_facts(&stream);
        prop_assert_eq!(facts.len, stream.len());
        prop_assert_eq!(ClientHelloFacts { len: whole.len, ..facts }, whole);
    }
}
