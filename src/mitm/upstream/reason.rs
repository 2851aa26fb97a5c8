//! Why an origin's certificate was refused, in a sentence a person can act on: the detail of a
//! 502 `tls_certificate_error`. Pure formatting of rustls's and webpki's verdicts; it decides
//! nothing (the verifier already has).

use rustls::CertificateError;
use rustls::pki_types::UnixTime;

use crate::target::Host;

/// The reason `err` gives for refusing `name`'s certificate.
pub(super) fn describe_certificate_error(err: &CertificateError, name: &Host) -> String {
    use CertificateError as E;
    match err {
        E::UnknownIssuer => "it is not signed by a CA ward trusts (unknown issuer)".into(),
        E::ExpiredContext { not_after, .. } => format!("it expired on {}", date(not_after)),
        E::Expired => "it has expired".into(),
        E::NotValidYetContext { not_before, .. } => {
            format!("it is not valid until {}", date(not_before))
        }
        E::NotValidYet => "it is not valid yet".into(),
        E::NotValidForNameContext { presented, .. } if presented.is_empty() => {
            format!("it names no host, so not {name}")
        }
        E::NotValidForNameContext { presented, .. } => {
            let names: Vec<&str> = presented.iter().map(|p| presented_name(p)).collect();
            format!("it is issued for {}, not {name}", names.join(", "))
        }
        E::NotValidForName => format!("it is not issued for {name}"),
        E::Revoked => "it has been revoked".into(),
        E::BadSignature => "its signature does not verify".into(),
        E::BadEncoding => "it is not a well-formed certificate".into(),
        E::InvalidPurpose | E::InvalidPurposeContext { .. } => {
            "it is not issued for TLS servers (extended key usage)".into()
        }
        E::UnhandledCriticalExtension => {
            "it has a critical extension that ward does not understand".into()
        }
        #[allow(deprecated)]
        E::UnsupportedSignatureAlgorithm
        | E::UnsupportedSignatureAlgorithmContext { .. }
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "it is signed with an algorithm ward does not support".into()
        }
        E::Other(other) => match other.0.downcast_ref::<webpki::Error>() {
            Some(e) => describe_webpki(e),
            None => other.0.to_string(),
        },
        other => rustls::Error::InvalidCertificate(other.clone()).to_string(),
    }
}

/// The verifier's own errors that rustls passes on unnamed.
fn describe_webpki(err: &webpki::Error) -> String {
    use webpki::Error as W;
    let text = match err {
        W::CaUsedAsEndEntity => "the certificate is a CA certificate used as a server certificate",
        W::EndEntityUsedAsCa => "a server certificate signs the chain as if it were a CA",
        W::PathLenConstraintViolated => "the chain is longer than a CA in it allows",
        W::NameConstraintViolation => "a CA in the chain may not issue for this name",
        W::MaximumPathDepthExceeded => "the chain is too long",
        W::RequiredEkuNotFoundContext(_) => "it is not issued for TLS servers (extended key usage)",
        W::CertDistrusted => "its CA is distrusted",
        W::InvalidCertValidity => "its validity period is invalid",
        other => return format!("it failed verification ({other})"),
    };
    text.to_owned()
}

/// The name inside webpki's `DnsName("a.test")` / `IpAddress(1.2.3.4)` (its Debug text, the
/// only form rustls passes on); anything else as it is.
fn presented_name(p: &str) -> &str {
    p.strip_prefix("DnsName(\"")
        .and_then(|r| r.strip_suffix("\")"))
        .or_else(|| {
            p.strip_prefix("IpAddress(")
                .and_then(|r| r.strip_suffix(')'))
        })
        .unwrap_or(p)
}

/// `2026-01-02` (UTC).
fn date(t: &UnixTime) -> String {
    let secs = i64::try_from(t.as_secs()).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => {
            let d = t.date();
            format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
        }
        Err(_) => format!("{secs} s after 1970"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use rustls::OtherError;
    use rustls::pki_types::ServerName;

    use super::*;

    #[test]
    fn every_reason_is_a_sentence_not_debug_text() {
        let name = Host::parse("origin.test").unwrap();
        let at = |secs| UnixTime::since_unix_epoch(Duration::from_secs(secs));
        // 2026-01-02T00:00:00Z is 1767312000 s after the epoch.
        let cases = [
            (
                CertificateError::ExpiredContext {
                    time: at(1_767_400_000),
                    not_after: at(1_767_312_000),
                },
                "it expired on 2026-01-02",
            ),
            (
                CertificateError::NotValidForNameContext {
                    expected: ServerName::try_from("origin.test").unwrap(),
                    presented: vec![
                        "DnsName(\"other.test\")".into(),
                        "IpAddress(10.0.0.1)".into(),
                    ],
                },
                "it is issued for other.test, 10.0.0.1, not origin.test",
            ),
            (
                CertificateError::Other(OtherError(Arc::new(webpki::Error::CaUsedAsEndEntity))),
                "the certificate is a CA certificate used as a server certificate",
            ),
            (CertificateError::UnknownIssuer, "unknown issuer"),
        ];
        for (err, want) in cases {
            let got = describe_certificate_error(&err, &name);
            assert!(got.contains(want), "{err:?}: {got}");
            assert!(!got.contains("Other(") && !got.contains("Context"), "{got}");
        }
    }
}
