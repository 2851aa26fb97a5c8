//! Reads the first TLS ClientHello of a tunnel — joined across any number of handshake records —
//! into the facts policy needs (SNI, ALPN, versions, ECH), and encodes the alert that refuses it.
//! Pure: no I/O, no tokio, nothing buffered beyond [`MAX_CLIENT_HELLO`].
//!
//! The record layer is read by hand (`records`), because tls-parser 0.12 parses one record at a
//! time and cannot join a hello split over records; tls-parser then reads the joined message
//! body and each extension (`body`), the ECH extension's form (`ech`). `facts` holds what both produce, `ja4` fingerprints the
//! hello, `mirror` picks what ward's own hello to an inspected origin offers, `alert` the refusal.

mod alert;
mod body;
mod ech;
mod facts;
pub mod ja4;
mod legs;
pub mod mirror;
mod records;
#[cfg(test)]
mod tests;

use crate::Parsed;

use body::read_hello_body;
use records::{HANDSHAKE_HEADER_LEN, join_hello_records};

pub use alert::{AlertDescription, encode_alert};
pub use ech::{EchOffer, EchSeen};
pub use facts::{ClientHelloFacts, HelloError, MAX_CLIENT_HELLO};
pub use ja4::{Ja4, Ja4Input, Transport, ja4_r};
pub use legs::{Legs, TlsLeg, is_pq_hybrid};
pub use records::MAX_HELLO_RECORDS;

/// Parses the first ClientHello in `buf`, which holds the client's first bytes. Returns
/// `Incomplete` while more bytes could still complete a hello within [`MAX_CLIENT_HELLO`], so a
/// buffer of that size always gets a final answer; `consumed` covers exactly the records that
/// carried the hello (bytes after them, such as a ChangeCipherSpec, are left for the tunnel).
pub fn parse_client_hello(buf: &[u8]) -> Result<Parsed<ClientHelloFacts>, HelloError> {
    let Parsed::Done {
        value: message,
        consumed,
    } = join_hello_records(buf)?
    else {
        return Ok(Parsed::Incomplete);
    };
    let mut facts = read_hello_body(&message[HANDSHAKE_HEADER_LEN..])?;
    facts.len = consumed;
    Ok(Parsed::Done {
        value: facts,
        consumed,
    })
}
