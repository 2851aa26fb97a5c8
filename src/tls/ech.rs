//! The encrypted_client_hello extension (RFC 9849 §5) as far as a proxy can read it: which of
//! the two forms a ClientHello carries. Pure. The payload is sealed to the server's key, so
//! nothing here can tell real ECH from ECH GREASE (§6.2): GREASE is built to look the same.

use super::facts::{HelloError, malformed};
use crate::target::Host;

/// What a ClientHello's encrypted_client_hello extension says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EchOffer {
    /// No encrypted_client_hello extension.
    #[default]
    None,
    /// The outer form (type 0): a sealed inner hello, or GREASE that looks like one. The
    /// cleartext SNI is then the ECH config's public name (or, under GREASE, the real name).
    Outer,
    /// The inner form (type 1): only ever sent inside the sealed payload, so a hello on the
    /// wire that carries it was built by hand (or is an inner hello replayed in clear).
    Inner,
}

impl EchOffer {
    /// Whether the hello offers ECH to the server: what the `ech` rule fact is.
    pub fn offered(self) -> bool {
        self == EchOffer::Outer
    }
}

/// What the access record's `ech` says: as much as the bytes tell, and no more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EchSeen {
    /// No ECH extension.
    #[default]
    None,
    /// The outer form with the name asked for (or no name) in the cleartext SNI: ECH GREASE
    /// (which keeps the real name) or real ECH whose public name is that name.
    GreaseOrReal,
    /// The outer form with another name in the cleartext SNI than the one asked for: real
    /// ECH, whose cleartext SNI is the ECH config's public name (or a client fronting).
    PublicName,
    /// The inner form, in clear.
    Inner,
}

impl EchSeen {
    /// Reads the offer against the name the client asked ward for (CONNECT / SOCKS5 host).
    pub fn of(offer: EchOffer, asked: &Host, sni: Option<&Host>) -> EchSeen {
        match offer {
            EchOffer::None => EchSeen::None,
            EchOffer::Inner => EchSeen::Inner,
            EchOffer::Outer => match (asked, sni) {
                (Host::Name(a), Some(Host::Name(s))) if a != s => EchSeen::PublicName,
                _ => EchSeen::GreaseOrReal,
            },
        }
    }

    /// The stable name in the access record's `ech` field.
    pub fn log_name(self) -> &'static str {
        match self {
            EchSeen::None => "none",
            EchSeen::GreaseOrReal => "grease_or_real",
            EchSeen::PublicName => "public_name",
            EchSeen::Inner => "inner",
        }
    }
}

/// RFC 9849 §5: ECHClientHelloType.
const OUTER: u8 = 0;
const INNER: u8 = 1;

/// Reads the extension's body (after its type and length). A body that breaks the layout of
/// §5 is a malformed hello: the server would refuse it with decode_error, and a proxy that
/// guessed around it would judge a hello no server accepts.
pub fn read_ech(body: &[u8]) -> Result<EchOffer, HelloError> {
    let bad = |why: &str| malformed(format!("encrypted_client_hello: {why}"));
    let Some((&kind, rest)) = body.split_first() else {
        return Err(bad("empty"));
    };
    match kind {
        INNER if rest.is_empty() => Ok(EchOffer::Inner),
        INNER => Err(bad("inner form carries bytes")),
        OUTER => {
            // cipher_suite (kdf_id u16, aead_id u16), config_id u8.
            let rest = rest.get(5..).ok_or_else(|| bad("truncated cipher suite"))?;
            let (_enc, rest) = vector16(rest).ok_or_else(|| bad("truncated enc"))?;
            let (payload, rest) = vector16(rest).ok_or_else(|| bad("truncated payload"))?;
            if payload.is_empty() {
                return Err(bad("empty payload"));
            }
            if !rest.is_empty() {
                return Err(bad("bytes after the payload"));
            }
            Ok(EchOffer::Outer)
        }
        other => Err(bad(&format!("unknown type {other}"))),
    }
}

/// `opaque x<0..2^16-1>`: the bytes and what follows them.
fn vector16(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = b.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    (rest.len() >= len).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An outer extension body with these parts.
    fn outer(enc: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut b = vec![OUTER, 0x00, 0x01, 0x00, 0x01, 0x2a];
        b.extend_from_slice(&u16::try_from(enc.len()).unwrap().to_be_bytes());
        b.extend_from_slice(enc);
        b.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        b.extend_from_slice(payload);
        b
    }

    #[test]
    fn the_two_forms_are_told_apart() {
        assert_eq!(read_ech(&outer(&[7; 32], &[9; 144])), Ok(EchOffer::Outer));
        // After HelloRetryRequest the second outer hello carries an empty enc (§5.1).
        assert_eq!(read_ech(&outer(&[], &[9; 144])), Ok(EchOffer::Outer));
        assert_eq!(read_ech(&[INNER]), Ok(EchOffer::Inner));
        assert!(EchOffer::Outer.offered());
        assert!(!EchOffer::Inner.offered() && !EchOffer::None.offered());
    }

    #[test]
    fn bodies_that_break_the_layout_are_malformed() {
        let cases: [(&[u8], &str); 6] = [
            (&[], "empty"),
            (&[INNER, 0], "inner form carries bytes"),
            (&[2], "unknown type 2"),
            (&[OUTER, 0, 1, 0], "truncated cipher suite"),
            (&outer(&[1; 32], &[]), "empty payload"),
            (&[outer(&[1; 32], &[2; 8]), vec![0]].concat(), "bytes after"),
        ];
        for (body, why) in cases {
            let err = read_ech(body).unwrap_err().to_string();
            assert!(err.contains(why), "{body:?}: {err}");
        }
        let mut short = outer(&[1; 32], &[2; 8]);
        short.pop();
        assert!(
            read_ech(&short)
                .unwrap_err()
                .to_string()
                .contains("truncated payload")
        );
    }

    #[test]
    fn the_record_says_what_the_names_show() {
        let name = |s: &str| Host::parse(s).unwrap();
        let (origin, public) = (name("origin.test"), name("public.test"));
        let ip = name("127.0.0.1");
        let cases = [
            (EchOffer::None, &origin, Some(&public), "none"),
            (EchOffer::Outer, &origin, Some(&origin), "grease_or_real"),
            (EchOffer::Outer, &origin, None, "grease_or_real"),
            (EchOffer::Outer, &ip, Some(&public), "grease_or_real"),
            (EchOffer::Outer, &origin, Some(&public), "public_name"),
            (EchOffer::Inner, &origin, Some(&origin), "inner"),
        ];
        for (offer, asked, sni, want) in cases {
            assert_eq!(
                EchSeen::of(offer, asked, sni).log_name(),
                want,
                "{asked} {sni:?}"
            );
        }
    }

    proptest! {
        /// Any bytes: an answer or an error, never a panic; and every well-formed outer body
        /// reads as outer, however it is cut short.
        #[test]
        fn any_bytes_are_answered(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = read_ech(&body);
        }

        #[test]
        fn well_formed_outer_bodies_read_and_their_prefixes_do_not(
            enc in proptest::collection::vec(any::<u8>(), 0..80),
            payload in proptest::collection::vec(any::<u8>(), 1..300),
            cut in any::<prop::sample::Index>(),
        ) {
            let body = outer(&enc, &payload);
            prop_assert_eq!(read_ech(&body), Ok(EchOffer::Outer));
            let cut = cut.index(body.len());
            prop_assert!(read_ech(&body[..cut]).is_err());
        }
    }
}
