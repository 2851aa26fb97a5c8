//! TLS interception: terminates the client's TLS with a forged leaf and relays the HTTP inside.
//! Must not decide policy (the pipeline does) nor ever hide an upstream certificate failure.

pub mod ca;
pub mod certs;
mod der;

use std::path::PathBuf;

pub use ca::Ca;
pub use certs::LeafCache;

/// Failures of the CA and certificate machinery (not of a connection).
#[derive(Debug, thiserror::Error)]
pub enum MitmError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {why}", path.display())]
    BadCa { path: PathBuf, why: String },
    #[error("a CA already exists in {}; pass --force to replace it", .0.display())]
    CaExists(PathBuf),
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("forging a certificate for {name}: {why}")]
    Forge { name: String, why: String },
    #[error("upstream_ca {}: {why}", path.display())]
    UpstreamCa { path: PathBuf, why: String },
}
