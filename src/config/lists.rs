//! The rule keys that name list files (`hosts_file`, `dst_file`, `clients_file`, `ja4_file`): read each
//! file (relative to the policy file), parse it with [`crate::policy::lists`], and place every
//! bad line as `FILE:LINE: message`. A rule keeps its inline entries and gains the file's.

use std::path::Path;
use std::sync::Arc;

use ipnet::IpNet;

use super::raw::{RawRule, S};
use super::validate::{Checker, join};
use super::{ConfigIssue, ListFile, read_list};
use crate::policy::RuleInfo;
use crate::policy::lists::{LineIssue, ListParse, parse_host_list, parse_ja4_list, parse_net_list};
use crate::tls::Ja4;

impl Checker<'_> {
    /// Adds the entries of the rule's list files to `rule`, recording each file.
    pub(super) fn rule_lists(&mut self, r: &RawRule, prefix: &str, rule: &mut RuleInfo) {
        if let Some(list) =
            self.list_file(r.hosts_file.as_ref(), prefix, "hosts_file", parse_host_list)
        {
            rule.host_lists.push(Arc::new(list));
        }
        let nets = |rule_nets: &mut Vec<IpNet>, got: Option<Vec<IpNet>>| {
            rule_nets.extend(got.unwrap_or_default());
        };
        let dst = self.net_file(r.dst_file.as_ref(), prefix, "dst_file");
        nets(&mut rule.dst, dst);
        let clients = self.net_file(r.clients_file.as_ref(), prefix, "clients_file");
        nets(&mut rule.clients, clients);
        let field = r.ja4_file.as_ref();
        if let Some(fps) = self.list_file(field, prefix, "ja4_file", parse_ja4_list) {
            if fps.is_empty()
                && let Some(f) = field
            {
                let msg = "the file lists no fingerprint; an empty list would match every \
                           ClientHello (remove the key instead)";
                self.issue(f.referenced, &join(prefix, "ja4_file"), msg);
            }
            rule.ja4.extend(fps);
        }
    }

    /// A `dst_file` / `clients_file`; an empty one is refused, because a rule with no
    /// addresses in that field would read as "any address".
    fn net_file(
        &mut self,
        field: Option<&S<String>>,
        prefix: &str,
        key: &str,
    ) -> Option<Vec<IpNet>> {
        let nets = self.list_file(field, prefix, key, parse_net_list)?;
        if nets.is_empty()
            && let Some(f) = field
        {
            let msg = "the file lists no address; an empty list would match every address \
                       (remove the key instead)";
            self.issue(f.referenced, &join(prefix, key), msg);
            return None;
        }
        Some(nets)
    }

    /// Reads and parses one list file; `None` (with the issues recorded) when it is bad.
    fn list_file<T: Len>(
        &mut self,
        field: Option<&S<String>>,
        prefix: &str,
        key: &str,
        parse: fn(&str) -> ListParse<T>,
    ) -> Option<T> {
        let key = join(prefix, key);
        let path = self.path(field, &key)?;
        let text = match read_list(&path) {
            Ok(t) => t,
            Err(msg) => {
                let at = field.map(|f| f.referenced)?;
                self.issue(at, &key, msg);
                return None;
            }
        };
        let parsed = parse(&text);
        drop(text);
        if !parsed.is_clean() {
            self.line_issues(&path, &parsed.issues, parsed.more_issues);
            return None;
        }
        self.lists.push(ListFile {
            path,
            key,
            entries: parsed.entries.len(),
        });
        Some(parsed.entries)
    }

    fn line_issues(&mut self, path: &Path, issues: &[LineIssue], more: usize) {
        let at = |line, message| ConfigIssue {
            file: path.to_path_buf(),
            line,
            column: 0,
            key: String::new(),
            message,
        };
        self.issues
            .extend(issues.iter().map(|i| at(i.line, i.message.clone())));
        if more > 0 {
            self.issues
                .push(at(0, format!("{more} more bad lines not listed")));
        }
    }
}

/// The entry count of a parsed list, for `ward check`.
trait Len {
    fn len(&self) -> usize;
}

impl Len for crate::policy::NameList {
    fn len(&self) -> usize {
        crate::policy::NameList::len(self)
    }
}

impl Len for Vec<IpNet> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

impl Len for Vec<Ja4> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
}

#[cfg(test)]
mod tests;
