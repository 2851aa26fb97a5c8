use proptest::prelude::*;

use super::htpasswd::{parse_hash, parse_htpasswd};
use super::*;

/// bcrypt's minimum cost: these tests check formats, not strength.
fn bcrypt_line(user: &str, password: &str) -> String {
    format!("{user}:{}", bcrypt::hash(password, 4).unwrap())
}

fn argon2_hash(password: &str, m: u32, t: u32) -> String {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
    let params = Params::new(m, t, 1, None).unwrap();
    let a = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    a.hash_password_with_salt(password.as_bytes(), b"ward-test-salt16")
        .unwrap()
        .to_string()
}

#[test]
fn bcrypt_and_argon2_lines_load_and_verify() {
    let text = format!(
        "# staff\n{}\n\n{}\r\ncarol:{}\n",
        bcrypt_line("alice", "a-pass"),
        bcrypt_line("bob", "b-pass").replace("$2b$", "$2y$"),
        argon2_hash("c-pass", 1024, 2),
    );
    let parsed = parse_htpasswd(&text);
    assert!(parsed.is_clean(), "{:?}", parsed.issues);
    let lines: Vec<u32> = parsed.users.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [2, 4, 5]);
    let users = Users::new(parsed.users.into_iter().map(|(_, u)| u).collect());
    assert!(users.get("alice").unwrap().secret.verify("a-pass"));
    assert!(!users.get("alice").unwrap().secret.verify("a-pasS"));
    assert!(users.get("bob").unwrap().secret.verify("b-pass"));
    assert!(matches!(
        users.get("carol").unwrap().secret,
        Secret::Argon2(_)
    ));
    assert!(users.get("carol").unwrap().secret.verify("c-pass"));
    assert!(!users.get("carol").unwrap().secret.verify("b-pass"));
    // The weak cost of the test hashes is flagged, line by line.
    let warned: Vec<u32> = parsed.warnings.iter().map(|w| w.line).collect();
    assert_eq!(warned, [2, 4]);
}

#[test]
fn weak_and_unsupported_schemes_are_refused_at_their_line_with_the_reason() {
    let cases = [
        ("u:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "unsalted SHA-1"),
        ("u:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/", "MD5-crypt"),
        ("u:$1$saltsalt$abcdefghijklmnopqrstuv", "MD5-crypt"),
        ("u:rqXexS6ZhobKA", "DES crypt"),
        ("u:$5$rounds=5000$salt$hash", "SHA-crypt"),
        (
            "u:$argon2d$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
            "argon2d",
        ),
        (
            "u:$2x$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui",
            "crypt_blowfish",
        ),
        ("u:hunter2-plain", "plaintext password"),
        ("u:$9$what", "unknown hash scheme"),
        ("u:", "no hash"),
        ("no-colon-here", "no ':'"),
        (
            ":$2y$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui",
            "empty user name",
        ),
        ("u:$2y$05$short", "not a valid bcrypt hash"),
        ("u:$argon2id$v=19$m=1024,t=1,p=1", "no salt or no hash"),
    ];
    for (line, want) in cases {
        let parsed = parse_htpasswd(&format!("ok:{}\n{line}\n", argon2_hash("x", 64, 1)));
        assert_eq!(parsed.users.len(), 1, "{line}");
        assert_eq!(parsed.issues.len(), 1, "{line}");
        assert_eq!(parsed.issues[0].line, 2, "{line}");
        let msg = &parsed.issues[0].message;
        assert!(msg.contains(want), "{line}: {msg}");
        // The rest of a refused line may be a password in clear: never quoted.
        let rest = line.split_once(':').map_or("", |(_, r)| r);
        assert!(rest.len() < 4 || !msg.contains(rest), "{line}: {msg}");
    }
}

#[test]
fn costs_beyond_the_bounds_are_refused() {
    let expensive = bcrypt::hash("x", 4).unwrap().replacen("$04$", "$15$", 1);
    let err = parse_hash(&expensive).unwrap_err();
    assert!(err.contains("bcrypt cost 15"), "{err}");
    let big = argon2_hash("x", 8, 1).replacen("m=8,", "m=1048576,", 1);
    let err = parse_hash(&big).unwrap_err();
    assert!(err.contains("m=1048576"), "{err}");
}

#[test]
fn every_bad_line_is_reported_with_its_number_and_duplicates_name_the_first() {
    let good = bcrypt_line("alice", "a");
    let text = format!("{good}\nbad one\n\n# c\nbob:plain\n{good}\n  \nx:{{SHA}}abc\n");
    let parsed = parse_htpasswd(&text);
    let lines: Vec<u32> = parsed.issues.iter().map(|i| i.line).collect();
    assert_eq!(lines, [2, 5, 6, 8]);
    assert!(
        parsed.issues[2]
            .message
            .contains("already defined on line 1"),
        "{:?}",
        parsed.issues
    );
    assert_eq!(parsed.users.len(), 1);
}

#[test]
fn debug_never_shows_a_secret() {
    let hash = bcrypt::hash("x", 4).unwrap();
    let user = User {
        name: "alice".into(),
        secret: Secret::Bcrypt(hash.clone()),
    };
    let plain = Secret::Plain("pw-in-clear".into());
    let shown = format!("{user:?} {plain:?} {:?}", Users::new(vec![user.clone()]));
    assert!(
        !shown.contains(&hash) && !shown.contains("pw-in-clear"),
        "{shown}"
    );
}

#[test]
fn a_decoy_exists_only_with_a_hashed_user() {
    let plain = User {
        name: "a".into(),
        secret: Secret::Plain("x".into()),
    };
    assert!(Users::new(vec![plain.clone()]).decoy().is_none());
    let hashed = User {
        name: "b".into(),
        secret: Secret::Bcrypt(bcrypt::hash("y", 4).unwrap()),
    };
    assert!(Users::new(vec![plain, hashed]).decoy().is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let parsed = parse_htpasswd(&text);
        for issue in &parsed.issues {
            prop_assert!(issue.line >= 1);
        }
    }

    #[test]
    fn hash_shaped_text_never_panics(
        prefix in prop::sample::select(vec!["$2y$", "$2b$", "$2a$", "$argon2id$", "$argon2i$", "{SHA}", "$apr1$"]),
        rest in "[ -~£]{0,90}",
    ) {
        let _ = parse_htpasswd(&format!("u:{prefix}{rest}\n"));
    }

    #[test]
    fn bad_lines_are_numbered_exactly(bad in prop::collection::vec(any::<bool>(), 1..30)) {
        let text: String = bad
            .iter()
            .map(|b| if *b { "nocolon\n" } else { "# fine\n" })
            .collect();
        let parsed = parse_htpasswd(&text);
        let want: Vec<u32> = (1u32..).zip(&bad).filter(|(_, b)| **b).map(|(i, _)| i).collect();
        let got: Vec<u32> = parsed.issues.iter().map(|i| i.line).collect();
        prop_assert_eq!(got, want);
    }
}
