//! The `users_file` format: Apache's htpasswd, one `user:hash` per line, restricted to the
//! hashes that are slow to guess (bcrypt, argon2). Every other scheme htpasswd can write is
//! refused at its line with the reason. Pure; a message never quotes a hash or a password,
//! since a "hash" that is not one may be a password in clear.

use std::collections::HashMap;
use std::str::FromStr;

use super::{
    MAX_ARGON2_LANES, MAX_ARGON2_MEMORY_KIB, MAX_ARGON2_PASSES, MAX_BCRYPT_COST, Secret, User,
    WEAK_BCRYPT_COST,
};
use crate::policy::lists::{LineIssue, MAX_LIST_ISSUES};

/// RFC 1929 carries a user name in one length byte.
pub const MAX_NAME_LEN: usize = 255;

/// How to make a good line, for the messages that refuse a bad one.
const HOW: &str = "make one with `htpasswd -nB USER` or `ward passwd USER`";

/// What a users file parsed to.
#[derive(Debug, Default)]
pub struct HtpasswdParse {
    /// The users, each with its 1-based line, in file order.
    pub users: Vec<(u32, User)>,
    /// The bad lines (at most [`MAX_LIST_ISSUES`]), in file order.
    pub issues: Vec<LineIssue>,
    /// Bad lines past [`MAX_LIST_ISSUES`].
    pub more_issues: usize,
    /// Lines that load but deserve attention (a weak bcrypt cost).
    pub warnings: Vec<LineIssue>,
}

impl HtpasswdParse {
    fn bad(&mut self, line: u32, message: String) {
        if self.issues.len() < MAX_LIST_ISSUES {
            self.issues.push(LineIssue { line, message });
        } else {
            self.more_issues += 1;
        }
    }

    /// Whether every line was good.
    pub fn is_clean(&self) -> bool {
        self.issues.is_empty() && self.more_issues == 0
    }
}

/// Parses a users file. Blank lines and lines starting with `#` are skipped (htpasswd never
/// writes them, but a hand-kept file wants comments).
pub fn parse_htpasswd(text: &str) -> HtpasswdParse {
    let mut out = HtpasswdParse::default();
    let mut seen: HashMap<&str, u32> = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let content = raw.trim_end();
        if content.trim_start().is_empty() || content.trim_start().starts_with('#') {
            continue;
        }
        let Some((name, hash)) = content.split_once(':') else {
            out.bad(line, format!("expected `user:hash`, found no ':'; {HOW}"));
            continue;
        };
        if let Err(msg) = check_name(name) {
            out.bad(line, msg);
            continue;
        }
        let (secret, warning) = match parse_hash(hash) {
            Ok(ok) => ok,
            Err(msg) => {
                out.bad(line, format!("user {name:?}: {msg}"));
                continue;
            }
        };
        if let Some(first) = seen.get(name) {
            out.bad(
                line,
                format!("user {name:?} is already defined on line {first}"),
            );
            continue;
        }
        seen.insert(name, line);
        if let Some(w) = warning {
            let message = format!("user {name:?}: {w}");
            out.warnings.push(LineIssue { line, message });
        }
        let user = User {
            name: name.to_owned(),
            secret,
        };
        out.users.push((line, user));
    }
    out
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty user name before ':'".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("user name longer than {MAX_NAME_LEN} bytes"));
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!(
            "user name {name:?} holds a blank or a control character"
        ));
    }
    Ok(())
}

/// The hash of one line, or why it is refused; with a warning when it loads but is weak.
pub fn parse_hash(hash: &str) -> Result<(Secret, Option<String>), String> {
    if hash.is_empty() {
        return Err(format!("no hash after ':'; {HOW}"));
    }
    for prefix in ["$2y$", "$2b$", "$2a$"] {
        if hash.starts_with(prefix) {
            return bcrypt_hash(hash);
        }
    }
    if hash.starts_with("$argon2id$") || hash.starts_with("$argon2i$") {
        return argon2_hash(hash).map(|s| (s, None));
    }
    Err(refusal(hash))
}

fn bcrypt_hash(hash: &str) -> Result<(Secret, Option<String>), String> {
    let parts = bcrypt::HashParts::from_str(hash)
        .map_err(|e| format!("not a valid bcrypt hash ({e}); {HOW}"))?;
    let cost = parts.get_cost();
    if !(4..=MAX_BCRYPT_COST).contains(&cost) {
        return Err(format!(
            "bcrypt cost {cost} is outside 4 to {MAX_BCRYPT_COST}: above it one login would \
             cost seconds of CPU; rehash with `htpasswd -nB -C 12 USER`"
        ));
    }
    let warning = (cost < WEAK_BCRYPT_COST).then(|| {
        format!(
            "bcrypt cost {cost} is below {WEAK_BCRYPT_COST} and quick to guess offline; rehash \
             with `htpasswd -nB -C 12 USER`"
        )
    });
    Ok((Secret::Bcrypt(hash.to_owned()), warning))
}

fn argon2_hash(hash: &str) -> Result<Secret, String> {
    let phc = argon2::PasswordHash::new(hash)
        .map_err(|e| format!("not a valid argon2 PHC string ({e})"))?;
    if phc.salt.is_none() || phc.hash.is_none() {
        return Err("the argon2 string has no salt or no hash".into());
    }
    let params = argon2::Params::try_from(&phc)
        .map_err(|e| format!("argon2 parameters not understood ({e})"))?;
    let (m, t, p) = (params.m_cost(), params.t_cost(), params.p_cost());
    if m > MAX_ARGON2_MEMORY_KIB || t > MAX_ARGON2_PASSES || p > MAX_ARGON2_LANES {
        return Err(format!(
            "argon2 parameters m={m},t={t},p={p} exceed m={MAX_ARGON2_MEMORY_KIB},\
             t={MAX_ARGON2_PASSES},p={MAX_ARGON2_LANES}: one login must not cost more memory \
             or time than that"
        ));
    }
    Ok(Secret::Argon2(hash.to_owned()))
}

/// Why a hash htpasswd (or crypt) can make is refused: what it is, and why that is not enough.
fn refusal(hash: &str) -> String {
    let rehash = "rehash with `htpasswd -nB USER` (bcrypt) or use argon2id";
    let is_des = hash.len() == 13
        && hash
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/');
    if hash.starts_with("{SHA}") {
        format!(
            "{{SHA}} is unsalted SHA-1 (htpasswd -s): fast to compute and the same for every \
             user with that password, so it is guessed at billions a second; {rehash}"
        )
    } else if hash.starts_with("$apr1$") || hash.starts_with("$1$") {
        format!(
            "MD5-crypt ($apr1$, htpasswd -m, or $1$) is a fast hash, guessed at billions a \
             second on one GPU; {rehash}"
        )
    } else if hash.starts_with("$2x$") {
        format!("$2x$ marks a bcrypt hash from the buggy crypt_blowfish before 2011; {rehash}")
    } else if hash.starts_with("$argon2d$") {
        format!("argon2d's memory access depends on the password (a side channel); {rehash}")
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        format!("SHA-crypt ($5$, $6$, htpasswd -2/-5) is not supported; {rehash}")
    } else if is_des {
        format!(
            "DES crypt (htpasswd -d) reads only the first 8 characters of a password and is \
             guessed in hours; {rehash}"
        )
    } else if hash.starts_with('$') {
        format!("an unknown hash scheme; {rehash}")
    } else {
        format!(
            "not a hash: a plaintext password (htpasswd -p) is readable by anyone who can read \
             the file; {rehash}"
        )
    }
}
