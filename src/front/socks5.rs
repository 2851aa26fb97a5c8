//! SOCKS5 server codec (RFC 1928) with user/password authentication (RFC 1929): the handshake a
//! client does with ward as a typed state machine, and ward's replies. Pure: no sockets, no
//! tokio, and no credential checks (the caller decides whether a user may pass). The side ward
//! plays towards an upstream SOCKS5 proxy is [`client`]; both are built from `wire`.

pub mod client;
#[cfg(test)]
mod tests;
mod wire;

use std::net::{Ipv4Addr, SocketAddr};

use crate::Parsed;
use crate::error::ErrorKind;
use crate::request::Credentials;
use crate::target::Target;

use self::wire::{AUTH_FAILURE, AUTH_SUCCESS, need, parse_with, put_ip};

pub use self::wire::{AUTH_VERSION, Socks5Error, VERSION, command, method};

/// The client's opening message: the authentication methods it can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    /// The method codes offered, in the client's order.
    pub methods: Vec<u8>,
}

/// A client's request. Every command parses; only CONNECT is served (see
/// [`Socks5Request::connect_target`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socks5Request {
    /// The command code ([`command`]).
    pub command: u8,
    /// DST.ADDR and DST.PORT.
    pub target: Target,
}

impl Socks5Request {
    /// The destination of a CONNECT; any other command, or port 0, is refused.
    pub fn connect_target(self) -> Result<Target, Socks5Error> {
        if self.command != command::CONNECT {
            return Err(Socks5Error::UnsupportedCommand(self.command));
        }
        if self.target.port == 0 {
            return Err(Socks5Error::Malformed("CONNECT to port 0"));
        }
        Ok(self.target)
    }
}

// ---------------------------------------------------------------------------------------------
// Server side: the handshake as typed states. Each state parses only the message it awaits, and
// `ExpectRequest` cannot be built except by the negotiation (and the authentication it chose).

/// Awaiting the client's greeting.
#[derive(Debug)]
pub struct ExpectGreeting {
    auth_required: bool,
}

/// What follows the method choice.
#[derive(Debug)]
pub enum AfterGreeting {
    /// User/password was chosen: the RFC 1929 message comes next.
    ExpectAuth(ExpectAuth),
    /// No authentication: the request comes next.
    ExpectRequest(ExpectRequest),
    /// No offered method is acceptable: send the answer, then close (RFC 1928 section 3).
    Refused,
}

/// Awaiting the RFC 1929 user/password message.
#[derive(Debug)]
pub struct ExpectAuth {
    _private: (),
}

/// Awaiting the request.
#[derive(Debug)]
pub struct ExpectRequest {
    _private: (),
}

impl ExpectGreeting {
    /// The first state; `auth_required` when `users` is configured.
    pub fn new(auth_required: bool) -> Self {
        ExpectGreeting { auth_required }
    }

    /// Parses the greeting.
    pub fn parse(&self, buf: &[u8]) -> Result<Parsed<Greeting>, Socks5Error> {
        parse_greeting(buf)
    }

    /// Chooses the method: returns the bytes to send and the next state.
    pub fn answer(self, greeting: &Greeting) -> ([u8; 2], AfterGreeting) {
        let chosen = choose_method(greeting, self.auth_required);
        let next = match chosen {
            method::NO_AUTH => AfterGreeting::ExpectRequest(ExpectRequest { _private: () }),
            method::USER_PASSWORD => AfterGreeting::ExpectAuth(ExpectAuth { _private: () }),
            _ => AfterGreeting::Refused,
        };
        (encode_method_choice(chosen), next)
    }
}

impl ExpectAuth {
    /// Parses the user/password message.
    pub fn parse(&self, buf: &[u8]) -> Result<Parsed<Credentials>, Socks5Error> {
        parse_auth(buf)
    }

    /// The caller has checked the credentials (when no users are configured, a client that
    /// only offers user/password is let through with any). On failure, send the status and
    /// close (RFC 1929 section 2).
    pub fn answer(self, accepted: bool) -> ([u8; 2], Option<ExpectRequest>) {
        let next = accepted.then_some(ExpectRequest { _private: () });
        (encode_auth_status(accepted), next)
    }
}

impl ExpectRequest {
    /// Parses the request.
    pub fn parse(&self, buf: &[u8]) -> Result<Parsed<Socks5Request>, Socks5Error> {
        parse_request(buf)
    }
}

/// Prefers no authentication when none is required; user/password when it is, or when it is
/// all the client offers.
pub fn choose_method(greeting: &Greeting, auth_required: bool) -> u8 {
    let offers = |m| greeting.methods.contains(&m);
    if !auth_required && offers(method::NO_AUTH) {
        method::NO_AUTH
    } else if offers(method::USER_PASSWORD) {
        method::USER_PASSWORD
    } else {
        method::NONE_ACCEPTABLE
    }
}

/// `VER NMETHODS METHODS...`
pub fn parse_greeting(buf: &[u8]) -> Result<Parsed<Greeting>, Socks5Error> {
    parse_with(buf, |r| {
        need!(r.version("greeting", VERSION)?);
        let count = need!(r.u8());
        if count == 0 {
            return Err(Socks5Error::Malformed("greeting offers no methods"));
        }
        let methods = need!(r.take(usize::from(count))).to_vec();
        Ok(Some(Greeting { methods }))
    })
}

/// RFC 1929: `VER=1 ULEN UNAME PLEN PASSWD`.
pub fn parse_auth(buf: &[u8]) -> Result<Parsed<Credentials>, Socks5Error> {
    parse_with(buf, |r| {
        need!(r.version("user/password", AUTH_VERSION)?);
        let user = need!(r.short_string("user name")?);
        let password = need!(r.short_string("password")?);
        Ok(Some(Credentials { user, password }))
    })
}

/// `VER CMD RSV ATYP DST.ADDR DST.PORT`; a domain name comes back normalised.
pub fn parse_request(buf: &[u8]) -> Result<Parsed<Socks5Request>, Socks5Error> {
    parse_with(buf, |r| {
        need!(r.version("request", VERSION)?);
        let command = need!(r.u8());
        // RSV is meant to be zero; clients that set it mean no harm, so it is not checked.
        need!(r.u8());
        let target = need!(r.address()?);
        Ok(Some(Socks5Request { command, target }))
    })
}

/// `VER METHOD`: the method ward chose.
pub fn encode_method_choice(chosen: u8) -> [u8; 2] {
    [VERSION, chosen]
}

/// `VER STATUS` (RFC 1929): whether the credentials were accepted.
pub fn encode_auth_status(ok: bool) -> [u8; 2] {
    [AUTH_VERSION, if ok { AUTH_SUCCESS } else { AUTH_FAILURE }]
}

/// `VER REP RSV ATYP BND.ADDR BND.PORT`; without a bound address, `0.0.0.0:0`.
pub fn encode_reply(rep: u8, bound: Option<SocketAddr>) -> Vec<u8> {
    let bound = bound.unwrap_or(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)));
    let mut out = vec![VERSION, rep, 0];
    put_ip(&mut out, bound.ip());
    out.extend_from_slice(&bound.port().to_be_bytes());
    out
}

/// The reply for a failure of `kind`; `None` where SOCKS5 answers in the negotiation instead.
pub fn encode_failure(kind: ErrorKind) -> Option<Vec<u8>> {
    kind.socks5_reply().map(|rep| encode_reply(rep, None))
}
