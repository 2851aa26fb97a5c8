//! The fatal alert ward sends to refuse a TLS client before any handshake (RFC 8446 §6).
//! Pure: bytes only.

use super::records::CONTENT_TYPE_ALERT;

/// RFC 5246 §7.2: AlertLevel fatal.
const ALERT_LEVEL_FATAL: u8 = 2;
/// TLS 1.2 record version (0x0303), accepted by every client before the handshake completes.
const ALERT_RECORD_VERSION: [u8; 2] = [3, 3];

/// The alerts ward sends to refuse a TLS client (RFC 8446 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertDescription {
    /// A ClientHello ward cannot read: malformed, or over its size or record caps.
    DecodeError,
    /// The policy denies the name the ClientHello asks for.
    AccessDenied,
}

impl AlertDescription {
    /// The alert's code point on the wire (RFC 8446 §6).
    pub fn code(self) -> u8 {
        match self {
            AlertDescription::AccessDenied => 49,
            AlertDescription::DecodeError => 50,
        }
    }
}

/// A fatal TLS alert record (TLS 1.2 record framing, which every TLS client accepts before the
/// handshake completes).
pub fn encode_alert(description: AlertDescription) -> [u8; 7] {
    let [major, minor] = ALERT_RECORD_VERSION;
    [
        CONTENT_TYPE_ALERT,
        major,
        minor,
        0,
        2,
        ALERT_LEVEL_FATAL,
        description.code(),
    ]
}
