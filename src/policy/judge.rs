//! The one judge: which rule decides (`decide`, first match wins), then the checks that can
//! still refuse what the rule allowed (a prohibited destination address, an SNI that names
//! another site). The proxy, interception and `ward explain` all ask here, so they cannot
//! disagree. Pure: no I/O and no DNS; when a rule needs the resolved address it says so.
//!
//! A connection is judged in the order it reveals its facts: the target before DNS
//! ([`Policy::judge_target`]), each resolved address ([`Policy::judge_address`], which cannot
//! answer "needs the address"), then the ClientHello's SNI and JA4 ([`Policy::judge_hello`]).

use std::net::IpAddr;

use super::forbidden::is_forbidden_dst;
use super::index::HostIndex;
use super::rules::{Action, Facts, RequestFact, RuleInfo, RuleMatch, RuleNets, Toggle};
use crate::error::{ErrorKind, ProxyError};
use crate::target::{Host, Target};

/// What the rules decided, and which rule decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The deciding rule's action, or the default action.
    pub action: Action,
    /// Index into the rules; `None` means the default action.
    pub rule: Option<usize>,
}

/// What [`Policy::decide`] says about a set of facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A rule (or the default) decided.
    Decided(Decision),
    /// The first rule that could match has `dst` and the address is unknown: resolve, then
    /// decide again with `dst` set.
    NeedsDst,
}

/// The judge cannot answer before the destination address is known: `rule` has `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeedsDst {
    /// The rule that matches on the resolved address.
    pub rule: usize,
}

/// Why a connection the rules would let through is refused anyway, or that a rule refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The deciding rule (or the default) says `deny`.
    Rule,
    /// The address is internal and the deciding rule's `dst` does not name it.
    ProhibitedDst(IpAddr),
    /// The SNI names another site than the requested host, and `sni_mismatch: deny`.
    SniMismatch,
}

/// The judge's answer for one stage of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Judgement {
    /// What the rules decided.
    pub decision: Decision,
    /// Set when the connection is refused, with the reason.
    pub refusal: Option<Refusal>,
    /// The SNI and the requested host name different sites (refused or not).
    pub sni_mismatch: bool,
}

impl Judgement {
    /// What happens to the connection: the rule's action, or `Deny` when refused.
    pub fn action(&self) -> Action {
        match self.refusal {
            Some(_) => Action::Deny,
            None => self.decision.action,
        }
    }
}

/// The checks beyond the rules, from policy.yaml's top level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checks {
    /// Tunnels whose client bytes are not TLS.
    pub non_tls: Toggle,
    /// A ClientHello whose SNI names another site than the requested host.
    pub sni_mismatch: Toggle,
}

impl Default for Checks {
    fn default() -> Self {
        Checks {
            non_tls: Toggle::Allow,
            sni_mismatch: Toggle::Allow,
        }
    }
}

/// The compiled rule set, the default action and the checks.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<RuleInfo>,
    default: Action,
    index: HostIndex,
    /// `nets[i]` is rule i's `clients` and `dst`, compiled.
    nets: Vec<RuleNets>,
    checks: Checks,
    /// Some rule names `methods` or `paths`: requests are judged one by one.
    judges_requests: bool,
}

impl Policy {
    /// Compiles `rules` (first match wins) with the default checks.
    pub fn new(mut rules: Vec<RuleInfo>, default: Action) -> Policy {
        for r in &mut rules {
            // Sorted, a fingerprint is found by bisection: a `ja4_file` may hold thousands.
            r.ja4.sort_unstable();
            r.ja4.dedup();
        }
        let index = HostIndex::build(&rules);
        let nets = rules.iter().map(RuleNets::of).collect();
        let judges_requests = rules.iter().any(RuleInfo::names_requests);
        Policy {
            judges_requests,
            rules,
            default,
            index,
            nets,
            checks: Checks::default(),
        }
    }

    /// The same policy with these checks.
    pub fn with_checks(self, checks: Checks) -> Policy {
        Policy { checks, ..self }
    }

    /// The checks beyond the rules.
    pub fn checks(&self) -> Checks {
        self.checks
    }

    /// First match wins, over the rules whose hosts match, in file order.
    pub fn decide(&self, f: &Facts) -> Verdict {
        match self.first_match(f) {
            Some((_, RuleMatch::NeedsDst)) => Verdict::NeedsDst,
            Some((i, _)) => Verdict::Decided(Decision {
                action: self.rules[i].action,
                rule: Some(i),
            }),
            None => Verdict::Decided(Decision {
                action: self.default,
                rule: None,
            }),
        }
    }

    /// The rule that made `decide` answer `NeedsDst`, if it did.
    pub fn rule_needing_dst(&self, f: &Facts) -> Option<usize> {
        match self.first_match(f) {
            Some((i, RuleMatch::NeedsDst)) => Some(i),
            _ => None,
        }
    }

    /// The first candidate, in rule order, that matches or could match once `dst` is known.
    fn first_match(&self, f: &Facts) -> Option<(usize, RuleMatch)> {
        let mut candidates = self.index.candidates(f.effective_host());
        while let Some(i) = candidates.next_index() {
            match self.rules[i].matches_rest(f, Some(&self.nets[i])) {
                RuleMatch::No => {}
                m => return Some((i, m)),
            }
        }
        None
    }

    fn judged(&self, f: &Facts) -> Result<Decision, NeedsDst> {
        match self.decide(f) {
            Verdict::Decided(d) => Ok(d),
            Verdict::NeedsDst => Err(NeedsDst {
                rule: self.rule_needing_dst(f).unwrap_or_default(),
            }),
        }
    }

    /// The requested target, before DNS: `f.sni` is ignored; `f.dst` is usually unknown.
    pub fn judge_target(&self, f: &Facts) -> Result<Judgement, NeedsDst> {
        let f = Facts { sni: None, ..*f };
        let decision = self.judged(&f)?;
        Ok(self.refuse_dst(decision, f.dst))
    }

    /// One address the target resolved to (or its IP literal). Knowing the address, the rules
    /// always decide.
    pub fn judge_address(&self, f: &Facts, dst: IpAddr) -> Judgement {
        let f = Facts {
            sni: None,
            dst: Some(dst),
            ..*f
        };
        let decision = match self.decide(&f) {
            Verdict::Decided(d) => d,
            // `decide` asks for the address only when `dst` is unknown, and here it is known.
            Verdict::NeedsDst => unreachable!("decide needs dst although dst is known"),
        };
        self.refuse_dst(decision, Some(dst))
    }

    /// The ClientHello, after the target passed: the rules again with its SNI (if any) as the
    /// host (unless it is ECH's public name: [`Facts::hello_sni`]) and its JA4 and ECH
    /// (`f.hello`, [`super::HelloFact::Seen`]; `Absent` for a tunnel that carries no TLS),
    /// then `sni_mismatch`. `f.dst` is the address the tunnel was dialled
    /// to, if ward knows it (not through an upstream proxy).
    pub fn judge_hello(&self, f: &Facts) -> Result<Judgement, NeedsDst> {
        let decision = self.judged(f)?;
        let mismatch = f
            .host
            .zip(f.hello_sni())
            .is_some_and(|(asked, sni)| names_differ(asked, sni));
        // The hello may pick another rule than the address stage did: an internal address
        // must still be named by the `dst` of the rule that lets it through now.
        let prohibited = f
            .dst
            .filter(|ip| is_forbidden_dst(*ip) && !self.permits_dst(&decision, *ip));
        let refusal = if decision.action == Action::Deny {
            Some(Refusal::Rule)
        } else if let Some(ip) = prohibited {
            Some(Refusal::ProhibitedDst(ip))
        } else if mismatch && self.checks.sni_mismatch == Toggle::Deny {
            Some(Refusal::SniMismatch)
        } else {
            None
        };
        Ok(Judgement {
            decision,
            refusal,
            sni_mismatch: mismatch,
        })
    }

    /// Whether a judgement made before the ClientHello is provisional: its rule names
    /// fingerprints, so a tunnel that turns out to carry no ClientHello is judged again.
    pub fn provisional(&self, j: &Judgement) -> bool {
        j.decision.rule.is_some_and(|i| self.rules[i].needs_hello())
    }

    /// A tunnel whose first bytes are not TLS (`why`): refused under `non_tls: deny`.
    pub fn judge_non_tls(&self, target: &Target, why: &str) -> Result<(), ProxyError> {
        match self.checks.non_tls {
            Toggle::Allow => Ok(()),
            Toggle::Deny => Err(ProxyError::client(
                ErrorKind::NonTlsDenied,
                format!("tunnel to {target} carries no TLS ({why}); non_tls: deny"),
            )),
        }
    }

    /// Whether a request inside an inspected connection for `inner` (Host / `:authority`) is
    /// refused on a TLS connection for `sni`: the same `sni_mismatch` as the tunnel's SNI.
    pub fn refuses_inner_host(&self, inner: &Host, sni: &Host) -> bool {
        self.checks.sni_mismatch == Toggle::Deny && names_differ(inner, sni)
    }

    /// The rule says allow or inspect; an internal address must still be named by its `dst`.
    fn refuse_dst(&self, decision: Decision, dst: Option<IpAddr>) -> Judgement {
        let refusal = if decision.action == Action::Deny {
            Some(Refusal::Rule)
        } else {
            dst.filter(|ip| is_forbidden_dst(*ip) && !self.permits_dst(&decision, *ip))
                .map(Refusal::ProhibitedDst)
        };
        Judgement {
            decision,
            refusal,
            sni_mismatch: false,
        }
    }

    /// The error a refused judgement answers the client with; `None` when it was not refused.
    /// `f` is the facts it was judged on: with an SNI, the refusal came after the ClientHello.
    pub fn refusal_error(&self, j: &Judgement, f: &Facts) -> Option<ProxyError> {
        let target = Target {
            host: f.host.cloned().unwrap_or(Host::Ip(f.client)),
            port: f.port,
        };
        let err = match (j.refusal?, f.hello_sni()) {
            (Refusal::Rule, _) if let RequestFact::Seen { method, path } = f.request => {
                ProxyError::local(
                    ErrorKind::PolicyDenied,
                    format!(
                        "{method} {path} on {target} denied by {}",
                        self.by(&j.decision)
                    ),
                )
            }
            (Refusal::Rule, Some(sni)) => ProxyError::local(
                ErrorKind::SniDenied,
                format!("SNI {sni} denied by {}", self.by(&j.decision)),
            ),
            (Refusal::Rule, None) => {
                let what = match f.dst {
                    Some(ip) => format!("{target} ({ip})"),
                    None => target.to_string(),
                };
                ProxyError::local(
                    ErrorKind::PolicyDenied,
                    format!("{what} denied by {}", self.by(&j.decision)),
                )
            }
            (Refusal::ProhibitedDst(ip), _) => ProxyError::local(
                ErrorKind::DestinationProhibited,
                format!(
                    "{target} resolves to {ip}, a prohibited address (allow it with a rule's dst)"
                ),
            ),
            (Refusal::SniMismatch, sni) => ProxyError::client(
                ErrorKind::SniMismatch,
                format!(
                    "CONNECT {target} but SNI {}; sni_mismatch: deny",
                    sni.map_or("-".to_owned(), Host::to_string)
                ),
            ),
        };
        Some(err)
    }

    /// The error for a stage the judge could not answer: the address it needs is hidden.
    pub fn needs_dst_error(&self, needs: NeedsDst, what: &str) -> ProxyError {
        ProxyError::local(
            ErrorKind::PolicyDenied,
            format!(
                "{what}: rule \"{}\" needs the destination address, which an upstream proxy hides",
                self.rule(needs.rule).name
            ),
        )
    }

    fn by(&self, d: &Decision) -> String {
        match d.rule {
            Some(i) => format!("rule \"{}\"", self.rules[i].name),
            None => "the default action".to_owned(),
        }
    }

    /// The name of the rule behind a decision, for the access record.
    pub fn rule_name(&self, d: &Decision) -> Option<&str> {
        d.rule.map(|i| self.rules[i].name.as_str())
    }

    /// Rule `i` (an index from a [`Decision`]).
    pub fn rule(&self, i: usize) -> &RuleInfo {
        &self.rules[i]
    }

    /// Every rule, in file order.
    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    /// How many rules there are.
    pub fn rules_len(&self) -> usize {
        self.rules.len()
    }

    /// The action when no rule matches.
    pub fn default_action(&self) -> Action {
        self.default
    }

    /// Whether some rule names `methods` or `paths`, so each request must be judged on its own.
    /// Known at compile time of the policy: asking costs nothing per connection.
    pub fn judges_requests(&self) -> bool {
        self.judges_requests
    }

    /// Whether any connection could be inspected (and so needs the CA and the interceptor).
    pub fn inspects_anything(&self) -> bool {
        self.default == Action::Inspect || self.rules.iter().any(|r| r.action == Action::Inspect)
    }

    /// Whether a forbidden destination is allowed anyway: the deciding rule is an allow or
    /// inspect rule whose `dst` names the address explicitly.
    pub fn permits_dst(&self, d: &Decision, ip: IpAddr) -> bool {
        let Some(i) = d.rule.filter(|&i| i < self.rules.len()) else {
            return false;
        };
        self.rules[i].action != Action::Deny && self.nets[i].dst.contains(ip)
    }
}

/// Whether two hosts name different sites: names compare normalised; an IP literal has no
/// name, so it never differs from one.
pub fn names_differ(a: &Host, b: &Host) -> bool {
    matches!((a, b), (Host::Name(a), Host::Name(b)) if a != b)
}
