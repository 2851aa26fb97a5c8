//! The response half of a flow record and the exchange's timings, taken from heads hyper
//! already parsed. Keeps cookie names only: a cookie's value is a secret like the header it
//! came in, and must never reach a record.

use http::HeaderMap;
use http::header::{COOKIE, SET_COOKIE};
use serde::{Deserialize, Serialize};

use super::{FlowRecord, redacted_headers, version_name};

/// Cookies kept per header list; a head is bounded by hyper, this bounds the record further.
const MAX_COOKIES: usize = 64;

/// Where an exchange's time went, in microseconds (HAR's `send`, `wait`, `receive`). The
/// connection's own set-up (DNS, connect, TLS) happened before any request and belongs to
/// none of them, so it is not here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Request head arrival to the end of the request body going upstream.
    pub send_us: u64,
    /// From there to the response head.
    pub wait_us: u64,
    /// Response head to the end of the response body.
    pub receive_us: u64,
}

impl Timings {
    /// From offsets since the request head: the request body's end (if seen), the response
    /// head (if any) and the end of the exchange. Out-of-order marks (an origin answering
    /// before the body ended) are clamped, so the three always add up to `end_us`; a body
    /// whose end was never seen (cut off) counts no send time rather than a guessed one.
    pub fn from_marks(request_end_us: Option<u64>, head_us: Option<u64>, end_us: u64) -> Self {
        let head = head_us.unwrap_or(end_us).min(end_us);
        let send = request_end_us.unwrap_or(0).min(head);
        Timings {
            send_us: send,
            wait_us: head - send,
            receive_us: end_us - head,
        }
    }
}

/// Fills the response side of `rec` from the head the origin sent.
pub fn record_response<B>(rec: &mut FlowRecord, resp: &http::Response<B>) {
    let status = resp.status();
    rec.status = Some(status.as_u16());
    rec.response_version = Some(version_name(resp.version()));
    let phrase = resp
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|p| String::from_utf8_lossy(p.as_bytes()).into_owned());
    rec.status_text = phrase.or_else(|| status.canonical_reason().map(str::to_string));
    rec.response_headers = redacted_headers(resp.headers());
    rec.response_cookies = set_cookie_names(resp.headers());
}

/// The names in every `Cookie:` header (`a=1; b=2` gives `a`, `b`).
pub fn cookie_names(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b';'))
        .filter_map(cookie_name)
        .take(MAX_COOKIES)
        .collect()
}

/// The name of every `Set-Cookie:` header (one cookie each, attributes after the first `;`).
pub fn set_cookie_names(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.as_bytes().split(|&b| b == b';').next())
        .filter_map(cookie_name)
        .take(MAX_COOKIES)
        .collect()
}

/// `name=value` gives `name`; a pair without `=` or with an empty name is no cookie.
fn cookie_name(pair: &[u8]) -> Option<String> {
    let eq = pair.iter().position(|&b| b == b'=')?;
    let name = String::from_utf8_lossy(&pair[..eq]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cookie_names_without_values() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, "a=s3cret; b = x;novalue; =y".parse().unwrap());
        h.append(SET_COOKIE, "sid=s3cret; Path=/; HttpOnly".parse().unwrap());
        h.append(SET_COOKIE, "broken".parse().unwrap());
        assert_eq!(cookie_names(&h), ["a", "b"]);
        assert_eq!(set_cookie_names(&h), ["sid"]);
    }

    #[test]
    fn response_head_fills_the_record() {
        let req = http::Request::get("https://a.test/").body(()).unwrap();
        let mut rec = FlowRecord::from_request(&req, std::time::SystemTime::now());
        let resp = http::Response::builder()
            .status(404)
            .version(http::Version::HTTP_2)
            .header(SET_COOKIE, "sid=s3cret")
            .header("content-type", "text/plain")
            .body(())
            .unwrap();
        record_response(&mut rec, &resp);
        assert_eq!(rec.status, Some(404));
        assert_eq!(rec.status_text.as_deref(), Some("Not Found"));
        assert_eq!(rec.response_version, Some("HTTP/2"));
        assert_eq!(rec.response_cookies, ["sid"]);
        assert!(!serde_json::to_string(&rec).unwrap().contains("s3cret"));
    }

    #[test]
    fn timings_add_up_and_clamp() {
        let t = Timings::from_marks(Some(10), Some(30), 100);
        assert_eq!((t.send_us, t.wait_us, t.receive_us), (10, 20, 70));
        let early = Timings::from_marks(Some(50), Some(30), 100);
        assert_eq!((early.send_us, early.wait_us), (30, 0));
        let none = Timings::from_marks(None, None, 40);
        assert_eq!((none.send_us, none.wait_us, none.receive_us), (0, 40, 0));
    }

    proptest! {
        #[test]
        fn cookie_parsing_never_panics_and_is_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut h = HeaderMap::new();
            if let Ok(v) = http::HeaderValue::from_bytes(&bytes) {
                h.append(COOKIE, v.clone());
                h.append(SET_COOKIE, v);
            }
            prop_assert!(cookie_names(&h).len() <= MAX_COOKIES);
            prop_assert!(set_cookie_names(&h).len() <= 1);
        }

        #[test]
        fn timings_always_sum_to_the_end(a in any::<Option<u32>>(), b in any::<Option<u32>>(), end in any::<u32>()) {
            let t = Timings::from_marks(a.map(u64::from), b.map(u64::from), u64::from(end));
            prop_assert_eq!(t.send_us + t.wait_us + t.receive_us, u64::from(end));
        }
    }
}
