//! The TLS record layer as far as a ClientHello needs it: walks the handshake records at the
//! start of a stream, refuses what cannot start or continue a hello (naming what it looks like),
//! and joins the records' payloads into the one handshake message. Pure; reads no extension.

use std::borrow::Cow;

use super::facts::{HelloError, MAX_CLIENT_HELLO, malformed};
use crate::Parsed;

/// RFC 8446 §5.1: content type (1), legacy version (2), length (2).
pub(super) const RECORD_HEADER_LEN: usize = 5;
/// RFC 8446 §5.1: a record's payload never exceeds 2^14 bytes.
const MAX_RECORD_PAYLOAD: usize = 1 << 14;
/// Cap on the records one ClientHello may be split over. Real clients send one record (two or
/// three past 16 KiB), and tools that split the hello to dodge DPI a handful; the cap bounds
/// what a re-parse after every read costs, which walks every record header so far.
pub const MAX_HELLO_RECORDS: usize = 256;
/// RFC 8446 §4: message type (1), length (3).
pub(super) const HANDSHAKE_HEADER_LEN: usize = 4;
/// RFC 8446 §B.1 ContentType.
pub(super) const CONTENT_TYPE_HANDSHAKE: u8 = 22;
pub(super) const CONTENT_TYPE_CHANGE_CIPHER_SPEC: u8 = 20;
pub(super) const CONTENT_TYPE_ALERT: u8 = 21;
const CONTENT_TYPE_APPLICATION_DATA: u8 = 23;
/// Every SSL 3.0 / TLS record version starts with major version 3.
const RECORD_VERSION_MAJOR: u8 = 3;
/// Highest record minor version a client may use: 0x0304 (TLS 1.3; clients send 0x0301/0x0303).
const MAX_RECORD_VERSION_MINOR: u8 = 4;
/// RFC 8446 §B.3 HandshakeType.
pub(super) const HANDSHAKE_CLIENT_HELLO: u8 = 1;
pub(super) const HANDSHAKE_SERVER_HELLO: u8 = 2;

/// Walks the handshake records at the start of `buf` until one whole handshake message is
/// there, then joins their payloads; `consumed` counts the record bytes that carried it.
/// Every header is checked as soon as its bytes arrive, so junk is refused early. Nothing is
/// copied until the message is whole: the caller parses again after every read, and a hello
/// dribbled in tiny records must not cost a copy of all it sent so far each time.
pub(super) fn join_hello_records(buf: &[u8]) -> Result<Parsed<Cow<'_, [u8]>>, HelloError> {
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
