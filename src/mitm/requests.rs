//! Each request inside an interception, judged: the connection's facts (client, user, host,
//! SNI, JA4, ECH, address) with the request's method and path, by the one judge, so a `methods` or
//! `paths` rule refuses one request (403, the rule in Proxy-Status) and relays the next. A
//! policy that names no request is not asked again: the connection's rule stands.

use std::net::IpAddr;
use std::sync::Arc;

use crate::config::Config;
use crate::error::ProxyError;
use crate::policy::{Facts, HelloFact, RequestFact, normalize_path};
use crate::request::Request;
use crate::target::Host;
use crate::tls::{ClientHelloFacts, Ja4};

/// The facts an intercepted connection gives every request on it.
#[derive(Debug, Clone)]
pub struct RequestJudge {
    config: Arc<Config>,
    host: Host,
    port: u16,
    client: IpAddr,
    user: Option<String>,
    dst: Option<IpAddr>,
    sni: Option<Host>,
    ja4: Ja4,
    ech: bool,
}

impl RequestJudge {
    /// The judge for the requests of `req`'s connection; `None` when no rule of the policy
    /// judges requests, so nothing would change per request.
    pub fn new(
        config: &Arc<Config>,
        req: &Request,
        dst: Option<IpAddr>,
        hello: &ClientHelloFacts,
    ) -> Option<RequestJudge> {
        config.policy.judges_requests().then(|| RequestJudge {
            config: config.clone(),
            host: req.target.host.clone(),
            port: req.target.port,
            client: req.client.ip(),
            user: req.user.clone(),
            dst,
            sni: hello.sni.clone(),
            ja4: hello.ja4,
            ech: hello.ech.offered(),
        })
    }

    /// The rule that decides the request `method path` (`None`: the default), with the
    /// refusal it is answered with when it is refused.
    pub fn judge(&self, method: &str, path: &str) -> (Option<String>, Option<ProxyError>) {
        let policy = &self.config.policy;
        let path = normalize_path(path);
        let facts = Facts {
            host: Some(&self.host),
            port: self.port,
            client: self.client,
            user: self.user.as_deref(),
            dst: self.dst,
            sni: self.sni.as_ref(),
            hello: HelloFact::Seen {
                ja4: Some(&self.ja4),
                ech: self.ech,
            },
            request: RequestFact::Seen {
                method,
                path: &path,
            },
        };
        let judgement = match policy.judge_hello(&facts) {
            Ok(j) => j,
            Err(needs) => {
                let err = policy.needs_dst_error(needs, &format!("{method} {path}"));
                return (Some(policy.rule(needs.rule).name.clone()), Some(err));
            }
        };
        let rule = policy.rule_name(&judgement.decision).map(str::to_owned);
        (rule, policy.refusal_error(&judgement, &facts))
    }
}
