//! Unit tests of the decrypted relay's pure parts.

use super::*;

#[test]
fn inner_authority_is_compared_by_normalised_host() {
    let site = Host::parse("site.test").unwrap();
    assert!(!authority_differs("site.test", &site));
    assert!(!authority_differs("SITE.test.:8443", &site));
    assert!(authority_differs("other.test", &site));
    assert!(authority_differs("other.test:443", &site));
    assert!(
        authority_differs("bad host", &site),
        "unparseable counts as different"
    );
    // An IP names no site: never a mismatch, on either side.
    assert!(!authority_differs("127.0.0.1:443", &site));
    assert!(!authority_differs("[::1]", &site));
    assert!(!authority_differs(
        "other.test",
        &Host::parse("127.0.0.1").unwrap()
    ));
}
