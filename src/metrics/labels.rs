//! Counters by one label whose values come from the policy (rule names, upstream names):
//! bounded, so that no policy and no traffic can grow `/metrics` without limit. The first
//! [`MAX_LABEL_VALUES`] distinct values get their own series; any later one counts as
//! `other`. A mutex, not atomics: a new value must be inserted, and one lock per finished
//! connection is cheap next to the connection.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Distinct label values kept per counter family.
pub const MAX_LABEL_VALUES: usize = 64;
/// Where values beyond the cap are counted.
pub const OTHER: &str = "other";

/// One counter family keyed by a label value.
#[derive(Debug, Default)]
pub struct BoundedCounter {
    values: Mutex<BTreeMap<String, u64>>,
}

impl BoundedCounter {
    /// Adds one to `value`'s series (or `other`'s, past the cap).
    pub fn add(&self, value: &str) {
        let mut values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = values.get_mut(value) {
            *n += 1;
            return;
        }
        let key = if values.len() < MAX_LABEL_VALUES {
            value
        } else {
            OTHER
        };
        *values.entry(key.to_owned()).or_default() += 1;
    }

    /// The series, `(value, count)`, by value.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let values = self.values.lock().unwrap_or_else(|e| e.into_inner());
        values.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// One line per series: `name{extra,label="value"} n`; `extra` is `k="v",` or empty.
    pub fn render(&self, out: &mut String, name: &str, extra: &str, label: &str) {
        for (value, n) in self.snapshot() {
            let _ = writeln!(out, "{name}{{{extra}{label}=\"{}\"}} {n}", escape(&value));
        }
    }
}

/// A label value in the text format: backslash, double quote and newline escaped.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_past_the_cap_count_as_other() {
        let c = BoundedCounter::default();
        for i in 0..MAX_LABEL_VALUES + 10 {
            c.add(&format!("r{i}"));
        }
        c.add("r0");
        let snap = c.snapshot();
        assert_eq!(snap.len(), MAX_LABEL_VALUES + 1);
        assert!(snap.contains(&("r0".to_owned(), 2)));
        assert!(snap.contains(&(OTHER.to_owned(), 10)));
    }

    #[test]
    fn label_values_are_escaped() {
        let c = BoundedCounter::default();
        c.add("a\"b\\c\nd");
        let mut out = String::new();
        c.render(&mut out, "m", "action=\"deny\",", "rule");
        assert_eq!(out, "m{action=\"deny\",rule=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
