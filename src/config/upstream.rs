//! The upstream proxies: the URL form (`http://u:p@host:port`, `socks5://…`, `socks5h://…`;
//! percent-escapes in the user and password decoded), the named ones of `upstreams:`, and which
//! of them a decision dials through. Pure.

use std::collections::BTreeMap;

use super::{Upstream, UpstreamScheme};
use crate::policy::{Decision, Policy, Way};
use crate::request::Credentials;
use crate::target::Target;

/// The name a top-level `upstream:` URL goes by (in logs and `ward explain`).
pub const DEFAULT_UPSTREAM: &str = "default";

/// Words a rule's `upstream` gives a meaning of their own: never names in `upstreams`.
pub const RESERVED_UPSTREAM_NAMES: [&str; 2] = [DEFAULT_UPSTREAM, "direct"];

/// Every upstream proxy of the policy by name, and the way a rule without `upstream` takes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Upstreams {
    /// `upstreams:`, plus a top-level `upstream:` URL under [`DEFAULT_UPSTREAM`].
    pub named: BTreeMap<String, Upstream>,
    /// The top-level `upstream:`: names tried in order; empty means direct.
    pub default: Vec<String>,
}

impl Upstreams {
    /// The proxies a connection decided by `decision` is dialled through, in the order to try
    /// them, with their names; empty means direct.
    pub fn chain(&self, policy: &Policy, decision: &Decision) -> Vec<(&str, &Upstream)> {
        let way = decision.rule.map(|i| &policy.rule(i).upstream);
        let names = match way {
            Some(Way::Direct) => return Vec::new(),
            Some(Way::Via(names)) => names,
            Some(Way::Default) | None => &self.default,
        };
        names
            .iter()
            .filter_map(|n| self.named.get_key_value(n))
            .map(|(n, up)| (n.as_str(), up))
            .collect()
    }
}

/// Parses an upstream proxy URL. The port is required: proxies live on many ports and a
/// guessed one would fail far from the cause.
pub fn parse_upstream(url: &str) -> Result<Upstream, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL like http://host:port"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => UpstreamScheme::Http,
        "socks5" | "socks5h" => UpstreamScheme::Socks5,
        other => {
            return Err(format!(
                "unsupported scheme {other:?} (http, socks5, socks5h)"
            ));
        }
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err("an upstream proxy URL has no path, query or fragment".into());
    }
    // The last '@' separates credentials: a password may contain a literal '@'.
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let target = Target::parse_authority(hostport).map_err(|e| format!("upstream address: {e}"))?;
    let credentials = userinfo.map(parse_userinfo).transpose()?;
    Ok(Upstream {
        scheme,
        target,
        credentials,
    })
}

fn parse_userinfo(userinfo: &str) -> Result<Credentials, String> {
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let user = percent_decode(user)?;
    if user.is_empty() {
        return Err("empty user name before '@'".into());
    }
    Ok(Credentials {
        user,
        password: percent_decode(password)?,
    })
}

/// Decodes `%XX` escapes; the result must be UTF-8.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a '%' in the credentials is not followed by two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "credentials are not UTF-8 after decoding".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_parse() {
        let u = parse_upstream("http://proxy.test:3128").unwrap();
        assert_eq!(u.scheme, UpstreamScheme::Http);
        assert_eq!(u.target.to_string(), "proxy.test:3128");
        assert_eq!(u.credentials, None);

        let u = parse_upstream("socks5h://al%40ice:p%3Ass@w0rd@[::1]:1080/").unwrap();
        assert_eq!(u.scheme, UpstreamScheme::Socks5);
        assert_eq!(u.target.to_string(), "[::1]:1080");
        let c = u.credentials.unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("al@ice", "p:ss@w0rd")
        );

        let u = parse_upstream("SOCKS5://u@127.0.0.1:1080").unwrap();
        assert_eq!(u.credentials.unwrap().password, "");

        for bad in [
            "proxy.test:3128",
            "https://proxy.test:443",
            "http://proxy.test",
            "http://proxy.test:3128/path",
            "http://:p@proxy.test:3128",
            "http://u:%zz@proxy.test:3128",
            "http://u:%ff@proxy.test:3128",
        ] {
            assert!(parse_upstream(bad).is_err(), "{bad}");
        }
    }
}
