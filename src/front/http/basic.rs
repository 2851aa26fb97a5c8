//! `Basic` credentials (RFC 7617) in `Proxy-Authorization`: read from clients, written for an
//! upstream proxy. Pure.

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};

use crate::request::Credentials;

/// Basic credentials: some clients omit the base64 padding, which loses nothing.
const BASIC_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Reads `Basic base64(user:password)`. The scheme is case-insensitive; the password may hold
/// colons, the user may not. `None` for anything else, which the caller treats as no
/// credentials.
pub fn parse_basic_auth(value: &[u8]) -> Option<Credentials> {
    let value = value.trim_ascii();
    let split = value.iter().position(|&b| b == b' ')?;
    let (scheme, token) = value.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = BASIC_ENGINE.decode(token.trim_ascii()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some(Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

/// `Basic base64(user:password)`, the value of `Proxy-Authorization`.
pub fn encode_basic_auth(creds: &Credentials) -> String {
    let pair = format!("{}:{}", creds.user, creds.password);
    format!("Basic {}", general_purpose::STANDARD.encode(pair))
}
