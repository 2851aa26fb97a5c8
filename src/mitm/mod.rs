//! TODO
pub mod ca;
pub mod certs;
