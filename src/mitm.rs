//! TLS interception: handshake with the origin first, then finish the client's handshake with a
//! leaf forged for its SNI and relay the HTTP inside. Must not decide policy (the pipeline
//! does), add nothing to the exchange, and never hide an upstream certificate failure.
//!
//! Layout: `interceptor` (settings, built once) → `handshake` (both TLS handshakes) →
//! `intercept` (the driver) → `relay` (hyper both ways) with `parked` (the HTTP/1.1 origin
//! between exchanges) and `body` (counted bodies, flow records); `ca` (the CA on disk),
//! `certs` and `issuing` (pure forging), `upstream` (the origin's TLS), `pinning`, `flows`.

mod activity;
mod body;
pub mod ca;
pub mod certs;
mod der;
mod error;
pub mod flows;
mod handshake;
pub mod har;
mod intercept;
mod interceptor;
mod issuing;
mod parked;
pub mod pinning;
mod relay;
mod requests;
mod upstream;

pub use ca::Ca;
pub use certs::{LeafCache, LeafName};
pub use error::MitmError;
pub use flows::{FlowHub, FlowRecord, FlowSink};
pub use intercept::Intercepted;
pub use interceptor::{FlowContext, InterceptSettings, Interceptor};
pub use pinning::{PinningSettings, PinningTracker};
pub use requests::RequestJudge;
pub use upstream::{CONFIG_CAPACITY, HelloKey, UpstreamConfigs};

#[cfg(test)]
mod tests;
