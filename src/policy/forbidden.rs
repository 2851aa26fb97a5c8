//! Destination addresses ward refuses unless a rule's `dst` names them explicitly.
//! Pure: a table of ranges, checked on the resolved address (so DNS rebinding cannot reach them).
//!
//! Refused, and why:
//! - IPv4 `0.0.0.0/8` ("this network"; Linux routes 0.0.0.0 to the local host), `127.0.0.0/8`
//!   loopback, RFC 1918 `10/8`, `172.16/12`, `192.168/16`, `169.254/16` link-local (cloud
//!   metadata lives there), `100.64/10` CGNAT shared space (carrier and overlay networks such
//!   as Tailscale: internal by nature), `224/4` multicast, `240/4` reserved and broadcast.
//! - IPv6 `::` unspecified, `::1` loopback, `fe80::/10` link-local, `fec0::/10` deprecated
//!   site-local, `fc00::/7` unique-local, `ff00::/8` multicast.
//! - IPv6 addresses that carry an IPv4 address a router or the kernel would forward to:
//!   IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`, NAT64 `64:ff9b::/96` and
//!   `64:ff9b:1::/48` (RFC 6052/8215, IPv4 in the last 32 bits), and 6to4 `2002::/16`
//!   (IPv4 in bits 16-48): each is refused when the IPv4 inside is.
//!
//! Allowed: documentation (`192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`) and
//! benchmarking (`198.18/15`) ranges, which some local tools (fake-IP DNS) use for real
//! traffic, and Teredo (its embedded address is obfuscated and points at a relay).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `100.64.0.0/10`, RFC 6598 shared address space.
const CGNAT: (Ipv4Addr, u8) = (Ipv4Addr::new(100, 64, 0, 0), 10);
/// `0.0.0.0/8`, RFC 1122 "this network".
const THIS_NETWORK: (Ipv4Addr, u8) = (Ipv4Addr::new(0, 0, 0, 0), 8);
/// `240.0.0.0/4`, reserved (includes the limited broadcast address).
const RESERVED: (Ipv4Addr, u8) = (Ipv4Addr::new(240, 0, 0, 0), 4);

/// Whether `ip` is an internal or otherwise unroutable destination (see the module docs).
pub fn is_forbidden_dst(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, (net, prefix): (Ipv4Addr, u8)) -> bool {
    let mask = u32::MAX << (32 - u32::from(prefix));
    u32::from(ip) & mask == u32::from(net) & mask
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || in_v4(ip, THIS_NETWORK)
        || in_v4(ip, CGNAT)
        || in_v4(ip, RESERVED)
}

fn forbidden_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    let bits = u128::from(ip);
    let is_link_local = seg[0] & 0xffc0 == 0xfe80;
    let is_site_local = seg[0] & 0xffc0 == 0xfec0;
    let is_unique_local = seg[0] & 0xfe00 == 0xfc00;
    if ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || is_link_local
        || is_site_local
        || is_unique_local
    {
        return true;
    }
    embedded_v4(seg, bits).is_some_and(forbidden_v4)
}

/// The IPv4 address an IPv6 address carries for translation or tunnelling, if it has one.
fn embedded_v4(seg: [u16; 8], bits: u128) -> Option<Ipv4Addr> {
    // Truncation is the point: each of these keeps the IPv4 address in a 32-bit slice.
    let low32 = Ipv4Addr::from(bits as u32);
    let mapped_or_compat = seg[..5] == [0; 5] && (seg[5] == 0 || seg[5] == 0xffff);
    let nat64 = seg[..6] == [0x64, 0xff9b, 0, 0, 0, 0];
    let nat64_local = seg[..3] == [0x64, 0xff9b, 1];
    if mapped_or_compat || nat64 || nat64_local {
        return Some(low32);
    }
    if seg[0] == 0x2002 {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_destination_table() {
        let table = [
            ("0.0.0.0", true),
            ("0.1.2.3", true),
            ("127.0.0.1", true),
            ("127.255.255.254", true),
            ("10.0.0.1", true),
            ("172.16.0.1", true),
            ("172.31.255.255", true),
            ("172.32.0.1", false),
            ("192.168.1.1", true),
            ("169.254.169.254", true),
            ("100.64.0.1", true),
            ("100.127.255.255", true),
            ("100.128.0.1", false),
            ("224.0.0.1", true),
            ("239.255.255.250", true),
            ("240.0.0.1", true),
            ("255.255.255.255", true),
            ("8.8.8.8", false),
            ("1.1.1.1", false),
            ("203.0.113.5", false),
            ("198.18.0.1", false),
            ("::", true),
            ("::1", true),
            ("fe80::1", true),
            ("febf::1", true),
            ("fec0::1", true),
            ("fc00::1", true),
            ("fd12:3456::1", true),
            ("ff02::1", true),
            ("::ffff:10.0.0.1", true),
            ("::ffff:127.0.0.1", true),
            ("::ffff:8.8.8.8", false),
            ("::10.0.0.1", true),
            ("64:ff9b::10.0.0.1", true),
            ("64:ff9b::8.8.8.8", false),
            ("64:ff9b:1::a00:1", true),
            ("2002:a00:1::1", true),
            ("2002:808:808::1", false),
            ("2001:db8::1", false),
            ("2606:4700::1111", false),
            ("2001:4860:4860::8888", false),
        ];
        for (ip, want) in table {
            let addr: IpAddr = ip.parse().unwrap();
            assert_eq!(is_forbidden_dst(addr), want, "{ip}");
        }
    }
}
