//! JA4 checked against FoxIO's published specification (`technical_details/JA4.md` in
//! github.com/FoxIO-LLC/ja4, read 2026-12-03): its worked example, its raw form and its ALPN
//! table are restated here as facts; the captured hellos' expectations come from
//! `tests/fixtures/ja4.py`, an independent standard-library reading of the same spec.

use proptest::prelude::*;

use super::*;
use crate::tls::tests::{FIXTURES, extension_block, frame};
use crate::tls::{HelloError, parse_client_hello};
use crate::{Parsed, tls};

/// The spec's example hello ("Cipher hash" and "Extension hash" sections), in the client's
/// order, as a browser would send it: TLS 1.3 in supported_versions, SNI, ALPN h2.
fn spec_example() -> Ja4Input {
    Ja4Input {
        legacy_version: 0x0303,
        supported_versions: Some(vec![0x0304, 0x0303]),
        ciphers: vec![
            0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f, 0xc02c, 0xc030, 0xcca9, 0xcca8, 0xc013, 0xc014,
            0x009c, 0x009d, 0x002f, 0x0035,
        ],
        extensions: vec![
            0x001b, 0x0000, 0x0033, 0x0010, 0x4469, 0x0017, 0x002d, 0x000d, 0x0005, 0x0023, 0x0012,
            0x002b, 0xff01, 0x000b, 0x000a, 0x0015,
        ],
        signature_algorithms: vec![
            0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601,
        ],
        first_alpn: Some(b"h2".to_vec()),
    }
}

fn ja4(input: &Ja4Input) -> String {
    Ja4::of(input, Transport::Tcp).to_string()
}

#[test]
fn the_spec_example_gives_the_published_ja4_and_ja4_r() {
    // JA4.md "Example": JA4 = t13d1516h2_8daaf6152771_e5627efa2ab1.
    assert_eq!(ja4(&spec_example()), "t13d1516h2_8daaf6152771_e5627efa2ab1");
    // JA4.md "Raw Output": JA4_r.
    assert_eq!(
        ja4_r(&spec_example(), Transport::Tcp),
        "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_\
         0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_\
         0403,0804,0401,0503,0805,0501,0806,0601"
    );
}

#[test]
fn without_signature_algorithms_the_extension_hash_has_no_underscore() {
    // JA4.md "Extension hash": "...,4469,ff01 = 6d807ffa2a79" when there are no sigalgs.
    let input = Ja4Input {
        signature_algorithms: Vec::new(),
        ..spec_example()
    };
    assert_eq!(ja4(&input), "t13d1516h2_8daaf6152771_6d807ffa2a79");
    assert!(ja4_r(&input, Transport::Tcp).ends_with(",4469,ff01"));
}

#[test]
fn grease_is_ignored_everywhere() {
    let mut input = spec_example();
    input.ciphers.insert(0, 0x0a0a);
    input.extensions.insert(0, 0x1a1a);
    input.extensions.push(0xfafa);
    input.signature_algorithms.insert(3, 0x2a2a);
    input.supported_versions = Some(vec![0x3a3a, 0x0304, 0x0303]);
    assert_eq!(ja4(&input), ja4(&spec_example()));
}

#[test]
fn order_of_ciphers_and_extensions_does_not_matter_but_signature_order_does() {
    let mut input = spec_example();
    input.ciphers.reverse();
    input.extensions.reverse();
    assert_eq!(ja4(&input), ja4(&spec_example()));
    input.signature_algorithms.swap(0, 1);
    assert_ne!(ja4(&input), ja4(&spec_example()));
}

#[test]
fn transport_sni_and_version_characters() {
    assert!(
        Ja4::of(&spec_example(), Transport::Quic)
            .as_str()
            .starts_with("q13d")
    );
    assert!(
        Ja4::of(&spec_example(), Transport::Dtls)
            .as_str()
            .starts_with("d13d")
    );
    let mut no_sni = spec_example();
    no_sni.extensions.retain(|&e| e != 0x0000);
    // "i", one extension fewer; SNI is not in the hash, so `c` is unchanged.
    assert_eq!(ja4(&no_sni), "t13i1515h2_8daaf6152771_e5627efa2ab1");
    let version = |legacy, supported: Option<Vec<u16>>| {
        let input = Ja4Input {
            legacy_version: legacy,
            supported_versions: supported,
            ..spec_example()
        };
        ja4(&input)[1..3].to_owned()
    };
    // The highest supported_versions entry wins, whatever its position; legacy is ignored.
    assert_eq!(version(0x0301, Some(vec![0x0303, 0x0304])), "13");
    assert_eq!(version(0x0303, None), "12");
    assert_eq!(version(0x0302, None), "11");
    assert_eq!(version(0x0301, None), "10");
    assert_eq!(version(0x0300, None), "s3");
    assert_eq!(version(0x0002, None), "s2");
    assert_eq!(version(0xfefd, None), "d2");
    assert_eq!(version(0x0305, None), "00");
    assert_eq!(version(0x0303, Some(vec![0x7f17])), "00");
    assert_eq!(version(0x0303, Some(vec![0x0a0a])), "00");
}

#[test]
fn alpn_characters_follow_the_spec_table() {
    let alpn = |first: Option<&[u8]>| {
        let input = Ja4Input {
            first_alpn: first.map(<[u8]>::to_vec),
            ..spec_example()
        };
        ja4(&input)[8..10].to_owned()
    };
    assert_eq!(alpn(Some(b"h2")), "h2");
    assert_eq!(alpn(Some(b"http/1.1")), "h1");
    // "If there is no ALPN extension, no ALPN values, or the first ALPN value is empty".
    assert_eq!(alpn(None), "00");
    assert_eq!(alpn(Some(b"")), "00");
    // "only a single character ... treated as both the first and last character".
    assert_eq!(alpn(Some(b"x")), "xx");
    // The spec's hex examples, one by one.
    for (bytes, want) in [
        (&[0xab][..], "ab"),
        (&[0x20], "20"),
        (&[0xab, 0xcd], "ad"),
        (&[0x20, 0x61], "21"),
        (&[0x30, 0xab], "3b"),
        (&[0x61, 0x20], "60"),
        (&[0x30, 0x31, 0xab, 0xcd], "3d"),
        (&[0x30, 0xab, 0xcd, 0x31], "01"),
    ] {
        assert_eq!(alpn(Some(bytes)), want, "ALPN {bytes:02x?}");
    }
}

#[test]
fn empty_lists_hash_to_zeros_and_counts_stop_at_99() {
    let empty = Ja4Input::default();
    assert_eq!(ja4(&empty), "t00i000000_000000000000_000000000000");
    let only_sni_and_alpn = Ja4Input {
        extensions: vec![0x0000, 0x0010],
        ..Ja4Input::default()
    };
    assert_eq!(
        ja4(&only_sni_and_alpn),
        "t00d000200_000000000000_000000000000"
    );
    let many = Ja4Input {
        ciphers: (1..=300).collect(),
        extensions: (100..400).collect(),
        ..Ja4Input::default()
    };
    assert_eq!(&ja4(&many)[..8], "t00i9999");
}

/// The expectations printed by `python3 tests/fixtures/ja4.py tests/fixtures/*.bin`.
const FIXTURE_JA4: [(&str, &str); 6] = [
    ("curl", "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6"),
    ("python", "t13d1812h2_85036bcba153_d41ae481755e"),
    ("python_tls12", "t12d150700_d68b136fe8d9_e7e480e5a997"),
    ("openssl", "t13d3111h1_e8f1e7e78f70_1f22a2ca17c4"),
    ("openssl_ip_sni", "t13d311000_e8f1e7e78f70_1f22a2ca17c4"),
    ("chromium", "t13d1517h2_8daaf6152771_cb7bf5808d99"),
];

fn fixture_facts(name: &str) -> tls::ClientHelloFacts {
    let (_, bytes) = FIXTURES.iter().find(|(n, _)| *n == name).expect("fixture");
    match parse_client_hello(bytes) {
        Ok(Parsed::Done { value, .. }) => value,
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn every_fixture_gives_the_ja4_the_independent_script_computed() {
    for (name, want) in FIXTURE_JA4 {
        assert_eq!(fixture_facts(name).ja4.as_str(), want, "{name}");
    }
    // Chromium sends GREASE in ciphers, extensions, groups and versions, and ECH GREASE:
    // the raw form shows the GREASE gone and fe0d (ECH) counted like any extension.
    let chromium = fixture_facts("chromium");
    assert_eq!(
        ja4_r(&chromium.ja4_input, Transport::Tcp),
        "t13d1517h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_\
         0005,000a,000b,000d,0012,0017,001b,0023,002b,002d,0033,44cd,ca34,fe0d,ff01_\
         0904,0905,0906,0403,0804,0401,0503,0805,0501,0806,0601"
    );
    assert!(chromium.ja4_input.ciphers.iter().any(|&c| is_grease(c)));
}

#[test]
fn parse_accepts_what_of_produces_and_the_issue_example() {
    for (_, fp) in FIXTURE_JA4 {
        assert_eq!(Ja4::parse(fp).map(|j| j.to_string()), Ok(fp.to_owned()));
    }
    assert!(Ja4::parse("t13d1516h2_8daaf6152771_02713d6af862").is_ok());
    assert!(Ja4::parse("q13d0310h3_55b375c5d22e_cd85d2d88918").is_ok());
}

#[test]
fn parse_refuses_what_is_not_a_ja4() {
    for (raw, says) in [
        ("", "36 characters"),
        ("t13d1516h2_8daaf6152771_02713d6af86", "36 characters"),
        ("x13d1516h2_8daaf6152771_02713d6af862", "first character"),
        ("t14d1516h2_8daaf6152771_02713d6af862", "TLS version"),
        ("t13x1516h2_8daaf6152771_02713d6af862", "SNI"),
        ("t13d15a6h2_8daaf6152771_02713d6af862", "counts"),
        ("t13d1516h/_8daaf6152771_02713d6af862", "ALPN"),
        ("t13d1516h2-8daaf6152771_02713d6af862", "hex"),
        ("t13d1516h2_8DAAF6152771_02713d6af862", "hex"),
        ("t13d1516h2_8daaf6152771_02713d6af86g", "hex"),
        ("t13d1516h2_8daaf6152771_02713d6af862é", "36 characters"),
    ] {
        let err = Ja4::parse(raw).expect_err(raw);
        assert!(err.contains(says), "{raw:?}: {err}");
    }
}

/// A ClientHello with these cipher suites and extensions, in records of at most 16 KiB.
fn hello(ciphers: &[u16], extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let ext = extension_block(extensions);
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]);
    body.push(0);
    body.extend_from_slice(&((ciphers.len() * 2) as u16).to_be_bytes());
    ciphers
        .iter()
        .for_each(|c| body.extend_from_slice(&c.to_be_bytes()));
    body.extend_from_slice(&[1, 0]);
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend_from_slice(&ext);
    let len = (body.len() as u32).to_be_bytes();
    let mut message = vec![1, len[1], len[2], len[3]];
    message.extend_from_slice(&body);
    frame(&message, &[16384; 8])
}

fn parse(bytes: &[u8]) -> Result<Ja4, HelloError> {
    match parse_client_hello(bytes)? {
        Parsed::Done { value, .. } => Ok(value.ja4),
        Parsed::Incomplete => panic!("a whole hello is incomplete"),
    }
}

#[test]
fn hostile_hellos_give_a_ja4_or_a_clear_error() {
    // Duplicate extensions: refused (policy must not guess which SNI counts).
    let dup = hello(&[0x1301], &[(0x0017, vec![]), (0x0017, vec![])]);
    assert!(matches!(parse(&dup), Err(HelloError::Malformed(m)) if m.contains("twice")));
    // Expected hashes below: Python's hashlib.sha256 over the strings the spec describes
    // ("000d"; "0100,...,3b97" less the GREASE values in it; "1301"), first 12 hex digits.
    // Zero-length lists: no suites, an empty ALPN list, empty signature_algorithms.
    let empty = hello(&[], &[(0x0010, vec![0, 0]), (0x000d, vec![0, 0])]);
    assert_eq!(
        parse(&empty).map(|j| j.to_string()),
        Ok("t12i000200_000000000000_06540eb5c95f".to_owned())
    );
    // About 60 KiB of empty extensions: counted as 99, hashed in full.
    let many: Vec<(u16, Vec<u8>)> = (0x0100..0x0100 + 15_000).map(|t| (t, vec![])).collect();
    let fp = parse(&hello(&[0x1301], &many)).expect("a hello just under the cap");
    assert_eq!(fp.as_str(), "t12i019900_0f2cb44170f4_cc2d3b8abcbc");
    // Over 64 KiB of extensions: too large to buffer, refused.
    let huge = hello(&[0x1301], &[(0x0015, vec![0; 0xfff0])]);
    assert_eq!(parse(&huge), Err(HelloError::TooLarge));
}

proptest! {
    #[test]
    fn any_input_gives_a_ja4_of_the_spec_shape(
        legacy in any::<u16>(),
        versions in proptest::option::of(proptest::collection::vec(any::<u16>(), 0..6)),
        ciphers in proptest::collection::vec(any::<u16>(), 0..200),
        extensions in proptest::collection::vec(any::<u16>(), 0..200),
        sigs in proptest::collection::vec(any::<u16>(), 0..40),
        alpn in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
    ) {
        let input = Ja4Input {
            legacy_version: legacy,
            supported_versions: versions,
            ciphers,
            extensions,
            signature_algorithms: sigs,
            first_alpn: alpn,
        };
        let fp = Ja4::of(&input, Transport::Tcp);
        prop_assert_eq!(Ja4::parse(fp.as_str()), Ok(fp));
        let raw = ja4_r(&input, Transport::Tcp);
        prop_assert!(raw.starts_with(&fp.as_str()[..10]));
    }

    #[test]
    fn hostile_extension_lists_never_panic(
        ciphers in proptest::collection::vec(any::<u16>(), 0..64),
        extensions in proptest::collection::vec(
            (prop_oneof![0u16..64, Just(0x0a0a), Just(0xfe0d), any::<u16>()],
             proptest::collection::vec(any::<u8>(), 0..12)),
            0..64,
        ),
    ) {
        match parse(&hello(&ciphers, &extensions)) {
            Ok(fp) => prop_assert_eq!(Ja4::parse(fp.as_str()), Ok(fp)),
            Err(HelloError::Malformed(_) | HelloError::BadSni(_) | HelloError::TooLarge) => {}
            Err(e) => prop_assert!(false, "unexpected {e:?}"),
        }
    }
}
