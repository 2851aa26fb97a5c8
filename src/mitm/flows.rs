//! Flow records: one per HTTP request inside an intercepted connection, logged with tracing
//! (target `ward::flow`) and optionally appended as JSON lines to a file. Must never carry a
//! credential's value, and must never block a connection on the disk.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::{Duration, SystemTime};

use http::HeaderMap;
use serde::Serialize;

use super::error::MitmError;

pub mod bodies;
pub mod capture;
pub mod ring;
pub mod writer;

/// Headers whose values are secrets (DESIGN: never in any log).
const REDACTED_HEADERS: [&str; 5] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
];
const REDACTED: &str = "<redacted>";
/// Records queued for the writer thread; beyond this they are dropped and counted, because a
/// slow disk must not stall traffic.
const QUEUE_DEPTH: usize = 4096;

/// One HTTP exchange inside an intercepted connection, as logged and written.
#[derive(Debug, Clone, Serialize)]
pub struct FlowRecord {
    /// RFC 3339, when the request head arrived.
    pub time: String,
    /// The connection's id, as in its access record.
    pub conn_id: String,
    /// The client's address.
    pub client: SocketAddr,
    /// The authenticated user, if any.
    pub user: Option<String>,
    /// The TLS server name the leaf was forged for.
    pub sni: Option<String>,
    /// The CONNECT (or SOCKS5) target, `host:port`.
    pub connect: Option<String>,
    /// Which names disagree: `connect_sni` (CONNECT host vs SNI), `sni_authority` (the
    /// request's Host / `:authority` vs the TLS server name). Empty when all agree.
    pub mismatch: Vec<&'static str>,
    /// The request method.
    pub method: String,
    /// The request's Host / `:authority`.
    pub authority: Option<String>,
    /// The request path with its query.
    pub path: String,
    /// The HTTP version, as `version_name` writes it.
    pub version: &'static str,
    /// `None` when no response head was produced (upstream died mid-request).
    pub status: Option<u16>,
    /// Request body bytes relayed.
    pub request_bytes: u64,
    /// Response body bytes relayed.
    pub response_bytes: u64,
    /// From the request head to the response body's end.
    pub duration_ms: u64,
    /// The rule that chose `inspect`, if a rule did.
    pub rule: Option<String>,
    /// Set when ward answered instead of the origin (e.g. `tls_certificate_error`).
    pub error: Option<&'static str>,
    /// The request headers, secrets redacted.
    pub request_headers: Vec<(String, String)>,
    /// The client leg's TLS version, cipher suite and key-exchange group.
    pub tls_client: Option<String>,
    /// See `tls_client`.
    pub cipher_client: Option<String>,
    /// See `tls_client`.
    pub kx_client: Option<String>,
    /// The origin leg's TLS version, cipher suite and key-exchange group.
    pub tls_upstream: Option<String>,
    /// See `tls_upstream`.
    pub cipher_upstream: Option<String>,
    /// See `tls_upstream`.
    pub kx_upstream: Option<String>,
    /// The JA4 of the client's ClientHello, as in the access record.
    pub ja4: Option<String>,
    /// The JA4 of the ClientHello ward sent the origin for this connection.
    pub ja4_upstream: Option<String>,
    /// Names of the cookies the request sent (values are secrets and never kept).
    pub request_cookies: Vec<String>,
    /// The response's HTTP version; `None` when ward answered itself or nothing came.
    pub response_version: Option<&'static str>,
    /// The response's reason phrase as the origin sent it (HTTP/1), else the canonical one.
    pub status_text: Option<String>,
    /// The response headers, secrets redacted.
    pub response_headers: Vec<(String, String)>,
    /// Names of the cookies the response set (values never kept).
    pub response_cookies: Vec<String>,
    /// What ward measured of this exchange, in microseconds; `None` in records from before.
    pub timings: Option<capture::Timings>,
    /// The connection's set-up (lookup, connect, origin TLS), on its first exchange only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<crate::log::Setup>,
    /// The request body's first bytes, when `flows.bodies` asks for its media type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_body: Option<bodies::CapturedBody>,
    /// The response body's first bytes, when `flows.bodies` asks for its media type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_body: Option<bodies::CapturedBody>,
}

impl FlowRecord {
    /// A record with nothing in it (allocates nothing): what a finished exchange leaves
    /// behind when its record is moved out.
    pub fn empty() -> FlowRecord {
        FlowRecord {
            time: String::new(),
            conn_id: String::new(),
            client: SocketAddr::from(([0, 0, 0, 0], 0)),
            user: None,
            sni: None,
            connect: None,
            mismatch: Vec::new(),
            method: String::new(),
            authority: None,
            path: String::new(),
            version: "HTTP/?",
            status: None,
            request_bytes: 0,
            response_bytes: 0,
            duration_ms: 0,
            rule: None,
            error: None,
            request_headers: Vec::new(),
            tls_client: None,
            cipher_client: None,
            kx_client: None,
            tls_upstream: None,
            cipher_upstream: None,
            kx_upstream: None,
            ja4: None,
            ja4_upstream: None,
            request_cookies: Vec::new(),
            response_version: None,
            status_text: None,
            response_headers: Vec::new(),
            response_cookies: Vec::new(),
            timings: None,
            setup: None,
            request_body: None,
            response_body: None,
        }
    }

    /// The request-side half of a record, captured before the request is forwarded.
    pub fn from_request<B>(req: &http::Request<B>, started: SystemTime) -> FlowRecord {
        let uri = req.uri();
        let authority = uri.authority().map(|a| a.to_string()).or_else(|| {
            let host = req.headers().get(http::header::HOST)?;
            Some(String::from_utf8_lossy(host.as_bytes()).into_owned())
        });
        FlowRecord {
            time: humantime::format_rfc3339_millis(started).to_string(),
            method: req.method().to_string(),
            authority,
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.to_string()),
            version: version_name(req.version()),
            request_headers: redacted_headers(req.headers()),
            request_cookies: capture::cookie_names(req.headers()),
            ..FlowRecord::empty()
        }
    }

    /// Copies what each TLS leg negotiated into the record.
    pub fn set_legs(&mut self, legs: &crate::tls::Legs) {
        let split = |l: &Option<crate::tls::TlsLeg>| match l {
            Some(l) => (
                Some(l.version.clone()),
                Some(l.cipher.clone()),
                Some(l.kx.clone()),
            ),
            None => (None, None, None),
        };
        (self.tls_client, self.cipher_client, self.kx_client) = split(&legs.client);
        (self.tls_upstream, self.cipher_upstream, self.kx_upstream) = split(&legs.upstream);
        self.ja4_upstream = legs.ja4_upstream.map(|j| j.to_string());
    }
}

/// `HTTP/1.1`, `HTTP/2`, ...: the form HAR and the records use.
pub fn version_name(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_11 => "HTTP/1.1",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}

/// Header names with values; secrets replaced by a marker so a reader still sees they were sent.
pub fn redacted_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let name = name.as_str();
            let value = if REDACTED_HEADERS.contains(&name) {
                REDACTED.to_string()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.to_string(), value)
        })
        .collect()
}

/// What outlives an interceptor (a reload may build a new one) and is shared with the admin:
/// the live ring of recent flows, and what the flows file's writers did.
#[derive(Debug, Default)]
pub struct FlowHub {
    /// The last `flows.keep` records, for `/flows`.
    pub ring: ring::FlowRing,
    /// Records written, lost and dropped, and reopen requests, for every writer.
    pub file: writer::FileStats,
}

impl FlowHub {
    /// A hub whose ring keeps `keep` records (0: none, when no admin shows them).
    pub fn new(keep: usize) -> FlowHub {
        FlowHub {
            ring: ring::FlowRing::new(keep),
            file: writer::FileStats::default(),
        }
    }
}

/// Where finished records go: tracing always, the live ring, the JSON-lines file when
/// configured.
pub struct FlowSink {
    file: Option<SyncSender<String>>,
    /// Records this sink dropped, for its one "cannot keep up" warning.
    dropped: AtomicU64,
    hub: Arc<FlowHub>,
}

impl FlowSink {
    /// Opens (appending, 0600: paths and headers are private) and starts the writer thread.
    /// A thread rather than a task: this may run before the runtime exists, and file writes
    /// are blocking anyway.
    pub fn open(path: Option<&Path>, hub: Arc<FlowHub>) -> Result<FlowSink, MitmError> {
        let Some(path) = path else {
            return Ok(FlowSink::without_file(hub));
        };
        let io_err = |source| MitmError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = writer::open_append(path).map_err(io_err)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE_DEPTH);
        let generation = hub.file.reopen.load(Ordering::Acquire);
        let writer = writer::Writer::new(path.to_path_buf(), file, generation);
        let stats = hub.clone();
        std::thread::Builder::new()
            .name("ward-flows".into())
            .spawn(move || writer.run(rx, &stats.file))
            .map_err(io_err)?;
        Ok(FlowSink {
            file: Some(tx),
            dropped: AtomicU64::new(0),
            hub,
        })
    }

    /// A sink that writes no file (records still go to tracing and the ring).
    pub fn without_file(hub: Arc<FlowHub>) -> FlowSink {
        FlowSink {
            file: None,
            dropped: AtomicU64::new(0),
            hub,
        }
    }

    /// Records this sink did not queue because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Asks every writer to reopen the flows file at its path (SIGUSR1, after logrotate
    /// renamed it away), and wakes this sink's writer to do it now.
    pub fn reopen(&self) {
        self.hub.file.reopen.fetch_add(1, Ordering::AcqRel);
        if let Some(tx) = &self.file {
            // An empty line is a wake-up; a full queue wakes the writer anyway.
            let _ = tx.try_send(String::new());
        }
    }

    /// Logs `rec`, queues it for the file and files it in the ring; never blocks (a full
    /// queue drops and counts).
    pub fn emit(&self, rec: FlowRecord) {
        self.log_and_write(&rec);
        self.hub.ring.push(rec);
    }

    fn log_and_write(&self, rec: &FlowRecord) {
        let mismatch = (!rec.mismatch.is_empty()).then(|| rec.mismatch.join(","));
        tracing::info!(
            target: "ward::flow",
            conn_id = %rec.conn_id,
            client = %rec.client,
            user = rec.user.as_deref(),
            sni = rec.sni.as_deref(),
            connect = rec.connect.as_deref(),
            mismatch = mismatch.as_deref(),
            method = %rec.method,
            authority = rec.authority.as_deref(),
            path = %rec.path,
            version = rec.version,
            status = rec.status,
            request_bytes = rec.request_bytes,
            response_bytes = rec.response_bytes,
            duration_ms = rec.duration_ms,
            rule = rec.rule.as_deref(),
            error = rec.error,
            tls_client = rec.tls_client.as_deref(),
            cipher_client = rec.cipher_client.as_deref(),
            kx_client = rec.kx_client.as_deref(),
            tls_upstream = rec.tls_upstream.as_deref(),
            cipher_upstream = rec.cipher_upstream.as_deref(),
            kx_upstream = rec.kx_upstream.as_deref(),
            ja4 = rec.ja4.as_deref(),
            ja4_upstream = rec.ja4_upstream.as_deref(),
            "flow"
        );
        let Some(tx) = &self.file else { return };
        let Ok(line) = serde_json::to_string(rec) else {
            return;
        };
        match tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.hub.file.dropped.fetch_add(1, Ordering::Relaxed);
                if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!("flows file cannot keep up; dropping records");
                }
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }
}

/// Milliseconds, saturating: for durations in records.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
