use http::StatusCode;

use super::*;
use crate::error::ALL_KINDS;
use crate::front::http::parse_response_head;
use crate::parse_test_util::done;

#[test]
fn error_responses_carry_proxy_status_and_detail() {
    use ErrorKind::*;
    let rows = [
        (PolicyDenied, "403 Forbidden", "http_request_denied"),
        (DnsError, "502 Bad Gateway", "dns_error"),
        (DnsTimeout, "504 Gateway Timeout", "dns_timeout"),
        (ConnectionRefused, "502 Bad Gateway", "connection_refused"),
        (
            ConnectionTimeout,
            "504 Gateway Timeout",
            "connection_timeout",
        ),
        (Unreachable, "502 Bad Gateway", "destination_ip_unroutable"),
        (
            DestinationProhibited,
            "403 Forbidden",
            "destination_ip_prohibited",
        ),
        (MalformedRequest, "400 Bad Request", "http_request_error"),
        (
            HeadTooLarge,
            "431 Request Header Fields Too Large",
            "http_request_error",
        ),
        (UpstreamProxy, "502 Bad Gateway", "proxy_internal_error"),
        (
            ConnectionLimit,
            "503 Service Unavailable",
            "connection_limit_reached",
        ),
        (TlsCertificate, "502 Bad Gateway", "tls_certificate_error"),
    ];
    for (kind, status, token) in rows {
        let err = ProxyError::upstream(kind, "connect 203.0.113.5:443: \"why\"");
        let text = String::from_utf8(encode_error_response(&err, true)).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{head}"
        );
        let ps = format!(
            "\r\nProxy-Status: ward; error={token}; details=\"connect 203.0.113.5:443: \\\"why\\\"\"\r\n"
        );
        assert!(head.contains(&ps), "{head}");
        assert!(head.contains("\r\nConnection: close"), "{head}");
        assert!(
            head.contains(&format!("\r\nContent-Length: {}", body.len())),
            "{head}"
        );
        assert!(!head.contains("Proxy-Authenticate"), "{head}");
        assert_eq!(
            body,
            format!("{}\nconnect 203.0.113.5:443: \"why\"\n", kind.summary())
        );
    }
}

#[test]
fn auth_challenge() {
    let err = ProxyError::client(ErrorKind::AuthRequired, "no Proxy-Authorization");
    let text = String::from_utf8(encode_error_response(&err, false)).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 407 Proxy Authentication Required\r\n"),
        "{text}"
    );
    assert!(
        text.contains("\r\nProxy-Authenticate: Basic realm=\"ward\"\r\n"),
        "{text}"
    );
    assert!(text.contains("\r\nProxy-Status: ward\r\n"), "{text}");
    assert!(text.contains("\r\nConnection: keep-alive\r\n"), "{text}");
    assert!(text.ends_with("no Proxy-Authorization\n"), "{text}");
    // The reply is itself a well-formed response head.
    let (resp, _) = done(parse_response_head(text.as_bytes()).unwrap());
    assert_eq!(resp.status, 407);
}

/// What forwarding and interception sent before they used this module: the fields in this
/// order, and the summary and detail lines as the body.
#[test]
fn responses_carry_what_hyper_served_before() {
    for kind in ALL_KINDS {
        let err = ProxyError::upstream(kind, "connect 203.0.113.5:443: refused");
        let resp = error_response(&err);
        assert_eq!(resp.status().as_u16(), kind.http_status(), "{kind:?}");
        let mut expected = vec!["content-type", "proxy-status"];
        if kind == ErrorKind::AuthRequired {
            expected.push("proxy-authenticate");
        }
        let names: Vec<_> = resp.headers().keys().map(|k| k.as_str()).collect();
        assert_eq!(names, expected, "{kind:?}");
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
        if let Some(value) = proxy_status_value(kind, &err.detail) {
            assert_eq!(resp.headers()[PROXY_STATUS], value.as_str());
        }
        let body = format!("{}\n{}\n", kind.summary(), err.detail);
        assert_eq!(resp.body(), body.as_bytes(), "{kind:?}");
    }
}

#[test]
fn bytes_and_response_say_the_same() {
    for kind in ALL_KINDS {
        let reply = Reply::from_error(&ProxyError::client(kind, "why"));
        let bytes = reply.encode_http1(true);
        let (head, consumed) = done(parse_response_head(&bytes).unwrap());
        let resp = reply.to_response();
        assert_eq!(head.status, resp.status().as_u16(), "{kind:?}");
        assert_eq!(&bytes[consumed..], &resp.body()[..], "{kind:?}");
        for (name, value) in resp.headers() {
            let sent = head
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name.as_str()))
                .map(|(_, v)| v.as_slice());
            assert_eq!(sent, Some(value.as_bytes()), "{kind:?} {name}");
        }
    }
}

#[test]
fn the_place_may_choose_the_status() {
    let err = ProxyError::upstream(ErrorKind::SniMismatch, "request for b.test on a.test");
    let reply = Reply::from_error(&err).with_status(StatusCode::MISDIRECTED_REQUEST);
    let text = String::from_utf8(reply.encode_http1(true)).unwrap();
    assert!(
        text.starts_with("HTTP/1.1 421 Misdirected Request\r\n"),
        "{text}"
    );
    assert_eq!(
        reply.to_response().status(),
        StatusCode::MISDIRECTED_REQUEST
    );
    assert_eq!(
        reply.proxy_status,
        proxy_status_value(err.kind, &err.detail).unwrap()
    );
}

#[test]
fn an_empty_detail_adds_no_line() {
    let reply = Reply::from_error(&ProxyError::local(ErrorKind::Internal, ""));
    assert_eq!(reply.body, format!("{}\n", ErrorKind::Internal.summary()));
    assert_eq!(reply.proxy_status, "ward; error=proxy_internal_error");
}
