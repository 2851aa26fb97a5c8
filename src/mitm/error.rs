//! The failures of the CA and certificate machinery (not of a connection: those are
//! `ProxyError`s). Pure: a type, no I/O.

use std::path::PathBuf;

/// Failures of the CA and certificate machinery (not of a connection).
#[derive(Debug, thiserror::Error)]
pub enum MitmError {
    /// Reading or writing a file of the CA failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The CA on disk is unusable (half present, mismatched, expired, unreadable).
    #[error("{}: {why}", path.display())]
    BadCa {
        /// The file at fault.
        path: PathBuf,
        /// Why it cannot be used.
        why: String,
    },
    /// The CA key can be read by other users, and `--allow-insecure-key` was not given.
    #[error(
        "{path} has mode {mode:04o}: other users can read the CA key, and with it forge a \
         certificate for any site that ward's clients trust; run `chmod 600 {path}` (or start \
         with --allow-insecure-key to accept the risk)",
        path = path.display()
    )]
    InsecureKey {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// `ward ca init` without `--force` over an existing CA.
    #[error("a CA already exists in {}; pass --force to replace it", .0.display())]
    CaExists(PathBuf),
    /// rcgen could not build or sign a certificate.
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// rustls refused a configuration.
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    /// A leaf could not be forged for this name.
    #[error("forging a certificate for {name}: {why}")]
    Forge {
        /// The name the leaf was for.
        name: String,
        /// Why it could not be forged.
        why: String,
    },
    /// The `upstream_ca` bundle is unusable.
    #[error("upstream_ca {}: {why}", path.display())]
    UpstreamCa {
        /// The bundle's path.
        path: PathBuf,
        /// Why it cannot be used.
        why: String,
    },
}
