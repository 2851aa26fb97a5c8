//! A set of address ranges for `clients` and `dst`: the CIDRs of a rule merged into sorted,
//! disjoint inclusive ranges, one list per family, so that membership is a binary search
//! (O(log n)) rather than a scan of every entry. Pure.
//!
//! Hand-written because the question is membership in one rule's set, not the longest prefix
//! across many (what `ip_network_table`/`prefix-trie` answer); merged ranges also make a list
//! full of overlaps (a /8 and its /32s) cost no more than its union.

use std::net::IpAddr;

use ipnet::IpNet;

/// Sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
}

impl IpSet {
    /// The union of `nets`. IPv4-mapped IPv6 ranges stay IPv6: addresses are canonicalised
    /// before lookup, as they are before every other comparison.
    pub fn new<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> IpSet {
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for net in nets {
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        IpSet {
            v4: merge(v4),
            v6: merge(v6),
        }
    }

    /// Whether `ip` (canonicalised) lies in one of the ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => find(&self.v4, u32::from(a)),
            IpAddr::V6(a) => find(&self.v6, u128::from(a)),
        }
    }

    /// Whether the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    /// How many disjoint ranges remain after merging.
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// Sorts and joins overlapping or adjacent ranges.
fn merge<T: Copy + Ord + num_step::Step>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match out.last_mut() {
            Some(last) if lo <= last.1.next_or_max() => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    out.shrink_to_fit();
    out
}

fn find<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    // The first range starting above `x`; the one before it is the only candidate.
    let after = ranges.partition_point(|r| r.0 <= x);
    after > 0 && ranges[after - 1].1 >= x
}

/// `x + 1`, saturating: adjacency for the merge without overflow at the top of the space.
mod num_step {
    pub trait Step {
        fn next_or_max(self) -> Self;
    }
    impl Step for u32 {
        fn next_or_max(self) -> u32 {
            self.saturating_add(1)
        }
    }
    impl Step for u128 {
        fn next_or_max(self) -> u128 {
            self.saturating_add(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn net_strategy() -> impl Strategy<Value = IpNet> {
        // A small corner of each space, so that random addresses often land inside.
        let v4 = (0u32..4096, 20u8..=32).prop_map(|(a, len)| {
            let addr = std::net::Ipv4Addr::from(0x0a00_0000 | a);
            IpNet::new(addr.into(), len).unwrap().trunc()
        });
        let v6 = (0u128..4096, 116u8..=128).prop_map(|(a, len)| {
            let addr = std::net::Ipv6Addr::from(0xfd00_u128 << 112 | a);
            IpNet::new(addr.into(), len).unwrap().trunc()
        });
        prop_oneof![3 => v4, 1 => v6]
    }

    fn ip_strategy() -> impl Strategy<Value = IpAddr> {
        let v4 = (0u32..8192).prop_map(|a| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 | a)));
        let v6 = (0u128..8192)
            .prop_map(|a| IpAddr::from(std::net::Ipv6Addr::from(0xfd00_u128 << 112 | a)));
        let mapped = (0u32..8192)
            .prop_map(|a| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 | a).to_ipv6_mapped()));
        prop_oneof![v4, v6, mapped]
    }

    proptest! {
        #[test]
        fn contains_equals_a_scan_of_the_nets(
            nets in prop::collection::vec(net_strategy(), 0..40),
            ips in prop::collection::vec(ip_strategy(), 1..40),
        ) {
            let set = IpSet::new(&nets);
            for ip in ips {
                let scan = nets.iter().any(|n| n.contains(&ip.to_canonical()));
                prop_assert_eq!(set.contains(ip), scan, "{}", ip);
            }
            prop_assert!(set.ranges() <= nets.len());
        }
    }

    #[test]
    fn edges_of_the_address_space() {
        let all: Vec<IpNet> = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
        let set = IpSet::new(&all);
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "::",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            assert!(set.contains(ip.parse().unwrap()), "{ip}");
        }
        let two: Vec<IpNet> = vec![
            "10.0.0.0/32".parse().unwrap(),
            "10.0.0.1/32".parse().unwrap(),
        ];
        let set = IpSet::new(&two);
        assert_eq!(set.ranges(), 1, "adjacent ranges merge");
        assert!(!set.contains("10.0.0.2".parse().unwrap()));
        assert!(IpSet::new(&[]).is_empty());
    }
}
