//! Connection ids: a per-process random prefix and a counter (`3f9a1c-000042`). A connection's
//! access record and every flow record of it carry the same id, so the two logs join on it;
//! the prefix tells apart the runs (and the replicas) whose counters all start at 1. Pure
//! apart from the one random draw per process.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The next connection's number in this process.
static NEXT: AtomicU64 = AtomicU64::new(1);
/// This process's prefix: 24 random bits, drawn once.
static PREFIX: OnceLock<u32> = OnceLock::new();
/// Six hex digits of prefix.
const PREFIX_MASK: u32 = 0x00ff_ffff;

/// One connection's id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    prefix: u32,
    n: u64,
}

impl ConnId {
    /// A fresh id, never given before in this process.
    pub fn next() -> ConnId {
        let prefix = *PREFIX.get_or_init(|| rand::random::<u32>() & PREFIX_MASK);
        ConnId {
            prefix,
            n: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl fmt::Display for ConnId {
    /// `3f9a1c-000042`: the counter has at least six digits, more once it needs them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:06x}-{:06}", self.prefix, self.n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_share_the_prefix_and_count_up() {
        let (a, b) = (ConnId::next(), ConnId::next());
        let (sa, sb) = (a.to_string(), b.to_string());
        assert_eq!(sa.len(), 13, "{sa}");
        assert_eq!(sa[..7], sb[..7]);
        assert!(b.n > a.n && a != b);
        let shown = ConnId {
            prefix: 0x3f9a1c,
            n: 42,
        }
        .to_string();
        assert_eq!(shown, "3f9a1c-000042");
        assert_eq!(
            ConnId {
                prefix: 1,
                n: 12_345_678
            }
            .to_string(),
            "000001-12345678"
        );
    }
}
