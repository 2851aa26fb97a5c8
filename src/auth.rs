//! Checks a client's proxy credentials against the policy's users. A hash is computed off the
//! async workers, at most one per core at a time, and a success is remembered for a while
//! (under a keyed SHA-256, never the password) so that a browser's many connections pay for
//! one hash. A failure is never remembered. Must never log a password.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::error::{ErrorKind, ProxyError};
use crate::request::Credentials;
use crate::users::{Secret, Users};

/// How long a verified password is taken on trust. A changed hash or a removed user takes
/// effect at once regardless (the hash is part of the key, the user is looked up first); this
/// only bounds how long a success stays in memory.
pub const CACHE_TTL: Duration = Duration::from_secs(5 * 60);
/// Successes remembered at most: far above the users of one proxy, small in memory (~100 B
/// each); what a flood of distinct good passwords could grow it to.
pub const CACHE_CAP: usize = 10_000;

type Key = [u8; 32];

/// The process's password checker, shared by every connection and kept across reloads.
pub struct Authenticator {
    /// Drawn once per process: a cache key says nothing about a password without it.
    key: [u8; 32],
    verified: Mutex<Verified>,
    /// One hash per core at a time: a flood of logins queues instead of starving the blocking
    /// pool (which DNS lookups share) or the machine.
    permits: Semaphore,
    /// Hashes computed so far: what the cache saves is the calls that did not add to it.
    computed: AtomicU64,
}

impl Default for Authenticator {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Authenticator {
            key: rand::random(),
            verified: Mutex::new(Verified::default()),
            permits: Semaphore::new(cores),
            computed: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Checks `creds` against `users` (no users: everyone is let in, anonymously) and gives
    /// the user's name. An unknown name costs what a known one does (a decoy hash is checked),
    /// so timing does not tell which names exist.
    pub async fn authenticate(
        &self,
        users: &Users,
        creds: Option<&Credentials>,
    ) -> Result<Option<String>, ProxyError> {
        if users.is_empty() {
            return Ok(None);
        }
        let Some(creds) = creds else {
            return Err(ProxyError::client(
                ErrorKind::AuthRequired,
                "proxy credentials required",
            ));
        };
        let ok = match users.get(&creds.user) {
            Some(user) if user.secret.is_hashed() => self.verify_hashed(creds, &user.secret).await,
            Some(user) => user.secret.verify(&creds.password),
            None => {
                if let Some(decoy) = users.decoy() {
                    self.compute(decoy, &creds.password).await;
                }
                false
            }
        };
        match ok {
            true => Ok(Some(creds.user.clone())),
            false => Err(ProxyError::client(
                ErrorKind::AuthRequired,
                format!("wrong credentials for user {:?}", creds.user),
            )),
        }
    }

    async fn verify_hashed(&self, creds: &Credentials, secret: &Secret) -> bool {
        let key = self.cache_key(creds, secret);
        if self.cache().fresh(&key, Instant::now()) {
            return true;
        }
        let ok = self.compute(secret, &creds.password).await;
        if ok {
            self.cache().insert(key, Instant::now());
        }
        ok
    }

    /// Computes one hash on the blocking pool, waiting for a core's permit first.
    async fn compute(&self, secret: &Secret, password: &str) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        self.computed.fetch_add(1, Ordering::Relaxed);
        let (secret, password) = (secret.clone(), password.to_owned());
        tokio::task::spawn_blocking(move || secret.verify(&password))
            .await
            .unwrap_or(false)
    }

    /// SHA-256 over the process key, then each part with its length, so that no two
    /// (user, password, hash) triples can run together into the same input.
    fn cache_key(&self, creds: &Credentials, secret: &Secret) -> Key {
        let mut h = Sha256::new();
        h.update(self.key);
        for part in [
            creds.user.as_bytes(),
            creds.password.as_bytes(),
            secret.stored().as_bytes(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
        h.finalize().into()
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Verified> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many successes are remembered now (for tests and benches).
    pub fn cached(&self) -> usize {
        self.cache().expiry.len()
    }

    /// How many hashes were computed so far (for tests and benches).
    pub fn hashes_computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }
}

/// Recent successes and when each stops counting. Time is passed in.
#[derive(Default)]
struct Verified {
    expiry: HashMap<Key, Instant>,
}

impl Verified {
    fn fresh(&self, key: &Key, now: Instant) -> bool {
        self.expiry.get(key).is_some_and(|until| *until > now)
    }

    fn insert(&mut self, key: Key, now: Instant) {
        if self.expiry.len() >= CACHE_CAP && !self.expiry.contains_key(&key) {
            self.expiry.retain(|_, until| *until > now);
            // Still full of fresh entries: the one closest to expiring goes.
            if self.expiry.len() >= CACHE_CAP
                && let Some(oldest) = self.expiry.iter().min_by_key(|(_, u)| **u).map(|(k, _)| *k)
            {
                self.expiry.remove(&oldest);
            }
        }
        self.expiry.insert(key, now + CACHE_TTL);
    }
}

#[cfg(test)]
mod tests;
