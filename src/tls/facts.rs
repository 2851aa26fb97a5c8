//! What a ClientHello told ward (the facts policy and logs read) and why one could not be read.
//! Pure data: no parsing here, no I/O.

use super::ech::EchOffer;
use super::ja4::{Ja4, Ja4Input};
use crate::target::Host;

/// Cap on the record bytes buffered for one ClientHello. Real hellos are well under 16 KiB
/// (Chromium's post-quantum one is about 2 KB); 64 KiB leaves room for large PSK tickets and
/// bigger post-quantum key shares, and matches rustls, which refuses handshake messages over
/// 0xffff bytes — a hello ward could never hand to its own TLS server when inspecting.
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// What a ClientHello offered, as far as policy and logs care.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHelloFacts {
    /// The server_name, normalised through [`Host::parse`]; an IP literal (not RFC-legal, but
    /// sent by some clients) becomes [`Host::Ip`].
    pub sni: Option<Host>,
    /// Offered ALPN protocols in the client's order (lossy UTF-8).
    pub alpn: Vec<String>,
    /// supported_versions without GREASE; `[legacy_version]` when the extension is absent.
    pub versions: Vec<u16>,
    /// The encrypted_client_hello extension's form (real ECH and ECH GREASE look alike).
    pub ech: EchOffer,
    /// supported_groups in the client's order, GREASE left out (empty when absent).
    pub groups: Vec<u16>,
    /// key_share carries an X25519MLKEM768 share.
    pub has_pq_key_share: bool,
    /// The hello's JA4 fingerprint (over TCP: ward reads hellos from TCP tunnels only).
    pub ja4: Ja4,
    /// What the fingerprint was computed from (kept for `JA4_r` and for mirroring the
    /// client's choices upstream).
    pub ja4_input: Ja4Input,
    /// Bytes of the records that carried the hello (== `consumed`).
    pub len: usize,
}

/// Why the first bytes of a tunnel gave no ClientHello facts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HelloError {
    /// The first bytes are not the start of a TLS ClientHello; the reason names what they look like.
    #[error("not a TLS ClientHello: {0}")]
    NotTls(&'static str),
    /// A TLS handshake that breaks its own framing or an extension's.
    #[error("malformed ClientHello: {0}")]
    Malformed(String),
    /// Over [`MAX_CLIENT_HELLO`], or announced to be.
    #[error("ClientHello larger than {MAX_CLIENT_HELLO} bytes")]
    TooLarge,
    /// The server_name is not a valid host name.
    #[error("invalid server name in ClientHello: {0}")]
    BadSni(String),
}

/// A [`HelloError::Malformed`] saying why.
pub(super) fn malformed(why: impl Into<String>) -> HelloError {
    HelloError::Malformed(why.into())
}
