//! `/pinning` on the admin endpoint: `GET` lists the hosts in pinning passthrough (JSON),
//! `DELETE /pinning/<host>` ends one host's passthrough so it is inspected again. Also the
//! `/metrics` gauge of hosts in passthrough. Changing state needs an authorized caller: one
//! that showed the `admin_token` when there is one, else a request from loopback.

use std::net::SocketAddr;
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;

use super::text;
use crate::mitm::PinningTracker;
use crate::mitm::pinning::store::unix_secs;
use crate::target::Host;

/// The path prefix this module answers.
pub const PATH: &str = "/pinning";

/// Answers `GET /pinning` and `DELETE /pinning/<host>`; `peer` is who asks, `may_change`
/// whether it is authorized to DELETE (see `auth::Access::may_change`).
pub fn respond<B>(
    req: &Request<B>,
    tracker: &PinningTracker,
    peer: SocketAddr,
    may_change: bool,
) -> Response<Full<Bytes>> {
    let now = SystemTime::now();
    let rest = req.uri().path().strip_prefix(PATH).unwrap_or("");
    match (req.method(), rest) {
        (&Method::GET | &Method::HEAD, "" | "/") => {
            text(StatusCode::OK, "application/json", list_json(tracker, now))
        }
        (&Method::DELETE, name) if name.len() > 1 && name.starts_with('/') => {
            if !may_change {
                return text(
                    StatusCode::FORBIDDEN,
                    "text/plain",
                    "DELETE /pinning/<host> is allowed from loopback only (or set admin_token)\n"
                        .into(),
                );
            }
            let Ok(host) = Host::parse(&name[1..]) else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    format!("not a host name: {:?}\n", &name[1..]),
                );
            };
            if tracker.clear(&host, now) {
                tracing::info!(host = %host, %peer, "pinning passthrough cleared by the admin");
                text(
                    StatusCode::OK,
                    "text/plain",
                    format!("{host}: inspected again\n"),
                )
            } else {
                text(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    format!("{host} is not in pinning passthrough\n"),
                )
            }
        }
        _ => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET /pinning, DELETE /pinning/<host>\n".into(),
        ),
    }
}

/// `{"hosts":[{"host":…,"until":"RFC 3339","until_unix":…,"clients":…}]}`, soonest first.
pub fn list_json(tracker: &PinningTracker, now: SystemTime) -> String {
    let hosts: Vec<_> = tracker
        .list(now)
        .into_iter()
        .map(|(host, p)| {
            serde_json::json!({
                "host": host.to_string(),
                "until": humantime::format_rfc3339_seconds(p.until).to_string(),
                "until_unix": unix_secs(p.until),
                "clients": p.clients,
            })
        })
        .collect();
    let mut out = serde_json::json!({ "hosts": hosts }).to_string();
    out.push('\n');
    out
}

/// The `/metrics` lines: how many hosts are tunnelled instead of inspected right now.
pub fn gauge(tracker: &PinningTracker) -> String {
    format!(
        "# HELP ward_pinning_passthrough_hosts Hosts tunnelled instead of inspected because distinct clients rejected the forged certificate.\n\
         # TYPE ward_pinning_passthrough_hosts gauge\n\
         ward_pinning_passthrough_hosts {}\n",
        tracker.count(SystemTime::now())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mitm::pinning::{ClientId, PinningSettings};
    use std::time::Duration;

    fn pinned_tracker() -> PinningTracker {
        let t = PinningTracker::new();
        let s = PinningSettings {
            rejections: 1,
            window: Duration::from_secs(60),
            ttl: Duration::from_secs(600),
        };
        let host = Host::parse("p.test").unwrap();
        assert!(t.record_client_rejection(
            &s,
            &host,
            ClientId::User("a".into()),
            SystemTime::now()
        ));
        t
    }

    fn req(method: Method, path: &str) -> Request<()> {
        Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .unwrap()
    }

    #[test]
    fn lists_and_clears_only_when_allowed() {
        let t = pinned_tracker();
        let peer: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let r = respond(&req(Method::GET, "/pinning"), &t, peer, false);
        assert_eq!(r.status(), StatusCode::OK);
        let body = list_json(&t, SystemTime::now());
        assert!(
            body.contains("\"host\":\"p.test\"") && body.contains("\"clients\":1"),
            "{body}"
        );
        assert!(gauge(&t).contains("ward_pinning_passthrough_hosts 1\n"));
        let del = req(Method::DELETE, "/pinning/p.test");
        assert_eq!(
            respond(&del, &t, peer, false).status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(respond(&del, &t, peer, true).status(), StatusCode::OK);
        assert_eq!(
            respond(&del, &t, peer, true).status(),
            StatusCode::NOT_FOUND
        );
        assert!(gauge(&t).contains("ward_pinning_passthrough_hosts 0\n"));
        let bad = req(Method::DELETE, "/pinning/a%20b");
        assert_eq!(
            respond(&bad, &t, peer, true).status(),
            StatusCode::BAD_REQUEST
        );
        let post = req(Method::POST, "/pinning");
        assert_eq!(
            respond(&post, &t, peer, true).status(),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
