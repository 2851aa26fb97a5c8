//! The host index: which rules can match a given host, as a few sorted lists of rule indices.
//! Pure lookups; the rest of each rule is checked by the caller.
//!
//! A name `a.b.c` can only be matched by exact patterns on `a.b.c` (or `.a.b.c`) and by
//! suffix patterns (`*.x`, `.x`) on `b.c` or `c`; each of those is one hash lookup. Every list
//! is sorted because rules are added in order, so merging them yields candidates in rule order
//! and the first full match is the answer. Names from list files go in the same tables as
//! inline ones ([`names`] keeps a million of them compact), so a decision costs the same at
//! ten names as at a million.

mod names;

use std::collections::HashMap;
use std::net::IpAddr;

use self::names::NameTable;
use super::lists::NameEntry;
use super::rules::RuleInfo;
use crate::target::Host;

/// Rule indices, ascending.
type RuleList = Vec<u32>;

#[derive(Debug, Clone, Default)]
pub(super) struct HostIndex {
    /// `a.b` and `.a.b` patterns, keyed by `a.b`.
    names: NameTable,
    /// `*.x` and `.x` patterns, keyed by `x`: consulted for proper suffixes of a name.
    suffixes: NameTable,
    ips: HashMap<IpAddr, RuleList>,
    /// Rules without `hosts`: candidates for every connection.
    any: RuleList,
}

fn push(list: &mut RuleList, i: u32) {
    // A rule listing both `a.x` and `.a.x` lands in one list twice; keep each index once.
    if list.last() != Some(&i) {
        list.push(i);
    }
}

impl HostIndex {
    pub(super) fn build(rules: &[RuleInfo]) -> HostIndex {
        let listed: usize = rules
            .iter()
            .flat_map(|r| &r.host_lists)
            .map(|l| l.len())
            .sum();
        let inline: usize = rules.iter().map(|r| r.hosts.len()).sum();
        let mut ix = HostIndex {
            names: NameTable::with_capacity(listed + inline),
            // Suffix patterns are the minority in blocklists; let that table grow as needed.
            suffixes: NameTable::with_capacity(inline),
            ..HostIndex::default()
        };
        for (i, rule) in rules.iter().enumerate() {
            let i = u32::try_from(i).expect("more than 4 billion rules");
            if rule.hosts.is_empty() && rule.host_lists.is_empty() {
                ix.any.push(i);
            }
            for pattern in &rule.hosts {
                ix.add(pattern.into(), i);
            }
            for entry in rule.host_lists.iter().flat_map(|l| l.iter()) {
                ix.add(entry, i);
            }
        }
        ix.names.shrink_to_fit();
        ix.suffixes.shrink_to_fit();
        ix
    }

    fn add(&mut self, entry: NameEntry<'_>, i: u32) {
        match entry {
            NameEntry::Exact(x) => self.names.insert(x, i),
            NameEntry::Subdomains(x) => self.suffixes.insert(x, i),
            NameEntry::Domain(x) => {
                self.names.insert(x, i);
                self.suffixes.insert(x, i);
            }
            NameEntry::Ip(ip) => push(self.ips.entry(ip).or_default(), i),
        }
    }

    /// The rules whose `hosts` match `host` (or that have no `hosts`), in rule order.
    pub(super) fn candidates(&self, host: Option<&Host>) -> Candidates<'_> {
        let mut c = Candidates::default();
        c.add(Some(self.any.as_slice()));
        match host {
            Some(Host::Ip(ip)) => c.add(self.ips.get(&ip.to_canonical()).map(Vec::as_slice)),
            Some(Host::Name(name)) => {
                c.add(self.names.get(name.as_str()));
                let mut rest = name.as_str();
                while let Some((_, parent)) = rest.split_once('.') {
                    c.add(self.suffixes.get(parent));
                    rest = parent;
                }
            }
            None => {}
        }
        c
    }
}

/// Lists kept in place before spilling to the heap: `any`, the name, and a few suffixes hit.
const INLINE_LISTS: usize = 6;

/// A k-way merge of sorted lists: each rule index once, ascending. k is at most the number
/// of labels in a name plus two, so a linear scan for the minimum beats a heap. The first few
/// lists live inline: a decision allocates nothing in the common case.
#[derive(Default)]
pub(super) struct Candidates<'a> {
    inline: [&'a [u32]; INLINE_LISTS],
    len: usize,
    spill: Vec<&'a [u32]>,
}

impl<'a> Candidates<'a> {
    fn add(&mut self, list: Option<&'a [u32]>) {
        let Some(l) = list.filter(|l| !l.is_empty()) else {
            return;
        };
        if self.len < INLINE_LISTS {
            self.inline[self.len] = l;
            self.len += 1;
        } else {
            self.spill.push(l);
        }
    }

    pub(super) fn next_index(&mut self) -> Option<usize> {
        let lists = self.inline[..self.len]
            .iter_mut()
            .chain(self.spill.iter_mut());
        let min = lists.filter_map(|l| l.first()).min().copied()?;
        let lists = self.inline[..self.len]
            .iter_mut()
            .chain(self.spill.iter_mut());
        for list in lists {
            if list.first() == Some(&min) {
                *list = &list[1..];
            }
        }
        Some(min as usize)
    }
}
