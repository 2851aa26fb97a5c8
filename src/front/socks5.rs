//! SOCKS5 codec (RFC 1928) with user/password authentication (RFC 1929): the server handshake as
//! a typed state machine, its replies, and the client side ward uses to chain through an
//! upstream SOCKS5 proxy. Pure: no sockets, no tokio, and no credential checks (the caller
//! decides whether a user may pass).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::Parsed;
use crate::error::{ErrorKind, ProxyError};
use crate::request::Credentials;
use crate::target::{Host, Target, TargetError};

/// The protocol version byte that opens every SOCKS5 message.
pub const VERSION: u8 = 0x05;

/// RFC 1929 section 2: the version of the user/password sub-negotiation.
pub const AUTH_VERSION: u8 = 0x01;

/// Method codes (RFC 1928 section 3).
pub mod method {
    pub const NO_AUTH: u8 = 0x00;
    pub const USER_PASSWORD: u8 = 0x02;
    pub const NONE_ACCEPTABLE: u8 = 0xFF;
}

/// Command codes (RFC 1928 section 4).
pub mod command {
    pub const CONNECT: u8 = 0x01;
    pub const BIND: u8 = 0x02;
    pub const UDP_ASSOCIATE: u8 = 0x03;
}

/// Address types (RFC 1928 section 5).
mod atyp {
    pub const IPV4: u8 = 0x01;
    pub const DOMAIN: u8 = 0x03;
    pub const IPV6: u8 = 0x04;
}

/// RFC 1929 section 2: status 0x00 is success, anything else is failure.
const AUTH_SUCCESS: u8 = 0x00;
const AUTH_FAILURE: u8 = 0x01;

/// Unwraps a field, or reports that more bytes are needed (the parser returns Incomplete).
macro_rules! need {
    ($field:expr) => {
        match $field {
            Some(value) => value,
            None => return Ok(None),
        }
    };
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Socks5Error {
    #[error("{what}: version {got:#04x}, expected {expected:#04x}")]
    BadVersion {
        what: &'static str,
        expected: u8,
        got: u8,
    },
    #[error("{0}")]
    Malformed(&'static str),
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("{0} is longer than 255 bytes")]
    TooLong(&'static str),
    #[error("domain name: {0}")]
    BadName(TargetError),
    #[error("address type {0:#04x} is not supported")]
    UnsupportedAddressType(u8),
    #[error("command {0:#04x} is not supported: only CONNECT")]
    UnsupportedCommand(u8),
}

impl Socks5Error {
    /// The kind when a client sent the bytes; failures of an upstream SOCKS5 proxy are the
    /// caller's to report as [`ErrorKind::UpstreamProxy`].
    pub fn kind(&self) -> ErrorKind {
        match self {
            Socks5Error::BadVersion { .. }
            | Socks5Error::Malformed(_)
            | Socks5Error::NotUtf8(_)
            | Socks5Error::TooLong(_)
            | Socks5Error::BadName(_) => ErrorKind::MalformedRequest,
            Socks5Error::UnsupportedAddressType(_) => ErrorKind::UnsupportedAddressType,
            Socks5Error::UnsupportedCommand(_) => ErrorKind::UnsupportedCommand,
        }
    }
}

impl From<Socks5Error> for ProxyError {
    fn from(err: Socks5Error) -> Self {
        ProxyError::client(err.kind(), format!("socks5: {err}"))
    }
}

/// The client's opening message: the authentication methods it can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greeting {
    pub methods: Vec<u8>,
}

/// A client's request. Every command parses; only CONNECT is served (see
/// [`Socks5Request::connect_target`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socks5Request {
    pub command: u8,
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

/// A server's reply to a request: `rep` 0x00 is success; `bound` is the address the server
/// connected from (informational).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub rep: u8,
    pub bound: Target,
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
    ExpectAuth(ExpectAuth),
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
    pub fn new(auth_required: bool) -> Self {
        ExpectGreeting { auth_required }
    }

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

pub fn encode_method_choice(chosen: u8) -> [u8; 2] {
    [VERSION, chosen]
}

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

// ---------------------------------------------------------------------------------------------
// Client side: ward chaining through an upstream SOCKS5 proxy.

/// Offers no-auth, plus user/password when ward has credentials for the upstream.
pub fn encode_client_greeting(with_auth: bool) -> Vec<u8> {
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

pub fn encode_client_auth(creds: &Credentials) -> Result<Vec<u8>, Socks5Error> {
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
pub fn encode_client_request(target: &Target) -> Result<Vec<u8>, Socks5Error> {
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

// ---------------------------------------------------------------------------------------------
// Byte plumbing.

/// Runs a parser body where `Ok(None)` means Incomplete, and counts what it consumed.
fn parse_with<T>(
    buf: &[u8],
    body: impl FnOnce(&mut Reader<'_>) -> Result<Option<T>, Socks5Error>,
) -> Result<Parsed<T>, Socks5Error> {
    let mut reader = Reader { buf, pos: 0 };
    Ok(match body(&mut reader)? {
        Some(value) => Parsed::Done {
            value,
            consumed: reader.pos,
        },
        None => Parsed::Incomplete,
    })
}

/// A cursor whose reads return `None` past the end of the bytes seen so far.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(bytes)
    }

    fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N).and_then(|b| b.try_into().ok())
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    /// Checks the version byte as soon as it arrives, so garbage fails at once.
    fn version(&mut self, what: &'static str, expected: u8) -> Result<Option<()>, Socks5Error> {
        match self.u8() {
            None => Ok(None),
            Some(got) if got == expected => Ok(Some(())),
            Some(got) => Err(Socks5Error::BadVersion {
                what,
                expected,
                got,
            }),
        }
    }

    /// A one-byte length, then that many bytes of UTF-8.
    fn short_string(&mut self, what: &'static str) -> Result<Option<String>, Socks5Error> {
        let len = need!(self.u8());
        let bytes = need!(self.take(usize::from(len)));
        let text = std::str::from_utf8(bytes).map_err(|_| Socks5Error::NotUtf8(what))?;
        Ok(Some(text.to_owned()))
    }

    /// `ATYP ADDR PORT`.
    fn address(&mut self) -> Result<Option<Target>, Socks5Error> {
        let host = match need!(self.u8()) {
            atyp::IPV4 => Host::Ip(Ipv4Addr::from(need!(self.array::<4>())).into()),
            atyp::IPV6 => Host::Ip(Ipv6Addr::from(need!(self.array::<16>())).into()),
            atyp::DOMAIN => {
                let name = need!(self.short_string("domain name")?);
                if name.is_empty() {
                    return Err(Socks5Error::Malformed("empty domain name"));
                }
                Host::parse(&name).map_err(Socks5Error::BadName)?
            }
            other => return Err(Socks5Error::UnsupportedAddressType(other)),
        };
        let port = need!(self.u16());
        Ok(Some(Target::new(host, port)))
    }
}

fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            out.push(atyp::IPV4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(atyp::IPV6);
            out.extend_from_slice(&v6.octets());
        }
    }
}

fn put_short(out: &mut Vec<u8>, field: &[u8], what: &'static str) -> Result<(), Socks5Error> {
    // The length prefix is one byte.
    let len = u8::try_from(field.len()).map_err(|_| Socks5Error::TooLong(what))?;
    out.push(len);
    out.extend_from_slice(field);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::fmt::Debug;

    /// `curl --socks5-hostname 127.0.0.1:8080 --proxy-user alice:s3cret https://example.com/`
    const CURL_GREETING_AUTH: &[u8] = &[0x05, 0x02, 0x00, 0x02];
    const CURL_GREETING: &[u8] = &[0x05, 0x01, 0x00];
    const CURL_AUTH: &[u8] = b"\x01\x05alice\x06s3cret";
    const CURL_REQUEST_NAME: &[u8] = b"\x05\x01\x00\x03\x0bexample.com\x01\xbb";
    /// `curl --socks5 ...` (local resolution) and Python's PySocks with rdns=False.
    const REQUEST_V4: &[u8] = &[0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0x1f, 0x90];
    const REQUEST_V6: &[u8] = &[
        0x05, 0x01, 0x00, 0x04, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x01,
        0xbb,
    ];

    fn done<T>(parsed: Parsed<T>) -> T {
        match parsed {
            Parsed::Done { value, .. } => value,
            Parsed::Incomplete => panic!("incomplete"),
        }
    }

    fn name(n: &str) -> Host {
        Host::Name(n.into())
    }

    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }

    /// Every prefix is Incomplete, the whole is Done; a pipelined next message is left alone.
    fn assert_prefixes<T: PartialEq + Debug>(
        msg: &[u8],
        parse: impl Fn(&[u8]) -> Result<Parsed<T>, Socks5Error>,
    ) -> T {
        for i in 0..msg.len() {
            assert_eq!(
                parse(&msg[..i]),
                Ok(Parsed::Incomplete),
                "prefix {i} of {msg:02x?}"
            );
        }
        let whole = parse(msg).expect("whole message parses");
        let value = match &whole {
            Parsed::Done { consumed, .. } => {
                assert_eq!(*consumed, msg.len());
                done(parse(msg).unwrap())
            }
            Parsed::Incomplete => panic!("whole message incomplete: {msg:02x?}"),
        };
        let mut pipelined = msg.to_vec();
        pipelined.extend_from_slice(&[0x05, 0x01, 0x00]);
        assert_eq!(parse(&pipelined), Ok(whole));
        value
    }

    #[test]
    fn real_client_messages() {
        let g = assert_prefixes(CURL_GREETING_AUTH, parse_greeting);
        assert_eq!(g.methods, [method::NO_AUTH, method::USER_PASSWORD]);
        assert_eq!(assert_prefixes(CURL_GREETING, parse_greeting).methods, [0]);
        let c = assert_prefixes(CURL_AUTH, parse_auth);
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "s3cret"));
        let r = assert_prefixes(CURL_REQUEST_NAME, parse_request);
        assert_eq!(r.command, command::CONNECT);
        assert_eq!(r.target, Target::new(name("example.com"), 443));
        let r = assert_prefixes(REQUEST_V4, parse_request);
        assert_eq!(r.target, Target::new(ip("127.0.0.1"), 8080));
        let r = assert_prefixes(REQUEST_V6, parse_request);
        assert_eq!(r.target, Target::new(ip("2001:db8::1"), 443));
    }

    #[test]
    fn domains_are_normalised() {
        let request = |domain: &[u8]| {
            let mut msg = vec![0x05, 0x01, 0x00, 0x03, domain.len() as u8];
            msg.extend_from_slice(domain);
            msg.extend_from_slice(&[0x01, 0xbb]);
            parse_request(&msg).map(|p| done(p).target.host)
        };
        assert_eq!(request(b"Example.COM."), Ok(name("example.com")));
        assert_eq!(
            request("bücher.example".as_bytes()),
            Ok(name("xn--bcher-kva.example"))
        );
        // socks5h clients sometimes send an IP literal as a "domain".
        assert_eq!(request(b"192.0.2.1"), Ok(ip("192.0.2.1")));
        assert_eq!(request(b"[2001:db8::2]"), Ok(ip("2001:db8::2")));
        for bad in [&b"a..b"[..], b"a b.test", b"", b"\xff\xfe", b"[a.test]"] {
            let err = request(bad).expect_err("refused");
            assert_eq!(err.kind(), ErrorKind::MalformedRequest, "{bad:?}: {err}");
        }
        let err = request(b"a..b").unwrap_err();
        assert!(err.to_string().contains("empty label"), "{err}");
    }

    #[test]
    fn garbage_is_refused_at_once() {
        // A SOCKS4 request, an HTTP request, a TLS record: refused on the first byte.
        for bytes in [
            &[0x04, 0x01, 0x00, 0x50][..],
            b"GET / HTTP/1.1",
            b"\x16\x03\x01",
        ] {
            for parse in [parse_greeting_kind, parse_request_kind] {
                assert_eq!(parse(&bytes[..1]), Some(ErrorKind::MalformedRequest));
            }
        }
        assert_eq!(
            parse_auth(&[0x05]).unwrap_err().kind(),
            ErrorKind::MalformedRequest
        );
        let err = parse_greeting(&[0x05, 0x00]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MalformedRequest);
        let err = parse_request(&[0x05, 0x01, 0x00, 0x02]).unwrap_err();
        assert_eq!(err, Socks5Error::UnsupportedAddressType(0x02));
        assert_eq!(err.kind(), ErrorKind::UnsupportedAddressType);
        let err = parse_auth(b"\x01\x02\xc3\x28\x00").unwrap_err();
        assert_eq!(err, Socks5Error::NotUtf8("user name"));
        let proxy_err = ProxyError::from(err);
        assert!(
            proxy_err.detail.contains("user name is not UTF-8"),
            "{}",
            proxy_err.detail
        );
    }

    fn parse_greeting_kind(b: &[u8]) -> Option<ErrorKind> {
        parse_greeting(b).err().map(|e| e.kind())
    }

    fn parse_request_kind(b: &[u8]) -> Option<ErrorKind> {
        parse_request(b).err().map(|e| e.kind())
    }

    #[test]
    fn only_connect_is_served() {
        let mut bind = REQUEST_V4.to_vec();
        bind[1] = command::BIND;
        let req = done(parse_request(&bind).unwrap());
        let err = req.connect_target().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::UnsupportedCommand);
        assert_eq!(encode_failure(err.kind()).unwrap()[1], 0x07);
        let mut udp = REQUEST_V4.to_vec();
        udp[1] = command::UDP_ASSOCIATE;
        let err = done(parse_request(&udp).unwrap())
            .connect_target()
            .unwrap_err();
        assert_eq!(err, Socks5Error::UnsupportedCommand(0x03));
        let port0 = [0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, 0, 0];
        let err = done(parse_request(&port0).unwrap())
            .connect_target()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MalformedRequest);
        let ok = done(parse_request(REQUEST_V4).unwrap()).connect_target();
        assert_eq!(ok, Ok(Target::new(ip("127.0.0.1"), 8080)));
    }

    #[test]
    fn method_choice() {
        let g = |m: &[u8]| Greeting {
            methods: m.to_vec(),
        };
        let cases: &[(&[u8], bool, u8)] = &[
            (&[0x00], false, 0x00),
            (&[0x00, 0x02], false, 0x00),
            (&[0x02], false, 0x02),
            (&[0x01], false, 0xFF),
            (&[0x00], true, 0xFF),
            (&[0x00, 0x02], true, 0x02),
            (&[0x02, 0x00], true, 0x02),
            (&[0x01, 0x03, 0x80], true, 0xFF),
        ];
        for &(methods, auth, expected) in cases {
            assert_eq!(
                choose_method(&g(methods), auth),
                expected,
                "{methods:?} auth={auth}"
            );
        }
    }

    #[test]
    fn handshake_with_authentication() {
        let state = ExpectGreeting::new(true);
        let greeting = done(state.parse(CURL_GREETING_AUTH).unwrap());
        let (bytes, next) = state.answer(&greeting);
        assert_eq!(bytes, [0x05, 0x02]);
        let AfterGreeting::ExpectAuth(auth) = next else {
            panic!("{next:?}")
        };
        let creds = done(auth.parse(CURL_AUTH).unwrap());
        assert_eq!(creds.user, "alice");
        let (bytes, next) = auth.answer(true);
        assert_eq!(bytes, [0x01, 0x00]);
        let request = next.expect("authenticated");
        let target = done(request.parse(CURL_REQUEST_NAME).unwrap()).connect_target();
        assert_eq!(target, Ok(Target::new(name("example.com"), 443)));
    }

    #[test]
    fn handshake_refusals() {
        let state = ExpectGreeting::new(true);
        let greeting = done(state.parse(CURL_GREETING).unwrap());
        let (bytes, next) = state.answer(&greeting);
        assert_eq!(bytes, [0x05, 0xFF]);
        assert!(matches!(next, AfterGreeting::Refused));
        let state = ExpectGreeting::new(true);
        let (_, next) = state.answer(&Greeting { methods: vec![2] });
        let AfterGreeting::ExpectAuth(auth) = next else {
            panic!("{next:?}")
        };
        let (bytes, next) = auth.answer(false);
        assert_eq!(bytes, [0x01, 0x01]);
        assert!(next.is_none());
        let (bytes, next) = ExpectGreeting::new(false).answer(&Greeting { methods: vec![0] });
        assert_eq!(bytes, [0x05, 0x00]);
        assert!(matches!(next, AfterGreeting::ExpectRequest(_)));
    }

    #[test]
    fn replies() {
        assert_eq!(encode_reply(0x00, None), [5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        let v4: SocketAddr = "192.0.2.9:40000".parse().unwrap();
        assert_eq!(
            encode_reply(0x00, Some(v4)),
            [5, 0, 0, 1, 192, 0, 2, 9, 0x9c, 0x40]
        );
        let v6: SocketAddr = "[2001:db8::1]:443".parse().unwrap();
        let bytes = encode_reply(0x05, Some(v6));
        assert_eq!(bytes.len(), 22);
        assert_eq!(&bytes[..4], [5, 5, 0, 4]);
        let reply = assert_prefixes(&bytes, parse_reply);
        assert_eq!(
            reply,
            Reply {
                rep: 5,
                bound: Target::new(ip("2001:db8::1"), 443)
            }
        );
        assert_eq!(reply_name(reply.rep), "connection refused");
        // A failing server that sends no real address still yields its REP.
        let short = done(parse_reply(&[5, 4, 0, 0]).unwrap());
        assert_eq!(short.rep, 0x04);
        assert!(parse_reply(&[5, 0, 0, 0]).is_err());
        let bound = b"\x05\x00\x00\x03\x06proxy1\x04\x38";
        let reply = assert_prefixes(bound, parse_reply);
        assert_eq!(reply.bound, Target::new(name("proxy1"), 1080));
        for kind in crate::error::ALL_KINDS {
            let expected = kind
                .socks5_reply()
                .map(|rep| vec![5, rep, 0, 1, 0, 0, 0, 0, 0, 0]);
            assert_eq!(encode_failure(kind), expected, "{kind:?}");
        }
    }

    #[test]
    fn client_side_messages() {
        assert_eq!(encode_client_greeting(true), CURL_GREETING_AUTH);
        assert_eq!(encode_client_greeting(false), CURL_GREETING);
        assert_eq!(assert_prefixes(&[5, 2], parse_method_choice), 2);
        assert!(parse_method_choice(&[4, 0]).is_err());
        assert!(assert_prefixes(&[1, 0], parse_auth_status));
        assert!(!assert_prefixes(&[1, 1], parse_auth_status));
        assert!(done(parse_auth_status(&[5, 0]).unwrap()));
        assert!(parse_auth_status(&[0x48, 0]).is_err());
        let creds = Credentials {
            user: "alice".into(),
            password: "s3cret".into(),
        };
        assert_eq!(encode_client_auth(&creds).unwrap(), CURL_AUTH);
        let target = Target::new(name("example.com"), 443);
        assert_eq!(encode_client_request(&target).unwrap(), CURL_REQUEST_NAME);
        let long = Credentials {
            user: "u".repeat(256),
            password: String::new(),
        };
        assert_eq!(
            encode_client_auth(&long),
            Err(Socks5Error::TooLong("user name"))
        );
    }

    fn arb_target() -> impl Strategy<Value = Target> {
        let host = prop_oneof![
            any::<[u8; 4]>().prop_map(|o| Host::Ip(Ipv4Addr::from(o).into())),
            any::<[u8; 16]>().prop_map(|o| Host::Ip(Ipv6Addr::from(o).into())),
            "[a-z0-9][a-z0-9-]{0,20}(\\.[a-z0-9_-]{1,20}){0,3}"
                .prop_filter_map("not a name", |s| Host::parse(&s).ok()),
        ];
        (host, any::<u16>()).prop_map(|(h, p)| Target::new(h, p))
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_greeting(&bytes);
            let _ = parse_auth(&bytes);
            let _ = parse_request(&bytes);
            let _ = parse_method_choice(&bytes);
            let _ = parse_auth_status(&bytes);
            let _ = parse_reply(&bytes);
        }

        #[test]
        fn near_valid_requests_never_panic(
            tail in proptest::collection::vec(any::<u8>(), 0..300),
            cmd in 0u8..5,
            kind in 0u8..6,
        ) {
            let mut msg = vec![5, cmd, 0, kind];
            msg.extend_from_slice(&tail);
            let _ = parse_request(&msg);
            msg[0] = 1;
            let _ = parse_auth(&msg);
        }

        #[test]
        fn client_request_round_trips(target in arb_target()) {
            let bytes = encode_client_request(&target).unwrap();
            let parsed = assert_prefixes(&bytes, parse_request);
            prop_assert_eq!(parsed, Socks5Request { command: command::CONNECT, target });
        }

        #[test]
        fn client_auth_round_trips(user in "\\PC{0,60}", password in "\\PC{0,60}") {
            let creds = Credentials { user, password };
            match encode_client_auth(&creds) {
                Ok(bytes) => prop_assert_eq!(assert_prefixes(&bytes, parse_auth), creds),
                Err(e) => prop_assert!(creds.user.len() > 255 || creds.password.len() > 255, "{}", e),
            }
        }

        #[test]
        fn reply_round_trips(addr in any::<SocketAddr>(), rep in any::<u8>()) {
            let reply = assert_prefixes(&encode_reply(rep, Some(addr)), parse_reply);
            prop_assert_eq!(reply, Reply { rep, bound: Target::new(Host::Ip(addr.ip()), addr.port()) });
        }
    }
}
