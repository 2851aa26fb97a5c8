//! `listen` entries: plain strings and listener objects, and their errors with places.

use std::path::Path;

use super::*;
use crate::front::entry::cert;

fn parse_at(text: &str) -> Result<Config, ConfigError> {
    parse(text, Path::new("/etc/ward/policy.yaml"))
}

fn issues(text: &str) -> Vec<(u32, u32, String, String)> {
    match parse_at(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e
            .errors
            .into_iter()
            .map(|i| (i.line, i.column, i.key, i.message))
            .collect(),
    }
}

#[test]
fn strings_and_objects_mix() {
    let c = parse_at(
        "listen:\n  - 127.0.0.1:8080\n  - addr: 127.0.0.1:8443\n    tls: { cert: tls/proxy.pem, key: tls/proxy.key }\n  - { addr: \"[::1]:9000\", proxy_protocol: v2, trusted: [10.0.0.0/8, \"::1\"] }\n",
    )
    .unwrap();
    assert_eq!(
        c.listen[0],
        Listener::plain("127.0.0.1:8080".parse().unwrap())
    );
    let tls = c.listen[1].tls.as_ref().unwrap();
    assert_eq!(tls.cert, Path::new("/etc/ward/tls/proxy.pem"));
    assert_eq!(tls.key, Path::new("/etc/ward/tls/proxy.key"));
    assert_eq!(
        (tls.place.line, tls.place.key.as_str()),
        (4, "listen[1].tls")
    );
    assert_eq!(c.listen[1].proxy_protocol, None);
    assert_eq!(c.listen[2].proxy_protocol, Some(Versions::V2));
    assert_eq!(c.listen[2].trusted.len(), 2);
    assert!(
        c.summary()
            .contains("listen 127.0.0.1:8080 127.0.0.1:8443 (tls) [::1]:9000 (proxy v2)")
    );
}

#[test]
fn bad_listener_values_are_placed() {
    let text = "listen:\n  - { addr: 127.0.0.1:1, proxy_protocol: v3, trusted: [10.0.0.0/33] }\n  - { addr: nowhere }\n  - { tls: { cert: a.pem }, tsl: 1 }\n  - { addr: 127.0.0.1:2, proxy_protocol: any }\n  - { addr: 127.0.0.1:3, trusted: [10.0.0.1] }\n";
    let got = issues(text);
    let keys: Vec<(u32, &str)> = got.iter().map(|(l, _, k, _)| (*l, k.as_str())).collect();
    assert_eq!(
        keys,
        [
            (2, "listen[0].proxy_protocol"),
            (2, "listen[0].trusted"),
            (3, "listen[1].addr"),
            (4, "listen[2].addr"),
            (4, "listen[2].tls.key"),
            (4, "listen[2].tsl"),
            (5, "listen[3].proxy_protocol"),
            (6, "listen[4].trusted"),
        ],
        "{got:#?}"
    );
    assert!(got[0].3.contains("not v1, v2 or any"));
    assert!(got[6].3.contains("needs `trusted`"), "{}", got[6].3);
}

#[test]
fn a_certificate_that_does_not_match_its_key_is_an_error_at_its_tls_key() {
    let dir = tempfile::tempdir().unwrap();
    let one = rcgen::generate_simple_self_signed(vec!["proxy.test".into()]).unwrap();
    let other = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.path().join("proxy.pem"), one.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("proxy.key"),
        one.signing_key.serialize_pem(),
    )
    .unwrap();
    std::fs::write(dir.path().join("other.key"), other.serialize_pem()).unwrap();
    let policy = dir.path().join("policy.yaml");
    let text = |key: &str| {
        format!(
            "listen:\n  - 127.0.0.1:0\n  - addr: 127.0.0.1:0\n    tls: {{ cert: proxy.pem, key: {key} }}\n"
        )
    };
    let good = parse(&text("proxy.key"), &policy).unwrap();
    cert::check_all(&good).unwrap();
    let bad = parse(&text("other.key"), &policy).unwrap();
    let err = cert::check_all(&bad).unwrap_err();
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("{}:4:", policy.display())),
        "{shown}"
    );
    assert!(shown.contains("listen[1].tls: key"), "{shown}");
    assert!(shown.contains("does not match certificate"), "{shown}");
    let missing = parse(&text("absent.key"), &policy).unwrap();
    assert!(
        cert::check_all(&missing)
            .unwrap_err()
            .to_string()
            .contains("absent.key")
    );
}
