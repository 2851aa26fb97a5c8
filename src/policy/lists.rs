//! Rule lists kept in their own files (`hosts_file`, `dst_file`, `clients_file`): the pure
//! line parser, and [`NameList`], the compact form a million names are kept in. No I/O: the
//! caller reads the file and places the issues; every bad line is an issue, never skipped.
//!
//! A host list line is one of:
//! - a `hosts` pattern, as in policy.yaml: `a.b`, `*.a.b`, `.a.b`, an IP literal;
//! - a hosts-file line, `0.0.0.0 name...` (also `127.0.0.1`, `::`, `::1`): each exact name;
//! - an adblock line `||name^`: the name and every name under it (adblock's meaning).
//!
//! A network list line is an address or a CIDR range. In both, `#` starts a comment (to the
//! end of the line); in host lists `!` lines and an `[Adblock Plus …]` header are comments too.

use std::net::IpAddr;

use ipnet::IpNet;

use super::rules::HostPattern;
use crate::target::Host;
use crate::tls::Ja4;

/// Past this many bad lines in one file the rest are counted, not listed: a file in the wrong
/// format entirely would otherwise print millions of lines.
pub const MAX_LIST_ISSUES: usize = 1_000;

/// The addresses a hosts-file line may map its names to: the "block" conventions.
const SINKHOLES: [&str; 4] = ["0.0.0.0", "127.0.0.1", "::", "::1"];

/// One bad line of a list file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineIssue {
    /// 1-based line number.
    pub line: u32,
    /// What is wrong, for `FILE:LINE: message`.
    pub message: String,
}

/// What a list file parsed to: its entries, and every bad line (at most `MAX_LIST_ISSUES`
/// listed; `more_issues` counts the rest).
#[derive(Debug, Clone, Default)]
pub struct ListParse<T> {
    /// The good entries, in file order.
    pub entries: T,
    /// The bad lines, in file order.
    pub issues: Vec<LineIssue>,
    /// Bad lines past `MAX_LIST_ISSUES`.
    pub more_issues: usize,
}

impl<T> ListParse<T> {
    fn bad(&mut self, line: usize, message: String) {
        if self.issues.len() < MAX_LIST_ISSUES {
            let line = u32::try_from(line + 1).unwrap_or(u32::MAX);
            self.issues.push(LineIssue { line, message });
        } else {
            self.more_issues += 1;
        }
    }

    /// Whether every line was good.
    pub fn is_clean(&self) -> bool {
        self.issues.is_empty()
    }
}

/// The content of a line without its comment and surrounding blanks; `None` for a blank line.
/// A `#` opens a comment at the start of a line or after a blank, so that adblock's
/// `site##.ad` (element hiding) is refused as a bad line instead of read as `site`.
fn content(line: &str) -> Option<&str> {
    let b = line.as_bytes();
    let hash = (0..b.len()).find(|&i| b[i] == b'#' && (i == 0 || b[i - 1].is_ascii_whitespace()));
    let line = hash.map_or(line, |i| &line[..i]).trim();
    (!line.is_empty()).then_some(line)
}

/// Parses a `hosts_file`.
pub fn parse_host_list(text: &str) -> ListParse<NameList> {
    let mut out = ListParse::<NameList>::default();
    for (n, raw) in text.lines().enumerate() {
        let Some(line) = content(raw) else { continue };
        if line.starts_with('!') || (line.starts_with("[Adblock") && line.ends_with(']')) {
            continue;
        }
        if let Some(rest) = line.strip_prefix("||") {
            match adblock_name(rest) {
                Ok(p) => out.entries.push(&p),
                Err(msg) => out.bad(n, msg),
            }
            continue;
        }
        let mut words = line.split_ascii_whitespace();
        let first = words.next().unwrap_or_default();
        let rest: Vec<&str> = words.collect();
        if rest.is_empty() {
            match HostPattern::parse(first) {
                Ok(p) => out.entries.push(&p),
                Err(msg) => out.bad(n, msg),
            }
            continue;
        }
        if let Err(msg) = hosts_line(first, &rest, &mut out.entries) {
            out.bad(n, msg);
        }
    }
    out.entries.shrink_to_fit();
    out
}

/// `||name^`: adblock's "this domain and its subdomains". Options and paths are refused.
fn adblock_name(rest: &str) -> Result<HostPattern, String> {
    let Some(name) = rest.strip_suffix('^') else {
        return Err(format!(
            "\"||{rest}\": only adblock lines of the form ||name^ are understood"
        ));
    };
    match HostPattern::parse(name)? {
        HostPattern::Exact(x) => Ok(HostPattern::Domain(x)),
        _ => Err(format!("\"||{rest}\": ||name^ takes a plain name")),
    }
}

/// `ADDRESS name...`: each name exactly, when the address is a sinkhole. All or nothing.
fn hosts_line(addr: &str, names: &[&str], list: &mut NameList) -> Result<(), String> {
    if !SINKHOLES.contains(&addr) {
        return Err(match addr.parse::<IpAddr>() {
            Ok(_) => format!(
                "{addr:?}: a hosts-file line must map to one of {} (a block entry); \
                 overrides to real addresses belong in policy.yaml's `hosts`",
                SINKHOLES.join(", ")
            ),
            Err(_) => format!("{addr:?}: one entry per line (a name, or ADDRESS NAME...)"),
        });
    }
    let mut parsed = Vec::with_capacity(names.len());
    for name in names {
        match Host::parse(name).map_err(|e| e.to_string())? {
            Host::Name(n) => parsed.push(HostPattern::Exact(n)),
            // `0.0.0.0 0.0.0.0` is a common hosts-list header line: an IP names no site.
            Host::Ip(ip) => parsed.push(HostPattern::Ip(ip.to_canonical())),
        }
    }
    for p in &parsed {
        list.push(p);
    }
    Ok(())
}

/// Parses a `dst_file` or `clients_file`: one address or CIDR range per line.
pub fn parse_net_list(text: &str) -> ListParse<Vec<IpNet>> {
    let mut out = ListParse::<Vec<IpNet>>::default();
    for (n, raw) in text.lines().enumerate() {
        let Some(line) = content(raw) else { continue };
        match parse_net(line) {
            Ok(net) => out.entries.push(net),
            Err(msg) => out.bad(n, msg),
        }
    }
    out.entries.shrink_to_fit();
    out
}

/// Parses a `ja4_file`: one JA4 fingerprint per line (as the access log's `ja4` shows it), the
/// same parser as an inline `ja4` entry.
pub fn parse_ja4_list(text: &str) -> ListParse<Vec<Ja4>> {
    let mut out = ListParse::<Vec<Ja4>>::default();
    for (n, raw) in text.lines().enumerate() {
        let Some(line) = content(raw) else { continue };
        match Ja4::parse(line) {
            Ok(fp) => out.entries.push(fp),
            Err(msg) => out.bad(n, msg),
        }
    }
    out.entries.shrink_to_fit();
    out
}

/// A CIDR range; a bare address (bracketed or not) means just that address. Host bits are
/// cleared, as `10.1.2.3/8` plainly means `10.0.0.0/8`.
pub fn parse_net(s: &str) -> Result<IpNet, String> {
    let inner = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    if let Ok(ip) = inner.unwrap_or(s).parse::<IpAddr>() {
        return Ok(IpNet::from(ip));
    }
    s.parse::<IpNet>()
        .map(|n| n.trunc())
        .map_err(|_| format!("{s:?} is not a CIDR range (like 10.0.0.0/8 or fc00::/7)"))
}

/// Host patterns packed in one string: a kind byte then the name, per entry. A million
/// names cost their bytes plus 8 each, instead of a `String` (and its allocation) apiece.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameList {
    text: String,
    /// The end of each entry in `text`.
    ends: Vec<usize>,
}

const EXACT: char = '=';
const SUBDOMAINS: char = '*';
const DOMAIN: char = '.';
const IP: char = '@';

impl NameList {
    /// Appends one pattern.
    pub fn push(&mut self, p: &HostPattern) {
        match p {
            HostPattern::Exact(x) => {
                self.text.push(EXACT);
                self.text.push_str(x);
            }
            HostPattern::Subdomains(x) => {
                self.text.push(SUBDOMAINS);
                self.text.push_str(x);
            }
            HostPattern::Domain(x) => {
                self.text.push(DOMAIN);
                self.text.push_str(x);
            }
            HostPattern::Ip(ip) => {
                self.text.push(IP);
                self.text.push_str(&ip.to_string());
            }
        }
        self.ends.push(self.text.len());
    }

    fn shrink_to_fit(&mut self) {
        self.text.shrink_to_fit();
        self.ends.shrink_to_fit();
    }

    /// How many patterns the list holds.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Every pattern, in file order, borrowed.
    pub fn iter(&self) -> impl Iterator<Item = NameEntry<'_>> + '_ {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(self.ends.iter()).map(|(start, &end)| {
            let entry = &self.text[start..end];
            let (kind, name) = entry.split_at(1);
            match kind.chars().next() {
                Some(EXACT) => NameEntry::Exact(name),
                Some(SUBDOMAINS) => NameEntry::Subdomains(name),
                Some(DOMAIN) => NameEntry::Domain(name),
                // Written by `push` from an `IpAddr`, so it parses back.
                _ => NameEntry::Ip(name.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))),
            }
        })
    }

    /// Every pattern, owned (tests and `ward explain`; the index borrows instead).
    pub fn patterns(&self) -> impl Iterator<Item = HostPattern> + '_ {
        self.iter().map(|e| match e {
            NameEntry::Exact(x) => HostPattern::Exact(x.to_owned()),
            NameEntry::Subdomains(x) => HostPattern::Subdomains(x.to_owned()),
            NameEntry::Domain(x) => HostPattern::Domain(x.to_owned()),
            NameEntry::Ip(ip) => HostPattern::Ip(ip),
        })
    }

    /// Whether some pattern matches `host`, by a scan: the reference the index agrees with.
    pub fn matches(&self, host: &Host) -> bool {
        self.patterns().any(|p| p.matches(host))
    }
}

/// One pattern of a [`NameList`], borrowed: the [`HostPattern`] variants without allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameEntry<'a> {
    /// `a.b`.
    Exact(&'a str),
    /// `*.x`.
    Subdomains(&'a str),
    /// `.x`.
    Domain(&'a str),
    /// An IP literal.
    Ip(IpAddr),
}

impl<'a> From<&'a HostPattern> for NameEntry<'a> {
    fn from(p: &'a HostPattern) -> NameEntry<'a> {
        match p {
            HostPattern::Exact(x) => NameEntry::Exact(x),
            HostPattern::Subdomains(x) => NameEntry::Subdomains(x),
            HostPattern::Domain(x) => NameEntry::Domain(x),
            HostPattern::Ip(ip) => NameEntry::Ip(*ip),
        }
    }
}

#[cfg(test)]
mod tests;
