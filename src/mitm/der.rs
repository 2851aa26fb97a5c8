//! Just enough DER reading to learn a certificate's validity window, common name and DNS
//! subject alternative names from its bytes (and, for tests, its key identifiers). Pure; it must not grow into a general X.509 parser
//! (rcgen and rustls already verify what matters), and reads only certificates already verified.

use std::time::{Duration, SystemTime};

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
/// 2.5.4.3 (id-at-commonName), content octets.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const TAG_VERSION: u8 = 0xA0;
const TAG_UTC_TIME: u8 = 0x17;
const TAG_GENERALIZED_TIME: u8 = 0x18;
/// `[3] EXPLICIT Extensions` in the TBSCertificate.
const TAG_EXTENSIONS: u8 = 0xA3;
const TAG_BOOLEAN: u8 = 0x01;
const TAG_OCTET_STRING: u8 = 0x04;
/// GeneralName `dNSName [2] IA5String`, implicitly tagged.
const TAG_DNS_NAME: u8 = 0x82;
/// 2.5.29.17 (id-ce-subjectAltName), content octets.
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
/// RFC 1035: a name in text is at most 253 octets; one label at most 63.
const MAX_DNS_NAME: usize = 253;
const MAX_DNS_LABEL: usize = 63;

/// One DER element: (tag, content, rest of the input). Lengths beyond 4 bytes are refused:
/// no certificate needs them, and they would only serve an attacker.
fn element(buf: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn expect(buf: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, rest) = element(buf)?;
    (t == tag).then_some((content, rest))
}

/// The TBSCertificate's validity and subject elements (each still encoded).
fn validity_and_subject(cert_der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (cert, _) = expect(cert_der, TAG_SEQUENCE)?;
    let (tbs, _) = expect(cert, TAG_SEQUENCE)?;
    let mut rest = tbs;
    // version [0] is optional (v1 certificates omit it); then serial, signature, issuer.
    if rest.first() == Some(&TAG_VERSION) {
        rest = element(rest)?.2;
    }
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (validity, rest) = expect(rest, TAG_SEQUENCE)?;
    let (subject, _) = expect(rest, TAG_SEQUENCE)?;
    Some((validity, subject))
}

/// `notBefore` and `notAfter` of a DER certificate, or `None` if it does not look like one.
pub(crate) fn validity(cert_der: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let (validity, _) = validity_and_subject(cert_der)?;
    let (t1, c1, rest) = element(validity)?;
    let (t2, c2, _) = element(rest)?;
    Some((parse_time(t1, c1)?, parse_time(t2, c2)?))
}

/// The subject's first commonName, for display.
pub(crate) fn subject_common_name(cert_der: &[u8]) -> Option<String> {
    let (_, mut rdns) = validity_and_subject(cert_der)?;
    while !rdns.is_empty() {
        let (set, rest) = expect(rdns, TAG_SET)?;
        rdns = rest;
        let (attr, _) = expect(set, TAG_SEQUENCE)?;
        let (oid, value) = expect(attr, TAG_OID)?;
        if oid == OID_COMMON_NAME {
            let (_, text, _) = element(value)?;
            return String::from_utf8(text.to_vec()).ok();
        }
    }
    None
}

/// The `dNSName` entries of the certificate's subjectAltName, lowercased, at most `max`, each
/// with valid DNS syntax (a leading `*.` allowed); anything else in the list is skipped.
pub(crate) fn san_dns_names(cert_der: &[u8], max: usize) -> Vec<String> {
    let mut names = Vec::new();
    let Some(mut list) = subject_alt_names(cert_der) else {
        return names;
    };
    while names.len() < max {
        let Some((tag, value, rest)) = element(list) else {
            break;
        };
        list = rest;
        if tag != TAG_DNS_NAME {
            continue;
        }
        if let Ok(text) = std::str::from_utf8(value)
            && is_dns_name(text)
        {
            let name = text.to_ascii_lowercase();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// The content of the subjectAltName extension's GeneralNames SEQUENCE.
fn subject_alt_names(cert_der: &[u8]) -> Option<&[u8]> {
    let value = extension_value(cert_der, OID_SUBJECT_ALT_NAME)?;
    expect(value, TAG_SEQUENCE).map(|(names, _)| names)
}

/// The subject key identifier and the authority key identifier's keyIdentifier (RFC 5280
/// §4.2.1.1-2), for checking that a forged leaf names the CA that signed it.
#[cfg(test)]
pub(crate) fn key_identifiers(cert_der: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    /// 2.5.29.14 and 2.5.29.35, content octets.
    const OID_SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0x0e];
    const OID_AUTHORITY_KEY_ID: &[u8] = &[0x55, 0x1d, 0x23];
    /// `keyIdentifier [0] IMPLICIT OCTET STRING`.
    const TAG_KEY_ID: u8 = 0x80;
    let ski = extension_value(cert_der, OID_SUBJECT_KEY_ID)
        .and_then(|v| expect(v, TAG_OCTET_STRING))
        .map(|(id, _)| id.to_vec());
    let aki = extension_value(cert_der, OID_AUTHORITY_KEY_ID)
        .and_then(|v| expect(v, TAG_SEQUENCE))
        .and_then(|(seq, _)| expect(seq, TAG_KEY_ID))
        .map(|(id, _)| id.to_vec());
    (ski, aki)
}

/// The extnValue octets of the TBS extension `oid`.
fn extension_value<'a>(cert_der: &'a [u8], oid: &[u8]) -> Option<&'a [u8]> {
    let (cert, _) = expect(cert_der, TAG_SEQUENCE)?;
    let (tbs, _) = expect(cert, TAG_SEQUENCE)?;
    // Extensions are the TBS's last field; each step consumes bytes, so this ends.
    let mut rest = tbs;
    let extensions = loop {
        let (tag, content, next) = element(rest)?;
        if tag == TAG_EXTENSIONS {
            break content;
        }
        rest = next;
    };
    let (mut list, _) = expect(extensions, TAG_SEQUENCE)?;
    while !list.is_empty() {
        let (ext, next) = expect(list, TAG_SEQUENCE)?;
        list = next;
        let (ext_oid, mut body) = expect(ext, TAG_OID)?;
        if ext_oid != oid {
            continue;
        }
        if body.first() == Some(&TAG_BOOLEAN) {
            body = element(body)?.2;
        }
        return expect(body, TAG_OCTET_STRING).map(|(value, _)| value);
    }
    None
}

/// LDH labels separated by dots, optionally `*.` first; no IP literals (those are not DNS names).
fn is_dns_name(text: &str) -> bool {
    let bare = text.strip_prefix("*.").unwrap_or(text);
    if bare.is_empty() || text.len() > MAX_DNS_NAME || bare.parse::<std::net::IpAddr>().is_ok() {
        return false;
    }
    bare.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= MAX_DNS_LABEL
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// UTCTime `YYMMDDHHMMSSZ` (RFC 5280: years 50..99 are 19xx) or GeneralizedTime
/// `YYYYMMDDHHMMSSZ`.
fn parse_time(tag: u8, text: &[u8]) -> Option<SystemTime> {
    let digits = text.strip_suffix(b"Z")?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let num = |s: &[u8]| {
        s.iter()
            .fold(0i32, |acc, &d| acc * 10 + i32::from(d - b'0'))
    };
    let (year, rest) = match (tag, digits.len()) {
        (TAG_UTC_TIME, 12) => {
            let yy = num(&digits[..2]);
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (TAG_GENERALIZED_TIME, 14) => (num(&digits[..4]), &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| u8::try_from(num(&rest[i..i + 2])).ok();
    let month = time::Month::try_from(field(0)?).ok()?;
    let date = time::Date::from_calendar_date(year, month, field(2)?).ok()?;
    let clock = time::Time::from_hms(field(4)?, field(6)?, field(8)?).ok()?;
    let at = time::PrimitiveDateTime::new(date, clock).assume_utc();
    let secs = u64::try_from(at.unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests;
