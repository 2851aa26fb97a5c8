//! The live flow view on the admin endpoint: `/flows` (the page), `/flows/events` (one
//! server-sent event per new flow, heartbeats between), `/flows.har?host=&status=&rule=` (the
//! HAR of a selection) and `/flows/<id>` (one flow as JSON; 404 once it has left the ring).
//! Everything here reads records whose secrets were redacted when they were made; it must
//! never add one, and never make the proxy wait (the ring drops a slow subscriber).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame};
use tokio::sync::mpsc;
use tokio::time::{Interval, MissedTickBehavior};

use crate::mitm::flows::ring::{FlowRing, Lookup, host_of, summary};
use crate::mitm::har::{decode, har_from_records};
use crate::mitm::{FlowHub, FlowRecord};

/// The paths this module answers all start so.
pub const PREFIX: &str = "/flows";
/// A comment line this often keeps idle proxies and browsers from closing the stream.
const HEARTBEAT: Duration = Duration::from_secs(15);
const PAGE: &str = include_str!("flows_page.html");

/// The admin's response body: a whole page, or the event stream.
pub type AdminBody = Either<Full<Bytes>, EventStream>;

/// Answers every path under [`PREFIX`].
pub fn respond<B>(req: &Request<B>, ring: &FlowRing) -> Response<AdminBody> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return whole(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET only\n".into(),
        );
    }
    let query = req.uri().query().unwrap_or("");
    match req.uri().path() {
        "/flows" | "/flows/" => whole(StatusCode::OK, "text/html; charset=utf-8", page(ring)),
        "/flows/events" => {
            // A reconnecting EventSource says where it was; a fresh page says `since`.
            let last = req
                .headers()
                .get("last-event-id")
                .and_then(|v| v.to_str().ok());
            let since = last.map(str::to_owned).or_else(|| param(query, "since"));
            events(ring, since.and_then(|s| s.trim().parse().ok()))
        }
        "/flows.har" => {
            let selection = Selection::parse(query);
            let snap = ring.snapshot();
            let kept = snap
                .iter()
                .filter(|(_, r)| selection.matches(r))
                .map(|(_, r)| &**r);
            let har = har_from_records(kept).to_string();
            let mut resp = whole(StatusCode::OK, "application/json", har);
            resp.headers_mut().insert(
                header::CONTENT_DISPOSITION,
                header::HeaderValue::from_static("attachment; filename=\"ward-flows.har\""),
            );
            resp
        }
        path => match path.strip_prefix("/flows/").map(str::parse::<u64>) {
            Some(Ok(id)) => one(ring, id),
            _ => whole(
                StatusCode::NOT_FOUND,
                "text/plain",
                "/flows /flows/events /flows.har?host=&status=&rule= /flows/<id>\n".into(),
            ),
        },
    }
}

/// The flows file's counters for `/metrics`.
pub fn metrics(hub: &FlowHub) -> String {
    let f = &hub.file;
    let mut out = String::new();
    for (name, help, v) in [
        (
            "ward_flows_written_total",
            "Flow records written to the flows file.",
            &f.written,
        ),
        (
            "ward_flows_write_failed_total",
            "Flow records lost because writing the flows file failed (disk full, unwritable).",
            &f.failed,
        ),
        (
            "ward_flows_dropped_total",
            "Flow records dropped because the flows file's writer could not keep up.",
            &f.dropped,
        ),
    ] {
        let v = v.load(std::sync::atomic::Ordering::Relaxed);
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}\n"
        ));
    }
    out
}

/// `/flows/<id>`: the whole record (headers redacted as recorded) with its id.
fn one(ring: &FlowRing, id: u64) -> Response<AdminBody> {
    let message = match ring.get(id) {
        Lookup::Kept(rec) => {
            let mut doc = serde_json::to_value(&*rec).unwrap_or_default();
            doc["id"] = id.into();
            return whole(StatusCode::OK, "application/json", doc.to_string());
        }
        Lookup::Evicted { oldest: 0, .. } => format!(
            "flow {id} has left the ring, which keeps the last {} flows (flows.keep)\n",
            ring.keep()
        ),
        Lookup::Evicted { oldest, newest } => format!(
            "flow {id} has left the ring, which keeps the last {} flows (flows.keep); it holds \
             flows {oldest} to {newest} now\n",
            ring.keep()
        ),
        Lookup::NotYet => format!("no flow {id} yet\n"),
    };
    whole(StatusCode::NOT_FOUND, "text/plain", message)
}

/// The page, with the flows kept now embedded as JSON (escaped so that no string in it can
/// end the script element).
fn page(ring: &FlowRing) -> String {
    let snap = ring.snapshot();
    let rows: Vec<_> = snap.iter().map(|(id, rec)| summary(*id, rec)).collect();
    let json = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into());
    let json = json
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    PAGE.replace("@KEEP@", &ring.keep().to_string())
        .replace("@FLOWS@", &json)
}

/// The value of `name` in a query string, percent-decoded.
fn param(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| decode(v))
}

fn events(ring: &FlowRing, since: Option<u64>) -> Response<AdminBody> {
    let Some(sub) = ring.subscribe(since) else {
        return whole(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "too many /flows/events streams are open\n".into(),
        );
    };
    let start = tokio::time::Instant::now() + HEARTBEAT;
    let mut heartbeat = tokio::time::interval_at(start, HEARTBEAT);
    heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // A first comment at once: the client sees the stream open before any flow.
    let mut hello = String::from(": ward flows\nretry: 2000\n\n");
    hello.extend(sub.backlog);
    let stream = EventStream {
        rx: sub.events,
        heartbeat,
        hello: Some(Bytes::from(hello)),
    };
    let mut resp = Response::new(Either::Right(stream));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    resp
}

fn whole(status: StatusCode, content_type: &'static str, body: String) -> Response<AdminBody> {
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from(body))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

/// `/flows/events` as a body: each event the ring sends, and a comment every [`HEARTBEAT`].
/// Ends when the ring drops this subscriber (it fell [`SUBSCRIBER_QUEUE`] events behind).
///
/// [`SUBSCRIBER_QUEUE`]: crate::mitm::flows::ring::SUBSCRIBER_QUEUE
pub struct EventStream {
    rx: mpsc::Receiver<Arc<str>>,
    heartbeat: Interval,
    hello: Option<Bytes>,
}

impl Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(hello) = self.hello.take() {
            return Poll::Ready(Some(Ok(Frame::data(hello))));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(event)) => {
                let bytes = Bytes::copy_from_slice(event.as_bytes());
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        match self.heartbeat.poll_tick(cx) {
            Poll::Ready(_) => Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(
                b": heartbeat\n\n",
            ))))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `?host=&status=&rule=`: which flows a HAR download (and the page's filter) takes. `host`
/// is a case-insensitive part of the host; `status` a code (`404`), a class (`4xx`) or `-`
/// (no response); `rule` a rule's name, or `-` for flows no rule chose. Empty means any.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selection {
    host: Option<String>,
    status: Option<String>,
    rule: Option<String>,
}

impl Selection {
    /// From a query string; unknown parameters are ignored.
    pub fn parse(query: &str) -> Selection {
        let mut s = Selection::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = decode(value).trim().to_owned();
            if value.is_empty() {
                continue;
            }
            match name {
                "host" => s.host = Some(value.to_ascii_lowercase()),
                "status" => s.status = Some(value.to_ascii_lowercase()),
                "rule" => s.rule = Some(value),
                _ => {}
            }
        }
        s
    }

    /// Whether `rec` is selected. The page's script applies the same rules.
    pub fn matches(&self, rec: &FlowRecord) -> bool {
        let host_ok = self
            .host
            .as_deref()
            .is_none_or(|h| host_of(rec).to_ascii_lowercase().contains(h));
        let status_ok = self.status.as_deref().is_none_or(|want| {
            let have = rec.status.map_or_else(|| "-".to_owned(), |s| s.to_string());
            match want.strip_suffix("xx") {
                Some(class) if class.len() == 1 => have.starts_with(class) && have.len() == 3,
                _ => have == want,
            }
        });
        let rule_ok = self
            .rule
            .as_deref()
            .is_none_or(|want| rec.rule.as_deref().unwrap_or("-") == want);
        host_ok && status_ok && rule_ok
    }
}

#[cfg(test)]
mod tests;
