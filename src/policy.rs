//! The policy: the rule vocabulary ([`rules`]), the host index that makes a decision cost a
//! few hash lookups rather than a scan ([`index`]), address sets searched rather than scanned
//! ([`ipset`]), the rule-list file formats ([`lists`]), the prohibited destination ranges
//! ([`forbidden`]), and the one judge every stage asks ([`judge`]). Pure: no I/O, no DNS.

#[cfg(test)]
mod ech_tests;
mod forbidden;
mod index;
mod ipset;
#[cfg(test)]
mod ja4_tests;
mod judge;
pub mod lists;
mod paths;
#[cfg(test)]
mod request_tests;
mod rules;
#[cfg(test)]
pub(crate) mod tests;

pub use forbidden::is_forbidden_dst;
pub use ipset::IpSet;
pub use judge::{Checks, Decision, Judgement, NeedsDst, Policy, Refusal, Verdict, names_differ};
pub use lists::NameList;
pub use paths::{PathPattern, normalize_path, parse_method};
pub use rules::{
    Action, Facts, HelloFact, HostPattern, PortRange, RequestFact, RuleInfo, RuleMatch, Toggle, Way,
};
