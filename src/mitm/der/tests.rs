//! Unit tests of the DER readers, on certificates rcgen makes and on broken bytes.

use super::*;

#[test]
fn times_parse() {
    let t = parse_time(TAG_UTC_TIME, b"250102030405Z").unwrap();
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
    assert_eq!(secs, 1_735_787_045);
    let g = parse_time(TAG_GENERALIZED_TIME, b"20250102030405Z").unwrap();
    assert_eq!(g, t);
    assert!(parse_time(TAG_UTC_TIME, b"251302030405Z").is_none());
    assert!(parse_time(TAG_UTC_TIME, b"2501020304Z").is_none());
}

#[test]
fn garbage_and_prefixes_never_panic() {
    let cert = rcgen::generate_simple_self_signed(vec!["a.test".into()]).unwrap();
    let der = cert.cert.der().to_vec();
    assert!(validity(&der).is_some());
    assert_eq!(
        subject_common_name(&der).as_deref(),
        Some("rcgen self signed cert")
    );
    for i in 0..der.len() {
        assert!(validity(&der[..i]).is_none());
    }
    assert!(validity(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
    for i in 0..der.len() {
        // Truncation may leave a readable prefix of the list, never a panic or junk.
        let names = san_dns_names(&der[..i], 8);
        assert!(names.iter().all(|n| n == "a.test"), "{names:?}");
    }
}

#[test]
fn dns_sans_are_read_bounded_and_filtered() {
    let names = vec![
        "Origin.Test".to_string(),
        "*.lab.test".into(),
        "127.0.0.1".into(),
        "localhost".into(),
        "origin.test".into(),
    ];
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::Rfc822Name("a@b.test".try_into().unwrap()));
    let key = rcgen::KeyPair::generate().unwrap();
    let der = params.self_signed(&key).unwrap().der().to_vec();
    assert_eq!(
        san_dns_names(&der, 10),
        ["origin.test", "*.lab.test", "localhost"]
    );
    assert_eq!(san_dns_names(&der, 1), ["origin.test"]);
    assert!(san_dns_names(b"\x30\x00", 10).is_empty());
    assert!(!is_dns_name("a..b") && !is_dns_name("-a.b") && !is_dns_name("a b"));
    assert!(!is_dns_name("*.") && !is_dns_name("::1") && is_dns_name("x-1.b_c.test"));
}

proptest::proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        let _ = san_dns_names(&bytes, 4);
        let _ = validity(&bytes);
    }
}
