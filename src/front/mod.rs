//! TODO
pub mod http;
pub mod socks5;
