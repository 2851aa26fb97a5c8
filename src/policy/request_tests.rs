//! `methods` and `paths` rules: judged on requests ward reads (plain HTTP, inspected), passed
//! over for tunnels whose requests are never read, provisional for an inspect rule before
//! interception.

use super::tests::{config, facts, host};
use super::*;

const POLICY: &str = "rules:\n\
  - { name: no-delete, action: deny, hosts: [api.test], methods: [DELETE] }\n\
  - { name: no-admin, action: deny, hosts: [api.test], paths: [\"/admin/*\", \"/login\"] }\n\
  - { name: inspect-api, action: inspect, hosts: [api.test] }\n";

fn seen<'a>(method: &'a str, path: &'a str) -> RequestFact<'a> {
    RequestFact::Seen { method, path }
}

/// The action and rule for one request inside an inspected connection to api.test.
fn request(c: &crate::config::Config, method: &str, raw_path: &str) -> (Action, Option<String>) {
    let h = host("api.test");
    let path = normalize_path(raw_path);
    let f = Facts {
        request: seen(method, &path),
        ..facts(&h)
    };
    let j = c.policy.judge_hello(&f).unwrap();
    let rule = c.policy.rule_name(&j.decision).map(str::to_owned);
    (j.action(), rule)
}

#[test]
fn requests_are_judged_by_method_and_path() {
    let c = config(POLICY);
    let inspect = (Action::Inspect, Some("inspect-api".to_owned()));
    assert_eq!(request(&c, "GET", "/api/x"), inspect);
    assert_eq!(
        request(&c, "DELETE", "/api/x").1.as_deref(),
        Some("no-delete")
    );
    for path in [
        "/admin",
        "/admin/users",
        "/login",
        "/x/../admin/",
        "/%61dmin/y",
    ] {
        assert_eq!(request(&c, "GET", path).0, Action::Deny, "{path}");
    }
    for path in ["/administrator", "/login/x", "/"] {
        assert_eq!(request(&c, "GET", path), inspect, "{path}");
    }
    assert_eq!(
        request(&c, "delete", "/").0,
        Action::Inspect,
        "methods are case-sensitive"
    );
}

#[test]
fn a_tunnel_is_never_decided_on_requests_it_will_not_show() {
    let c = config(POLICY);
    let h = host("api.test");
    // Before interception the deny rules on requests cannot refuse yet.
    let j = c.policy.judge_target(&facts(&h)).unwrap();
    assert_eq!(c.policy.rule_name(&j.decision), Some("inspect-api"));
    // An allow rule on requests cannot let a tunnel through: nobody would check them.
    let c = config(
        "rules:\n  - { name: get-only, action: allow, hosts: [api.test], methods: [GET] }\n\
         default: deny\n",
    );
    let j = c.policy.judge_target(&facts(&h)).unwrap();
    assert_eq!(j.decision.rule, None, "passed over: the default decides");
    // Plain HTTP shows its request at once.
    let f = Facts {
        hello: HelloFact::Absent,
        request: seen("GET", "/"),
        ..facts(&h)
    };
    assert_eq!(
        c.policy
            .rule_name(&c.policy.judge_target(&f).unwrap().decision),
        Some("get-only")
    );
}

#[test]
fn an_inspect_rule_on_requests_is_provisional_and_never_matches_bytes_that_are_not_tls() {
    let c = config(
        "rules:\n  - { name: posts, action: inspect, hosts: [api.test], methods: [POST] }\n\
         default: deny\n",
    );
    let h = host("api.test");
    let j = c.policy.judge_target(&facts(&h)).unwrap();
    assert_eq!(j.action(), Action::Inspect);
    assert!(c.policy.provisional(&j), "judged again when no TLS comes");
    let f = Facts {
        hello: HelloFact::Absent,
        request: RequestFact::Absent,
        ..facts(&h)
    };
    assert_eq!(c.policy.judge_hello(&f).unwrap().action(), Action::Deny);
}

#[test]
fn a_refused_request_names_method_path_and_rule() {
    let c = config(POLICY);
    let h = host("api.test");
    let f = Facts {
        request: seen("DELETE", "/items/7"),
        ..facts(&h)
    };
    let j = c.policy.judge_hello(&f).unwrap();
    let err = c.policy.refusal_error(&j, &f).unwrap();
    assert_eq!(err.kind, crate::error::ErrorKind::PolicyDenied);
    assert_eq!(
        err.detail,
        "DELETE /items/7 on api.test:443 denied by rule \"no-delete\""
    );
}
