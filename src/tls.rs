//! Reads the first TLS ClientHello of a tunnel — joined across any number of handshake records —
//! into the facts policy needs (SNI, ALPN, versions, ECH), and encodes the alert that refuses it.
//! Pure: no I/O, no tokio, nothing buffered beyond [`MAX_CLIENT_HELLO`].
//!
//! The record layer is read here, by hand, because tls-parser 0.12 parses one record at a time
//! and cannot join a hello split over records; tls-parser then reads the joined message body and
//! each extension.

use std::borrow::Cow;

use tls_parser::{SNIType, TlsExtension};

use crate::Parsed;
use crate::target::Host;

/// Cap on the record bytes buffered for one ClientHello. Real hellos are well under 16 KiB
/// (Chromium's post-quantum one is about 2 KB); 64 KiB leaves room for large PSK tickets and
/// bigger post-quantum key shares, and matches rustls, which refuses handshake messages over
/// 0xffff bytes — a hello ward could never hand to its own TLS server when inspecting.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// RFC 8446 §5.1: content type (1), legacy version (2), length (2).
const RECORD_HEADER_LEN: usize = 5;
/// RFC 8446 §5.1: a record's payload never exceeds 2^14 bytes.
const MAX_RECORD_PAYLOAD: usize = 1 << 14;
/// Cap on the records one ClientHello may be split over. Real clients send one record (two or
/// three past 16 KiB), and tools that split the hello to dodge DPI a handful; the cap bounds
/// what a re-parse after every read costs, which walks every record header so far.
pub const MAX_HELLO_RECORDS: usize = 256;
/// RFC 8446 §4: message type (1), length (3).
const HANDSHAKE_HEADER_LEN: usize = 4;
/// RFC 8446 §B.1 ContentType.
const CONTENT_TYPE_HANDSHAKE: u8 = 22;
const CONTENT_TYPE_CHANGE_CIPHER_SPEC: u8 = 20;
const CONTENT_TYPE_ALERT: u8 = 21;
const CONTENT_TYPE_APPLICATION_DATA: u8 = 23;
/// Every SSL 3.0 / TLS record version starts with major version 3.
const RECORD_VERSION_MAJOR: u8 = 3;
/// Highest record minor version a client may use: 0x0304 (TLS 1.3; clients send 0x0301/0x0303).
const MAX_RECORD_VERSION_MINOR: u8 = 4;
/// RFC 8446 §B.3 HandshakeType.
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const HANDSHAKE_SERVER_HELLO: u8 = 2;
/// draft-ietf-tls-esni: the encrypted_client_hello extension (also sent as ECH GREASE).
const EXT_ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
/// RFC 8446 §4.2.8 key_share.
const EXT_KEY_SHARE: u16 = 51;
/// draft-ietf-tls-ecdhe-mlkem: the X25519MLKEM768 hybrid group.
const GROUP_X25519_MLKEM768: u16 = 0x11ec;
/// RFC 6066 §3 NameType host_name.
const SNI_HOST_NAME: SNIType = SNIType(0);
/// RFC 5246 §7.2: AlertLevel fatal.
const ALERT_LEVEL_FATAL: u8 = 2;
/// TLS 1.2 record version (0x0303), accepted by every client before the handshake completes.
const ALERT_RECORD_VERSION: [u8; 2] = [3, 3];

/// What a ClientHello offered, as far as policy and logs care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHelloFacts {
    /// The server_name, normalised through [`Host::parse`]; an IP literal (not RFC-legal, but
    /// sent by some clients) becomes [`Host::Ip`].
    pub sni: Option<Host>,
    /// Offered ALPN protocols in the client's order (lossy UTF-8).
    pub alpn: Vec<String>,
    /// supported_versions without GREASE; `[legacy_version]` when the extension is absent.
    pub versions: Vec<u16>,
    /// The encrypted_client_hello extension is present (real ECH or ECH GREASE look alike).
    pub ech_offered: bool,
    /// key_share carries an X25519MLKEM768 share.
    pub has_pq_key_share: bool,
    /// Bytes of the records that carried the hello (== `consumed`).
    pub len: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HelloError {
    /// The first bytes are not the start of a TLS ClientHello; the reason names what they look like.
    #[error("not a TLS ClientHello: {0}")]
    NotTls(&'static str),
    #[error("malformed ClientHello: {0}")]
    Malformed(String),
    #[error("ClientHello larger than {MAX_CLIENT_HELLO} bytes")]
    TooLarge,
    #[error("invalid server name in ClientHello: {0}")]
    BadSni(String),
}

/// The alerts ward sends to refuse a TLS client (RFC 8446 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertDescription {
    HandshakeFailure,
    /// A ClientHello ward cannot read: malformed, or over its size or record caps.
    DecodeError,
    AccessDenied,
    InternalError,
    UnrecognizedName,
}

impl AlertDescription {
    pub fn code(self) -> u8 {
        match self {
            AlertDescription::HandshakeFailure => 40,
            AlertDescription::AccessDenied => 49,
            AlertDescription::DecodeError => 50,
            AlertDescription::InternalError => 80,
            AlertDescription::UnrecognizedName => 112,
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

/// Quick sniff of a tunnel's first bytes: a handshake record with an SSL 3.0..TLS 1.3 version.
pub fn looks_like_tls(first: &[u8]) -> bool {
    matches!(first, [CONTENT_TYPE_HANDSHAKE, RECORD_VERSION_MAJOR, minor, ..]
        if *minor <= MAX_RECORD_VERSION_MINOR)
}

/// Parses the first ClientHello in `buf`, which holds the client's first bytes. Returns
/// `Incomplete` while more bytes could still complete a hello within [`MAX_CLIENT_HELLO`], so a
/// buffer of that size always gets a final answer; `consumed` covers exactly the records that
/// carried the hello (bytes after them, such as a ChangeCipherSpec, are left for the tunnel).
pub fn parse_client_hello(buf: &[u8]) -> Result<Parsed<ClientHelloFacts>, HelloError> {
    let Parsed::Done {
        value: message,
        consumed,
    } = join_hello_records(buf)?
    else {
        return Ok(Parsed::Incomplete);
    };
    let mut facts = read_hello_body(&message[HANDSHAKE_HEADER_LEN..])?;
    facts.len = consumed;
    Ok(Parsed::Done {
        value: facts,
        consumed,
    })
}

/// Walks the handshake records at the start of `buf` until one whole handshake message is
/// there, then joins their payloads; `consumed` counts the record bytes that carried it.
/// Every header is checked as soon as its bytes arrive, so junk is refused early. Nothing is
/// copied until the message is whole: the caller parses again after every read, and a hello
/// dribbled in tiny records must not cost a copy of all it sent so far each time.
fn join_hello_records(buf: &[u8]) -> Result<Parsed<Cow<'_, [u8]>>, HelloError> {
    let Parsed::Done {
        value: records,
        consumed,
    } = walk_hello_records(buf)?
    else {
        return Ok(Parsed::Incomplete);
    };
    let message = if records == 1 {
        Cow::Borrowed(&buf[RECORD_HEADER_LEN..consumed])
    } else {
        let mut joined = Vec::with_capacity(consumed - records * RECORD_HEADER_LEN);
        record_payloads(&buf[..consumed]).for_each(|p| joined.extend_from_slice(p));
        Cow::Owned(joined)
    };
    Ok(Parsed::Done {
        value: message,
        consumed,
    })
}

/// The checks of [`join_hello_records`] over the record headers alone: how many records carry
/// the whole message, or `Incomplete`.
fn walk_hello_records(buf: &[u8]) -> Result<Parsed<usize>, HelloError> {
    check_first_record_start(buf)?;
    // The message's handshake header, gathered as its bytes arrive, in however many records.
    let mut head = [0; HANDSHAKE_HEADER_LEN];
    let mut joined = 0;
    let mut message_len = None;
    let (mut pos, mut records) = (0, 0);
    loop {
        // Any further record needs a header and at least one payload byte within the cap.
        if pos + RECORD_HEADER_LEN + 1 > MAX_CLIENT_HELLO {
            return Err(HelloError::TooLarge);
        }
        let rest = &buf[pos..];
        if pos > 0 {
            check_continuation_start(rest)?;
        }
        let Some(header) = rest.get(..RECORD_HEADER_LEN) else {
            return Ok(Parsed::Incomplete);
        };
        let payload_len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        check_payload_len(payload_len, pos == 0)?;
        let end = pos + RECORD_HEADER_LEN + payload_len;
        if end > MAX_CLIENT_HELLO {
            return Err(HelloError::TooLarge);
        }
        let fragment = &buf[pos + RECORD_HEADER_LEN..end.min(buf.len())];
        if joined < HANDSHAKE_HEADER_LEN {
            let n = fragment.len().min(HANDSHAKE_HEADER_LEN - joined);
            head[joined..joined + n].copy_from_slice(&fragment[..n]);
            if joined + n == HANDSHAKE_HEADER_LEN {
                message_len = check_handshake_header(&head)?;
            }
        }
        joined += fragment.len();
        if end > buf.len() {
            return Ok(Parsed::Incomplete);
        }
        (pos, records) = (end, records + 1);
        if records == MAX_HELLO_RECORDS && message_len.is_none_or(|n| joined < n) {
            return Err(malformed(format!(
                "ClientHello split over more than {MAX_HELLO_RECORDS} records"
            )));
        }
        match message_len {
            Some(n) if joined > n => {
                return Err(malformed("bytes after the ClientHello in its last record"));
            }
            Some(n) if joined == n => {
                return Ok(Parsed::Done {
                    value: records,
                    consumed: end,
                });
            }
            _ => {}
        }
    }
}

/// The payloads of the whole records `records` holds, already checked by
/// [`walk_hello_records`].
fn record_payloads(mut records: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let header = records.get(..RECORD_HEADER_LEN)?;
        let end = RECORD_HEADER_LEN + usize::from(u16::from_be_bytes([header[3], header[4]]));
        let payload = records.get(RECORD_HEADER_LEN..end)?;
        records = &records[end..];
        Some(payload)
    })
}

/// Refuses a stream whose first bytes cannot start a TLS handshake record, naming what they
/// look like instead. Decides on as few bytes as are there.
fn check_first_record_start(buf: &[u8]) -> Result<(), HelloError> {
    match buf {
        [] => Ok(()),
        [first, ..] if *first != CONTENT_TYPE_HANDSHAKE => Err(HelloError::NotTls(foreign(buf))),
        [_, major, ..] if *major != RECORD_VERSION_MAJOR => Err(HelloError::NotTls(
            "handshake content type with a non-TLS record version",
        )),
        [_, _, minor, ..] if *minor > MAX_RECORD_VERSION_MINOR => Err(HelloError::NotTls(
            "handshake record with an unknown TLS version",
        )),
        _ => Ok(()),
    }
}

/// What a stream that does not start with a handshake record looks like, for the log.
fn foreign(buf: &[u8]) -> &'static str {
    const HTTP_METHODS: [&[u8]; 10] = [
        b"GET ",
        b"POST ",
        b"HEAD ",
        b"PUT ",
        b"DELETE ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
        b"PRI * HTTP/2.0",
    ];
    let starts = |token: &[u8]| {
        let n = buf.len().min(token.len());
        buf[..n] == token[..n]
    };
    match buf[0] {
        _ if HTTP_METHODS.iter().any(|m| starts(m)) => "plain HTTP",
        _ if starts(b"SSH-") => "SSH banner",
        0x05 => "SOCKS5 greeting",
        0x04 => "SOCKS4 request",
        CONTENT_TYPE_CHANGE_CIPHER_SPEC | CONTENT_TYPE_ALERT | CONTENT_TYPE_APPLICATION_DATA => {
            "TLS record that is not a handshake"
        }
        // SSLv2-compatible hello: 2-byte length with the top bit set, then message type 1.
        b if b & 0x80 != 0 && buf.get(2) == Some(&1) => "SSLv2-format ClientHello",
        _ if buf
            .iter()
            .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace()) =>
        {
            "plain text"
        }
        _ => "not a TLS handshake record",
    }
}

/// A record after the first must also be a handshake record: nothing else may interleave
/// before the ClientHello is complete.
fn check_continuation_start(rest: &[u8]) -> Result<(), HelloError> {
    match rest {
        [t, ..] if *t != CONTENT_TYPE_HANDSHAKE => Err(malformed(format!(
            "record of content type {t} inside the ClientHello"
        ))),
        [_, major, ..] if *major != RECORD_VERSION_MAJOR => Err(malformed(
            "record with a non-TLS version inside the ClientHello",
        )),
        _ => Ok(()),
    }
}

fn check_payload_len(payload_len: usize, first: bool) -> Result<(), HelloError> {
    if payload_len == 0 {
        // RFC 8446 §5.1: handshake records are never empty; no TLS client starts with one.
        return Err(if first {
            HelloError::NotTls("empty handshake record")
        } else {
            malformed("empty handshake record")
        });
    }
    if payload_len > MAX_RECORD_PAYLOAD {
        return Err(malformed(format!(
            "record of {payload_len} bytes, over the 16384 limit"
        )));
    }
    Ok(())
}

/// Once the handshake header is there: refuses anything but a ClientHello and any message that
/// cannot fit under the cap, and says how long the whole message is.
fn check_handshake_header(message: &[u8]) -> Result<Option<usize>, HelloError> {
    let Some(&[msg_type, a, b, c]) = message.get(..HANDSHAKE_HEADER_LEN) else {
        return Ok(None);
    };
    match msg_type {
        HANDSHAKE_CLIENT_HELLO => {}
        HANDSHAKE_SERVER_HELLO => {
            return Err(HelloError::NotTls("a ServerHello, not a ClientHello"));
        }
        _ => {
            return Err(HelloError::NotTls(
                "a handshake message other than ClientHello",
            ));
        }
    }
    let body_len = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
    let message_len = HANDSHAKE_HEADER_LEN + body_len;
    if message_len + RECORD_HEADER_LEN > MAX_CLIENT_HELLO {
        return Err(HelloError::TooLarge);
    }
    Ok(Some(message_len))
}

/// Reads the joined ClientHello body (after the handshake header) with tls-parser.
fn read_hello_body(body: &[u8]) -> Result<ClientHelloFacts, HelloError> {
    let (rest, hello) = tls_parser::parse_tls_handshake_client_hello(body)
        .map_err(|_| malformed("truncated or inconsistent ClientHello fields"))?;
    if !rest.is_empty() {
        return Err(malformed(
            "extension block length disagrees with the message",
        ));
    }
    let mut facts = ClientHelloFacts {
        sni: None,
        alpn: Vec::new(),
        versions: Vec::new(),
        ech_offered: false,
        has_pq_key_share: false,
        len: 0,
    };
    let mut supported_versions = None;
    for (ext_type, raw) in split_extensions(hello.ext.unwrap_or_default())? {
        // tls-parser gives up on the whole list at the first bad extension, so each one is
        // parsed alone. A malformed extension fails the hello: the origin would refuse it with
        // decode_error anyway, and guessing around it could let a crafted hello hide its SNI.
        let (_, ext) = tls_parser::parse_tls_client_hello_extension(raw)
            .map_err(|_| malformed(format!("extension {ext_type:#06x} is malformed")))?;
        match ext {
            TlsExtension::SNI(names) => facts.sni = read_sni(&names)?,
            TlsExtension::ALPN(protocols) => {
                facts.alpn = protocols
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect();
            }
            TlsExtension::SupportedVersions(versions) => {
                supported_versions = Some(
                    versions
                        .iter()
                        .map(|v| v.0)
                        .filter(|&v| !is_grease(v))
                        .collect::<Vec<_>>(),
                );
            }
            TlsExtension::KeyShare(shares) => {
                facts.has_pq_key_share = key_share_offers(shares, GROUP_X25519_MLKEM768)?;
            }
            _ if ext_type == EXT_ENCRYPTED_CLIENT_HELLO => facts.ech_offered = true,
            _ => {}
        }
    }
    facts.versions = match supported_versions {
        Some(v) if v.is_empty() => return Err(malformed("supported_versions lists no version")),
        Some(v) => v,
        None => vec![hello.version.0],
    };
    Ok(facts)
}

/// Splits the extension block into `(type, whole extension bytes)`, refusing a truncated list
/// and a repeated type (RFC 8446 §4.2: at most one of each; two SNIs could mislead policy).
fn split_extensions(mut block: &[u8]) -> Result<Vec<(u16, &[u8])>, HelloError> {
    const EXT_HEADER_LEN: usize = 4;
    let mut out: Vec<(u16, &[u8])> = Vec::new();
    while !block.is_empty() {
        let Some(&[t0, t1, l0, l1]) = block.get(..EXT_HEADER_LEN) else {
            return Err(malformed("truncated extension header"));
        };
        let ext_type = u16::from_be_bytes([t0, t1]);
        let end = EXT_HEADER_LEN + usize::from(u16::from_be_bytes([l0, l1]));
        let Some(raw) = block.get(..end) else {
            return Err(malformed(format!(
                "extension {ext_type:#06x} overruns the list"
            )));
        };
        if out.iter().any(|&(seen, _)| seen == ext_type) {
            return Err(malformed(format!(
                "extension {ext_type:#06x} appears twice"
            )));
        }
        out.push((ext_type, raw));
        block = &block[end..];
    }
    Ok(out)
}

/// The first host_name entry, normalised. Other name types (none are defined) are ignored.
fn read_sni(names: &[(SNIType, &[u8])]) -> Result<Option<Host>, HelloError> {
    let Some((_, raw)) = names.iter().find(|(t, _)| *t == SNI_HOST_NAME) else {
        return Ok(None);
    };
    let name = std::str::from_utf8(raw)
        .map_err(|_| HelloError::BadSni(format!("not UTF-8: {}", String::from_utf8_lossy(raw))))?;
    Host::parse(name)
        .map(Some)
        .map_err(|e| HelloError::BadSni(e.to_string()))
}

/// Whether a ClientHello key_share (RFC 8446 §4.2.8) carries a share for `group`.
fn key_share_offers(data: &[u8], group: u16) -> Result<bool, HelloError> {
    let bad = || malformed(format!("extension {EXT_KEY_SHARE:#06x} is malformed"));
    let (list_len, mut shares) = split_u16(data).ok_or_else(bad)?;
    if usize::from(list_len) != shares.len() {
        return Err(bad());
    }
    let mut found = false;
    while !shares.is_empty() {
        let (share_group, rest) = split_u16(shares).ok_or_else(bad)?;
        let (kx_len, rest) = split_u16(rest).ok_or_else(bad)?;
        shares = rest.get(usize::from(kx_len)..).ok_or_else(bad)?;
        found |= share_group == group;
    }
    Ok(found)
}

fn split_u16(buf: &[u8]) -> Option<(u16, &[u8])> {
    let (head, rest) = buf.split_first_chunk::<2>()?;
    Some((u16::from_be_bytes(*head), rest))
}

/// RFC 8701: GREASE values are 0x?a?a with both bytes equal.
fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

fn malformed(why: impl Into<String>) -> HelloError {
    HelloError::Malformed(why.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{IpAddr, Ipv4Addr};

    const TLS13: u16 = 0x0304;
    const TLS12: u16 = 0x0303;
    const TLS11: u16 = 0x0302;
    const TLS10: u16 = 0x0301;
    const EXT_SNI: u16 = 0;
    const EXT_ALPN: u16 = 16;
    const EXT_SUPPORTED_VERSIONS: u16 = 43;

    /// Real hellos captured on loopback by tests/fixtures/capture_hellos.py.
    const FIXTURES: [(&str, &[u8]); 6] = [
        ("curl", include_bytes!("../tests/fixtures/curl.bin")),
        ("python", include_bytes!("../tests/fixtures/python.bin")),
        (
            "python_tls12",
            include_bytes!("../tests/fixtures/python_tls12.bin"),
        ),
        ("openssl", include_bytes!("../tests/fixtures/openssl.bin")),
        (
            "openssl_ip_sni",
            include_bytes!("../tests/fixtures/openssl_ip_sni.bin"),
        ),
        ("chromium", include_bytes!("../tests/fixtures/chromium.bin")),
    ];

    fn fixture(name: &str) -> &'static [u8] {
        FIXTURES
            .iter()
            .find(|(n, _)| *n == name)
            .expect("fixture")
            .1
    }

    fn done(buf: &[u8]) -> ClientHelloFacts {
        match parse_client_hello(buf) {
            Ok(Parsed::Done { value, consumed }) => {
                assert_eq!(consumed, value.len);
                value
            }
            other => panic!("expected a hello, got {other:?}"),
        }
    }

    fn name(n: &str) -> Option<Host> {
        Some(Host::Name(n.into()))
    }

    /// The handshake message carried by a stream of records.
    fn message_of(mut records: &[u8]) -> Vec<u8> {
        let mut message = Vec::new();
        while let Some(header) = records.get(..RECORD_HEADER_LEN) {
            let end = RECORD_HEADER_LEN + usize::from(u16::from_be_bytes([header[3], header[4]]));
            message.extend_from_slice(&records[RECORD_HEADER_LEN..end]);
            records = &records[end..];
        }
        message
    }

    /// Frames `message` into handshake records whose payloads have the given sizes (the last
    /// record takes whatever is left).
    fn frame(message: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = message;
        let mut sizes = sizes.iter();
        while !rest.is_empty() {
            let n = sizes.next().map_or(rest.len(), |&n| n.clamp(1, rest.len()));
            let len = u16::try_from(n).expect("record size");
            out.extend_from_slice(&[CONTENT_TYPE_HANDSHAKE, 3, 1]);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        out
    }

    /// A minimal ClientHello record carrying the given extensions, for cases no client sends.
    fn hello_with(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut ext = Vec::new();
        for (t, data) in extensions {
            ext.extend_from_slice(&t.to_be_bytes());
            ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
            ext.extend_from_slice(data);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]); // random
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]); // no session id, one suite, null
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut message = vec![HANDSHAKE_CLIENT_HELLO, 0];
        message.extend_from_slice(&(body.len() as u16).to_be_bytes());
        message.extend_from_slice(&body);
        frame(&message, &[])
    }

    fn sni_ext(host: &[u8]) -> (u16, Vec<u8>) {
        let mut data = ((host.len() + 3) as u16).to_be_bytes().to_vec();
        data.push(0);
        data.extend_from_slice(&(host.len() as u16).to_be_bytes());
        data.extend_from_slice(host);
        (EXT_SNI, data)
    }

    fn not_tls(buf: &[u8]) -> &'static str {
        match parse_client_hello(buf) {
            Err(HelloError::NotTls(why)) => why,
            other => panic!("expected NotTls for {buf:02x?}, got {other:?}"),
        }
    }

    #[test]
    fn every_fixture_gives_its_facts() {
        let h2_h1 = vec!["h2".to_string(), "http/1.1".to_string()];
        let curl = done(fixture("curl"));
        assert_eq!(curl.sni, name("curl.ward.test"));
        assert_eq!(curl.alpn, h2_h1);
        assert_eq!(curl.versions, [TLS13, TLS12, TLS11, TLS10]);
        assert!(!curl.ech_offered && !curl.has_pq_key_share);

        let python = done(fixture("python"));
        assert_eq!(python.sni, name("python.ward.test"));
        assert_eq!(python.alpn, h2_h1);
        assert_eq!(python.versions, [TLS13, TLS12]);

        let tls12 = done(fixture("python_tls12"));
        assert_eq!(tls12.sni, name("python12.ward.test"));
        assert!(tls12.alpn.is_empty());
        assert_eq!(
            tls12.versions,
            [TLS12],
            "no supported_versions: the legacy version"
        );

        let openssl = done(fixture("openssl"));
        assert_eq!(openssl.sni, name("openssl.ward.test"));
        assert_eq!(openssl.alpn, ["http/1.1"]);
        assert_eq!(openssl.versions, [TLS13, TLS12, TLS11, TLS10]);

        let ip = done(fixture("openssl_ip_sni"));
        assert_eq!(ip.sni, Some(Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST))));

        let chromium = done(fixture("chromium"));
        assert_eq!(chromium.sni, name("chromium.ward.test"));
        assert_eq!(chromium.alpn, h2_h1);
        assert_eq!(chromium.versions, [TLS13, TLS12], "GREASE versions dropped");
        assert!(chromium.has_pq_key_share, "X25519MLKEM768");
        assert!(chromium.ech_offered, "Chromium sends ECH GREASE");
        assert!(chromium.len > 1500, "the post-quantum hello is large");

        for (n, bytes) in FIXTURES {
            assert_eq!(done(bytes).len, bytes.len(), "{n}");
        }
    }

    #[test]
    fn every_prefix_of_a_fixture_is_incomplete() {
        for (n, bytes) in FIXTURES {
            for i in 0..bytes.len() {
                assert_eq!(
                    parse_client_hello(&bytes[..i]),
                    Ok(Parsed::Incomplete),
                    "{n} [..{i}]"
                );
            }
        }
    }

    #[test]
    fn trailing_bytes_after_the_hello_records_are_not_consumed() {
        let hello = fixture("curl");
        let mut stream = hello.to_vec();
        stream.extend_from_slice(&[CONTENT_TYPE_CHANGE_CIPHER_SPEC, 3, 3, 0, 1, 1]);
        assert_eq!(done(&stream).len, hello.len());
    }

    #[test]
    fn a_hello_split_over_records_parses_identically() {
        for (n, bytes) in FIXTURES {
            let whole = done(bytes);
            let message = message_of(bytes);
            for records in 2..=8 {
                let size = message.len().div_ceil(records);
                let stream = frame(&message, &vec![size; records]);
                let facts = done(&stream);
                assert_eq!(
                    ClientHelloFacts {
                        len: whole.len,
                        ..facts
                    },
                    whole,
                    "{n} / {records}"
                );
                assert_eq!(facts.len, stream.len());
            }
        }
    }

    #[test]
    fn tiny_records_every_prefix_is_incomplete() {
        // The handshake header itself is split over four records here, the rest over
        // 4-byte records (within MAX_HELLO_RECORDS).
        let bytes = fixture("curl");
        let sizes: Vec<usize> = [1; 8].into_iter().chain([4; 200]).collect();
        let stream = frame(&message_of(bytes), &sizes);
        for i in 0..stream.len() {
            assert_eq!(
                parse_client_hello(&stream[..i]),
                Ok(Parsed::Incomplete),
                "[..{i}]"
            );
        }
        assert_eq!(done(&stream).sni, name("curl.ward.test"));
    }

    #[test]
    fn a_hello_over_too_many_records_is_refused() {
        let message = message_of(fixture("chromium"));
        let at_cap = message.len().div_ceil(MAX_HELLO_RECORDS);
        let stream = frame(&message, &vec![at_cap; MAX_HELLO_RECORDS]);
        assert_eq!(done(&stream).sni, name("chromium.ward.test"));
        let stream = frame(&message, &vec![1; message.len()]);
        let err = parse_client_hello(&stream).unwrap_err();
        assert!(err.to_string().contains("more than 256 records"), "{err}");
        // Refused once the cap's worth of records is in and the hello is still unfinished.
        let cut = (RECORD_HEADER_LEN + 1) * MAX_HELLO_RECORDS;
        assert_eq!(parse_client_hello(&stream[..cut]), Err(err));
    }

    #[test]
    fn a_huge_handshake_is_refused_from_its_header() {
        // A record announcing a 1 MiB ClientHello: refused after 9 bytes, nothing buffered.
        let claim = [
            CONTENT_TYPE_HANDSHAKE,
            3,
            1,
            0x40,
            0,
            HANDSHAKE_CLIENT_HELLO,
            0x10,
            0,
            0,
        ];
        assert_eq!(parse_client_hello(&claim[..8]), Ok(Parsed::Incomplete));
        assert_eq!(parse_client_hello(&claim), Err(HelloError::TooLarge));
        // The same claim with its header split over 1-byte records.
        let split = frame(&claim[5..], &[1, 1, 1, 1]);
        assert_eq!(parse_client_hello(&split), Err(HelloError::TooLarge));
    }

    #[test]
    fn records_beyond_the_cap_are_refused_before_they_arrive() {
        // A 65 KB hello fits the message cap, but cut into 256-byte records (fewer than
        // MAX_HELLO_RECORDS) it needs 66.3 KB of records: refused once the record bytes reach
        // the cap, never needing a bigger buffer.
        let body_len: usize = 64_996;
        let mut message = vec![HANDSHAKE_CLIENT_HELLO, 0];
        message.extend_from_slice(&(body_len as u16).to_be_bytes());
        message.resize(HANDSHAKE_HEADER_LEN + body_len, 0);
        let stream = frame(&message, &vec![256; body_len]);
        assert!(stream.len() > MAX_CLIENT_HELLO);
        let record = RECORD_HEADER_LEN + 256;
        let fitting = MAX_CLIENT_HELLO / record * record;
        let under_cap = &stream[..fitting];
        assert_eq!(parse_client_hello(under_cap), Ok(Parsed::Incomplete));
        // The next record's header says it would end past the cap.
        let over_cap = &stream[..fitting + RECORD_HEADER_LEN];
        assert_eq!(parse_client_hello(over_cap), Err(HelloError::TooLarge));
        // A record longer than TLS allows is malformed, whatever follows.
        let long = [CONTENT_TYPE_HANDSHAKE, 3, 1, 0x40, 1];
        assert!(matches!(
            parse_client_hello(&long),
            Err(HelloError::Malformed(_))
        ));
    }

    #[test]
    fn non_tls_bytes_are_refused_with_a_reason() {
        assert_eq!(parse_client_hello(b""), Ok(Parsed::Incomplete));
        assert_eq!(not_tls(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), "plain HTTP");
        assert_eq!(not_tls(b"G"), "plain HTTP");
        assert_eq!(not_tls(b"PRI * HTTP/2.0\r\n"), "plain HTTP");
        assert_eq!(not_tls(b"SSH-2.0-OpenSSH_9.2p1\r\n"), "SSH banner");
        assert_eq!(not_tls(&[5, 1, 0]), "SOCKS5 greeting");
        assert_eq!(not_tls(&[4, 1, 0, 80, 127, 0, 0, 1, 0]), "SOCKS4 request");
        assert_eq!(not_tls(b"EHLO x\r\n"), "plain text");
        assert_eq!(
            not_tls(&[0x80, 0x2e, 0x01, 0x03, 0x01]),
            "SSLv2-format ClientHello"
        );
        assert_eq!(not_tls(&[0x00, 0xff]), "not a TLS handshake record");
        // TLS, but not a handshake record: application data, alert.
        assert_eq!(
            not_tls(&[0x17, 3, 3, 0, 1, 0]),
            "TLS record that is not a handshake"
        );
        assert_eq!(
            not_tls(&encode_alert(AlertDescription::AccessDenied)),
            "TLS record that is not a handshake"
        );
        assert_eq!(
            not_tls(&[0x16, 2, 0]),
            "handshake content type with a non-TLS record version"
        );
        assert_eq!(
            not_tls(&[0x16, 3, 9]),
            "handshake record with an unknown TLS version"
        );
        assert_eq!(not_tls(&[0x16, 3, 1, 0, 0]), "empty handshake record");
        let server_hello = [
            0x16,
            3,
            3,
            0,
            0x30,
            HANDSHAKE_SERVER_HELLO,
            0,
            0,
            0x2c,
            3,
            3,
        ];
        assert_eq!(not_tls(&server_hello), "a ServerHello, not a ClientHello");
        let certificate = [0x16, 3, 3, 0, 0x30, 11, 0, 0, 0x2c];
        assert_eq!(
            not_tls(&certificate),
            "a handshake message other than ClientHello"
        );
    }

    #[test]
    fn broken_continuations_are_malformed() {
        let message = message_of(fixture("curl"));
        let mut stream = frame(&message[..100], &[]);
        let bad_next = |next: &[u8]| {
            let mut s = stream.clone();
            s.extend_from_slice(next);
            parse_client_hello(&s)
        };
        assert!(matches!(
            bad_next(&[0x14, 3, 3, 0, 1, 1]),
            Err(HelloError::Malformed(_))
        ));
        assert!(matches!(
            bad_next(&[0x16, 3, 3, 0, 0]),
            Err(HelloError::Malformed(_))
        ));
        assert!(matches!(
            bad_next(&[0x16, 0x47]),
            Err(HelloError::Malformed(_))
        ));
        // The hello ends inside a record that carries more bytes.
        stream = frame(&[&message[..], &[0x14, 0, 0, 0]].concat(), &[]);
        assert!(matches!(
            parse_client_hello(&stream),
            Err(HelloError::Malformed(_))
        ));
    }

    #[test]
    fn synthetic_hellos_give_their_facts() {
        let ech = (
            EXT_ENCRYPTED_CLIENT_HELLO,
            vec![0, 0, 1, 0, 1, 0x2a, 0, 0, 0, 0],
        );
        let versions = (EXT_SUPPORTED_VERSIONS, vec![4, 0x7a, 0x7a, 3, 4]);
        // An X25519MLKEM768 share (1-byte stand-in key) and an empty x25519 one.
        let key_share = vec![0, 9, 0x11, 0xec, 0, 1, 9, 0, 0x1d, 0, 0];
        let facts = done(&hello_with(&[
            sni_ext(b"Example.COM."),
            ech,
            versions,
            (EXT_KEY_SHARE, key_share),
        ]));
        assert_eq!(facts.sni, name("example.com"));
        assert!(facts.ech_offered);
        assert_eq!(facts.versions, [TLS13]);
        assert!(facts.has_pq_key_share);

        let bare = done(&hello_with(&[]));
        assert_eq!(
            (bare.sni, bare.versions, bare.ech_offered),
            (None, vec![TLS12], false)
        );
        let idn = done(&hello_with(&[sni_ext("bücher.example".as_bytes())]));
        assert_eq!(idn.sni, name("xn--bcher-kva.example"));
    }

    #[test]
    fn bad_names_and_extensions_are_refused() {
        let bad_sni = |host: &[u8]| parse_client_hello(&hello_with(&[sni_ext(host)]));
        assert!(matches!(bad_sni(b"bad name!"), Err(HelloError::BadSni(_))));
        assert!(matches!(bad_sni(b"a..b"), Err(HelloError::BadSni(_))));
        assert!(matches!(bad_sni(&[0xff, 0xfe]), Err(HelloError::BadSni(_))));
        let malformed = |exts: &[(u16, Vec<u8>)]| {
            matches!(
                parse_client_hello(&hello_with(exts)),
                Err(HelloError::Malformed(_))
            )
        };
        assert!(
            malformed(&[sni_ext(b"a.test"), sni_ext(b"b.test")]),
            "two SNIs"
        );
        assert!(
            malformed(&[(EXT_ALPN, vec![0, 9, 2, b'h'])]),
            "ALPN overruns"
        );
        assert!(
            malformed(&[(EXT_SUPPORTED_VERSIONS, vec![2, 0x1a, 0x1a])]),
            "only GREASE"
        );
        assert!(
            malformed(&[(EXT_KEY_SHARE, vec![0, 4, 0, 0x1d, 0, 9])]),
            "key share overruns"
        );
        // An extension header that overruns the block.
        let mut stream = hello_with(&[(EXT_ALPN, vec![0, 3, 2, b'h', b'2'])]);
        let len = stream.len();
        stream[len - 6] = 0x40;
        assert!(matches!(
            parse_client_hello(&stream),
            Err(HelloError::Malformed(_))
        ));
    }

    #[test]
    fn alerts_and_sniffing() {
        assert_eq!(
            encode_alert(AlertDescription::AccessDenied),
            [0x15, 3, 3, 0, 2, 2, 49]
        );
        assert_eq!(encode_alert(AlertDescription::HandshakeFailure)[6], 40);
        assert_eq!(encode_alert(AlertDescription::InternalError)[6], 80);
        assert_eq!(encode_alert(AlertDescription::UnrecognizedName)[6], 112);
        for (n, bytes) in FIXTURES {
            assert!(looks_like_tls(bytes), "{n}");
        }
        assert!(!looks_like_tls(b"GET /"));
        assert!(!looks_like_tls(&[0x16, 3, 5]));
        assert!(!looks_like_tls(&[0x16, 3]));
        assert!(!looks_like_tls(&[]));
    }

    #[test]
    fn grease_values() {
        assert!(is_grease(0x0a0a) && is_grease(0xfafa));
        assert!(!is_grease(0x0a1a) && !is_grease(0x0304));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_client_hello(&bytes);
        }

        #[test]
        fn mutated_hellos_never_panic(
            which in 0..FIXTURES.len(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = FIXTURES[which].1.to_vec();
            for (at, b) in edits {
                let i = at % bytes.len();
                bytes[i] = b;
            }
            let _ = parse_client_hello(&bytes);
        }

        #[test]
        fn random_record_splits_give_the_same_facts(
            which in 0..FIXTURES.len(),
            sizes in proptest::collection::vec(1usize..600, 0..40),
        ) {
            let (_, bytes) = FIXTURES[which];
            let whole = done(bytes);
            let stream = frame(&message_of(bytes), &sizes);
            let facts = done(&stream);
            prop_assert_eq!(facts.len, stream.len());
            prop_assert_eq!(ClientHelloFacts { len: whole.len, ..facts }, whole);
        }
    }
}
