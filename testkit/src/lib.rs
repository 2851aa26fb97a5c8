//! ward's shared test kit, for its unit tests, `tests/it` and `benches/`: the test PKI, one TLS
//! origin on 127.0.0.1, the streamed body it serves, a minimal WebSocket, and bounded waits.
//! Dev-only; it must never depend on `ward` (unit tests would see two copies of its types) nor
//! reach beyond loopback.

#![warn(missing_docs)]

pub mod body;
pub mod origin;
pub mod pki;
pub mod raw;
mod routes;
pub mod wait;
pub mod ws;

pub use body::Repeat;
pub use origin::{Origin, Service};
pub use pki::{Ca, Leaf};
pub use wait::{poll_until, wait_until, wait_until_async};

/// ALPN protocol id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN protocol id of HTTP/1.1.
pub const ALPN_H1: &[u8] = b"http/1.1";
/// What the origins offer, and a browser: h2 first, then HTTP/1.1.
pub const ALPN_BOTH: &[&[u8]] = &[ALPN_H2, ALPN_H1];
