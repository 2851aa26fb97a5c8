//! `users` (inline, plaintext passwords: accepted, warned about) and `users_file` (htpasswd
//! with bcrypt or argon2 hashes, relative to the policy file, watched like a rule list): one
//! set of users with distinct names. Never puts a password or a hash in an issue.

use std::collections::HashMap;
use std::path::Path;

use super::super::raw::{RawUser, S};
use super::super::{ConfigIssue, ListFile, read_list};
use super::{Checker, MAX_CREDENTIAL_LEN, join};
use crate::users::htpasswd::parse_htpasswd;
use crate::users::{Secret, User, Users};

/// Where a user was defined, for the message about a second definition.
enum Place {
    Policy(u64),
    File(u32),
}

impl Checker<'_> {
    pub(super) fn users(
        &mut self,
        inline: Option<S<Vec<S<RawUser>>>>,
        file: Option<&S<String>>,
    ) -> Users {
        let mut seen: HashMap<String, Place> = HashMap::new();
        let mut out = Vec::new();
        for (i, raw) in inline
            .map(|l| l.value)
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            let prefix = format!("users[{i}]");
            self.unknown(&prefix, &raw.value.unknown, RawUser::KEYS);
            let name = self.credential(&raw, raw.value.name.as_ref(), &prefix, "name");
            let password = self.credential(&raw, raw.value.password.as_ref(), &prefix, "password");
            let (Some(name), Some(password)) = (name, password) else {
                continue;
            };
            if name.contains(':') {
                let msg = "':' cannot appear in a name";
                self.issue(raw.referenced, &join(&prefix, "name"), msg);
                continue;
            }
            if let Some(Place::Policy(line)) = seen.get(&name) {
                let msg = format!("user {name:?} is already defined on line {line}");
                self.issue(raw.referenced, &join(&prefix, "name"), msg);
                continue;
            }
            if let Some(at) = raw.value.password.as_ref().map(|p| p.referenced) {
                let msg = "a plaintext password in the policy file: anyone who can read it can \
                           log in; keep hashes in a `users_file` instead (a line from \
                           `htpasswd -nB USER` or `ward passwd USER`)";
                self.warn(at, &join(&prefix, "password"), msg);
            }
            seen.insert(name.clone(), Place::Policy(raw.referenced.line()));
            out.push(User {
                name,
                secret: Secret::Plain(password),
            });
        }
        if file.is_some() {
            self.users_file(file, &mut seen, &mut out);
        }
        Users::new(out)
    }

    fn users_file(
        &mut self,
        field: Option<&S<String>>,
        seen: &mut HashMap<String, Place>,
        out: &mut Vec<User>,
    ) {
        const KEY: &str = "users_file";
        let Some(path) = self.path(field, KEY) else {
            return;
        };
        let text = match read_list(&path) {
            Ok(t) => t,
            Err(msg) => {
                if let Some(f) = field {
                    self.issue(f.referenced, KEY, msg);
                }
                return;
            }
        };
        let parsed = parse_htpasswd(&text);
        drop(text);
        let at = |line: u32, message: String| ConfigIssue {
            file: path.to_path_buf(),
            line,
            column: 0,
            key: String::new(),
            message,
        };
        let mut issues: Vec<ConfigIssue> = parsed
            .issues
            .iter()
            .map(|i| at(i.line, i.message.clone()))
            .collect();
        if parsed.more_issues > 0 {
            let msg = format!("{} more bad lines not listed", parsed.more_issues);
            issues.push(at(0, msg));
        }
        self.warnings.extend(
            parsed
                .warnings
                .iter()
                .map(|w| at(w.line, w.message.clone())),
        );
        let mut users = Vec::with_capacity(parsed.users.len());
        for (line, user) in parsed.users {
            if let Some(first) = seen.get(&user.name) {
                let first = place(first, self.file, &path);
                let msg = format!("user {:?} is already defined at {first}", user.name);
                issues.push(at(line, msg));
                continue;
            }
            seen.insert(user.name.clone(), Place::File(line));
            users.push(user);
        }
        if !issues.is_empty() {
            self.issues.extend(issues);
            return;
        }
        self.lists.push(ListFile {
            path,
            key: KEY.to_owned(),
            entries: users.len(),
        });
        out.extend(users);
    }

    fn credential(
        &mut self,
        user: &S<RawUser>,
        field: Option<&S<String>>,
        prefix: &str,
        key: &str,
    ) -> Option<String> {
        let key = join(prefix, key);
        let Some(field) = field else {
            self.issue(user.referenced, &key, "missing");
            return None;
        };
        self.parsed(Some(field), &key, |s| match s.len() {
            0 => Err("empty".into()),
            n if n > MAX_CREDENTIAL_LEN => Err(format!("longer than {MAX_CREDENTIAL_LEN} bytes")),
            _ => Ok(field.value.clone()),
        })
    }
}

fn place(p: &Place, policy: &Path, file: &Path) -> String {
    match p {
        Place::Policy(line) => format!("{}:{line}", policy.display()),
        Place::File(line) => format!("{}:{line}", file.display()),
    }
}
