//! `upstreams:`, the top-level `upstream:` and a rule's `upstream:`: names checked against
//! the named proxies, URLs parsed, each problem placed. Pure.

use super::super::raw::{Entries, Names, S};
use super::super::{DEFAULT_UPSTREAM, RESERVED_UPSTREAM_NAMES, Upstreams, parse_upstream};
use super::{Checker, join};
use crate::policy::Way;

impl Checker<'_> {
    /// `upstreams:` (name → URL) and the top-level `upstream:` (a URL, or names from
    /// `upstreams` tried in order).
    pub(super) fn upstreams(
        &mut self,
        named: Option<S<Entries>>,
        top: Option<&S<Names>>,
    ) -> Upstreams {
        let mut out = Upstreams::default();
        for (name, url) in named.map(|n| n.value.0).unwrap_or_default() {
            let key = join("upstreams", &name.value);
            let Some(up) = self.parsed(Some(&url), &key, parse_upstream) else {
                continue;
            };
            let checked = self.parsed(Some(&name), "upstreams", |n| {
                if RESERVED_UPSTREAM_NAMES.contains(&n) {
                    return Err(format!("{n:?} is reserved; choose another name"));
                }
                if n.is_empty()
                    || !n
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                {
                    return Err(format!(
                        "{n:?}: a name is letters, digits, '-', '_' and '.'"
                    ));
                }
                Ok(n.to_owned())
            });
            if let Some(n) = checked
                && out.named.insert(n, up).is_some()
            {
                self.issue(name.referenced, "upstreams", "named twice");
            }
        }
        let Some(top) = top else {
            return out;
        };
        match &top.value {
            Names::One(url) if url.contains("://") => {
                let field = S::new(url.clone(), top.referenced, top.defined);
                if let Some(up) = self.parsed(Some(&field), "upstream", parse_upstream) {
                    out.named.insert(DEFAULT_UPSTREAM.to_owned(), up);
                    out.default = vec![DEFAULT_UPSTREAM.to_owned()];
                }
            }
            names => {
                let way = self.names_way(names, top, "upstream", &out);
                match way {
                    Way::Via(names) => out.default = names,
                    Way::Direct | Way::Default => {}
                }
            }
        }
        out
    }

    /// A rule's `upstream:`: `direct`, a name from `upstreams`, or a list of them.
    pub(super) fn rule_way(
        &mut self,
        field: Option<&S<Names>>,
        key: &str,
        upstreams: &Upstreams,
    ) -> Way {
        match field {
            None => Way::Default,
            Some(field) => self.names_way(&field.value, field, key, upstreams),
        }
    }

    pub(super) fn names_way(
        &mut self,
        names: &Names,
        field: &S<Names>,
        key: &str,
        upstreams: &Upstreams,
    ) -> Way {
        let items: Vec<S<String>> = match names {
            Names::One(n) if n == "direct" => return Way::Direct,
            Names::One(n) => vec![S::new(n.clone(), field.referenced, field.defined)],
            Names::Many(list) => list.clone(),
        };
        if items.is_empty() {
            self.issue(field.referenced, key, "empty list; omit the key instead");
        }
        let known = |n: &str| -> Result<String, String> {
            match (n, upstreams.named.contains_key(n)) {
                (_, true) => Ok(n.to_owned()),
                ("direct", false) => Err("`direct` stands alone, not in a list".to_owned()),
                (n, false) if n.contains("://") => Err(format!(
                    "{n:?}: a rule names an upstream; put its URL in `upstreams`"
                )),
                (n, false) => {
                    let names: Vec<&str> = upstreams.named.keys().map(String::as_str).collect();
                    Err(format!(
                        "{n:?} is not one of the `upstreams` ({})",
                        if names.is_empty() {
                            "none defined".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ))
                }
            }
        };
        let names: Vec<String> = items
            .iter()
            .filter_map(|i| self.parsed(Some(i), key, known))
            .collect();
        Way::Via(names)
    }
}
