//! The live flow view's memory: the last `flows.keep` flow records, each with an id, and the
//! subscribers of `/flows/events`. Bounded everywhere: the ring by `keep` and by a budget for
//! captured bodies, each subscriber by its queue — a subscriber that cannot keep up is dropped,
//! so the proxy never waits on a browser.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::mpsc;

use super::FlowRecord;
use crate::config::DEFAULT_KEEP;

/// Captured bodies the ring holds at most, all records together; past it the oldest records
/// lose their bodies first (1000 records × 2 bodies × 1 MiB would otherwise be 2 GiB).
pub const RING_BODY_BUDGET: usize = 64 * 1024 * 1024;
/// Events queued per subscriber; one that falls this far behind is dropped (its browser
/// reconnects and reads the page again).
pub const SUBSCRIBER_QUEUE: usize = 256;
/// Open `/flows/events` streams at most; more are refused with 503.
pub const MAX_SUBSCRIBERS: usize = 64;

/// One flow as the list shows it: no headers, no bodies.
#[derive(Debug, Clone, Serialize)]
pub struct FlowSummary<'a> {
    /// The flow's id in the ring (`/flows/<id>`).
    pub id: u64,
    /// When the request head arrived (RFC 3339).
    pub time: &'a str,
    /// The connection's id, as in its access record.
    pub conn_id: &'a str,
    /// The client's address.
    pub client: String,
    /// The request method.
    pub method: &'a str,
    /// The authority, else the TLS name.
    pub host: &'a str,
    /// The path with its query.
    pub path: &'a str,
    /// The response status, if one came.
    pub status: Option<u16>,
    /// The rule that chose, if one did.
    pub rule: Option<&'a str>,
    /// Set when ward answered instead of the origin.
    pub error: Option<&'a str>,
    /// The exchange's duration.
    pub duration_ms: u64,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes.
    pub response_bytes: u64,
}

/// What the list shows of `rec`, filed under `id`.
pub fn summary(id: u64, rec: &FlowRecord) -> FlowSummary<'_> {
    FlowSummary {
        id,
        time: &rec.time,
        conn_id: &rec.conn_id,
        client: rec.client.to_string(),
        method: &rec.method,
        host: host_of(rec),
        path: &rec.path,
        status: rec.status,
        rule: rec.rule.as_deref(),
        error: rec.error,
        duration_ms: rec.duration_ms,
        request_bytes: rec.request_bytes,
        response_bytes: rec.response_bytes,
    }
}

/// The host a flow is for: its authority, else the TLS name.
pub fn host_of(rec: &FlowRecord) -> &str {
    rec.authority
        .as_deref()
        .or(rec.sni.as_deref())
        .unwrap_or("")
}

/// An `/flows/events` subscriber's start: the events it missed, then the live queue.
#[derive(Debug)]
pub struct Subscription {
    /// Events of kept flows after the client's last id, oldest first.
    pub backlog: Vec<String>,
    /// Every new flow's event, until the subscriber falls behind and is dropped.
    pub events: mpsc::Receiver<Arc<str>>,
}

/// Where a flow id stands.
#[derive(Debug)]
pub enum Lookup {
    /// Still in the ring.
    Kept(Arc<FlowRecord>),
    /// It was, and the ring moved past it; the ids the ring holds now.
    Evicted {
        /// The oldest id kept (0 when the ring is empty).
        oldest: u64,
        /// The newest id kept.
        newest: u64,
    },
    /// No flow has had this id yet.
    NotYet,
}

/// The last `keep` records and the event subscribers.
#[derive(Debug)]
pub struct FlowRing {
    keep: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    records: VecDeque<(u64, Arc<FlowRecord>)>,
    /// The id the next record gets; ids start at 1.
    next_id: u64,
    body_bytes: usize,
    subscribers: Vec<mpsc::Sender<Arc<str>>>,
}

impl Default for FlowRing {
    fn default() -> Self {
        FlowRing::new(DEFAULT_KEEP)
    }
}

impl FlowRing {
    /// An empty ring of `keep` records; 0 keeps none (no admin to show them).
    pub fn new(keep: usize) -> FlowRing {
        FlowRing {
            keep,
            inner: Mutex::new(Inner {
                next_id: 1,
                ..Inner::default()
            }),
        }
    }

    /// How many records it keeps at most.
    pub fn keep(&self) -> usize {
        self.keep
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent ring (each step is whole).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Files `rec` under the next id, evicts past `keep` and the body budget, and sends the
    /// event to every subscriber that has room; the others are dropped. Never blocks.
    pub fn push(&self, rec: FlowRecord) -> u64 {
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        if self.keep == 0 {
            return id;
        }
        let rec = Arc::new(rec);
        inner.body_bytes += held(&rec);
        if !inner.subscribers.is_empty() {
            let event: Arc<str> = event_text(id, &rec).into();
            inner
                .subscribers
                .retain(|tx| tx.try_send(event.clone()).is_ok());
        }
        inner.records.push_back((id, rec));
        while inner.records.len() > self.keep {
            if let Some((_, old)) = inner.records.pop_front() {
                inner.body_bytes -= held(&old);
            }
        }
        inner.shed_bodies();
        id
    }

    /// A new `/flows/events` subscriber, or `None` when [`MAX_SUBSCRIBERS`] are open. With
    /// `since` (the last id the client has), the events of the kept flows after it come
    /// first, taken under the same lock as the subscription: no flow is missed or repeated.
    pub fn subscribe(&self, since: Option<u64>) -> Option<Subscription> {
        let mut inner = self.lock();
        inner.subscribers.retain(|tx| !tx.is_closed());
        if inner.subscribers.len() >= MAX_SUBSCRIBERS {
            return None;
        }
        let backlog = match since {
            Some(since) => inner
                .records
                .iter()
                .filter(|(id, _)| *id > since)
                .map(|(id, rec)| event_text(*id, rec))
                .collect(),
            None => Vec::new(),
        };
        let (tx, events) = mpsc::channel(SUBSCRIBER_QUEUE);
        inner.subscribers.push(tx);
        Some(Subscription { backlog, events })
    }

    /// The records kept now, oldest first, with their ids.
    pub fn snapshot(&self) -> Vec<(u64, Arc<FlowRecord>)> {
        self.lock().records.iter().cloned().collect()
    }

    /// One record by id.
    pub fn get(&self, id: u64) -> Lookup {
        let inner = self.lock();
        let (Some((oldest, _)), Some((newest, _))) = (inner.records.front(), inner.records.back())
        else {
            return match id < inner.next_id && id > 0 {
                true => Lookup::Evicted {
                    oldest: 0,
                    newest: 0,
                },
                false => Lookup::NotYet,
            };
        };
        let (oldest, newest) = (*oldest, *newest);
        if id > newest {
            return Lookup::NotYet;
        }
        if id < oldest {
            return Lookup::Evicted { oldest, newest };
        }
        // Ids are consecutive, so the offset is the index.
        let index = usize::try_from(id - oldest).unwrap_or(usize::MAX);
        match inner.records.get(index) {
            Some((_, rec)) => Lookup::Kept(rec.clone()),
            None => Lookup::Evicted { oldest, newest },
        }
    }
}

impl Inner {
    /// Drops the bodies of the oldest records until the budget holds again.
    fn shed_bodies(&mut self) {
        let mut i = 0;
        while self.body_bytes > RING_BODY_BUDGET && i < self.records.len() {
            let rec = &mut self.records[i].1;
            let had = held(rec);
            if had > 0 {
                let mut lean = FlowRecord::clone(rec);
                lean.request_body = None;
                lean.response_body = None;
                *rec = Arc::new(lean);
                self.body_bytes -= had;
            }
            i += 1;
        }
    }
}

/// Captured body bytes a record holds.
fn held(rec: &FlowRecord) -> usize {
    let sizes = [&rec.request_body, &rec.response_body];
    sizes
        .iter()
        .filter_map(|b| b.as_ref())
        .map(|b| b.held())
        .sum()
}

/// The server-sent event for a new flow: `event: flow`, its id, the summary as JSON (one
/// line: JSON escapes every newline).
fn event_text(id: u64, rec: &FlowRecord) -> String {
    let json = serde_json::to_string(&summary(id, rec)).unwrap_or_else(|_| "{}".into());
    format!("id: {id}\nevent: flow\ndata: {json}\n\n")
}

#[cfg(test)]
mod tests;
