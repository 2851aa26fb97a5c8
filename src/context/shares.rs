//! Fair shares: how many connections each client address holds, so that one address cannot
//! take every slot of `max_connections`. An entry lives only while its address has a
//! connection open, so the map is bounded by the open connections.

use std::net::IpAddr;
use std::sync::Arc;

use dashmap::DashMap;

/// Open connections per client address.
#[derive(Debug, Default)]
pub struct ClientShares {
    open: DashMap<IpAddr, usize>,
}

/// One connection's place in its client's share, given back when dropped.
#[derive(Debug)]
pub struct Share {
    shares: Arc<ClientShares>,
    ip: IpAddr,
}

impl ClientShares {
    /// A place for one more connection of `ip`, unless it already holds `limit`.
    pub fn take(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<Share> {
        let ip = ip.to_canonical();
        let mut open = self.open.entry(ip).or_insert(0);
        if *open >= limit {
            return None;
        }
        *open += 1;
        Some(Share {
            shares: self.clone(),
            ip,
        })
    }

    /// How many connections `ip` holds now.
    pub fn held(&self, ip: IpAddr) -> usize {
        self.open.get(&ip.to_canonical()).map_or(0, |n| *n)
    }

    /// How many addresses hold a connection now.
    pub fn clients(&self) -> usize {
        self.open.len()
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if let Some(mut open) = self.shares.open.get_mut(&self.ip) {
            *open = open.saturating_sub(1);
        }
        self.shares.open.remove_if(&self.ip, |_, open| *open == 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_share_and_others_theirs() {
        let shares = Arc::new(ClientShares::default());
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let held: Vec<Share> = (0..3).map(|_| shares.take(a, 3).unwrap()).collect();
        assert!(shares.take(a, 3).is_none(), "over its share");
        assert_eq!(shares.held(a), 3);
        let other = shares.take(b, 3).expect("another client is still served");
        drop(held);
        assert_eq!(shares.held(a), 0);
        assert_eq!(
            shares.clients(),
            1,
            "an address with nothing open leaves the map"
        );
        drop(other);
        assert_eq!(shares.clients(), 0);
        assert!(shares.take(a, 3).is_some());
    }

    #[test]
    fn a_mapped_v4_address_is_the_same_client() {
        let shares = Arc::new(ClientShares::default());
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let _one = shares.take(v4, 1).unwrap();
        assert!(shares.take(mapped, 1).is_none());
    }
}
