//! `rules:`: each rule's keys checked and compiled into a [`RuleInfo`], names unique, lists
//! (inline and from files) parsed, every problem placed. Pure apart from reading list files.

use std::collections::HashMap;

use super::super::Upstreams;
use super::super::raw::{RawRule, S};
use super::super::values::{parse_action, parse_bool, parse_net};
use super::{Checker, MAX_RULES, join};
use crate::policy::{HostPattern, PathPattern, PortRange, RuleInfo, parse_method};
use crate::tls::Ja4;
use crate::users::Users;

impl Checker<'_> {
    pub(super) fn rules(
        &mut self,
        list: S<Vec<S<RawRule>>>,
        users: &Users,
        upstreams: &Upstreams,
    ) -> Vec<RuleInfo> {
        if list.value.len() > MAX_RULES {
            self.issue(
                list.referenced,
                "rules",
                format!("more than {MAX_RULES} rules"),
            );
            return Vec::new();
        }
        let mut names: HashMap<String, u64> = HashMap::new();
        let mut out = Vec::with_capacity(list.value.len());
        for (i, raw) in list.value.iter().enumerate() {
            let prefix = format!("rules[{i}]");
            if let Some(mut rule) = self.rule(raw, &prefix, users, &mut names) {
                let key = join(&prefix, "upstream");
                rule.upstream = self.rule_way(raw.value.upstream.as_ref(), &key, upstreams);
                out.push(rule);
            }
        }
        out
    }

    /// One rule; `names` holds the names seen so far, with their lines.
    pub(super) fn rule(
        &mut self,
        raw: &S<RawRule>,
        prefix: &str,
        users: &Users,
        names: &mut HashMap<String, u64>,
    ) -> Option<RuleInfo> {
        let r = &raw.value;
        self.unknown(prefix, &r.unknown, RawRule::KEYS);
        let name_key = join(prefix, "name");
        let name = self.parsed(r.name.as_ref(), &name_key, |s| match s {
            "" => Err("empty rule name".to_owned()),
            s => match names.insert(s.to_owned(), raw.referenced.line()) {
                Some(line) => Err(format!("rule name {s:?} is already used on line {line}")),
                None => Ok(s.to_owned()),
            },
        });
        if r.name.is_none() {
            self.issue(
                raw.referenced,
                &name_key,
                "missing: every rule needs a name",
            );
        }
        let action = self.parsed(r.action.as_ref(), &join(prefix, "action"), parse_action);
        if r.action.is_none() {
            let msg = "missing: allow, deny or inspect";
            self.issue(raw.referenced, &join(prefix, "action"), msg);
        }
        let user_known = |s: &str| match users.get(s).is_some() {
            true => Ok(s.to_owned()),
            false => Err(format!("{s:?} is not one of the configured `users`")),
        };
        let mut rule = RuleInfo {
            line: u32::try_from(raw.referenced.line()).unwrap_or(u32::MAX),
            hosts: self.list(r.hosts.as_ref(), &join(prefix, "hosts"), HostPattern::parse),
            ports: self.list(r.ports.as_ref(), &join(prefix, "ports"), PortRange::parse),
            clients: self.list(r.clients.as_ref(), &join(prefix, "clients"), parse_net),
            users: self.list(r.users.as_ref(), &join(prefix, "users"), user_known),
            dst: self.list(r.dst.as_ref(), &join(prefix, "dst"), parse_net),
            ja4: self.list(r.ja4.as_ref(), &join(prefix, "ja4"), Ja4::parse),
            ech: self.parsed(r.ech.as_ref(), &join(prefix, "ech"), parse_bool),
            methods: self.list(r.methods.as_ref(), &join(prefix, "methods"), parse_method),
            paths: self.list(r.paths.as_ref(), &join(prefix, "paths"), PathPattern::parse),
            ..RuleInfo::new(name?, action?)
        };
        self.rule_lists(r, prefix, &mut rule);
        Some(rule)
    }
}
