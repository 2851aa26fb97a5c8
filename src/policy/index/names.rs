//! A map from names to rule lists sized for a million names: the names live in one string,
//! the hash table holds 4-byte key numbers, and a name used by one rule (almost every name of
//! a blocklist) needs no list of its own. A lookup is one hash and one string compare.
//!
//! `HashMap<Box<str>, Vec<u32>>` costs about 110 bytes a name at this size (a bucket of 40
//! bytes at 50-88% load, plus two allocations); this costs about 20 plus the name's bytes.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;

#[derive(Debug, Clone, Default)]
pub(in crate::policy) struct NameTable {
    hasher: RandomState,
    /// Every key, back to back.
    text: String,
    /// The end of key `k` in `text`.
    ends: Vec<usize>,
    /// The first rule of key `k`.
    first: Vec<u32>,
    /// Keys with several rules: all of them, ascending.
    more: HashMap<u32, Vec<u32>>,
    table: HashTable<u32>,
}

fn key<'a>(text: &'a str, ends: &[usize], k: u32) -> &'a str {
    let k = k as usize;
    let start = if k == 0 { 0 } else { ends[k - 1] };
    &text[start..ends[k]]
}

impl NameTable {
    /// Room for `n` keys without rehashing.
    pub(in crate::policy) fn with_capacity(n: usize) -> NameTable {
        NameTable {
            table: HashTable::with_capacity(n),
            ends: Vec::with_capacity(n),
            first: Vec::with_capacity(n),
            ..NameTable::default()
        }
    }

    /// Adds `rule` to `name`'s list. Rules arrive in ascending order, so lists stay sorted.
    pub(in crate::policy) fn insert(&mut self, name: &str, rule: u32) {
        let hash = self.hasher.hash_one(name);
        let NameTable {
            hasher,
            text,
            ends,
            first,
            more,
            table,
        } = self;
        if let Some(&k) = table.find(hash, |&k| key(text, ends, k) == name) {
            let list = more.entry(k).or_insert_with(|| vec![first[k as usize]]);
            if list.last() != Some(&rule) {
                list.push(rule);
            }
            return;
        }
        let k = u32::try_from(ends.len()).expect("more than 4 billion names");
        text.push_str(name);
        ends.push(text.len());
        first.push(rule);
        table.insert_unique(hash, k, |&k| hasher.hash_one(key(text, ends, k)));
    }

    /// The rules listed under `name`, ascending.
    pub(in crate::policy) fn get(&self, name: &str) -> Option<&[u32]> {
        if self.table.is_empty() {
            // Most policies have no suffix patterns at all: spare the hash.
            return None;
        }
        let hash = self.hasher.hash_one(name);
        let &k = self
            .table
            .find(hash, |&k| key(&self.text, &self.ends, k) == name)?;
        Some(match self.more.get(&k) {
            Some(list) => list,
            None => std::slice::from_ref(&self.first[k as usize]),
        })
    }

    /// Releases the slack of building.
    pub(in crate::policy) fn shrink_to_fit(&mut self) {
        let NameTable {
            hasher,
            text,
            ends,
            table,
            ..
        } = self;
        text.shrink_to_fit();
        ends.shrink_to_fit();
        self.first.shrink_to_fit();
        table.shrink_to_fit(|&k| hasher.hash_one(key(text, ends, k)));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn agrees_with_a_hashmap(
            inserts in prop::collection::vec(("[a-d]{1,3}", 0u32..4), 0..200),
            probes in prop::collection::vec("[a-d]{1,3}", 0..50),
        ) {
            let mut inserts = inserts;
            // Rules are added in ascending order, as the index does.
            inserts.sort_by_key(|(_, r)| *r);
            let mut table = NameTable::with_capacity(8);
            let mut want: HashMap<String, Vec<u32>> = HashMap::new();
            for (name, rule) in &inserts {
                table.insert(name, *rule);
                let list = want.entry(name.clone()).or_default();
                if list.last() != Some(rule) {
                    list.push(*rule);
                }
            }
            table.shrink_to_fit();
            for name in probes.iter().chain(want.keys()) {
                prop_assert_eq!(table.get(name), want.get(name).map(Vec::as_slice), "{}", name);
            }
        }
    }
}
