//! `admin_token`: the secret the admin endpoint asks for (`Authorization: Bearer …`). Holds it
//! without ever showing it (Debug and Display print `<redacted>`) and compares candidates in
//! constant time. Pure: no I/O, no HTTP.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Shorter tokens are refused: a guessable token on a network-reachable admin is no lock.
/// 16 visible characters; `openssl rand -hex 32` gives 64.
pub const MIN_TOKEN_LEN: usize = 16;
/// Larger than any token a person would paste; keeps a mistaken `admin_token_file` (a CA
/// bundle, a log) from being read whole.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The admin's bearer token. Never logged, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Checks `s` as a token: visible ASCII without spaces (it travels in a header),
    /// [`MIN_TOKEN_LEN`] to [`MAX_TOKEN_LEN`] bytes. The message never repeats the value.
    pub fn parse(s: &str) -> Result<AdminToken, String> {
        if s.is_empty() {
            return Err("empty token".into());
        }
        if let Some(i) = s.bytes().position(|b| !b.is_ascii_graphic()) {
            return Err(format!(
                "the token has a space, a control or a non-ASCII character at byte {i}; it is \
                 sent in an HTTP header: use visible ASCII (e.g. `openssl rand -hex 32`)"
            ));
        }
        match s.len() {
            n if n < MIN_TOKEN_LEN => Err(format!(
                "the token has {n} characters, fewer than {MIN_TOKEN_LEN}: use a long random \
                 one (e.g. `openssl rand -hex 32`)"
            )),
            n if n > MAX_TOKEN_LEN => {
                Err(format!("the token is longer than {MAX_TOKEN_LEN} bytes"))
            }
            _ => Ok(AdminToken(s.to_owned())),
        }
    }

    /// Whether `candidate` is the token, in time that depends on neither value. Both are
    /// hashed first, so the comparison is between equal-length digests and not even the
    /// token's length leaks (subtle's slice comparison returns early on a length mismatch).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let want = Sha256::digest(self.0.as_bytes());
        let got = Sha256::digest(candidate);
        want.as_slice().ct_eq(got.as_slice()).into()
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// The token file's text as the token: one trailing line ending (`\n` or `\r\n`) is what
/// `echo` and editors add, so it is not part of the secret.
pub fn from_file_text(text: &str) -> &str {
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.strip_suffix('\r').unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "0123456789abcdef0123";

    #[test]
    fn matches_only_the_token() {
        let t = AdminToken::parse(GOOD).unwrap();
        assert!(t.matches(GOOD.as_bytes()));
        assert!(!t.matches(b"0123456789abcdef012"));
        assert!(!t.matches(b"0123456789abcdef01234"));
        assert!(!t.matches(b"0123456789abcdef0124"));
        assert!(!t.matches(b""));
    }

    #[test]
    fn never_shows_the_secret() {
        let t = AdminToken::parse(GOOD).unwrap();
        let shown = format!("{t:?} {:?}", Some(&t));
        assert!(!shown.contains(GOOD), "{shown}");
        assert!(shown.contains("<redacted>"));
        for bad in [
            "short",
            "with space 0123456789",
            "tab\t0123456789abcdef",
            "é0123456789abcdef",
        ] {
            let msg = AdminToken::parse(bad).unwrap_err();
            assert!(!msg.contains(bad), "{msg}");
        }
        assert!(AdminToken::parse("").is_err());
        assert!(AdminToken::parse(&"a".repeat(MAX_TOKEN_LEN + 1)).is_err());
    }

    #[test]
    fn a_file_loses_one_line_ending() {
        assert_eq!(from_file_text("tok\n"), "tok");
        assert_eq!(from_file_text("tok\r\n"), "tok");
        assert_eq!(from_file_text("tok"), "tok");
        // a second line is content, refused later as a control character
        assert_eq!(from_file_text("tok\n\n"), "tok\n");
    }
}
