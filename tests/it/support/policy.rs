//! A policy.yaml builder for tests: safe, fast defaults (loopback listener on an OS port,
//! short timeouts, the test names mapped to 127.0.0.1, default deny, one last rule that lets
//! the lab reach loopback), with any top-level key overridable and rules prepended in order.

use std::collections::BTreeMap;

/// The rule every test policy ends with: loopback destinations are refused unless the deciding
/// rule names them in `dst`, and every test destination is on loopback.
pub const LAB_RULE: &str = r#"{name: lab, action: allow, dst: ["127.0.0.0/8", "::1/128"]}"#;

#[derive(Clone)]
pub struct Policy {
    keys: BTreeMap<String, String>,
    rules: Vec<String>,
    lab_rule: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Self::new()
    }
}

impl Policy {
    pub fn new() -> Policy {
        let mut keys = BTreeMap::new();
        for (k, v) in [
            ("listen", r#"["127.0.0.1:0"]"#),
            ("ca_dir", "certs"),
            (
                "hosts",
                r#"{"origin.test": 127.0.0.1, "*.lab.test": 127.0.0.1}"#,
            ),
            (
                "timeouts",
                "{connect: 3s, client_hello: 3s, idle: 60s, handshake: 3s, dns: 3s}",
            ),
            ("shutdown_grace", "5s"),
            ("default", "deny"),
        ] {
            keys.insert(k.to_owned(), v.to_owned());
        }
        Policy {
            keys,
            rules: Vec::new(),
            lab_rule: true,
        }
    }

    /// Sets (or replaces) a top-level key; `value` is YAML (flow style is easiest).
    pub fn set(mut self, key: &str, value: &str) -> Policy {
        self.keys.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Removes a top-level key so ward's own default applies.
    pub fn unset(mut self, key: &str) -> Policy {
        self.keys.remove(key);
        self
    }

    /// Appends a rule (YAML flow mapping); rules keep their order, the lab rule comes last.
    pub fn rule(mut self, rule: &str) -> Policy {
        self.rules.push(rule.to_owned());
        self
    }

    /// Leaves out the trailing lab rule (to see loopback refused, or when chaining hides `dst`).
    pub fn without_lab_rule(mut self) -> Policy {
        self.lab_rule = false;
        self
    }

    pub fn render(&self) -> String {
        let mut out = String::from("# written by ward's integration tests\n");
        for (k, v) in &self.keys {
            out.push_str(&format!("{k}: {v}\n"));
        }
        let rules: Vec<&str> = self
            .rules
            .iter()
            .map(String::as_str)
            .chain(self.lab_rule.then_some(LAB_RULE))
            .collect();
        if rules.is_empty() {
            out.push_str("rules: []\n");
        } else {
            out.push_str("rules:\n");
            for r in rules {
                out.push_str(&format!("  - {r}\n"));
            }
        }
        out
    }
}

/// The 1-based line of the first line of `text` containing `needle` (to assert file:line).
pub fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("{needle:?} not in the policy:\n{text}"))
}
