//! `admin`, `admin_token`, `admin_token_file`, `admin_public_metrics`.

use std::path::Path;

use super::*;

const TOKEN: &str = "s3cret-admin-token-0123456789";

fn issues(text: &str, source: &Path) -> Vec<ConfigIssue> {
    match parse(text, source) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.errors,
    }
}

#[test]
fn an_admin_beyond_loopback_needs_a_token() {
    let text = "listen: [\"127.0.0.1:8080\"]\nadmin: 0.0.0.0:9090\n";
    let errors = issues(text, Path::new("policy.yaml"));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    let e = &errors[0];
    assert_eq!((e.line, e.key.as_str()), (2, "admin"));
    assert!(e.message.contains("`admin_token`"), "{}", e.message);
    for addr in ["127.0.0.1:9090", "[::1]:9090", "[::ffff:127.0.0.1]:9090"] {
        let c = parse(&format!("admin: \"{addr}\"\n"), Path::new("p.yaml")).unwrap();
        assert!(c.admin_token.is_none() && !c.admin_public_metrics);
    }
    assert_eq!(
        issues("admin: \"[::]:9090\"\n", Path::new("p.yaml"))[0].key,
        "admin"
    );
}

#[test]
fn an_inline_token_is_kept_and_never_shown() {
    let text = format!("admin: 0.0.0.0:9090\nadmin_token: {TOKEN}\nadmin_public_metrics: true\n");
    let c = parse(&text, Path::new("policy.yaml")).unwrap_or_else(|e| panic!("{e}"));
    let token = c.admin_token.as_ref().expect("token");
    assert!(token.matches(TOKEN.as_bytes()));
    assert!(c.admin_public_metrics);
    let shown = format!("{c:?}\n{}", c.summary());
    assert!(!shown.contains(TOKEN), "the token leaks: {shown}");
}

#[test]
fn a_token_file_is_relative_to_the_policy_and_loses_its_newline() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("secrets")).unwrap();
    std::fs::write(dir.path().join("secrets/admin"), format!("{TOKEN}\n")).unwrap();
    let source = dir.path().join("policy.yaml");
    let text = "admin: 0.0.0.0:9090\nadmin_token_file: secrets/admin\n";
    let c = parse(text, &source).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.admin_token.expect("token").matches(TOKEN.as_bytes()));

    let missing = issues("admin: 0.0.0.0:9090\nadmin_token_file: nope\n", &source);
    assert_eq!(missing.len(), 1, "{missing:#?}");
    assert_eq!(
        (missing[0].line, missing[0].key.as_str()),
        (2, "admin_token_file")
    );
    assert!(missing[0].message.contains("cannot read"), "{missing:#?}");

    std::fs::write(dir.path().join("secrets/short"), "tiny-secret\n").unwrap();
    let short = issues(
        "admin: 0.0.0.0:9090\nadmin_token_file: secrets/short\n",
        &source,
    );
    assert_eq!(short.len(), 1, "{short:#?}");
    assert!(short[0].message.contains("fewer than 16"), "{short:#?}");
    assert!(!short[0].message.contains("tiny-secret"), "{short:#?}");
}

#[test]
fn bad_token_settings_are_placed() {
    let both = format!("admin: 127.0.0.1:9090\nadmin_token: {TOKEN}\nadmin_token_file: t\n");
    let e = issues(&both, Path::new("p.yaml"));
    assert_eq!(
        (e.len(), e[0].line, e[0].key.as_str()),
        (1, 3, "admin_token_file")
    );
    let short = "admin: 0.0.0.0:9090\nadmin_token: short-one\n";
    let e = issues(short, Path::new("p.yaml"));
    assert_eq!((e.len(), e[0].key.as_str()), (1, "admin_token"), "{e:#?}");
    assert!(!e[0].message.contains("short-one"));
    let alone = format!("admin_token: {TOKEN}\nadmin_public_metrics: true\n");
    let e = issues(&alone, Path::new("p.yaml"));
    let keys: Vec<_> = e.iter().map(|i| i.key.as_str()).collect();
    assert_eq!(keys, ["admin_token", "admin_public_metrics"]);
    let flag = "admin: 127.0.0.1:9090\nadmin_public_metrics: yes\n";
    assert_eq!(
        issues(flag, Path::new("p.yaml"))[0].key,
        "admin_public_metrics"
    );
}
