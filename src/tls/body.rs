//! Reads a joined ClientHello body (after its handshake header) with tls-parser, one extension
//! at a time, into [`ClientHelloFacts`]. Pure; knows nothing of records.

use tls_parser::{SNIType, TlsExtension};

use super::ech::{EchOffer, read_ech};
use super::facts::{ClientHelloFacts, HelloError, malformed};
use super::ja4::{Ja4, Ja4Input, Transport};
use crate::target::Host;

/// RFC 9849: the encrypted_client_hello extension (also sent as ECH GREASE).
pub(super) const EXT_ENCRYPTED_CLIENT_HELLO: u16 = 0xfe0d;
/// RFC 8446 §4.2.8 key_share.
pub(super) const EXT_KEY_SHARE: u16 = 51;
/// draft-ietf-tls-ecdhe-mlkem: the X25519MLKEM768 hybrid group.
const GROUP_X25519_MLKEM768: u16 = 0x11ec;
/// RFC 6066 §3 NameType host_name.
const SNI_HOST_NAME: SNIType = SNIType(0);

/// Reads the joined ClientHello body (after the handshake header) with tls-parser.
pub(super) fn read_hello_body(body: &[u8]) -> Result<ClientHelloFacts, HelloError> {
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
        groups: Vec::new(),
        ech: EchOffer::None,
        has_pq_key_share: false,
        ja4: Ja4::of(&Ja4Input::default(), Transport::Tcp),
        ja4_input: Ja4Input::default(),
        len: 0,
    };
    let mut ja4 = Ja4Input {
        legacy_version: hello.version.0,
        ciphers: hello.ciphers.iter().map(|c| c.0).collect(),
        ..Ja4Input::default()
    };
    for (ext_type, raw) in split_extensions(hello.ext.unwrap_or_default())? {
        // tls-parser gives up on the whole list at the first bad extension, so each one is
        // parsed alone. A malformed extension fails the hello: the origin would refuse it with
        // decode_error anyway, and guessing around it could let a crafted hello hide its SNI.
        let (_, ext) = tls_parser::parse_tls_client_hello_extension(raw)
            .map_err(|_| malformed(format!("extension {ext_type:#06x} is malformed")))?;
        ja4.extensions.push(ext_type);
        read_extension(ext, &mut facts, &mut ja4)?;
        if ext_type == EXT_ENCRYPTED_CLIENT_HELLO {
            // tls-parser 0.12 does not know the extension: its body is read here.
            facts.ech = read_ech(&raw[4..])?;
        }
    }
    facts.versions = match &ja4.supported_versions {
        Some(v) => v.iter().copied().filter(|&v| !is_grease(v)).collect(),
        None => vec![hello.version.0],
    };
    if facts.versions.is_empty() {
        return Err(malformed("supported_versions lists no version"));
    }
    facts.ja4 = Ja4::of(&ja4, Transport::Tcp);
    facts.ja4_input = ja4;
    Ok(facts)
}

/// Notes what one extension says, for policy and logs (`facts`) and for JA4 (`ja4`).
fn read_extension(
    ext: TlsExtension,
    facts: &mut ClientHelloFacts,
    ja4: &mut Ja4Input,
) -> Result<(), HelloError> {
    match ext {
        TlsExtension::SNI(names) => facts.sni = read_sni(&names)?,
        TlsExtension::ALPN(protocols) => {
            // RFC 7301 §3.1: empty names must not be sent; origins refuse them (decode_error).
            if protocols.iter().any(|p| p.is_empty()) {
                return Err(malformed("ALPN lists an empty protocol name"));
            }
            facts.alpn = protocols
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            ja4.first_alpn = protocols.first().map(|p| p.to_vec());
        }
        TlsExtension::SupportedVersions(versions) => {
            ja4.supported_versions = Some(versions.iter().map(|v| v.0).collect());
        }
        TlsExtension::SignatureAlgorithms(schemes) => ja4.signature_algorithms = schemes,
        TlsExtension::EllipticCurves(groups) => {
            facts.groups = groups
                .iter()
                .map(|g| g.0)
                .filter(|&g| !is_grease(g))
                .collect();
        }
        TlsExtension::KeyShare(shares) => {
            facts.has_pq_key_share = key_share_offers(shares, GROUP_X25519_MLKEM768)?;
        }
        _ => {}
    }
    Ok(())
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
pub(super) fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}
