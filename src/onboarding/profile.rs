//! The iOS/macOS configuration profile (`.mobileconfig`): an XML property list with one
//! `com.apple.security.root` payload carrying the CA's DER. Unsigned (devices show it as "Not
//! Verified", which is true of any local CA). Pure; the UUIDs derive from the certificate, so
//! the same CA always gives the same profile and reinstalling replaces instead of piling up.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::escape_html;
use super::platforms::NICKNAME;

/// `Content-Type` Apple devices install profiles from.
pub const CONTENT_TYPE: &str = "application/x-apple-aspen-config";

/// The profile for the CA whose DER is `der`.
pub fn mobileconfig(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    let data = base64::engine::general_purpose::STANDARD.encode(der);
    let name = escape_html(NICKNAME);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
  <key>PayloadContent</key>
  <array>
    <dict>
      <key>PayloadCertificateFileName</key>
      <string>ward-ca.cer</string>
      <key>PayloadContent</key>
      <data>{data}</data>
      <key>PayloadDescription</key>
      <string>Trusts {name} for TLS.</string>
      <key>PayloadDisplayName</key>
      <string>{name}</string>
      <key>PayloadIdentifier</key>
      <string>ward.ca.{short}.root</string>
      <key>PayloadType</key>
      <string>com.apple.security.root</string>
      <key>PayloadUUID</key>
      <string>{root_uuid}</string>
      <key>PayloadVersion</key>
      <integer>1</integer>
    </dict>
  </array>
  <key>PayloadDescription</key>
  <string>Installs the certificate of the ward proxy that inspects this device's traffic.</string>
  <key>PayloadDisplayName</key>
  <string>ward CA ({short})</string>
  <key>PayloadIdentifier</key>
  <string>ward.ca.{short}</string>
  <key>PayloadRemovalDisallowed</key>
  <false/>
  <key>PayloadType</key>
  <string>Configuration</string>
  <key>PayloadUUID</key>
  <string>{profile_uuid}</string>
  <key>PayloadVersion</key>
  <integer>1</integer>
</dict>
</plist>
"#,
        root_uuid = uuid_from(der, b"root payload"),
        profile_uuid = uuid_from(der, b"profile"),
    )
}

/// An RFC 9562 version-8 (application-defined) UUID: SHA-256 of the certificate and a label,
/// with the version and variant bits set, in the upper-case form Apple's tools write.
fn uuid_from(der: &[u8], label: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(der);
    h.update(label);
    let mut b: [u8; 16] = h.finalize()[..16].try_into().expect("16 of 32 bytes");
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_stable_v8_and_distinct() {
        let a = uuid_from(b"cert", b"root payload");
        assert_eq!(a, uuid_from(b"cert", b"root payload"));
        assert_ne!(a, uuid_from(b"cert", b"profile"));
        assert_ne!(a, uuid_from(b"other", b"root payload"));
        let parts: Vec<&str> = a.split('-').collect();
        let lens: Vec<usize> = parts.iter().map(|p| p.len()).collect();
        assert_eq!(lens, [8, 4, 4, 4, 12], "{a}");
        assert!(parts[2].starts_with('8'), "version 8: {a}");
        assert!(
            matches!(&parts[3][..1], "8" | "9" | "A" | "B"),
            "variant: {a}"
        );
    }

    #[test]
    fn the_profile_carries_the_der_as_a_root_payload() {
        let der = b"\x30\x03\x02\x01\x01";
        let p = mobileconfig(der);
        assert!(p.contains("<data>MAMCAQE=</data>"), "{p}");
        assert!(p.contains("<string>com.apple.security.root</string>"));
        assert!(p.contains(&uuid_from(der, b"profile")));
        assert_eq!(p, mobileconfig(der), "same CA, same profile");
        assert_ne!(p, mobileconfig(b"\x30\x00"));
    }
}
