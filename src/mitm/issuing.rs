//! What every certificate ward issues shares (the CA's and the forged leaves'): backdating,
//! serials, name limits. Pure: no files, no sockets, so both the CA on disk and the leaf
//! forge can use it.

use std::time::Duration;

use rcgen::SerialNumber;

/// Clients with a clock slightly behind still accept what we issue.
pub(crate) const BACKDATE: Duration = Duration::from_secs(3600);
/// CAB Forum: at least 64 bits of CSPRNG output; 16 bytes with the sign bit cleared gives 127.
pub(crate) const SERIAL_BYTES: usize = 16;
/// X.520 upper bound for a common name.
pub(crate) const MAX_CN_LEN: usize = 64;

/// A positive, minimally encoded serial with 127 random bits.
pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes: [u8; SERIAL_BYTES] = rand::random();
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

/// The first `max` characters of `s` (never splits a character, unlike byte slicing).
pub(crate) fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}
