//! policy.yaml as written: every key optional, every value with its place in the file.
//! Pure: YAML text in, raw structs out; no defaults and no meaning (that is `validate`).
//!
//! Leaves are read as strings (YAML's `10`, `true` and `10s` all arrive as text) so that a
//! bad value becomes a validation issue with its line, collected with all the others, instead
//! of aborting the parse. Unknown keys are kept, with their place, for the same reason: serde's
//! `deny_unknown_fields` would stop at the first typo and could not name the rule it is in.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};
use serde_saphyr::Spanned;

/// Nesting policy.yaml never needs more than (top → rules → rule → list → item is 5).
const MAX_DEPTH: usize = 16;
/// Generous for 100k one-line rules, small enough to refuse a YAML bomb quickly.
const MAX_NODES: usize = 4_000_000;
const MAX_EVENTS: usize = 8_000_000;
/// Aliases are legitimate (a shared host list), but each expansion is bounded.
const MAX_ALIASES: usize = 10_000;
const MAX_REPLAYED_EVENTS: usize = 200_000;

pub(super) type S<T> = Spanned<T>;

/// Generates a raw struct whose fields are `Option<Spanned<T>>`, plus a Deserialize that
/// records unknown keys instead of failing on them.
macro_rules! raw_struct {
    ($(#[$meta:meta])* $name:ident { $($field:ident : $ty:ty),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub(super) struct $name {
            $(pub $field: Option<S<$ty>>,)*
            /// Keys this struct does not know, with their place: each is reported.
            pub unknown: Vec<S<String>>,
        }

        impl $name {
            pub const KEYS: &'static [&'static str] = &[$(stringify!($field)),*];
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        write!(f, "a mapping with keys {}", $name::KEYS.join(", "))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        let mut out = $name::default();
                        while let Some(key) = map.next_key::<S<String>>()? {
                            match key.value.as_str() {
                                $(stringify!($field) => {
                                    if out.$field.is_some() {
                                        return Err(A::Error::custom(format!(
                                            "duplicate key `{}`", key.value)));
                                    }
                                    // `key: null` reads as an absent key.
                                    let v: S<Option<$ty>> = map.next_value()?;
                                    out.$field = v.value.map(|x| S::new(x, v.referenced, v.defined));
                                })*
                                _ => {
                                    map.next_value::<IgnoredAny>()?;
                                    out.unknown.push(key);
                                }
                            }
                        }
                        Ok(out)
                    }
                }
                d.deserialize_map(V)
            }
        }
    };
}

raw_struct!(
    /// The whole file.
    RawConfig {
        listen: Vec<S<RawListen>>,
        admin: String,
        admin_token: String,
        admin_token_file: String,
        admin_public_metrics: String,
        ca_dir: String,
        upstream_ca: String,
        users: Vec<S<RawUser>>,
        users_file: String,
        upstreams: Entries,
        upstream: Names,
        hosts: Entries,
        dns: RawDns,
        timeouts: RawTimeouts,
        shutdown_grace: String,
        max_connections: String,
        max_connections_per_client: String,
        non_tls: String,
        sni_mismatch: String,
        open_proxy: String,
        flows: RawFlows,
        pinning_passthrough: RawPinning,
        upstream_tls: RawUpstreamTls,
        pac: RawPac,
        setup_host: String,
        default: String,
        rules: Vec<S<RawRule>>,
    }
);

/// One `listen` entry: a bare `IP:PORT`, or a listener object.
#[derive(Debug)]
pub(super) enum RawListen {
    Addr(String),
    Object(Box<RawListener>),
}

raw_struct!(
    /// `{ addr, tls, proxy_protocol, trusted }`.
    RawListener {
        addr: String,
        tls: RawListenerTls,
        proxy_protocol: String,
        trusted: Vec<S<String>>,
    }
);

raw_struct!(RawListenerTls {
    cert: String,
    key: String
});

impl<'de> Deserialize<'de> for RawListen {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawListen;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("IP:PORT, or a mapping with keys addr, tls, proxy_protocol, trusted")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawListen, E> {
                Ok(RawListen::Addr(v.to_owned()))
            }
            // A bare number is text like any leaf: it fails as an address, with its line.
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<RawListen, E> {
                Ok(RawListen::Addr(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<RawListen, E> {
                Ok(RawListen::Addr(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawListen, A::Error> {
                let d = serde::de::value::MapAccessDeserializer::new(map);
                RawListener::deserialize(d).map(|l| RawListen::Object(Box::new(l)))
            }
        }
        d.deserialize_any(V)
    }
}

/// `flows:`: the file's path alone, or `{ file, keep, bodies }`.
#[derive(Debug)]
pub(super) enum RawFlows {
    File(String),
    Object(Box<RawFlowsObject>),
}

raw_struct!(RawFlowsObject {
    file: String,
    keep: String,
    bodies: RawBodies,
});

raw_struct!(RawBodies {
    max: String,
    types: Vec<S<String>>,
});

impl<'de> Deserialize<'de> for RawFlows {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawFlows;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a file path, or a mapping with keys file, keep, bodies")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawFlows, E> {
                Ok(RawFlows::File(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawFlows, A::Error> {
                let d = serde::de::value::MapAccessDeserializer::new(map);
                RawFlowsObject::deserialize(d).map(|o| RawFlows::Object(Box::new(o)))
            }
        }
        d.deserialize_any(V)
    }
}

raw_struct!(RawUser {
    name: String,
    password: String
});

raw_struct!(RawDns { servers: Vec<S<String>> });

raw_struct!(RawTimeouts {
    connect: String,
    client_hello: String,
    idle: String,
    handshake: String,
    dns: String,
});

raw_struct!(RawPinning {
    failures: String,
    window: String,
    ttl: String,
});

raw_struct!(RawUpstreamTls { require_pq: String });

raw_struct!(RawPac {
    proxy: String,
    bypass: Vec<S<String>>,
    socks: String,
});

raw_struct!(
    /// One entry of `rules`.
    RawRule {
        name: String,
        action: String,
        hosts: Vec<S<String>>,
        ports: Vec<S<String>>,
        clients: Vec<S<String>>,
        users: Vec<S<String>>,
        dst: Vec<S<String>>,
        upstream: Names,
        hosts_file: String,
        dst_file: String,
        clients_file: String,
        ja4_file: String,
        ja4: Vec<S<String>>,
        ech: String,
        methods: Vec<S<String>>,
        paths: Vec<S<String>>,
    }
);

/// One name (or URL), or a list of names: `upstream: corp` and `upstream: [corp, backup]`.
#[derive(Debug)]
pub(super) enum Names {
    /// A single scalar; its place is the key's.
    One(String),
    /// A list, each item with its place.
    Many(Vec<S<String>>),
}

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Names;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name, a URL, or a list of names")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Names, E> {
                Ok(Names::One(v.to_owned()))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Names, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<S<String>>()? {
                    out.push(item);
                }
                Ok(Names::Many(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping kept in file order with every key's and value's place (`hosts` overrides).
#[derive(Debug, Default)]
pub(super) struct Entries(pub Vec<(S<String>, S<String>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V(PhantomData<Entries>);
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of names to IP addresses")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// A YAML syntax or shape error: where, and what saphyr said.
pub(super) struct SyntaxError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// Parses the text with budgets that bound memory and time on hostile input.
pub(super) fn parse_raw(text: &str) -> Result<RawConfig, SyntaxError> {
    if text.trim().is_empty() {
        // An empty file is an empty mapping: every key takes its default.
        return Ok(RawConfig::default());
    }
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            max_nodes: MAX_NODES,
            max_events: MAX_EVENTS,
            max_aliases: MAX_ALIASES,
            max_documents: 1,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_REPLAYED_EVENTS,
        },
        strict_booleans: true,
    };
    serde_saphyr::from_str_with_options(text, options).map_err(|e| {
        let location = e.location().unwrap_or(serde_saphyr::Location::UNKNOWN);
        let message = e.without_snippet().to_string();
        // saphyr appends the place to its message; ours goes in front, once.
        let suffix = format!(" at line {}, column {}", location.line(), location.column());
        let message = message.strip_suffix(&suffix).unwrap_or(&message);
        let message = match message {
            "expected sequence start" => "expected a list, like [a, b]".to_owned(),
            "expected mapping start" => "expected a mapping, like { key: value }".to_owned(),
            other => other.to_owned(),
        };
        SyntaxError {
            line: location.line(),
            column: location.column(),
            message,
        }
    })
}
