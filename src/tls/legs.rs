//! What each TLS leg of an interception negotiated (version, cipher suite, key-exchange
//! group) and the JA4 of the hello ward sent upstream, for the access and flow records:
//! `kx_client=X25519MLKEM768` says the client's leg is post-quantum hybrid. Pure: reads a finished handshake's state only, never a socket.

use rustls::{CommonState, NamedGroup};
use serde::Serialize;

/// One leg's negotiated parameters, as rustls names them (`TLSv1_3`, `TLS13_AES_128_GCM_SHA256`,
/// `X25519MLKEM768`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TlsLeg {
    /// The protocol version.
    pub version: String,
    /// The cipher suite.
    pub cipher: String,
    /// The key-exchange group (`-` when there was none, as on a TLS 1.2 RSA exchange).
    pub kx: String,
}

impl TlsLeg {
    /// The parameters of a finished handshake; `None` before one is done.
    pub fn of(conn: &CommonState) -> Option<TlsLeg> {
        let version = conn.protocol_version()?;
        let suite = conn.negotiated_cipher_suite()?;
        let kx = conn
            .negotiated_key_exchange_group()
            .map_or_else(|| "-".to_owned(), |g| name(g.name().as_str(), g.name()));
        Some(TlsLeg {
            version: name(version.as_str(), version),
            cipher: name(suite.suite().as_str(), suite.suite()),
            kx,
        })
    }
}

/// Whether `group` is a post-quantum hybrid key exchange (ML-KEM joined with a classical
/// curve), what `upstream_tls.require_pq` asks of an origin.
pub fn is_pq_hybrid(group: NamedGroup) -> bool {
    matches!(
        group,
        NamedGroup::X25519MLKEM768 | NamedGroup::secp256r1MLKEM768
    )
}

/// rustls's name for a code point, else its debug form (`Unknown(0x1234)`).
fn name(known: Option<&'static str>, value: impl std::fmt::Debug) -> String {
    known.map_or_else(|| format!("{value:?}"), str::to_owned)
}

/// Both legs of one interception: the client's (ward's forged leaf) and the origin's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Legs {
    /// Client to ward.
    pub client: Option<TlsLeg>,
    /// Ward to the origin.
    pub upstream: Option<TlsLeg>,
    /// The JA4 of the ClientHello ward sent the origin (set also when that handshake failed
    /// after the hello went out), beside the client's `ja4` in the records.
    pub ja4_upstream: Option<super::Ja4>,
}
