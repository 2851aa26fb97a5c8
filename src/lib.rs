//! ward: a forward proxy that reads every TLS ClientHello and tunnels, refuses or inspects.
//!
//! Every connection travels one path, and each step has one home:
//!
//! ```text
//! accept ─► sniff ─► front-end handshake ─► route: judge target ─► resolve ─► judge address ─► dial
//!  (server)  (front)  (front::http, front::socks5)  (route, policy::judge, dial, chain)
//!       ─► reply ok ─► read ClientHello ─► judge SNI ─► tunnel | deny | intercept ─► access log
//!          (front)       (hello, tls)     (policy)     (tunnel)        (mitm)      (log)
//! ```
//!
//! `conn` sequences the steps; it makes no decision of its own. Tiers import downward only:
//! - pure (no tokio, no sockets): `error`, `outcome`, `target`, `request`, `users`, `config`,
//!   `policy` (rules, index, forbidden ranges, and the one judge), `tls`, the codecs in
//!   `front::http` and `front::socks5`, `mitm::certs`, `log`, `onboarding` (the setup page,
//!   the PAC file);
//! - primitives: `io` (the read-until loop, the prefixed stream), `dial`, `chain` (upstream
//!   proxies), `tunnel` (the one relay), `mitm::ca`, `auth` (password checks off the
//!   async workers, with their cache);
//! - stages: `front`, `route`, `hello`, `forward`, `mitm`, sharing a `context::Context`;
//! - the pipeline: `conn`;
//! - the process: `server`, `admin`, `explain`, `main`.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod chain;
pub mod config;
pub mod conn;
pub mod context;
pub mod dial;
pub mod error;
pub mod explain;
pub mod forward;
pub mod front;
pub mod hello;
pub mod io;
pub mod log;
pub mod metrics;
pub mod mitm;
pub mod onboarding;
pub mod outcome;
#[cfg(test)]
mod parse_test_util;
pub mod policy;
pub mod reply;
pub mod request;
pub mod route;
pub mod server;
pub mod target;
pub mod tls;
pub mod tunnel;
pub mod users;

/// What a pure incremental parser says about the bytes it has seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// Not enough bytes yet: read more and call again with the whole buffer.
    Incomplete,
    /// A complete value, parsed from the first `consumed` bytes.
    Done {
        /// What the bytes said.
        value: T,
        /// How many bytes of the buffer it took.
        consumed: usize,
    },
}
