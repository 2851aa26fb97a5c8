//! The client side of SOCKS5: what ward sends to an upstream SOCKS5 proxy it chains through,
//! and the answers it reads back (RFC 1928, RFC 1929). Pure; `chain` drives it over a socket.

use std::net::Ipv4Addr;

use super::wire::{
    AUTH_SUCCESS, AUTH_VERSION, Socks5Error, VERSION, atyp, command, method, need, parse_with,
    put_ip, put_short,
};
use crate::Parsed;
use crate::request::Credentials;
use crate::target::{Host, Target};

/// A server's reply to a request: `rep` 0x00 is success; `bound` is the address the server
/// connected from (informational).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// REP: 0x00 is success, anything else names the failure ([`reply_name`]).
    pub rep: u8,
    /// BND.ADDR and BND.PORT.
    pub bound: Target,
}

/// Offers no-auth, plus user/password when ward has credentials for the upstream.
pub fn encode_greeting(with_auth: bool) -> Vec<u8> {
    if with_auth {
        vec![VERSION, 2, method::NO_AUTH, method::USER_PASSWORD]
    } else {
        vec![VERSION, 1, method::NO_AUTH]
    }
}

/// `VER METHOD`: the method the upstream chose (0xFF: none of ours).
pub fn parse_method_choice(buf: &[u8]) -> Result<Parsed<u8>, Socks5Error> {
    parse_with(buf, |r| {
        need!(r.version("method choice", VERSION)?);
        Ok(Some(need!(r.u8())))
    })
}

/// RFC 1929's `VER ULEN UNAME PLEN PASSWD` for ward's credentials at the upstream.
pub fn encode_auth(creds: &Credentials) -> Result<Vec<u8>, Socks5Error> {
    let mut out = vec![AUTH_VERSION];
    put_short(&mut out, creds.user.as_bytes(), "user name")?;
    put_short(&mut out, creds.password.as_bytes(), "password")?;
    Ok(out)
}

/// `VER STATUS`: whether the upstream accepted ward's credentials.
pub fn parse_auth_status(buf: &[u8]) -> Result<Parsed<bool>, Socks5Error> {
    parse_with(buf, |r| {
        let version = need!(r.u8());
        // Some servers echo the SOCKS version here instead of RFC 1929's; the status is what
        // matters, and refusing a working proxy over it would help no one.
        if version != AUTH_VERSION && version != VERSION {
            return Err(Socks5Error::BadVersion {
                what: "user/password status",
                expected: AUTH_VERSION,
                got: version,
            });
        }
        Ok(Some(need!(r.u8()) == AUTH_SUCCESS))
    })
}

/// A CONNECT for `target`; names travel as names (socks5h: the upstream resolves them).
pub fn encode_request(target: &Target) -> Result<Vec<u8>, Socks5Error> {
    let mut out = vec![VERSION, command::CONNECT, 0];
    match &target.host {
        Host::Ip(ip) => put_ip(&mut out, *ip),
        Host::Name(name) => {
            out.push(atyp::DOMAIN);
            put_short(&mut out, name.as_bytes(), "domain name")?;
        }
    }
    out.extend_from_slice(&target.port.to_be_bytes());
    Ok(out)
}

/// `VER REP RSV ATYP BND.ADDR BND.PORT` from the upstream.
pub fn parse_reply(buf: &[u8]) -> Result<Parsed<Reply>, Socks5Error> {
    parse_with(buf, |r| {
        need!(r.version("reply", VERSION)?);
        let rep = need!(r.u8());
        need!(r.u8());
        // A failing server may not bother with a real address; its REP is all ward needs, and
        // the connection is over anyway.
        let atyp = need!(r.peek());
        if rep != 0 && ![atyp::IPV4, atyp::DOMAIN, atyp::IPV6].contains(&atyp) {
            // The byte looked at is taken: `consumed` must cover every byte the answer read.
            need!(r.u8());
            let bound = Target::new(Host::Ip(Ipv4Addr::UNSPECIFIED.into()), 0);
            return Ok(Some(Reply { rep, bound }));
        }
        let bound = need!(r.address()?);
        Ok(Some(Reply { rep, bound }))
    })
}

/// RFC 1928 section 6's names for reply codes, for error details.
pub fn reply_name(rep: u8) -> &'static str {
    match rep {
        0x00 => "succeeded",
        0x01 => "general SOCKS server failure",
        0x02 => "connection not allowed by ruleset",
        0x03 => "network unreachable",
        0x04 => "host unreachable",
        0x05 => "connection refused",
        0x06 => "TTL expired",
        0x07 => "command not supported",
        0x08 => "address type not supported",
        _ => "unassigned reply code",
    }
}
