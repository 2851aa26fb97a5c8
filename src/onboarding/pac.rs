//! The proxy auto-config file (`/proxy.pac`) from `pac:`: JavaScript a browser runs for every
//! URL. Pure text generation. The file never makes the browser resolve a name: CIDR entries
//! match URLs whose host is an IP literal (as Chromium's own bypass list does), so a PAC
//! cannot stall on the device's DNS or leak lookups ward was meant to make.

use std::fmt::Write as _;

use ipnet::IpNet;

use crate::config::{Pac, PacBypass};
use crate::policy::HostPattern;
use crate::target::Host;

/// `Content-Type` browsers expect for a PAC file.
pub const CONTENT_TYPE: &str = "application/x-ns-proxy-autoconfig";

/// `FindProxyForURL` sending everything to `proxy` (`host:port`) except loopback, plain host
/// names and `pac.bypass`; `setup_host` always goes to ward, whatever the bypass says.
pub fn pac_js(proxy: &str, pac: &Pac, setup_host: &Host) -> String {
    let via = if pac.socks {
        format!("PROXY {proxy}; SOCKS5 {proxy}")
    } else {
        format!("PROXY {proxy}")
    };
    let mut names = String::new();
    let mut v4 = String::new();
    let mut v6 = String::new();
    for entry in &pac.bypass {
        match entry {
            PacBypass::Name(p) => name_test(&mut names, p),
            PacBypass::Net(IpNet::V4(n)) => {
                let (addr, mask) = (js_str(&n.network().to_string()), n.netmask());
                let _ = writeln!(
                    v4,
                    "    if (isInNet(host, {addr}, \"{mask}\")) return \"DIRECT\";"
                );
            }
            PacBypass::Net(IpNet::V6(n)) => {
                let net = js_str(&n.to_string());
                let _ = writeln!(v6, "    if (isInNetEx(host, {net})) return \"DIRECT\";");
            }
        }
    }
    let setup = js_str(&setup_host.to_string());
    let via = js_str(&via);
    format!(
        "// Written by ward from policy.yaml's `pac:`; change that, not this file.\n\
         function FindProxyForURL(url, host) {{\n  \
         var ward = {via};\n  \
         host = host.toLowerCase();\n  \
         if (host.charAt(0) == \"[\") host = host.substring(1, host.length - 1);\n  \
         if (host.charAt(host.length - 1) == \".\") host = host.substring(0, host.length - 1);\n  \
         // ward's onboarding page: answered by ward itself, so never bypassed.\n  \
         if (host == {setup}) return ward;\n  \
         if (/^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$/.test(host)) {{\n    \
         if (isInNet(host, \"127.0.0.0\", \"255.0.0.0\")) return \"DIRECT\";\n\
         {v4}  \
         }}\n  \
         if (host.indexOf(\":\") >= 0) {{\n    \
         if (host == \"::1\") return \"DIRECT\";\n    \
         // isInNetEx is the IPv6-aware test (Chromium, Internet Explorer, pacparser); a browser\n    \
         // without it sends IPv6 hosts through ward.\n    \
         if (typeof isInNetEx != \"function\") return ward;\n\
         {v6}    \
         return ward;\n  \
         }}\n  \
         // After the IP literals: an IPv6 address has no dot, and old isPlainHostName\n  \
         // implementations (pacparser's) call it a plain name.\n  \
         if (isPlainHostName(host) || host == \"localhost\" || dnsDomainIs(host, \".localhost\")) return \"DIRECT\";\n\
         {names}  \
         return ward;\n\
         }}\n"
    )
}

/// One name pattern; `dnsDomainIs(host, ".x")` is a suffix test, so it never matches `x`.
fn name_test(out: &mut String, p: &HostPattern) {
    let test = match p {
        HostPattern::Exact(x) => format!("host == {}", js_str(x)),
        HostPattern::Subdomains(x) => format!("dnsDomainIs(host, {})", js_str(&format!(".{x}"))),
        HostPattern::Domain(x) => format!(
            "host == {} || dnsDomainIs(host, {})",
            js_str(x),
            js_str(&format!(".{x}"))
        ),
        // Validation turns IP literals into ranges; kept exact should one arrive.
        HostPattern::Ip(ip) => format!("host == {}", js_str(&ip.to_string())),
    };
    let _ = writeln!(out, "  if ({test}) return \"DIRECT\";");
}

/// A JavaScript string literal (JSON's escaping is valid JavaScript).
fn js_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests;
