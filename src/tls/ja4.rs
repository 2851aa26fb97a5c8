//! JA4 client fingerprints (FoxIO's published JA4 specification, `technical_details/JA4.md`):
//! the hashed `JA4` a rule names and the log shows, and the raw `JA4_r` it hashes. Pure and
//! total: every input — hostile lists included — gives a well-defined fingerprint; nothing
//! here reads bytes off the wire (the ClientHello reader fills a [`Ja4Input`]).

use std::fmt::{self, Write as _};

use sha2::{Digest, Sha256};

use super::body::is_grease;

#[cfg(test)]
mod tests;

/// RFC 6066 server_name and RFC 7301 ALPN: counted, but left out of the extension hash.
const EXT_SERVER_NAME: u16 = 0x0000;
const EXT_ALPN: u16 = 0x0010;
/// Length of a JA4: `a` (10), `_`, `b` (12), `_`, `c` (12).
pub const JA4_LEN: usize = 36;

/// Which transport carried the hello: the fingerprint's first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TLS over TCP: `t`.
    Tcp,
    /// QUIC: `q`.
    Quic,
    /// DTLS: `d`.
    Dtls,
}

/// What JA4 reads from a ClientHello, in the client's order, GREASE included (it is dropped
/// here, so that every caller ignores it the same way).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ja4Input {
    /// The hello's legacy_version (used when supported_versions is absent).
    pub legacy_version: u16,
    /// supported_versions, when the extension is present.
    pub supported_versions: Option<Vec<u16>>,
    /// Cipher suites.
    pub ciphers: Vec<u16>,
    /// Extension types.
    pub extensions: Vec<u16>,
    /// signature_algorithms, when present.
    pub signature_algorithms: Vec<u16>,
    /// The first ALPN protocol's bytes, when the extension lists one.
    pub first_alpn: Option<Vec<u8>>,
}

/// A JA4 fingerprint such as `t13d1516h2_8daaf6152771_e5627efa2ab1`: checked to have the
/// spec's shape, so two equal strings are the same fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ja4([u8; JA4_LEN]);

impl Ja4 {
    /// Computes the JA4 of a hello carried over `transport`.
    pub fn of(input: &Ja4Input, transport: Transport) -> Ja4 {
        let lists = Lists::of(input);
        let mut prefix = String::with_capacity(10);
        write_prefix(&mut prefix, input, &lists, transport);
        // `JA4_b` / `JA4_c` stay `000000000000` when their list is empty (the spec prefers
        // this to a hash of nothing).
        let mut bytes = [b'0'; JA4_LEN];
        bytes[..10].copy_from_slice(prefix.as_bytes());
        bytes[10] = b'_';
        bytes[23] = b'_';
        // The hashed lists go straight into the hash: no text is built for them.
        if !lists.ciphers.is_empty() {
            hash12(&mut bytes[11..23], |h| hash_csv(h, &lists.ciphers));
        }
        if !lists.extensions.is_empty() {
            hash12(&mut bytes[24..], |h| {
                hash_csv(h, &lists.extensions);
                if !lists.signature_algorithms.is_empty() {
                    h.update(b"_");
                    hash_csv(h, &lists.signature_algorithms);
                }
            });
        }
        Ja4(bytes)
    }

    /// Parses a JA4 as a rule writes it; says what is wrong with one that has not the spec's
    /// shape (`[tqd]`, version, `d|i`, two 2-digit counts, 2 ALPN characters, two 12-hex hashes).
    pub fn parse(raw: &str) -> Result<Ja4, String> {
        let bad = |why: &str| Err(format!("{raw:?} is not a JA4 fingerprint: {why}"));
        let b = raw.as_bytes();
        if b.len() != JA4_LEN {
            return bad("expected 36 characters like t13d1516h2_8daaf6152771_e5627efa2ab1");
        }
        if !matches!(b[0], b't' | b'q' | b'd') {
            return bad("the first character is t (TCP), q (QUIC) or d (DTLS)");
        }
        if !VERSIONS.iter().any(|(_, v)| v.as_bytes() == &b[1..3]) {
            return bad("characters 2-3 are a TLS version such as 13, 12 or 00");
        }
        if !matches!(b[3], b'd' | b'i') {
            return bad("character 4 is d (SNI present) or i (no SNI)");
        }
        if !b[4..8].iter().all(u8::is_ascii_digit) {
            return bad("characters 5-8 are the cipher and extension counts, two digits each");
        }
        if !b[8..10].iter().all(u8::is_ascii_alphanumeric) {
            return bad("characters 9-10 are the ALPN's first and last characters");
        }
        let hex12 = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        if b[10] != b'_' || b[23] != b'_' || !hex12(&b[11..23]) || !hex12(&b[24..]) {
            return bad("after the first part come _ and two 12-character lower-case hex hashes");
        }
        let mut bytes = [0; JA4_LEN];
        bytes.copy_from_slice(b);
        Ok(Ja4(bytes))
    }

    /// The fingerprint as text.
    pub fn as_str(&self) -> &str {
        // Built only from ASCII (by `of`) or checked to be ASCII (by `parse`).
        std::str::from_utf8(&self.0).unwrap_or("-")
    }
}

impl fmt::Display for Ja4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Ja4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ja4({})", self.as_str())
    }
}

/// The raw form `JA4_r`: the first part, then the sorted ciphers, the sorted extensions (SNI
/// and ALPN left out) and the signature algorithms in the client's order, `_`-separated; the
/// last part and its `_` are absent when there are no signature algorithms.
pub fn ja4_r(input: &Ja4Input, transport: Transport) -> String {
    let lists = Lists::of(input);
    let mut out = String::new();
    write_prefix(&mut out, input, &lists, transport);
    out.push('_');
    out.push_str(&csv(&lists.ciphers));
    out.push('_');
    out.push_str(&lists.extensions_and_sigs());
    out
}

/// The spec's version table; anything else is `00`.
const VERSIONS: [(u16, &str); 10] = [
    (0x0304, "13"),
    (0x0303, "12"),
    (0x0302, "11"),
    (0x0301, "10"),
    (0x0300, "s3"),
    (0x0002, "s2"),
    (0xfeff, "d1"),
    (0xfefd, "d2"),
    (0xfefc, "d3"),
    (0x0000, "00"),
];

/// The input's lists without GREASE: ciphers and extensions sorted, signature algorithms not.
struct Lists {
    ciphers: Vec<u16>,
    /// Every non-GREASE extension, SNI and ALPN included (the count needs them).
    extension_count: usize,
    has_sni: bool,
    /// Sorted, SNI and ALPN left out (the hash does not want them).
    extensions: Vec<u16>,
    signature_algorithms: Vec<u16>,
}

impl Lists {
    fn of(input: &Ja4Input) -> Lists {
        let no_grease = |v: &[u16]| v.iter().copied().filter(|&x| !is_grease(x)).collect();
        let mut ciphers: Vec<u16> = no_grease(&input.ciphers);
        ciphers.sort_unstable();
        let all: Vec<u16> = no_grease(&input.extensions);
        let mut extensions: Vec<u16> = all
            .iter()
            .copied()
            .filter(|&e| e != EXT_SERVER_NAME && e != EXT_ALPN)
            .collect();
        extensions.sort_unstable();
        Lists {
            ciphers,
            extension_count: all.len(),
            has_sni: all.contains(&EXT_SERVER_NAME),
            extensions,
            signature_algorithms: no_grease(&input.signature_algorithms),
        }
    }

    fn extensions_and_sigs(&self) -> String {
        let mut s = csv(&self.extensions);
        if !self.signature_algorithms.is_empty() {
            s.push('_');
            s.push_str(&csv(&self.signature_algorithms));
        }
        s
    }
}

/// `JA4_a`: transport, version, SNI, the two counts, the ALPN characters.
fn write_prefix(out: &mut String, input: &Ja4Input, lists: &Lists, transport: Transport) {
    out.push(match transport {
        Transport::Tcp => 't',
        Transport::Quic => 'q',
        Transport::Dtls => 'd',
    });
    out.push_str(version_code(input));
    out.push(if lists.has_sni { 'd' } else { 'i' });
    let _ = write!(
        out,
        "{:02}{:02}",
        lists.ciphers.len().min(99),
        lists.extension_count.min(99)
    );
    let (first, last) = alpn_chars(input.first_alpn.as_deref());
    out.push(first);
    out.push(last);
}

/// The highest non-GREASE supported_versions entry, else the legacy version, as the spec's
/// two characters.
fn version_code(input: &Ja4Input) -> &'static str {
    let version = match &input.supported_versions {
        Some(list) => list.iter().copied().filter(|&v| !is_grease(v)).max(),
        None => Some(input.legacy_version),
    };
    let Some(v) = version else { return "00" };
    VERSIONS
        .iter()
        .find(|(code, _)| *code == v)
        .map_or("00", |(_, s)| s)
}

/// The first and last characters of the first ALPN value; when either end is not an ASCII
/// letter or digit, the first and last characters of its hex form instead; `00` for none.
fn alpn_chars(alpn: Option<&[u8]>) -> (char, char) {
    let (Some(&first), Some(&last)) = (alpn.and_then(<[u8]>::first), alpn.and_then(<[u8]>::last))
    else {
        return ('0', '0');
    };
    if first.is_ascii_alphanumeric() && last.is_ascii_alphanumeric() {
        (char::from(first), char::from(last))
    } else {
        (hex_digit(first >> 4), hex_digit(last & 0x0f))
    }
}

fn hex_digit(nibble: u8) -> char {
    char::from_digit(u32::from(nibble & 0x0f), 16).unwrap_or('0')
}

/// Four lower-case hex digits per value, comma-separated.
fn csv(values: &[u16]) -> String {
    let mut s = String::with_capacity(values.len() * 5);
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{v:04x}");
    }
    s
}

/// Feeds `values` to `h` as [`csv`] would write them, in chunks, without formatting.
fn hash_csv(h: &mut Sha256, values: &[u16]) {
    let mut buf = [0u8; 5 * 64];
    for (n, chunk) in values.chunks(64).enumerate() {
        let mut len = 0;
        for (i, v) in chunk.iter().enumerate() {
            if n > 0 || i > 0 {
                buf[len] = b',';
                len += 1;
            }
            for shift in [12, 8, 4, 0] {
                buf[len] = HEX_LOWER[usize::from((v >> shift) & 0xf)];
                len += 1;
            }
        }
        h.update(&buf[..len]);
    }
}

/// Writes the first 12 lower-case hex digits of the SHA-256 of what `feed` gives into `out`.
fn hash12(out: &mut [u8], feed: impl FnOnce(&mut Sha256)) {
    let mut h = Sha256::new();
    feed(&mut h);
    let digest = h.finalize();
    for (pair, b) in out.chunks_mut(2).zip(digest.iter()) {
        pair[0] = HEX_LOWER[usize::from(b >> 4)];
        pair[1] = HEX_LOWER[usize::from(b & 0xf)];
    }
}

const HEX_LOWER: &[u8; 16] = b"0123456789abcdef";
