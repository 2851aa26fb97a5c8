//! The `pac:` and `setup_host:` keys: what `/proxy.pac` advertises and bypasses, and the
//! reserved name ward answers its onboarding page on. Pure parsing of single values; the
//! checks that need the whole file (a wildcard `listen` with no `pac.proxy`) are in `validate`.

use std::net::IpAddr;

use ipnet::IpNet;

use super::values::parse_net;
use crate::policy::HostPattern;
use crate::target::{Host, Target};

/// The reserved name of the onboarding page when `setup_host` is absent.
pub const DEFAULT_SETUP_HOST: &str = "ward.setup";
/// A PAC file is evaluated for every URL a browser loads: past a few thousand tests it is a
/// slow page load, and nobody means that many exceptions.
pub const MAX_PAC_BYPASS: usize = 4096;

/// `pac:`: what the admin's `/proxy.pac` tells browsers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pac {
    /// `pac.proxy`: the address devices use to reach ward; the first listener's when absent.
    pub proxy: Option<Target>,
    /// `pac.bypass`: destinations browsers reach directly, not through ward.
    pub bypass: Vec<PacBypass>,
    /// `pac.socks`: offer `SOCKS5` at the same address after `PROXY` (default true).
    pub socks: bool,
}

impl Default for Pac {
    fn default() -> Self {
        Pac {
            proxy: None,
            bypass: Vec::new(),
            socks: true,
        }
    }
}

/// One `pac.bypass` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacBypass {
    /// A name pattern as in rules' `hosts` (`a.b`, `*.a.b`, `.a.b`).
    Name(HostPattern),
    /// A CIDR range; it matches URLs whose host is an IP literal in it (a bare IP is a /32 or
    /// /128).
    Net(IpNet),
}

/// `pac.bypass` items: a name pattern, a CIDR range or an IP address.
pub(super) fn parse_bypass(s: &str) -> Result<PacBypass, String> {
    let looks_numeric = s.contains('/') || s.contains(':') || s.parse::<IpAddr>().is_ok();
    if looks_numeric {
        return parse_net(s).map(PacBypass::Net).map_err(|_| not_bypass(s));
    }
    match HostPattern::parse(s) {
        Ok(HostPattern::Ip(ip)) => Ok(PacBypass::Net(IpNet::from(ip))),
        Ok(p) => Ok(PacBypass::Name(p)),
        Err(_) => Err(not_bypass(s)),
    }
}

fn not_bypass(s: &str) -> String {
    format!(
        "{s:?} is neither a host name pattern (a.example, *.a.example, .a.example) nor a CIDR \
         range (10.0.0.0/8, fc00::/7)"
    )
}

/// `pac.proxy`: `host:port` as devices reach it; never a wildcard bind address.
pub(super) fn parse_pac_proxy(s: &str) -> Result<Target, String> {
    let t = Target::parse_authority(s)
        .map_err(|e| format!("{s:?} is not HOST:PORT like ward.example:8080 ({e})"))?;
    match t.host {
        Host::Ip(ip) if ip.is_unspecified() => Err(format!(
            "{s:?} is a wildcard bind address, which no device can connect to; name this \
             machine's address as devices see it"
        )),
        _ => Ok(t),
    }
}

/// `setup_host`: a DNS name (never an IP: ward would answer for that address's every site).
pub(super) fn parse_setup_host(s: &str) -> Result<Host, String> {
    match Host::parse(s) {
        Ok(h @ Host::Name(_)) => Ok(h),
        Ok(Host::Ip(_)) => Err(format!("{s:?}: the setup page needs a name, not an IP")),
        Err(e) => Err(format!("{s:?}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bypass_entries_are_names_or_ranges() {
        let net = |s: &str| PacBypass::Net(s.parse().unwrap());
        assert_eq!(parse_bypass("10.0.0.0/8"), Ok(net("10.0.0.0/8")));
        assert_eq!(parse_bypass("10.1.2.3/8"), Ok(net("10.0.0.0/8")));
        assert_eq!(parse_bypass("192.168.1.7"), Ok(net("192.168.1.7/32")));
        assert_eq!(parse_bypass("fc00::/7"), Ok(net("fc00::/7")));
        assert_eq!(parse_bypass("[::1]"), Ok(net("::1/128")));
        assert_eq!(
            parse_bypass("*.Local"),
            Ok(PacBypass::Name(HostPattern::Subdomains("local".into())))
        );
        assert_eq!(
            parse_bypass(".corp.example"),
            Ok(PacBypass::Name(HostPattern::Domain("corp.example".into())))
        );
        for bad in [
            "",
            "*",
            "a*b.example",
            "10.0.0.0/33",
            "http://x",
            "fc00::/129",
            "a b",
        ] {
            let err = parse_bypass(bad).expect_err(bad);
            assert!(err.contains("neither a host name pattern"), "{bad}: {err}");
        }
    }

    #[test]
    fn pac_proxy_is_a_reachable_host_and_port() {
        assert_eq!(
            parse_pac_proxy("Ward.Example:8080").map(|t| t.to_string()),
            Ok("ward.example:8080".into())
        );
        assert!(parse_pac_proxy("[2001:db8::1]:3128").is_ok());
        for bad in [
            "ward.example",
            "0.0.0.0:8080",
            "[::]:8080",
            "u:p@w.example:1",
            ":80",
        ] {
            assert!(parse_pac_proxy(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn setup_host_is_a_name() {
        assert_eq!(
            parse_setup_host("Setup.Lan."),
            Ok(Host::Name("setup.lan".into()))
        );
        assert!(parse_setup_host("10.0.0.1").is_err());
        assert!(parse_setup_host("").is_err());
    }

    fn check(yaml: &str) -> Result<crate::config::Config, String> {
        crate::config::parse(yaml, std::path::Path::new("p.yaml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_bad_bypass_entry_is_an_error_at_its_line() {
        let yaml =
            "pac:\n  bypass:\n    - \"*.local\"\n    - \"10.0.0.0/8\"\n    - \"not a/name\"\n";
        let err = check(yaml).expect_err("bad entry");
        assert!(err.starts_with("p.yaml:5:"), "{err}");
        assert!(err.contains("pac.bypass"), "{err}");
        assert!(err.contains("\"not a/name\" is neither"), "{err}");
    }

    #[test]
    fn the_pac_keys_arrive_typed() {
        let yaml = "pac: { proxy: \"ward.example:3128\", bypass: [\"*.local\", \"fc00::/7\"], socks: false }\n\
                    setup_host: Onboard.Lan\n";
        let c = check(yaml).expect("valid");
        assert_eq!(
            c.pac.proxy.map(|t| t.to_string()),
            Some("ward.example:3128".into())
        );
        assert_eq!(c.pac.bypass.len(), 2);
        assert!(!c.pac.socks);
        assert_eq!(c.setup_host, Host::Name("onboard.lan".into()));
        let d = check("").expect("empty file");
        assert_eq!(d.pac, Pac::default());
        assert!(d.pac.socks);
        assert_eq!(d.setup_host, Host::Name(DEFAULT_SETUP_HOST.into()));
        let err = check("pac: { proxi: \"x:1\" }\n").expect_err("typo");
        assert!(err.contains("pac.proxi: unknown key"), "{err}");
    }

    #[test]
    fn a_wildcard_listen_needs_pac_proxy_when_the_admin_serves_the_pac() {
        let base = "open_proxy: true\nlisten: [\"0.0.0.0:8080\"]\n";
        let err = check(&format!("{base}admin: 127.0.0.1:9090\n")).expect_err("wildcard");
        assert!(err.starts_with("p.yaml:2:"), "{err}");
        assert!(err.contains("set `pac.proxy`"), "{err}");
        let v6 = "open_proxy: true\nlisten: [\"[::]:8080\"]\nadmin: 127.0.0.1:9090\n";
        assert!(check(v6).is_err());
        let named = format!("{base}admin: 127.0.0.1:9090\npac: {{ proxy: \"ward.lan:8080\" }}\n");
        assert!(check(&named).is_ok(), "pac.proxy names the address");
        assert!(check(base).is_ok(), "no admin, no PAC to get wrong");
        let err = check("pac: { proxy: \"0.0.0.0:8080\" }\n").expect_err("wildcard proxy");
        assert!(err.contains("wildcard bind address"), "{err}");
    }
}
