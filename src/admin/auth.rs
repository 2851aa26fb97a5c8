//! Who may use the admin endpoint. With `admin_token` set, every path asks for
//! `Authorization: Bearer <token>` except the probes (`/healthz`, `/readyz`), `/metrics` when
//! `admin_public_metrics` is true, and what a device being set up must fetch without a token
//! (the setup page, the CA certificate downloads, `/proxy.pac`): public material, which the
//! proxy itself serves to anyone at `http://ward.setup/` anyway. Everything else is refused by
//! default, so a new endpoint is private unless it is listed here. Pure: headers in, verdict
//! out; the token is compared in constant time and never logged.

use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode, header};
use http_body_util::Full;

use crate::config::AdminToken;
use crate::onboarding;

/// Paths that answer without the token whatever the settings.
const PROBES: [&str; 2] = ["/healthz", "/readyz"];

/// What the admin asks of callers, fixed at start.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// `admin_token`, when set.
    pub token: Option<AdminToken>,
    /// `admin_public_metrics`.
    pub public_metrics: bool,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A bearer token that is not the token (or a header that is not one).
    Wrong,
}

impl Access {
    /// Whether `path` answers without the token.
    pub fn is_public(&self, path: &str) -> bool {
        PROBES.contains(&path)
            || (path == "/metrics" && self.public_metrics)
            || path == "/proxy.pac"
            || onboarding::PATHS.contains(&path)
    }

    /// `Ok` when the request may go on.
    pub fn check(&self, path: &str, headers: &HeaderMap) -> Result<(), Refusal> {
        let Some(token) = &self.token else {
            return Ok(());
        };
        if self.is_public(path) {
            return Ok(());
        }
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            // none, or several (which one would count?)
            return Err(if headers.contains_key(header::AUTHORIZATION) {
                Refusal::Wrong
            } else {
                Refusal::Missing
            });
        };
        match bearer(value.as_bytes()) {
            Some(candidate) if token.matches(candidate) => Ok(()),
            _ => Err(Refusal::Wrong),
        }
    }

    /// Whether a caller that passed [`Access::check`] may change state (`DELETE /pinning`):
    /// with a token, it has shown it; without one, only loopback is trusted.
    pub fn may_change(&self, peer: std::net::IpAddr) -> bool {
        self.token.is_some() || peer.to_canonical().is_loopback()
    }
}

/// The credentials of `Bearer <credentials>` (the scheme is case-insensitive, RFC 9110 §11.1).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    let head = value.get(..SCHEME.len())?;
    if !head.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &value[SCHEME.len()..];
    let start = rest.iter().position(|b| *b != b' ')?;
    let end = rest.iter().rposition(|b| *b != b' ')? + 1;
    Some(&rest[start..end])
}

/// The 401 for a refusal (RFC 6750 §3: `invalid_token` when a token was sent).
pub fn unauthorized(why: Refusal) -> Response<Full<Bytes>> {
    let challenge = match why {
        Refusal::Missing => "Bearer realm=\"ward admin\"",
        Refusal::Wrong => "Bearer realm=\"ward admin\", error=\"invalid_token\"",
    };
    let body = match why {
        Refusal::Missing => "this endpoint needs Authorization: Bearer <admin_token>\n",
        Refusal::Wrong => "wrong admin token\n",
    };
    let mut resp = super::text(StatusCode::UNAUTHORIZED, "text/plain", body.into());
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static(challenge),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef-token";

    fn access(public_metrics: bool) -> Access {
        Access {
            token: Some(AdminToken::parse(TOKEN).unwrap()),
            public_metrics,
        }
    }

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn private_paths_need_the_bearer_token() {
        let a = access(false);
        let right = format!("Bearer {TOKEN}");
        for path in ["/metrics", "/pinning", "/pinning/x.test", "/flows", "/nope"] {
            assert_eq!(
                a.check(path, &headers(&[])),
                Err(Refusal::Missing),
                "{path}"
            );
            assert_eq!(a.check(path, &headers(&[&right])), Ok(()), "{path}");
        }
        for wrong in [
            "Bearer nope",
            &format!("Basic {TOKEN}"),
            &format!("Bearer {TOKEN}x"),
            &format!("Bearer{TOKEN}"),
            "Bearer ",
        ] {
            assert_eq!(
                a.check("/metrics", &headers(&[wrong])),
                Err(Refusal::Wrong),
                "{wrong}"
            );
        }
        assert_eq!(
            a.check("/metrics", &headers(&[&format!("bearer  {TOKEN} ")])),
            Ok(())
        );
        assert_eq!(
            a.check("/metrics", &headers(&[&right, &right])),
            Err(Refusal::Wrong)
        );
    }

    #[test]
    fn probes_onboarding_and_public_metrics_stay_open() {
        for path in [
            "/healthz",
            "/readyz",
            "/",
            "/ca.pem",
            "/ca.der",
            "/proxy.pac",
        ] {
            assert_eq!(access(false).check(path, &headers(&[])), Ok(()), "{path}");
        }
        assert_eq!(access(true).check("/metrics", &headers(&[])), Ok(()));
        assert_eq!(
            access(true).check("/pinning", &headers(&[])),
            Err(Refusal::Missing)
        );
        // no token: everything answers, changes only from loopback
        let open = Access::default();
        assert_eq!(open.check("/pinning", &headers(&[])), Ok(()));
        assert!(open.may_change("127.0.0.1".parse().unwrap()));
        assert!(!open.may_change("192.0.2.1".parse().unwrap()));
        assert!(access(false).may_change("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn the_challenge_says_bearer() {
        let r = unauthorized(Refusal::Wrong);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let h = r.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(
            h.starts_with("Bearer ") && h.contains("invalid_token"),
            "{h}"
        );
    }
}
