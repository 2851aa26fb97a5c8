//! The policy: the rule vocabulary ([`rules`]), the host index that makes a decision cost a
//! few hash lookups rather than a scan ([`index`]), the prohibited destination ranges
//! ([`forbidden`]), and the one judge every stage asks ([`judge`]). Pure: no I/O, no DNS.

mod forbidden;
mod index;
#[cfg(test)]
mod ja4_tests;
mod judge;
mod rules;
#[cfg(test)]
pub(crate) mod tests;

pub use forbidden::is_forbidden_dst;
pub use judge::{Checks, Decision, Judgement, NeedsDst, Policy, Refusal, Verdict, names_differ};
pub use rules::{Action, Facts, HelloJa4, HostPattern, PortRange, RuleInfo, RuleMatch, Toggle};
