//! The proxy's users and how each password is checked: a plaintext from policy.yaml's `users`,
//! or a bcrypt / argon2 hash from a `users_file` (htpasswd format, parsed in [`htpasswd`]).
//! Pure: checking a hash costs CPU by design (tens of milliseconds), never I/O, so callers run
//! it off the async workers (`crate::auth`). Must never log, print or `Debug` a password or a
//! hash: a leaked hash is an offline guessing target.

pub mod htpasswd;

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq;

/// bcrypt's cost is a power of two: 14 is about a second of CPU on a slow core, so one login
/// can never cost more than that (Apache's htpasswd allows up to 17).
pub const MAX_BCRYPT_COST: u32 = 14;
/// Below this cost `ward check` warns: OWASP's floor for bcrypt (htpasswd -B defaults to 5).
pub const WEAK_BCRYPT_COST: u32 = 10;
/// argon2 memory per check, in KiB: 64 MiB (OWASP's suggestions use 19-46 MiB); with one check
/// per core at a time this bounds what logins can take.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 64 * 1024;
/// argon2 passes (`t`) at most.
pub const MAX_ARGON2_PASSES: u32 = 10;
/// argon2 lanes (`p`) at most; ward computes them one after another.
pub const MAX_ARGON2_LANES: u32 = 8;

/// How one user's password is checked.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A password written in clear in policy.yaml (`users`): accepted, warned about.
    Plain(String),
    /// A bcrypt hash (`$2y$`, `$2b$`, `$2a$`), 60 characters, cost checked.
    Bcrypt(String),
    /// An argon2 PHC string (`$argon2id$…`, `$argon2i$…`), parameters checked.
    Argon2(String),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Secret::Plain(_) => "Plain(<redacted>)",
            Secret::Bcrypt(_) => "Bcrypt(<redacted>)",
            Secret::Argon2(_) => "Argon2(<redacted>)",
        })
    }
}

impl Secret {
    /// A hash, whose check costs CPU (and may be cached); a plaintext compares in nanoseconds.
    pub fn is_hashed(&self) -> bool {
        !matches!(self, Secret::Plain(_))
    }

    /// The stored form of a hash, which keys a cached success: a changed hash (a new
    /// password in the file) can never be met by a success cached for the old one.
    pub fn stored(&self) -> &str {
        match self {
            Secret::Plain(_) => "",
            Secret::Bcrypt(h) | Secret::Argon2(h) => h,
        }
    }

    /// Whether `password` is this user's. A plaintext is compared in constant time; a hash is
    /// computed (slow by design: call it off the async workers), and compared in constant time
    /// by its crate.
    pub fn verify(&self, password: &str) -> bool {
        match self {
            Secret::Plain(p) => p.as_bytes().ct_eq(password.as_bytes()).into(),
            Secret::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
            Secret::Argon2(h) => {
                use argon2::{Argon2, PasswordHash, PasswordVerifier};
                PasswordHash::new(h).is_ok_and(|h| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &h)
                        .is_ok()
                })
            }
        }
    }
}

/// One user: a name and how its password is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The name the client presents (HTTP Basic or RFC 1929).
    pub name: String,
    /// How its password is checked.
    pub secret: Secret,
}

/// Every configured user, inline (`users`) and from `users_file`, found by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    list: Arc<Vec<User>>,
    by_name: Arc<HashMap<String, usize>>,
}

impl Users {
    /// The set of `users`, which must have distinct names (the config checks it first).
    pub fn new(users: Vec<User>) -> Users {
        let by_name = users
            .iter()
            .enumerate()
            .map(|(i, u)| (u.name.clone(), i))
            .collect();
        Users {
            list: Arc::new(users),
            by_name: Arc::new(by_name),
        }
    }

    /// The user called `name`.
    pub fn get(&self, name: &str) -> Option<&User> {
        self.by_name.get(name).map(|&i| &self.list[i])
    }

    /// Every user, in the order they were configured.
    pub fn iter(&self) -> impl Iterator<Item = &User> {
        self.list.iter()
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// No users: the proxy asks nobody for credentials.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// A hashed user's secret, checked for a name that is not configured, so that an unknown
    /// name costs what a known one does and timing does not tell which names exist.
    pub fn decoy(&self) -> Option<&Secret> {
        self.list.iter().map(|u| &u.secret).find(|s| s.is_hashed())
    }
}

#[cfg(test)]
mod tests;
