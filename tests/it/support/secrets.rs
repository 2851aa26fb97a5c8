//! The secret values the integration tests send, in one place, and the scan that proves none
//! reaches a log: every ward process the harness starts ([`super::Ward`], `ward_cli`) has its
//! stdout and stderr searched for each of them when it ends, and the test fails if one is
//! there. Each value is long and marked `SECRET` so that it cannot turn up by chance (a
//! password such as `pw` would match any log). A test that sends a secret takes it from here.

use std::sync::OnceLock;

use base64::Engine as _;

/// alice's proxy password.
pub const PASSWORD: &str = "pw-SECRET-alice-3f7a";
/// bob's proxy password.
pub const PASSWORD_BOB: &str = "pw-SECRET-bob-81c2";
/// A password that is nobody's: what a client gets a 407 for.
pub const WRONG_PASSWORD: &str = "pw-SECRET-wrong-5d0e";
/// The password ward presents to an upstream proxy.
pub const UPSTREAM_PASSWORD: &str = "pw-SECRET-upstream-a4b9";
/// An `Authorization: Bearer` token sent to origins through ward.
pub const BEARER: &str = "tok-SECRET-bearer-77c1";
/// A `Cookie` value sent to origins through ward.
pub const COOKIE: &str = "ck-SECRET-cookie-2e6f";
/// The admin endpoint's bearer token (`admin_token`; at least 16 characters).
pub const ADMIN_TOKEN: &str = "adm-SECRET-token-0123456789abcdef";

/// The user names the tests pair with the passwords above, for the Basic tokens.
const USERS: [&str; 4] = ["alice", "bob", "carol", "u"];
const PASSWORDS: [&str; 4] = [PASSWORD, PASSWORD_BOB, WRONG_PASSWORD, UPSTREAM_PASSWORD];

/// Every value no log may hold: the secrets, and the Basic tokens (`base64(user:password)`)
/// a client sends them in.
pub fn known() -> &'static [String] {
    static ALL: OnceLock<Vec<String>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all: Vec<String> = [PASSWORDS.as_slice(), &[BEARER, COOKIE, ADMIN_TOKEN]]
            .concat()
            .into_iter()
            .map(str::to_owned)
            .collect();
        for user in USERS {
            for password in PASSWORDS {
                all.push(basic_token(user, password));
            }
        }
        all
    })
}

/// `users:` with alice and [`PASSWORD`], the inline user most tests need.
pub fn alice_inline() -> String {
    format!("[{{name: alice, password: \"{PASSWORD}\"}}]")
}

/// `base64(user:password)`, as HTTP Basic sends it.
pub fn basic_token(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// The first known secret in `text` with the line it is on, if any.
pub fn find_in(text: &str) -> Option<(&'static str, &str)> {
    let all = known();
    text.lines().find_map(|line| {
        all.iter()
            .find(|s| line.contains(s.as_str()))
            .map(|s| (s.as_str(), line))
    })
}

/// Fails the test when `text` (what a ward process wrote to `stream`) holds a known secret.
/// Called while unwinding from another failure it stays quiet: that failure is the story.
pub fn assert_none_in(text: &str, stream: &str) {
    if std::thread::panicking() {
        return;
    }
    if let Some((secret, line)) = find_in(text) {
        panic!("ward's {stream} holds the secret {secret:?}; never log it:\n{line}");
    }
}

#[test]
fn the_scan_finds_each_secret_and_its_basic_token_and_nothing_else() {
    assert_eq!(
        find_in("policy reloaded\nuser=alice password=<redacted>"),
        None
    );
    for secret in known() {
        let log = format!("{{\"a\":1}}\nx {secret} y\n");
        assert_eq!(find_in(&log).map(|(s, _)| s), Some(secret.as_str()));
    }
    let header = format!(
        "Proxy-Authorization: Basic {}",
        basic_token("alice", PASSWORD)
    );
    assert!(find_in(&header).is_some());
}
