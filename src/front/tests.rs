use super::*;

fn users() -> Vec<Credentials> {
    vec![Credentials {
        user: "alice".into(),
        password: "s3cret".into(),
    }]
}

#[test]
fn authentication() {
    let c = |u: &str, p: &str| Credentials {
        user: u.into(),
        password: p.into(),
    };
    assert_eq!(authenticate(&[], None).unwrap(), None);
    assert_eq!(
        authenticate(&users(), Some(&c("alice", "s3cret"))).unwrap(),
        Some("alice".into())
    );
    let kind = |r: Result<_, ProxyError>| r.unwrap_err().kind;
    assert_eq!(kind(authenticate(&users(), None)), ErrorKind::AuthRequired);
    assert_eq!(
        kind(authenticate(&users(), Some(&c("alice", "s3cre")))),
        ErrorKind::AuthRequired
    );
    assert_eq!(
        kind(authenticate(&users(), Some(&c("bob", "s3cret")))),
        ErrorKind::AuthRequired
    );
}
