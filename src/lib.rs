//! ward: a forward proxy that reads every TLS ClientHello and tunnels, refuses or inspects.
//!
//! Every connection travels one path, and each step has one home:
//!
//! ```text
//! accept ─► sniff ─► front-end handshake ─► policy (target) ─► dial ─► reply ok
//!  (server)  (front)  (front::http, front::socks5)  (policy)    (dial)   (front)
//!       ─► read ClientHello ─► policy (SNI) ─► tunnel | deny | intercept ─► access log
//!            (tls)             (policy)       (tunnel)        (mitm)        (log)
//! ```
//!
//! Tiers import downward only: the pure tier (`error`, `target`, `request`, `config`, `policy`,
//! `tls`, `front::http`, `front::socks5`, `log`) has no tokio and no sockets; `io`, `dial`,
//! `tunnel` and `mitm` are primitives; `front` and `conn` glue codecs to sockets; `server`
//! and `admin` own the process.
#![forbid(unsafe_code)]

pub mod admin;
pub mod chain;
pub mod config;
pub mod conn;
pub mod dial;
pub mod error;
pub mod forward;
pub mod front;
pub mod io;
pub mod log;
pub mod metrics;
pub mod mitm;
#[cfg(test)]
mod parse_test_util;
pub mod policy;
pub mod reply;
pub mod request;
pub mod server;
pub mod target;
pub mod tls;
pub mod tunnel;

/// What a pure incremental parser says about the bytes it has seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<T> {
    /// Not enough bytes yet: read more and call again with the whole buffer.
    Incomplete,
    /// A complete value, parsed from the first `consumed` bytes.
    Done { value: T, consumed: usize },
}
