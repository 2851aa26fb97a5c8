use base64::Engine as _;
use base64::engine::general_purpose;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::*;
use crate::error::ErrorKind;
use crate::parse_test_util::{assert_prefixes, done, random_bytes_never_panic};
use crate::target::Host;

/// What `curl -x http://127.0.0.1:8080 https://example.com/` sends.
const CURL_CONNECT: &[u8] = b"CONNECT example.com:443 HTTP/1.1\r\n\
    Host: example.com:443\r\n\
    User-Agent: curl/8.5.0\r\n\
    Proxy-Connection: Keep-Alive\r\n\r\n";

/// What `curl -x http://alice:s3cret@127.0.0.1:8080 http://origin.test/a?b=1` sends.
const CURL_GET: &[u8] = b"GET http://origin.test/a?b=1 HTTP/1.1\r\n\
    Host: origin.test\r\n\
    Proxy-Authorization: Basic YWxpY2U6czNjcmV0\r\n\
    User-Agent: curl/8.5.0\r\n\
    Accept: */*\r\n\
    Proxy-Connection: Keep-Alive\r\n\r\n";

fn request(bytes: &[u8]) -> ProxyRequest {
    done(parse_request_head(bytes).expect("parses")).0
}

fn error(bytes: &[u8]) -> HttpError {
    parse_request_head(bytes).expect_err("must be refused")
}

fn name(n: &str) -> Host {
    Host::Name(n.into())
}

#[test]
fn curl_connect() {
    let (req, consumed) = done(parse_request_head(CURL_CONNECT).unwrap());
    assert_eq!(consumed, CURL_CONNECT.len());
    assert_eq!(req.method, "CONNECT");
    assert_eq!(
        req.target,
        RequestTarget::Connect(Target::new(name("example.com"), 443))
    );
    assert_eq!(req.version, 1);
    assert_eq!(req.credentials, None);
    assert!(
        req.headers
            .contains(&("User-Agent".into(), b"curl/8.5.0".to_vec()))
    );
}

#[test]
fn curl_absolute_get_with_credentials() {
    let req = request(CURL_GET);
    let expected = RequestTarget::Absolute(Target::new(name("origin.test"), 80));
    assert_eq!(req.target, expected);
    let creds = req.credentials.expect("credentials");
    assert_eq!(
        (creds.user.as_str(), creds.password.as_str()),
        ("alice", "s3cret")
    );
}

#[test]
fn every_prefix_is_incomplete() {
    for msg in [CURL_CONNECT, CURL_GET] {
        assert_prefixes(msg, b"\x16\x03\x01body", parse_request_head);
    }
    let resp = b"HTTP/1.1 200 Connection established\r\nVia: 1.1 squid\r\n\r\n";
    assert_prefixes(resp, b"\x16\x03\x01body", parse_response_head);
}

#[test]
fn request_targets() {
    let t = |raw: &str| request(format!("GET {raw} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).target;
    let abs = |host: Host, port| RequestTarget::Absolute(Target::new(host, port));
    assert_eq!(t("HTTP://Origin.Test:8080"), abs(name("origin.test"), 8080));
    assert_eq!(t("http://origin.test?q=1"), abs(name("origin.test"), 80));
    assert_eq!(t("http://origin.test/p#frag"), abs(name("origin.test"), 80));
    let v6 = Host::Ip("2001:db8::1".parse().unwrap());
    assert_eq!(t("http://[2001:db8::1]/x"), abs(v6, 80));
    assert_eq!(t("/status"), RequestTarget::Origin("/status".into()));
    assert_eq!(t("*"), RequestTarget::Origin("*".into()));
    let c = |raw: &str| request(format!("CONNECT {raw} HTTP/1.1\r\n\r\n").as_bytes()).target;
    let v6 = Host::Ip("2001:db8::1".parse().unwrap());
    assert_eq!(
        c("[2001:db8::1]:443"),
        RequestTarget::Connect(Target::new(v6, 443))
    );
    assert_eq!(
        c("Evil.Test.:8443"),
        RequestTarget::Connect(Target::new(name("evil.test"), 8443))
    );
}

#[test]
fn bad_targets_are_malformed() {
    for head in [
        "CONNECT example.com HTTP/1.1\r\n\r\n",
        "CONNECT http://example.com:443/ HTTP/1.1\r\n\r\n",
        "CONNECT [::1:443 HTTP/1.1\r\n\r\n",
        "CONNECT a..b:443 HTTP/1.1\r\n\r\n",
        "GET example.com:80 HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET ftp://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET http://user:pw@example.com/ HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET http:///x HTTP/1.1\r\nHost: x\r\n\r\n",
        "GET http://example.com:0/ HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let err = error(head.as_bytes());
        assert_eq!(err.kind(), ErrorKind::MalformedRequest, "{head:?}: {err}");
    }
    let err = error(b"GET https://example.com/ HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(err.to_string().contains("https://"), "{err}");
    assert!(err.to_string().contains("CONNECT"), "{err}");
}

#[test]
fn garbage_and_protocol_violations_are_malformed() {
    for head in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
        b"G@T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n folded: no\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n  continued\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/3.0\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    ] {
        let err = error(head);
        assert_eq!(err.kind(), ErrorKind::MalformedRequest, "{head:?}: {err}");
    }
    // Agreeing duplicates are one length (RFC 9110 section 8.6).
    let req = request(
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3, 03\r\n\r\n",
    );
    assert_eq!(req.headers[1], ("Content-Length".into(), b"3".to_vec()));
}

#[test]
fn http2_preface_is_refused_with_a_reason() {
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    for i in 0..H2_PREFACE.len() {
        assert_eq!(parse_request_head(&preface[..i]), Ok(Parsed::Incomplete));
    }
    let err = error(&preface[..H2_PREFACE.len()]);
    assert_eq!(err, error(preface));
    assert_eq!(err.kind(), ErrorKind::MalformedRequest);
    assert!(err.to_string().contains("HTTP/2"), "{err}");
}

#[test]
fn oversized_heads_are_refused_before_they_end() {
    let mut head = b"GET http://a/ HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    head.resize(MAX_HEAD + 10, b'a');
    assert_eq!(parse_request_head(&head), Err(HttpError::TooLarge));
    assert_eq!(
        parse_request_head(&head[..MAX_HEAD]),
        Err(HttpError::TooLarge)
    );
    assert_eq!(
        parse_request_head(&head[..MAX_HEAD - 1]),
        Ok(Parsed::Incomplete)
    );
    assert_eq!(HttpError::TooLarge.kind(), ErrorKind::HeadTooLarge);
    // Exactly at the cap is still fine.
    let mut exact = b"GET / HTTP/1.1\r\nHost: a\r\nX: ".to_vec();
    exact.resize(MAX_HEAD - 4, b'a');
    exact.extend_from_slice(b"\r\n\r\n");
    assert_eq!(done(parse_request_head(&exact).unwrap()).1, MAX_HEAD);
    let mut resp = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
    resp.resize(MAX_HEAD + 1, b'a');
    assert_eq!(parse_response_head(&resp), Err(HttpError::TooLarge));
}

#[test]
fn too_many_headers_is_431() {
    let mut head = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..MAX_HEADERS {
        head.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let err = error(&head);
    assert_eq!(err, HttpError::TooManyHeaders);
    assert_eq!(err.kind().http_status(), 431);
}

#[test]
fn leading_blank_lines_and_bare_lf_are_tolerated() {
    let req = request(b"\r\nCONNECT a.test:443 HTTP/1.0\n\n");
    assert_eq!(req.version, 0);
    assert!(matches!(req.target, RequestTarget::Connect(_)));
}

#[test]
fn basic_auth_edge_cases() {
    let creds = |v: &[u8]| parse_basic_auth(v).map(|c| (c.user, c.password));
    let pair = |u: &str, p: &str| Some((u.to_owned(), p.to_owned()));
    assert_eq!(creds(b"Basic YWxpY2U6czNjcmV0"), pair("alice", "s3cret"));
    assert_eq!(
        creds(b"bAsIc   YWxpY2U6czNjcmV0  "),
        pair("alice", "s3cret")
    );
    // "a:b:c": the password keeps its colons.
    assert_eq!(creds(b"Basic YTpiOmM="), pair("a", "b:c"));
    assert_eq!(creds(b"Basic YTpiOmM"), pair("a", "b:c"));
    // "a:" and ":b"
    assert_eq!(creds(b"Basic YTo="), pair("a", ""));
    assert_eq!(creds(b"Basic OmI="), pair("", "b"));
    // "bücher:ü" in UTF-8
    let utf8 = general_purpose::STANDARD.encode("bücher:ü");
    assert_eq!(
        creds(format!("Basic {utf8}").as_bytes()),
        pair("bücher", "ü")
    );
    assert_eq!(creds(b"Basic !!!notbase64"), None);
    assert_eq!(creds(b"Basic YWxpY2U="), None, "no colon");
    let latin1 = general_purpose::STANDARD.encode(b"b\xfccher:x");
    assert_eq!(
        creds(format!("Basic {latin1}").as_bytes()),
        None,
        "not UTF-8"
    );
    assert_eq!(creds(b"Bearer YWxpY2U6czNjcmV0"), None);
    assert_eq!(creds(b"Basic"), None);
    assert_eq!(creds(b"BasicYWxpY2U6czNjcmV0"), None);
    assert_eq!(creds(b""), None);
    assert_eq!(creds(b"Basic \xff\xfe"), None);
}

#[test]
fn hop_by_hop_headers_are_stripped() {
    let mut h = HeaderMap::new();
    for (n, v) in [
        ("host", "origin.test"),
        ("connection", "keep-alive, X-Secret, host, content-length"),
        ("connection", "Upgrade"),
        ("x-secret", "1"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("proxy-authorization", "Basic YTpi"),
        ("proxy-authenticate", "Basic"),
        ("te", "trailers"),
        ("trailer", "x"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("content-length", "3"),
        ("accept", "*/*"),
    ] {
        h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
    }
    strip_hop_by_hop(&mut h);
    let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
    left.sort_unstable();
    assert_eq!(left, ["accept", "content-length", "host"]);
}

#[test]
fn stripping_keeps_the_order_of_the_fields_that_stay() {
    let mut h = HeaderMap::new();
    for (n, v) in [
        ("user-agent", "x"),
        ("connection", "keep-alive, x-hop"),
        ("accept", "*/*"),
        ("x-hop", "1"),
        ("cookie", "a=1"),
        ("proxy-authorization", "Basic eDp5"),
        ("cookie", "b=2"),
        ("host", "origin.test"),
    ] {
        h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
    }
    strip_hop_by_hop(&mut h);
    let left: Vec<_> = h
        .iter()
        .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(
        left,
        [
            ("user-agent", "x"),
            ("accept", "*/*"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("host", "origin.test"),
        ]
    );
}

#[test]
fn via_is_appended_after_earlier_proxies() {
    let mut h = HeaderMap::new();
    append_via(&mut h, http::Version::HTTP_11);
    assert_eq!(h.get(header::VIA).unwrap(), "1.1 ward");
    let mut h = HeaderMap::new();
    h.append(header::VIA, HeaderValue::from_static("1.0 fred"));
    h.append(
        header::VIA,
        HeaderValue::from_static("1.1 p.example (Apache/1.1)"),
    );
    append_via(&mut h, http::Version::HTTP_10);
    let all: Vec<_> = h.get_all(header::VIA).iter().collect();
    assert_eq!(all, ["1.0 fred, 1.1 p.example (Apache/1.1), 1.0 ward"]);
}

#[test]
fn connect_request_round_trips() {
    let creds = Credentials {
        user: "u".into(),
        password: "p:w".into(),
    };
    for target in [
        Target::new(name("example.com"), 443),
        Target::new(Host::Ip("2001:db8::1".parse().unwrap()), 8443),
        Target::new(Host::Ip("192.0.2.7".parse().unwrap()), 22),
    ] {
        let bytes = encode_connect_request(&target, Some(&creds));
        assert_prefixes(&bytes, b"\x16\x03\x01body", parse_request_head);
        let req = request(&bytes);
        assert_eq!(req.target, RequestTarget::Connect(target.clone()));
        assert_eq!(req.credentials.as_ref(), Some(&creds));
        let bytes = encode_connect_request(&target, None);
        assert_eq!(request(&bytes).credentials, None);
    }
}

#[test]
fn upstream_responses() {
    let reply = b"HTTP/1.0 407 Proxy Auth\r\nProxy-Authenticate: Basic\r\n\r\nxx";
    let (resp, n) = done(parse_response_head(reply).unwrap());
    assert_eq!((resp.status, resp.reason.as_str()), (407, "Proxy Auth"));
    assert_eq!(n, reply.len() - 2, "the body is not part of the head");
    assert_eq!(
        resp.headers,
        [("Proxy-Authenticate".into(), b"Basic".to_vec())]
    );
    let err = parse_response_head(b"SSH-2.0-OpenSSH_9.6\r\n").unwrap_err();
    assert_eq!(err.upstream().kind, ErrorKind::UpstreamProxy);
}

random_bytes_never_panic!(512; parse_request_head, parse_response_head, parse_basic_auth);

proptest! {
    #[test]
    fn random_heads_never_panic(
        method in "[A-Z]{1,8}",
        target in "[ -~]{0,40}",
        lines in proptest::collection::vec("[ -~]{0,30}", 0..6),
    ) {
        let head = format!("{method} {target} HTTP/1.1\r\n{}\r\n\r\n", lines.join("\r\n"));
        let _ = parse_request_head(head.as_bytes());
    }

    #[test]
    fn basic_auth_round_trips(user in "[^:]{0,20}", password in "\\PC{0,20}") {
        let creds = Credentials { user, password };
        prop_assert_eq!(parse_basic_auth(encode_basic_auth(&creds).as_bytes()), Some(creds));
    }
}

/// A head as hyper hands it to the forwarder: method, version and fields, nothing checked.
fn as_hyper_would(head: &[u8]) -> http::Request<()> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    assert!(req.parse(head).unwrap().is_complete(), "{head:?}");
    let version = match req.version {
        Some(0) => http::Version::HTTP_10,
        _ => http::Version::HTTP_11,
    };
    let mut builder = http::Request::builder()
        .method(req.method.unwrap())
        .uri(req.path.unwrap())
        .version(version);
    for field in req.headers.iter() {
        builder = builder.header(field.name, field.value);
    }
    builder.body(()).unwrap()
}

/// Every request of a forwarding connection meets the rules the first one met.
#[test]
fn later_requests_are_held_to_the_first_requests_rules() {
    let refused: [&[u8]; 11] = [
        b"GET http://a/ HTTP/1.1\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\n",
        b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
        b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
        b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        b"POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: x\r\n\r\n",
        b"POST http://a/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
    ];
    for head in refused {
        let first = error(head);
        assert_eq!(check_request(&as_hyper_would(head)), Err(first), "{head:?}");
    }
    let accepted: [&[u8]; 5] = [
        CURL_GET,
        b"GET http://a/ HTTP/1.0\r\n\r\n",
        b"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3, 03\r\n\r\n",
        b"POST http://a/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
        b"CONNECT a:443 HTTP/1.1\r\n\r\n",
    ];
    for head in accepted {
        request(head);
        assert_eq!(check_request(&as_hyper_would(head)), Ok(()), "{head:?}");
    }
}
