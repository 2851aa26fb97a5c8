//! Unit tests of the CA on disk: creation, reload, refusal of a broken CA.

use super::*;
use std::os::unix::fs::PermissionsExt;

/// basicConstraints (2.5.29.19), critical, `SEQUENCE { BOOLEAN TRUE, INTEGER 0 }`.
const BASIC_CONSTRAINTS_CA_PATHLEN_0: &[u8] = &[
    0x06, 0x03, 0x55, 0x1d, 0x13, 0x01, 0x01, 0xff, 0x04, 0x08, 0x30, 0x06, 0x01, 0x01, 0xff, 0x02,
    0x01, 0x00,
];
/// keyUsage (2.5.29.15), critical, bits keyCertSign (5) and cRLSign (6) only.
const KEY_USAGE_CERT_AND_CRL_SIGN: &[u8] = &[
    0x06, 0x03, 0x55, 0x1d, 0x0f, 0x01, 0x01, 0xff, 0x04, 0x04, 0x03, 0x02, 0x01, 0x06,
];

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn init_writes_private_key_and_reload_matches() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let ca = Ca::init(&certs, false).unwrap();
    let mode = fs::metadata(certs.join(KEY_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = Ca::load(&certs, KeyAccess::Private).unwrap();
    assert_eq!(again.fingerprint_sha256(), ca.fingerprint_sha256());
    assert_eq!(again.subject, ca.subject);
    let created = Ca::load_or_create(&certs, KeyAccess::Private).unwrap();
    assert_eq!(created.fingerprint_sha256(), ca.fingerprint_sha256());
    assert!(matches!(
        Ca::init(&certs, false),
        Err(MitmError::CaExists(_))
    ));
    let forced = Ca::init(&certs, true).unwrap();
    assert_ne!(forced.fingerprint_sha256(), ca.fingerprint_sha256());
    let fp = ca.fingerprint_sha256();
    assert_eq!(fp.len(), 32 * 3 - 1);
    assert!(fp.chars().all(|c| c == ':' || c.is_ascii_hexdigit()));
}

#[test]
fn ca_certificate_is_a_constrained_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::load_or_create(dir.path(), KeyAccess::Private).unwrap();
    let der = ca.cert_der().as_ref();
    assert!(contains(der, BASIC_CONSTRAINTS_CA_PATHLEN_0));
    assert!(contains(der, KEY_USAGE_CERT_AND_CRL_SIGN));
    assert!(ca.subject.starts_with(SUBJECT_PREFIX));
    assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    let (nb, na) = super::super::der::validity(der).unwrap();
    assert!(nb < SystemTime::now() && na > SystemTime::now() + Duration::from_secs(3600));
}

#[test]
fn half_present_or_mismatched_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Ca::init(dir.path(), false).unwrap();
    let other = tempfile::tempdir().unwrap();
    Ca::init(other.path(), false).unwrap();
    fs::copy(other.path().join(KEY_FILE), dir.path().join(KEY_FILE)).unwrap();
    let err = Ca::load(dir.path(), KeyAccess::Private)
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not match"), "{err}");
    assert!(!err.contains("PRIVATE KEY"));
    fs::remove_file(dir.path().join(CERT_FILE)).unwrap();
    assert!(matches!(
        Ca::load_or_create(dir.path(), KeyAccess::Private),
        Err(MitmError::BadCa { .. })
    ));
}

#[test]
fn show_text_names_path_fingerprint_and_trust_steps() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::init(dir.path(), false).unwrap();
    let text = ca.show_text(dir.path(), "http://ward.setup/");
    for needle in [
        CERT_FILE,
        ca.fingerprint_sha256().as_str(),
        "--cacert",
        "update-ca-certificates",
        "certutil",
        "REQUESTS_CA_BUNDLE",
        "certutil -addstore -f Root",
        "http://ward.setup/ca.mobileconfig",
    ] {
        assert!(text.contains(needle), "missing {needle}");
    }
    assert!(!text.contains("PRIVATE"));
}

#[test]
fn a_key_others_can_read_is_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    Ca::init(dir.path(), false).unwrap();
    let key = dir.path().join(KEY_FILE);
    assert!(check_key(dir.path(), KeyAccess::Private).unwrap().is_none());
    let root_owned = fs::metadata(&key).unwrap().uid() == 0;
    for mode in [0o644, 0o604, 0o640, 0o660] {
        fs::set_permissions(&key, fs::Permissions::from_mode(mode)).unwrap();
        // Group read of a root-owned key is allowed (PostgreSQL's rule); the tests may run
        // as root, where 0640 passes.
        if mode == 0o640 && root_owned {
            continue;
        }
        let err = Ca::load(dir.path(), KeyAccess::Private)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("mode {mode:04o}")), "{err}");
        assert!(err.contains("chmod 600") && err.contains(KEY_FILE), "{err}");
        assert!(!err.contains("PRIVATE KEY"), "{err}");
        assert!(check_key(dir.path(), KeyAccess::Private).is_err());
        let warned = check_key(dir.path(), KeyAccess::AllowInsecure)
            .unwrap()
            .unwrap();
        assert!(warned.contains("chmod 600"), "{warned}");
        Ca::load(dir.path(), KeyAccess::AllowInsecure).unwrap();
    }
    fs::set_permissions(&key, fs::Permissions::from_mode(0o400)).unwrap();
    Ca::load(dir.path(), KeyAccess::Private).unwrap();
    let empty = tempfile::tempdir().unwrap();
    assert!(
        check_key(empty.path(), KeyAccess::Private)
            .unwrap()
            .is_none()
    );
}
