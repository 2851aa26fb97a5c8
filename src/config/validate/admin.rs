//! `admin`, `admin_token`, `admin_token_file`, `admin_public_metrics`: where the admin
//! endpoint listens and what it asks for. An admin reachable beyond loopback must have a
//! token. Reads the token file (bounded); never puts the token in an issue.

use std::io::Read as _;
use std::net::SocketAddr;

use super::super::admin_token::{self, AdminToken, MAX_TOKEN_LEN};
use super::super::raw::S;
use super::super::values::{parse_bool, parse_socket_addr};
use super::Checker;

/// The admin keys of the file, as written.
pub(in super::super) struct RawAdmin<'a> {
    pub addr: Option<&'a S<String>>,
    pub token: Option<&'a S<String>>,
    pub token_file: Option<&'a S<String>>,
    pub public_metrics: Option<&'a S<String>>,
}

/// The admin keys, validated.
pub(in super::super) struct AdminSettings {
    pub addr: Option<SocketAddr>,
    pub token: Option<AdminToken>,
    pub public_metrics: bool,
}

impl Checker<'_> {
    pub(super) fn admin(&mut self, raw: RawAdmin<'_>) -> AdminSettings {
        let addr = self.parsed(raw.addr, "admin", parse_socket_addr);
        let public_metrics = self.parsed(raw.public_metrics, "admin_public_metrics", parse_bool);
        let token = match (raw.token, raw.token_file) {
            (Some(_), Some(file)) => {
                let msg = "set `admin_token` or `admin_token_file`, not both";
                self.issue(file.referenced, "admin_token_file", msg);
                None
            }
            (Some(inline), None) => self.parsed(Some(inline), "admin_token", AdminToken::parse),
            (None, Some(file)) => self.token_file(file),
            (None, None) => None,
        };
        // A token that is set but bad was reported at its own key: one issue is enough.
        let token_set = raw.token.is_some() || raw.token_file.is_some();
        if let (Some(a), Some(at)) = (addr, raw.addr)
            && !token_set
            && !a.ip().to_canonical().is_loopback()
        {
            let msg = format!(
                "the admin endpoint on {a} is reachable beyond loopback: set `admin_token` (or \
                 `admin_token_file`), or anyone who reaches it can read /metrics and /pinning \
                 and end pinning passthrough"
            );
            self.issue(at.referenced, "admin", msg);
        }
        if raw.addr.is_none() {
            for (field, key) in [
                (raw.token, "admin_token"),
                (raw.token_file, "admin_token_file"),
                (raw.public_metrics, "admin_public_metrics"),
            ] {
                if let Some(f) = field {
                    self.issue(f.referenced, key, "means nothing without `admin`");
                }
            }
        }
        AdminSettings {
            addr,
            token,
            public_metrics: public_metrics.unwrap_or(false),
        }
    }

    /// Reads `admin_token_file` (relative to the policy file), one trailing newline dropped.
    fn token_file(&mut self, field: &S<String>) -> Option<AdminToken> {
        const KEY: &str = "admin_token_file";
        let path = self.path(Some(field), KEY)?;
        // Room for the longest token and its line ending, and one byte to see it is longer.
        let cap = u64::try_from(MAX_TOKEN_LEN + 3).unwrap_or(u64::MAX);
        let mut text = String::new();
        let read = std::fs::File::open(&path).and_then(|f| f.take(cap).read_to_string(&mut text));
        if let Err(e) = read {
            let msg = format!("cannot read {}: {e}", path.display());
            self.issue(field.referenced, KEY, msg);
            return None;
        }
        match AdminToken::parse(admin_token::from_file_text(&text)) {
            Ok(t) => Some(t),
            Err(msg) => {
                let msg = format!("{}: {msg}", path.display());
                self.issue(field.referenced, KEY, msg);
                None
            }
        }
    }
}
